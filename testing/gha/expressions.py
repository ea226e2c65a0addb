"""`${{ }}` expressions: tokenizer, parser and evaluator with GitHub's coercions, and the
Scope that says which contexts an expression may see where it stands."""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from testing.gha.errors import ExpressionError

_TOKEN = re.compile(
    r"\s*(?:(?P<num>0x[0-9a-fA-F]+|-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<str>'(?:[^']|'')*')"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,*])"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_-]*))"
)
_STATUS_FUNCS = ("success", "failure", "always", "cancelled")


class _Filtered(list):  # type: ignore[type-arg]
    """The result of `.*`: a following property applies to every element."""


def _tokenize(src: str) -> list[tuple[str, Any]]:
    tokens, pos = [], 0
    while pos < len(src.rstrip()):
        m = _TOKEN.match(src, pos)
        if not m or m.end() == pos:
            raise ExpressionError(f"cannot parse {src!r} at {src[pos:]!r}")
        kind = m.lastgroup or ""
        text = m.group(kind)
        if kind == "num":
            value: Any = int(text, 16) if text.lower().startswith("0x") else float(text)
            tokens.append(("lit", value))
        elif kind == "str":
            tokens.append(("lit", text[1:-1].replace("''", "'")))
        elif kind == "name" and text in ("true", "false", "null"):
            tokens.append(("lit", {"true": True, "false": False, "null": None}[text]))
        else:
            tokens.append((kind, text))
        pos = m.end()
    return [*tokens, ("end", None)]


class _Parser:
    """Recursive descent over GitHub's precedence: ( ) [ ] . ! < <= > >= == != && ||"""

    def __init__(self, src: str) -> None:
        self.src, self.tokens, self.i = src, _tokenize(src), 0

    def peek(self) -> tuple[str, Any]:
        return self.tokens[self.i]

    def take(self, value: str | None = None) -> tuple[str, Any]:
        tok = self.tokens[self.i]
        if value is not None and tok[1] != value:
            raise ExpressionError(f"expected {value!r} in {self.src!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> tuple[Any, ...]:
        node = self.binary(0)
        if self.peek()[0] != "end":
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.src!r}")
        return node

    _LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="))

    def binary(self, level: int) -> tuple[Any, ...]:
        if level == len(self._LEVELS):
            return self.unary()
        node = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in self._LEVELS[level]:
            op = self.take()[1]
            node = ("bin", op, node, self.binary(level + 1))
        return node

    def unary(self) -> tuple[Any, ...]:
        if self.peek() == ("op", "!"):
            self.take()
            return ("not", self.unary())
        return self.postfix(self.primary())

    def primary(self) -> tuple[Any, ...]:
        kind, value = self.take()
        if kind == "lit":
            return ("lit", value)
        if (kind, value) == ("op", "("):
            node = self.binary(0)
            self.take(")")
            return node
        if kind == "name" and self.peek() == ("op", "("):
            self.take()
            args: list[tuple[Any, ...]] = []
            while self.peek() != ("op", ")"):
                if args:
                    self.take(",")
                args.append(self.binary(0))
            self.take(")")
            return ("call", value.lower(), tuple(args))
        if kind == "name":
            return ("ctx", value)
        raise ExpressionError(f"unexpected {value!r} in {self.src!r}")

    def postfix(self, node: tuple[Any, ...]) -> tuple[Any, ...]:
        while self.peek() in (("op", "."), ("op", "[")):
            if self.take()[1] == ".":
                kind, value = self.take()
                if (kind, value) == ("op", "*"):
                    node = ("star", node)
                elif kind == "name" or (kind == "lit" and isinstance(value, bool | None)):
                    key = value if kind == "name" else json.dumps(value)
                    node = ("prop", node, ("lit", key))
                else:
                    raise ExpressionError(f"bad property {value!r} in {self.src!r}")
            elif self.peek() == ("op", "*"):
                self.take()
                self.take("]")
                node = ("star", node)
            else:
                node = ("prop", node, self.binary(0))
                self.take("]")
        return node


@functools.lru_cache(maxsize=1024)
def _parse(src: str) -> tuple[Any, ...]:
    return _Parser(src).parse()


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "num"
    return "str" if isinstance(v, str) else "obj"


