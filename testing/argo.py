"""A stand-in for the Argo Rollouts controller's analysis, enough to run the
AnalysisTemplate releasectl renders: an evaluator for the condition grammar the
template emits (a subset of expr, the language Argo evaluates conditions in) and
the AnalysisRun rules that turn measurements into a phase.

Grammar (what serving/kubernetes/analysis_template.py writes):
    expr    := and ("||" and)*
    and     := unary ("&&" unary)*
    unary   := "!" unary | compare
    compare := primary (("<=" | ">=" | "<" | ">" | "==" | "!=") primary)?
    primary := NUMBER | "result" | "#" | primary "[" NUMBER "]" | "(" expr ")"
             | "len" "(" expr ")" | "isNaN" "(" expr ")"
             | ("all" | "any") "(" expr "," "{" expr "}" ")"
NUMBER may be signed ("-0.5"): there is no subtraction. Anything else is a
SyntaxError: the evaluator must not guess at what it was not written for. As in
Argo (Go), a comparison with NaN is false, and a bad index is an error (Argo: the
measurement is an Error)."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

_TOKEN = re.compile(r"\s*(-?\d+(?:\.\d+)?|&&|\|\||<=|>=|==|!=|[<>!()\[\]{},#]|[A-Za-z_]\w*)")
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}

Node = Callable[[dict[str, Any]], Any]


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None:
            raise SyntaxError(f"unexpected text at {pos}: {text[pos:]!r}")
        out.append(match.group(1))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise SyntaxError(f"expected {expected or 'more'}, got {token!r}")
        self.at += 1
        return token

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise SyntaxError(f"unexpected {self.peek()!r}")
        return node

    def expr(self) -> Node:
        left = self.conj()
        while self.peek() == "||":
            self.take()
            left = (lambda a, b: lambda env: bool(a(env)) or bool(b(env)))(left, self.conj())
        return left

    def conj(self) -> Node:
        left = self.unary()
        while self.peek() == "&&":
            self.take()
            left = (lambda a, b: lambda env: bool(a(env)) and bool(b(env)))(left, self.unary())
        return left

    def unary(self) -> Node:
        if self.peek() == "!":
            self.take()
            inner = self.unary()
            return lambda env: not inner(env)
        return self.compare()

    def compare(self) -> Node:
        left = self.primary()
        op = self.peek()
        if op in _COMPARE:
            self.take()
            right = self.primary()
            fn = _COMPARE[op]
            return lambda env: fn(_float(left(env)), _float(right(env)))
        return left

    def primary(self) -> Node:
        token = self.take()
        node: Node
        if re.fullmatch(r"-?\d+(\.\d+)?", token):
            value = float(token)
            node = lambda env: value  # noqa: E731
        elif token in ("result", "#"):
            node = lambda env: env[token]  # noqa: E731
        elif token == "(":
            node = self.expr()
            self.take(")")
        elif token in ("len", "isNaN"):
            self.take("(")
            arg = self.expr()
            self.take(")")
            node = (
                (lambda env: len(arg(env)))
                if token == "len"
                else (lambda env: math.isnan(_float(arg(env))))
            )
        elif token in ("all", "any"):
            self.take("(")
            items = self.expr()
            self.take(",")
            self.take("{")
            predicate = self.expr()
            self.take("}")
            self.take(")")
            quantifier = all if token == "all" else any
            node = lambda env: quantifier(  # noqa: E731
                bool(predicate({**env, "#": item})) for item in items(env)
            )
        else:
            raise SyntaxError(f"unexpected {token!r}")
        while self.peek() == "[":
            self.take("[")
            index = int(self.take())
            self.take("]")
            node = (lambda inner, i: lambda env: inner(env)[i])(node, index)
        return node


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def evaluate(condition: str, result: list[float]) -> bool:
    """The condition's value for a Prometheus vector result (its values, in order)."""
    return bool(_Parser(condition).parse()({"result": result}))


# --- measurements and runs, as the Argo Rollouts controller judges them ------------------


def measurement_phase(metric: dict[str, Any], result: list[float]) -> str:
    """Argo's EvaluateResult with both conditions set: the failure condition first;
    neither met is Inconclusive; an evaluation error is an Error."""
    try:
        failed = evaluate(metric["failureCondition"], result)
        succeeded = evaluate(metric["successCondition"], result)
    except (IndexError, TypeError):
        return "Error"
    if failed:
        return "Failed"
    return "Successful" if succeeded else "Inconclusive"


def metric_phase(metric: dict[str, Any], phases: list[str]) -> str | None:
    """The metric's phase after these measurements, None while it still runs:
    a count exceeding its limit ends it; after `count` measurements it is Successful."""
    counted = {p: phases.count(p) for p in ("Failed", "Inconclusive")}
    errors = 0
    for phase in reversed(phases):
        if phase != "Error":
            break
        errors += 1
    if counted["Failed"] > metric["failureLimit"]:
        return "Failed"
    if errors > metric["consecutiveErrorLimit"]:
        return "Error"
    if counted["Inconclusive"] > metric["inconclusiveLimit"]:
        return "Inconclusive"
    if len(phases) >= metric["count"]:
        return "Successful"
    return None


def run_metric(
    metric: dict[str, Any],
    query: Callable[[], list[float]],
    *,
    seconds: Callable[[str], float],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, list[str]]:
    """One metric of an AnalysisRun: after `initialDelay`, a measurement every
    `interval` (the query's values through the conditions) until its phase is
    decided. A query that raises is an Error measurement."""
    start = clock() + seconds(metric.get("initialDelay", "0s"))
    phases: list[str] = []
    while True:
        wait = start + len(phases) * seconds(metric["interval"]) - clock()
        if wait > 0:
            sleep(wait)
        try:
            phase = measurement_phase(metric, query())
        except Exception:
            phase = "Error"
        phases.append(phase)
        decided = metric_phase(metric, phases)
        if decided is not None:
            return decided, phases
