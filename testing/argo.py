"""A stand-in for the Argo Rollouts controller's analysis, enough to run the
AnalysisTemplate releasectl renders: an evaluator for the condition grammar the
template emits (a subset of expr, the language Argo evaluates conditions in) and
the AnalysisRun rules that turn measurements into a phase.

Grammar (what render/analysis_template.py writes):
    expr    := and ("||" and)*
    and     := unary ("&&" unary)*
    unary   := "!" unary | compare
    compare := primary (("<=" | ">=" | "<" | ">" | "==" | "!=") primary)?
    primary := NUMBER | STRING | "true" | "false" | "result" | "#"
             | primary "[" NUMBER "]" | "(" expr ")"
             | "len" "(" expr ")" | "isNaN" "(" expr ")"
             | ("all" | "any") "(" expr "," "{" expr "}" ")"
NUMBER may be signed ("-0.5"): there is no subtraction. STRING is double-quoted
with JSON's escapes (the smoke template's expected answers, compared with == and
!=; a web metric's `result` is the value its jsonPath picks, not a vector). Anything else is a
SyntaxError: the evaluator must not guess at what it was not written for. As in
Argo (Go), a comparison with NaN is false, and a bad index is an error (Argo: the
measurement is an Error)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

_TOKEN = re.compile(
    r'\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|&&|\|\||<=|>=|==|!=|[<>!()\[\]{},#]|[A-Za-z_]\w*)'
)
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}

Node = Callable[[dict[str, Any]], Any]


def _indexed(inner: Node, i: int) -> Node:
    return lambda env: inner(env)[i]


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
            if op in ("==", "!="):
                return lambda env: _equal(fn, left(env), right(env))
            return lambda env: fn(_float(left(env)), _float(right(env)))
        return left

    def primary(self) -> Node:
        token = self.take()
        node: Node
        if re.fullmatch(r"-?\d+(\.\d+)?", token):
            value = float(token)
            node = lambda env: value  # noqa: E731
        elif token.startswith('"'):
            text = json.loads(token)
            node = lambda env: text  # noqa: E731
        elif token in ("true", "false"):
            flag = token == "true"
            node = lambda env: flag  # noqa: E731
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
            node = _indexed(node, index)
        return node


def _equal(fn: Callable[[Any, Any], bool], left: Any, right: Any) -> bool:
    """expr's == on strings and booleans compares like with like; numbers as floats."""
    if isinstance(left, str | bool) or isinstance(right, str | bool):
        return fn(left, right) if type(left) is type(right) else fn is _COMPARE["!="]
    return fn(_float(left), _float(right))


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"not a number: {value!r}")
    return float(value)


def evaluate(condition: str, result: Any) -> bool:
    """The condition's value for a Prometheus vector result (its values, in order), or
    for a web metric's jsonPath value."""
    return bool(_Parser(condition).parse()({"result": result}))


# --- the web provider: a smoke request -----------------------------------------------


def json_path_value(answer: Any, path: str) -> Any:
    """The value `{$.a.b}` picks from a JSON answer (the dotted subset releasectl writes);
    KeyError when it is not there (Argo: an Error measurement)."""
    match = re.fullmatch(r"\{\$\.([A-Za-z_][A-Za-z0-9_.]*)\}", path)
    if match is None:
        raise SyntaxError(f"jsonPath {path!r} is not one the smoke template writes")
    value = answer
    for key in match.group(1).split("."):
        value = value[key]
    return value


def web_measurement(metric: dict[str, Any], base_url: str) -> str:
    """One measurement of a smoke metric as Argo's web provider takes it, sent to
    `base_url` instead of the preview Service's in-cluster address (same path, method,
    headers and body); its phase by the metric's conditions."""
    web = metric["provider"]["web"]
    path = "/" + web["url"].split("://", 1)[1].split("/", 1)[1]
    headers = {h["key"]: h["value"] for h in web.get("headers", [])}
    try:
        answer = httpx.request(
            web["method"],
            base_url.rstrip("/") + path,
            content=web["body"],
            headers=headers,
            timeout=web["timeoutSeconds"],
        )
        answer.raise_for_status()
        result = json_path_value(answer.json(), web["jsonPath"])
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return "Error"
    return measurement_phase(metric, result)


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
    a count exceeding its limit ends it; after `count` measurements that are not
    errors it is Successful."""
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
    # An Error is not a measurement that counts (Argo increments Count on the other three).
    if len([p for p in phases if p != "Error"]) >= metric["count"]:
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


def run_web_metric(metric: dict[str, Any], base_url: str) -> tuple[str, list[str]]:
    """A smoke metric's run: measured until its phase is decided (an Error is measured
    again, up to the consecutive-error limit, at once rather than after `interval`)."""
    phases: list[str] = []
    while True:
        phases.append(web_measurement(metric, base_url))
        decided = metric_phase({"inconclusiveLimit": 0, **metric}, phases)
        if decided is not None:
            return decided, phases


Case = tuple[str, str]  # (metric, version)
Judge = Callable[[str, str, str], tuple[str, Any]]  # (prometheus, metric, version) -> phase, why


def judged_both_ways(
    prometheus: str, cases: list[Case], watch: Judge, argo: Judge
) -> dict[Case, dict[str, Any]]:
    """watch's engine and this stand-in for Argo, on every case, all at once (both only
    read the Prometheus): case -> {"watch": (phase, message), "argo": (phase, phases)}."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2 * len(cases)) as pool:
        watched = {case: pool.submit(watch, prometheus, *case) for case in cases}
        argoed = {case: pool.submit(argo, prometheus, *case) for case in cases}
        return {
            case: {"watch": watched[case].result(), "argo": argoed[case].result()} for case in cases
        }


def assert_both_judge(verdicts: dict[Case, dict[str, Any]], case: Case, expected: str) -> None:
    """Both judges gave the same phase for `case`, and it is `expected`."""
    (watch_phase, message), (argo_phase, phases) = verdicts[case]["watch"], verdicts[case]["argo"]
    detail = f"watch: {message}; argo measurements: {phases}"
    assert watch_phase == argo_phase, detail
    assert argo_phase == expected, detail