def to_number(v: Any) -> float:
    """GitHub's coercion to number: null 0, bools 1/0, '' 0, bad strings NaN."""
    k = _kind(v)
    if k in ("null", "bool", "num"):
        return float(v or 0)
    if k == "str":
        s = v.strip()
        try:
            return float(int(s, 16)) if s.lower().startswith("0x") else float(s or 0)
        except ValueError:
            return math.nan
    return math.nan


def to_str(v: Any) -> str:
    """How GitHub turns a value into text inside `${{ }}` interpolation."""
    k = _kind(v)
    if k == "null":
        return ""
    if k == "bool":
        return "true" if v else "false"
    if k == "num":
        return str(int(v)) if float(v).is_integer() else repr(float(v))
    if k == "str":
        return cast(str, v)
    return "Array" if isinstance(v, list) else "Object"


def truthy(v: Any) -> bool:
    k = _kind(v)
    if k == "num":
        return not (v == 0 or math.isnan(v))
    return bool(v) if k in ("null", "bool", "str") else True


def _loose_eq(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return to_number(a) == to_number(b)
    if ka == "str":
        return bool(a.casefold() == b.casefold())
    return a is b if ka == "obj" else bool(a == b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if _kind(a) == _kind(b) == "str":
        x, y = a.casefold(), b.casefold()
    else:
        x, y = to_number(a), to_number(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return cast(bool, {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op])


def prop(obj: Any, key: Any) -> Any:
    if isinstance(obj, _Filtered):
        return _Filtered(v for v in (prop(o, key) for o in obj) if v is not None)
    if isinstance(obj, list):
        n = to_number(key)
        return obj[int(n)] if not math.isnan(n) and 0 <= n < len(obj) else None
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        wanted = to_str(key).casefold()  # context property names are case-insensitive
        return next((v for k, v in obj.items() if str(k).casefold() == wanted), None)
    return None


def _format(fmt: str, *args: Any) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(0) in ("{{", "}}"):
            return m.group(0)[0]
        index = int(m.group(1))
        if index >= len(args):
            raise ExpressionError(f"format({fmt!r}): no argument {{{index}}}")
        return to_str(args[index])

    return re.sub(r"\{\{|\}\}|\{(\d+)\}", one, fmt)


def _hash_files(*_: Any) -> Any:
    raise ExpressionError("hashFiles() is not implemented by the local stand-in runner")


def _from_json(s: Any) -> Any:
    try:
        return json.loads(to_str(s))
    except ValueError as exc:
        raise ExpressionError(f"fromJSON: invalid JSON {to_str(s)!r}: {exc}") from None


_FUNCS: dict[str, Callable[..., Any]] = {
    "contains": lambda s, i: (
        any(_loose_eq(x, i) for x in s)
        if isinstance(s, list)
        else to_str(i).casefold() in to_str(s).casefold()
    ),
    "startswith": lambda s, p: to_str(s).casefold().startswith(to_str(p).casefold()),
    "endswith": lambda s, p: to_str(s).casefold().endswith(to_str(p).casefold()),
    "format": lambda f, *a: _format(to_str(f), *a),
    "join": lambda a, sep=",": (
        to_str(sep).join(map(to_str, a)) if isinstance(a, list) else to_str(a)
    ),
    "tojson": lambda v: json.dumps(v, indent=2),
    "fromjson": _from_json,
    "hashfiles": _hash_files,
}


@dataclass
class Scope:
    """What an expression may see at one place in a workflow: the contexts GitHub
    makes available there, and the status functions' values (None where GitHub
    does not allow status functions, i.e. outside `if:`)."""

    contexts: dict[str, Any]
    status: dict[str, bool] | None = None
    where: str = "expression"

    def eval(self, src: str) -> Any:
        return self._eval(_parse(src.strip()), src.strip())

    def _eval(self, node: tuple[Any, ...], src: str) -> Any:
        tag = node[0]
        if tag == "lit":
            return node[1]
        if tag == "ctx":
            if node[1] not in self.contexts:
                raise ExpressionError(
                    f"unknown context {node[1]!r} in ${{{{ {src} }}}} at {self.where}; "
                    f"available here: {', '.join(sorted(self.contexts))}"
                )
            return self.contexts[node[1]]
        if tag == "prop":
            return prop(self._eval(node[1], src), self._eval(node[2], src))
        if tag == "star":
            base = self._eval(node[1], src)
            items = (
                base.values() if isinstance(base, dict) else base if isinstance(base, list) else []
            )
            return _Filtered(items)
        if tag == "not":
            return not truthy(self._eval(node[1], src))
        if tag == "call":
            return self._call(node[1], node[2], src)
        op, left = node[1], self._eval(node[2], src)
        if op == "&&":
            return self._eval(node[3], src) if truthy(left) else left
        if op == "||":
            return left if truthy(left) else self._eval(node[3], src)
        right = self._eval(node[3], src)
        if op in ("==", "!="):
            return _loose_eq(left, right) == (op == "==")
        return _compare(op, left, right)

    def _call(self, name: str, args: tuple[Any, ...], src: str) -> Any:
        if name in _STATUS_FUNCS:
            if self.status is None:
                raise ExpressionError(f"{name}() is only allowed in if: (${{{{ {src} }}}})")
            return self.status[name]
        if name not in _FUNCS:
            raise ExpressionError(f"unknown function {name}() in ${{{{ {src} }}}} at {self.where}")
        values = [self._eval(a, src) for a in args]
        try:
            return _FUNCS[name](*values)
        except TypeError as exc:
            raise ExpressionError(f"bad arguments to {name}() in ${{{{ {src} }}}}: {exc}") from None

    def render(self, value: Any) -> Any:
        """Evaluate the `${{ }}` in a value. A value that is exactly one
        expression keeps its type (GitHub does the same for `with:` etc.)."""
        if isinstance(value, dict):
            return {k: self.render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render(v) for v in value]
        if not isinstance(value, str) or "${{" not in value:
            return value
        parts = _split_template(value)
        if len(parts) == 1 and isinstance(parts[0], _Expr):
            return self.eval(parts[0].src)
        return "".join(to_str(self.eval(p.src)) if isinstance(p, _Expr) else p for p in parts)

    def text(self, value: Any) -> str:
        return to_str(self.render(value))

    def condition(self, value: Any) -> bool:
        """`if:` semantics: bare or `${{ }}`-wrapped, wrapped in `success() && (…)`
        when it calls no status function; a string with text around `${{ }}` is a
        (truthy) string, as on GitHub."""
        src = "success()" if value is None else to_str(value).strip()
        if src.startswith("${{") and src.endswith("}}") and src.count("${{") == 1:
            src = src[3:-2].strip()
        elif "${{" in src:
            return truthy(self.render(src))
        tree = _parse(src)
        if not _calls_status(tree):
            tree = ("bin", "&&", ("call", "success", ()), tree)
        return truthy(self._eval(tree, src))


@dataclass
class _Expr:
    src: str


def _split_template(text: str) -> list[str | _Expr]:
    """Split text at `${{ … }}`, finding each `}}` outside quoted strings."""
    parts: list[str | _Expr] = []
    i = 0
    while (j := text.find("${{", i)) >= 0:
        parts.append(text[i:j])
        k, quoted = j + 3, False
        while k < len(text) and (quoted or not text.startswith("}}", k)):
            quoted ^= text[k] == "'"
            k += 1
        if k >= len(text):
            raise ExpressionError(f"unterminated ${{{{ in {text!r}")
        parts.append(_Expr(text[j + 3 : k]))
        i = k + 2
    parts.append(text[i:])
    return [p for p in parts if p != ""]


def _calls_status(node: Any) -> bool:
    if not isinstance(node, tuple):
        return False
    if node[0] == "call" and node[1] in _STATUS_FUNCS:
        return True
    return any(_calls_status(n) for n in node[1:] if isinstance(n, tuple))


def evaluate(src: str, contexts: dict[str, Any], status: dict[str, bool] | None = None) -> Any:
    """Evaluate one expression (without `${{ }}`); for tests and callers' checks."""
    return Scope(contexts, status).eval(src)
