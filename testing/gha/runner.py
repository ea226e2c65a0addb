"""A LOCAL STAND-IN for GitHub's Actions runner, for tests only.

GitHub cannot run here, yet releasectl's workflows must be proven by running
them. This module runs one workflow's jobs for real on this machine: `run:`
steps are real shell processes in a real git checkout of a bare repository that
stands in for the GitHub repository. Only what cannot run here is mocked:
`uses:` actions resolve to Python stand-ins (`actions/checkout` clones the bare
remote, `actions/setup-python` records the version) or to callables the test
passes in; anything else fails its step with a clear message.

Where it differs from GitHub it errs on the strict side, so that a workflow
that passes here is not one that fails there for a reason we could have seen:
- processes a step leaves behind are killed when the step ends (GitHub keeps
  them until the job ends), so steps cannot lean on a background server;
- an expression naming a context GitHub does not offer at that place, or an
  unknown function, raises `ExpressionError` naming the expression;
- `${{ }}` that fails to evaluate raises instead of failing the step.
Jobs run one after another in `needs:` order. Not supported (raises
`WorkflowError`): matrix, services, container, reusable workflows; `hashFiles()`.
Network: git may use only local repositories, and HTTP(S) proxies point at a
closed port on 127.0.0.1 (`no_proxy` lets 127.0.0.1/localhost through). This is
a guard for well-behaved clients, not a sandbox.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Event",
    "ExpressionError",
    "JobResult",
    "NotTriggered",
    "RunResult",
    "StepContext",
    "StepResult",
    "UsesRef",
    "WorkflowError",
    "evaluate",
    "is_pinned",
    "load_workflow",
    "run_workflow",
    "triggered",
]

FAKE_TOKEN = "ghs_local_stand_in_token"  # a placeholder, never a credential
_SHA40 = re.compile(r"[0-9a-f]{40}")


class WorkflowError(Exception):
    """The workflow (or the way it was invoked) is something GitHub would refuse."""


class NotTriggered(WorkflowError):
    """The event does not match the workflow's `on:` triggers; GitHub would not run it."""


class ExpressionError(WorkflowError):
    """A `${{ }}` expression GitHub would reject (unknown context, bad syntax, ...)."""


# --- YAML ---------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans (true/false only), as GitHub parses workflows: PyYAML's
    YAML 1.1 would read the key `on` (and values yes/no/off) as booleans."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_workflow(path: Path) -> dict[str, Any]:
    doc = yaml.load(path.read_text(), Loader=_Loader)  # _Loader is a SafeLoader
    if not isinstance(doc, dict) or "jobs" not in doc:
        raise WorkflowError(f"{path}: not a workflow (no jobs:)")
    if True in doc:  # loaded elsewhere with YAML 1.1
        doc["on"] = doc.pop(True)
    return doc


# --- expressions: tokenizer, parser, evaluator --------------------------------

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


def _num(v: Any) -> float:
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
        return v
    return "Array" if isinstance(v, list) else "Object"


def truthy(v: Any) -> bool:
    k = _kind(v)
    if k == "num":
        return not (v == 0 or math.isnan(v))
    return bool(v) if k in ("null", "bool", "str") else True


def _loose_eq(a: Any, b: Any) -> bool:
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return _num(a) == _num(b)
    if ka == "str":
        return bool(a.casefold() == b.casefold())
    return a is b if ka == "obj" else bool(a == b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if _kind(a) == _kind(b) == "str":
        x, y = a.casefold(), b.casefold()
    else:
        x, y = _num(a), _num(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _prop(obj: Any, key: Any) -> Any:
    if isinstance(obj, _Filtered):
        return _Filtered(v for v in (_prop(o, key) for o in obj) if v is not None)
    if isinstance(obj, list):
        n = _num(key)
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
            return _prop(self._eval(node[1], src), self._eval(node[2], src))
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


# --- triggers -------------------------------------------------------------------


@dataclass
class Event:
    """The event that starts a run. `payload` is what GITHUB_EVENT_PATH holds
    (`pull_request.base.ref`/`head.ref` for PRs, `inputs` for dispatch).
    `changed_files` feeds `paths:` filters; None means: ask the remote (git diff
    between `payload.before` or the parent, and `sha`)."""

    name: str
    ref: str
    sha: str
    payload: dict[str, Any] = field(default_factory=dict)
    changed_files: list[str] | None = None

    @classmethod
    def push(cls, ref: str, sha: str, *, changed_files: list[str] | None = None) -> Event:
        return cls("push", ref, sha, {"ref": ref, "after": sha}, changed_files)

    @classmethod
    def pull_request(
        cls,
        sha: str,
        *,
        base: str,
        head: str,
        number: int = 1,
        action: str = "opened",
        changed_files: list[str] | None = None,
    ) -> Event:
        pr = {"number": number, "base": {"ref": base}, "head": {"ref": head, "sha": sha}}
        payload = {"action": action, "number": number, "pull_request": pr}
        return cls("pull_request", f"refs/pull/{number}/merge", sha, payload, changed_files)

    @classmethod
    def dispatch(cls, ref: str, sha: str, inputs: dict[str, Any] | None = None) -> Event:
        return cls("workflow_dispatch", ref, sha, {"ref": ref, "inputs": dict(inputs or {})})

    @property
    def base_ref(self) -> str:
        return str(_prop(_prop(self.payload.get("pull_request"), "base"), "ref") or "")

    @property
    def head_ref(self) -> str:
        return str(_prop(_prop(self.payload.get("pull_request"), "head"), "ref") or "")


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    """GitHub's filter glob, approximated: `**` any characters, `*` any but `/`,
    `?` one character but `/`, `[...]` a class (GitHub's `?`/`+` quantifiers are
    not modelled)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 1)) > 0:
            out.append("[" + pattern[i + 1 : end] + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _matches(patterns: list[str] | str, name: str) -> bool:
    """Patterns in order, `!` negates; the last matching pattern decides."""
    hit = False
    for p in [patterns] if isinstance(patterns, str) else patterns:
        p = str(p)
        negated = p.startswith("!")
        if _glob(p[1:] if negated else p).match(name):
            hit = not negated
    return hit


def _triggers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    on = doc.get("on", doc.get(True))  # type: ignore[call-overload]  # YAML 1.1 `on`
    if isinstance(on, str):
        return {on: {}}
    if isinstance(on, list):
        return {str(e): {} for e in on}
    if isinstance(on, dict):
        return {str(k): v or {} for k, v in on.items()}
    raise WorkflowError("workflow has no on: triggers")


def _git_out(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise WorkflowError(f"git {' '.join(args)} in {cwd}: {proc.stderr.strip()}")
    return proc.stdout


def _changed_files(event: Event, remote: Path | None, base: str | None) -> list[str]:
    if event.changed_files is not None:
        return event.changed_files
    if remote is None:
        raise WorkflowError("paths: filter needs Event.changed_files or a remote to diff in")
    before = str(event.payload.get("before") or "").strip("0")
    if base:
        return _git_out(remote, "diff", "--name-only", f"refs/heads/{base}...{event.sha}").split()
    if before:
        return _git_out(remote, "diff", "--name-only", event.payload["before"], event.sha).split()
    if _git_out(remote, "rev-list", "--parents", "-n1", event.sha).split()[1:]:
        return _git_out(remote, "diff", "--name-only", f"{event.sha}^", event.sha).split()
    return _git_out(remote, "ls-tree", "-r", "--name-only", event.sha).split()


def _ref_filter(cfg: dict[str, Any], kind: str, name: str) -> str | None:
    """None when the ref passes `branches`/`tags` (+ `-ignore`) filters, else why not."""
    keys = ("branches", "branches-ignore", "tags", "tags-ignore")
    if not any(k in cfg for k in keys):
        return None
    plural = "branches" if kind == "branch" else "tags"
    if plural in cfg:
        return None if _matches(cfg[plural], name) else f"{kind} {name!r} not in {plural}"
    if f"{plural}-ignore" in cfg:
        return (
            f"{kind} {name!r} is in {plural}-ignore"
            if _matches(cfg[f"{plural}-ignore"], name)
            else None
        )
    return f"the trigger filters only {'tags' if kind == 'branch' else 'branches'}"


def _paths_filter(cfg: dict[str, Any], files: list[str]) -> str | None:
    if "paths" in cfg and not any(_matches(cfg["paths"], f) for f in files):
        return f"no changed file matches paths {cfg['paths']} (changed: {files})"
    if "paths-ignore" in cfg and all(_matches(cfg["paths-ignore"], f) for f in files):
        return f"every changed file matches paths-ignore (changed: {files})"
    return None


def _dispatch_inputs(spec: dict[str, Any] | None, given: dict[str, Any]) -> dict[str, Any]:
    """Typed `inputs` as GitHub resolves them, refusing what GitHub's API refuses."""
    spec = spec or {}
    if unknown := sorted(set(given) - set(spec)):
        raise WorkflowError(f"workflow_dispatch: unexpected inputs {unknown}")
    inputs: dict[str, Any] = {}
    for name, s in spec.items():
        s = s or {}
        kind = s.get("type", "string")
        if name in given:
            value = given[name]
        elif "default" in s:
            value = s["default"]
        elif s.get("required"):
            raise WorkflowError(f"workflow_dispatch: required input {name!r} not provided")
        else:
            value = False if kind == "boolean" else ""
        if kind == "boolean":
            if to_str(value) not in ("true", "false"):
                raise WorkflowError(f"workflow_dispatch: input {name!r} must be true/false")
            value = to_str(value) == "true"
        elif kind == "number":
            if math.isnan(_num(value)):
                raise WorkflowError(f"workflow_dispatch: input {name!r} must be a number")
            value = _num(value)
        elif kind == "choice" and to_str(value) not in [to_str(o) for o in s.get("options", [])]:
            raise WorkflowError(f"workflow_dispatch: {name}={value!r} not in {s.get('options')}")
        inputs[name] = value if kind in ("boolean", "number") else to_str(value)
    return inputs


def check_trigger(doc: dict[str, Any], event: Event, remote: Path | None) -> dict[str, Any]:
    """Raise NotTriggered unless GitHub would start this workflow for `event`;
    return the `inputs` context (typed dispatch inputs, else empty)."""
    triggers = _triggers(doc)
    if event.name not in ("push", "pull_request", "workflow_dispatch"):
        raise WorkflowError(f"event {event.name!r} is not supported by the stand-in runner")
    if event.name not in triggers:
        raise NotTriggered(f"workflow has no {event.name!r} trigger (on: {sorted(triggers)})")
    cfg = triggers[event.name]
    if event.name == "workflow_dispatch":
        return _dispatch_inputs(cfg.get("inputs"), event.payload.get("inputs") or {})
    if event.name == "push":
        kind, name = _ref_kind(event.ref)
        why = _ref_filter(cfg, kind, name)
        # GitHub does not evaluate paths filters for tag pushes
        if why is None and kind == "branch" and ("paths" in cfg or "paths-ignore" in cfg):
            why = _paths_filter(cfg, _changed_files(event, remote, None))
    else:
        types = cfg.get("types") or ["opened", "synchronize", "reopened"]
        action = event.payload.get("action", "opened")
        why = None if action in types else f"pull_request action {action!r} not in {types}"
        why = why or _ref_filter(
            {k: v for k, v in cfg.items() if k.startswith("branches")}, "branch", event.base_ref
        )
        why = why or _paths_filter(
            cfg,
            _changed_files(event, remote, event.base_ref)
            if "paths" in cfg or "paths-ignore" in cfg
            else [],
        )
    if why:
        raise NotTriggered(why)
    return {}


def triggered(path: Path, event: Event, *, remote: Path | None = None) -> bool:
    try:
        check_trigger(load_workflow(path), event, remote)
    except NotTriggered:
        return False
    return True


def _ref_kind(ref: str) -> tuple[str, str]:
    for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if ref.startswith(prefix):
            return kind, ref[len(prefix) :]
    if ref.startswith("refs/pull/"):
        return "branch", ref[len("refs/pull/") :]
    raise WorkflowError(f"event ref must be a full ref (refs/heads/…, refs/tags/…): {ref!r}")


# --- results ------------------------------------------------------------------


@dataclass
class StepResult:
    job: str
    id: str | None
    name: str
    outcome: str  # success | failure | skipped (before continue-on-error)
    conclusion: str  # after continue-on-error
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""
    summary: str = ""
    uses: str | None = None
    pinned: bool | None = None  # None for run: steps
    inputs: dict[str, str] = field(default_factory=dict)  # evaluated with:
    annotations: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class JobResult:
    id: str
    name: str
    conclusion: str  # success | failure | skipped
    outcome: str
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""
    env: dict[str, str] = field(default_factory=dict)  # env context at job end
    permissions: Any = None  # as declared on the job (None: not declared)
    concurrency: dict[str, Any] | None = None  # {"group": str, "cancel-in-progress": …}
    environment: dict[str, str] | None = None  # {"name": …, "url": …}
    runs_on: Any = None
    annotations: list[tuple[str, str]] = field(default_factory=list)
    workspace: Path | None = None
    temp: Path | None = None  # the job's RUNNER_TEMP, kept after the run for inspection


@dataclass
class UsesRef:
    job: str
    step: str | None  # None for a job-level (reusable workflow) uses:
    uses: str
    pinned: bool


@dataclass
class RunResult:
    conclusion: str  # success | failure
    jobs: dict[str, JobResult]
    name: str = ""
    permissions: Any = None
    concurrency: dict[str, Any] | None = None
    uses: list[UsesRef] = field(default_factory=list)  # every uses: in the file, run or not

    def step(self, job: str, id_or_name: str) -> StepResult:
        steps = self.jobs[job].steps
        found = [s for s in steps if s.id == id_or_name] or [
            s for s in steps if s.name == id_or_name
        ]
        if not found:
            raise KeyError(
                f"no step {id_or_name!r} in job {job!r}: {[s.id or s.name for s in steps]}"
            )
        return found[0]


def is_pinned(uses: str) -> bool:
    """Pinned = a full 40-hex commit SHA; local actions are pinned by the checkout."""
    if uses.startswith("./"):
        return True
    if uses.startswith("docker://"):
        return "@sha256:" in uses
    return bool(_SHA40.fullmatch(uses.partition("@")[2]))


# --- actions ------------------------------------------------------------------


@dataclass
class StepContext:
    """What a `uses:` stand-in gets. Return outputs; raise to fail the step."""

    job: str
    step_id: str | None
    uses: str
    inputs: dict[str, str]
    env: dict[str, str]  # the step's process environment (GITHUB_OUTPUT etc. included)
    workspace: Path
    remote: Path
    event: Event
    github: dict[str, Any]
    lines: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        self.lines.append(line)

    def run(self, *argv: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            argv,
            cwd=cwd or self.workspace,
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        self.log(f"$ {shlex.join(argv)}\n{proc.stdout}{proc.stderr}".rstrip())
        if proc.returncode != 0:
            raise RuntimeError(
                f"{shlex.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc.stdout.strip()


def _checkout_target(ctx: StepContext, ref: str, sha: str) -> tuple[list[str], list[str]]:
    """(fetch refspecs, checkout args) the way actions/checkout picks them."""
    if ref and not ref.startswith("refs/"):  # a short name from with.ref: branch, else tag
        exists = (
            subprocess.run(
                ["git", "rev-parse", "-q", "--verify", f"refs/heads/{ref}"],
                cwd=ctx.remote,
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
        ref = f"refs/heads/{ref}" if exists else f"refs/tags/{ref}"
    if ref.startswith("refs/heads/"):
        branch = ref[len("refs/heads/") :]
        return [f"+{sha or ref}:refs/remotes/origin/{branch}"], [
            "-B",
            branch,
            f"refs/remotes/origin/{branch}",
        ]
    if ref.startswith("refs/tags/"):
        return [f"+{ref}:{ref}"], ["--detach", ref]
    if ref.startswith("refs/pull/"):
        local = "refs/remotes/pull/" + ref[len("refs/pull/") :]
        return [f"+{sha or ref}:{local}"], ["--detach", local]
    if sha:
        return [sha], ["--detach", sha]
    raise RuntimeError(f"actions/checkout stand-in: cannot resolve ref {ref!r}")


def checkout(ctx: StepContext) -> dict[str, str]:
    """actions/checkout: a real fetch from the bare remote into the workspace at
    with.ref (else the event's ref and sha), fetch-depth 0 = all history and
    tags, N = shallow. persist-credentials (default true) writes a placeholder
    auth header into .git/config, as the real action does, so that tests can see it."""
    repo = ctx.inputs.get("repository", "")
    if repo and repo != ctx.github["repository"]:
        raise RuntimeError(f"actions/checkout stand-in: only this repository, not {repo!r}")
    dest = (ctx.workspace / ctx.inputs.get("path", "")).resolve()
    if not dest.is_relative_to(ctx.workspace.resolve()):
        raise RuntimeError(f"actions/checkout: path {dest} is outside the workspace")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with_ref = ctx.inputs.get("ref", "")
    if _SHA40.fullmatch(with_ref):
        ref, sha = "", with_ref
    else:
        ref, sha = (with_ref, "") if with_ref else (ctx.event.ref, ctx.event.sha)
    depth = int(ctx.inputs.get("fetch-depth") or 1)
    specs, target = _checkout_target(ctx, ref, sha)
    ctx.run("git", "init", "-q", str(dest))
    ctx.run("git", "remote", "add", "origin", f"file://{ctx.remote.resolve()}", cwd=dest)
    if depth == 0:
        everything = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
        ctx.run("git", "fetch", "-q", "--prune", "origin", *everything, cwd=dest)
        # Separately: the event's own commit may overlap a branch fetched above.
        ctx.run("git", "fetch", "-q", "origin", *specs, cwd=dest)
    else:
        if ctx.inputs.get("fetch-tags") == "true":
            specs = [*specs, "+refs/tags/*:refs/tags/*"]
        ctx.run("git", "fetch", "-q", "--no-tags", f"--depth={depth}", "origin", *specs, cwd=dest)
    ctx.run("git", "checkout", "-q", "--force", *target, cwd=dest)
    if ctx.inputs.get("persist-credentials", "true") != "false":
        ctx.run(
            "git",
            "config",
            "--local",
            "http.https://github.com/.extraheader",
            "AUTHORIZATION: basic ***",
            cwd=dest,
        )
    commit = ctx.run("git", "rev-parse", "HEAD", cwd=dest)
    return {"ref": ref or sha, "commit": commit}


def setup_python(ctx: StepContext) -> dict[str, str]:
    """actions/setup-python: installs nothing; records the requested version and
    reports the python already on PATH."""
    python = shutil.which("python", path=ctx.env.get("PATH")) or ""
    version = ctx.inputs.get("python-version", "")
    ctx.log(f"setup-python stand-in: requested {version!r}, using {python}")
    return {"python-version": version, "python-path": python}


BUILTIN_ACTIONS: dict[str, Callable[[StepContext], dict[str, str]]] = {
    "actions/checkout": checkout,
    "actions/setup-python": setup_python,
}


# --- running ------------------------------------------------------------------

_RUN_IDS = itertools.count(1000)
_ANNOTATION = re.compile(r"^::(error|warning|notice)(?:\s[^:]*)?::(.*)$", re.M)
_MASK = re.compile(r"^::add-mask::(.*)$", re.M)
_SHELLS = {
    None: ["bash", "-e", "{0}"],  # GitHub's default when no shell is set anywhere
    "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
    "sh": ["sh", "-e", "{0}"],
    "python": ["python", "{0}"],
}
_NO_NETWORK = {
    "GIT_ALLOW_PROTOCOL": "file",
    **{
        k: "http://127.0.0.1:9"
        for k in (
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "all_proxy",
        )
    },
    **{k: "127.0.0.1,localhost,::1" for k in ("no_proxy", "NO_PROXY")},
}


def parse_file_command(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT / $GITHUB_ENV content: `name=value` and `name<<DELIM`…`DELIM`."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body = []
            for body_line in lines:
                if body_line == delim:
                    break
                body.append(body_line)
            else:
                raise WorkflowError(f"file command: heredoc {delim!r} for {name!r} never closed")
            out[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        else:
            raise WorkflowError(f"file command: cannot parse line {line!r}")
    return out


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process left in the group? Orphans are reaped by
    whatever PID 1 is, sometimes slowly, so `killpg(pgid, 0)` is not enough."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            return True
    return False


def _kill_group(pgid: int) -> None:
    """Stop everything still running in a step's session: TERM, then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.02)


def _spawn(
    argv: list[str], cwd: Path, env: dict[str, str], timeout: float, log: Path
) -> int | None:
    """Run in its own session with output to a file (a leftover background process
    holding a pipe open must not hang the step); None on timeout."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc: int | None = proc.wait(timeout=max(timeout, 0.001))
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            _kill_group(proc.pid)
            proc.wait()
    return rc


@dataclass
class _Run:
    doc: dict[str, Any]
    event: Event
    remote: Path
    root: Path
    secrets: dict[str, str]
    vars: dict[str, str]
    env: dict[str, str]
    actions: dict[str, Callable[[StepContext], dict[str, str]]]
    inputs: dict[str, Any]
    run_id: int
    github: dict[str, Any]
    jobs: dict[str, JobResult] = field(default_factory=dict)
    workflow_env: dict[str, str] = field(default_factory=dict)

    def mask(self, text: str, extra: list[str]) -> str:
        for secret in sorted({*self.secrets.values(), FAKE_TOKEN, *extra}, key=len, reverse=True):
            if secret:
                text = text.replace(secret, "***")
        return text


def _github_context(
    doc: dict[str, Any], event: Event, remote: Path, run_id: int, inputs: dict[str, Any]
) -> dict[str, Any]:
    repository = _prop(_prop(event.payload, "repository"), "full_name") or f"local/{remote.stem}"
    ref_name = event.ref.split("/", 2)[-1] if event.ref.startswith("refs/") else event.ref
    payload = {
        **event.payload,
        "repository": {**(event.payload.get("repository") or {}), "full_name": repository},
    }
    if event.name == "workflow_dispatch":
        payload["inputs"] = {k: to_str(v) for k, v in inputs.items()}  # defaults applied
    return {
        "event_name": event.name,
        "event": payload,
        "ref": event.ref,
        "ref_name": ref_name,
        "ref_type": "tag" if event.ref.startswith("refs/tags/") else "branch",
        "sha": event.sha,
        "repository": repository,
        "repository_owner": repository.split("/")[0],
        "run_id": str(run_id),
        "run_number": "1",
        "run_attempt": "1",
        "actor": "local-runner",
        "triggering_actor": "local-runner",
        "workflow": doc.get("name") or "",
        "base_ref": event.base_ref,
        "head_ref": event.head_ref,
        "token": FAKE_TOKEN,
        "server_url": "https://github.com",
        "api_url": "https://api.github.com",
        "action": "",
        "job": "",
        "workspace": "",
    }


def _needs(spec: dict[str, Any]) -> list[str]:
    needs = spec.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def _job_order(jobs: dict[str, Any], selected: list[str] | None) -> list[str]:
    """Topological order by needs:, ties in file order; `selected` pulls in what it needs."""
    for job_id, spec in jobs.items():
        if missing := [n for n in _needs(spec) if n not in jobs]:
            raise WorkflowError(f"job {job_id!r} needs unknown jobs {missing}")
    wanted, stack = set(), list(selected if selected is not None else jobs)
    while stack:
        job_id = stack.pop()
        if job_id not in jobs:
            raise WorkflowError(f"no job {job_id!r} in the workflow: {list(jobs)}")
        if job_id not in wanted:
            wanted.add(job_id)
            stack.extend(_needs(jobs[job_id]))
    order: list[str] = []
    while len(order) < len(wanted):
        ready = [
            j
            for j in jobs
            if j in wanted and j not in order and all(n in order for n in _needs(jobs[j]))
        ]
        if not ready:
            raise WorkflowError(f"needs: cycle among {sorted(wanted - set(order))}")
        order.append(ready[0])
    return order


def _ancestors(jobs: dict[str, Any], job_id: str) -> set[str]:
    found: set[str] = set()
    stack = _needs(jobs[job_id])
    while stack:
        if (j := stack.pop()) not in found:
            found.add(j)
            stack.extend(_needs(jobs[j]))
    return found


def _concurrency(value: Any, scope: Scope) -> dict[str, Any] | None:
    if value is None:
        return None
    value = scope.render(value)
    if isinstance(value, str):
        return {"group": value, "cancel-in-progress": False}
    return {
        "group": to_str(value.get("group")),
        "cancel-in-progress": value.get("cancel-in-progress", False),
    }


def _run_job(run: _Run, job_id: str) -> JobResult:
    jobs = run.doc["jobs"]
    spec = jobs[job_id] or {}
    for unsupported in ("strategy", "services", "container", "uses"):
        if unsupported in spec:
            raise WorkflowError(
                f"job {job_id!r}: {unsupported}: is not supported by the stand-in runner"
            )
    results = [run.jobs[a].conclusion for a in _ancestors(jobs, job_id)]
    needs = {
        n: {"result": run.jobs[n].conclusion, "outputs": run.jobs[n].outputs} for n in _needs(spec)
    }
    base_ctx = {
        "github": {**run.github, "job": job_id},
        "needs": needs,
        "vars": run.vars,
        "inputs": run.inputs,
        "strategy": {},
        "matrix": {},
    }
    status = {
        "success": all(r == "success" for r in results),
        "failure": any(r == "failure" for r in results),
        "always": True,
        "cancelled": False,
    }
    job_scope = Scope(base_ctx, where=f"jobs.{job_id}")
    name = job_scope.text(spec.get("name", job_id))
    result = JobResult(
        job_id,
        name,
        "skipped",
        "skipped",
        permissions=spec.get("permissions"),
        runs_on=spec.get("runs-on"),
    )
    if not Scope(
        {k: base_ctx[k] for k in ("github", "needs", "vars", "inputs")}, status, f"jobs.{job_id}.if"
    ).condition(spec.get("if")):
        return result
    env_scope = Scope({**base_ctx, "secrets": run.secrets}, where=f"jobs.{job_id}.env")
    job_env = {
        **run.workflow_env,
        **{k: env_scope.text(v) for k, v in (spec.get("env") or {}).items()},
    }
    result.concurrency = _concurrency(spec.get("concurrency"), job_scope)
    environment = spec.get("environment")
    if environment is not None:
        environment = {"name": environment} if isinstance(environment, str) else dict(environment)
        result.environment = {"name": job_scope.text(environment.get("name")), "url": ""}
    folder = Path(tempfile.mkdtemp(prefix=f"{job_id}-", dir=run.root))
    workspace, temp = folder / "workspace", folder / "temp"
    workspace.mkdir()
    temp.mkdir()
    result.workspace = workspace
    result.temp = temp
    _run_steps(run, job_id, spec, result, base_ctx, job_env, workspace, temp)
    final = Scope(
        {
            **base_ctx,
            "secrets": run.secrets,
            "env": result.env,
            "steps": _steps_context(result.steps),
            "job": {"status": result.outcome},
            "runner": _runner(temp),
        },
        where=f"jobs.{job_id}.outputs",
    )
    result.outputs = {k: final.text(v) for k, v in (spec.get("outputs") or {}).items()}
    if result.environment is not None and environment:
        result.environment["url"] = final.text(environment.get("url", ""))
    if result.outcome == "failure" and truthy(
        job_scope.render(spec.get("continue-on-error", False))
    ):
        result.conclusion = "success"
    else:
        result.conclusion = result.outcome
    return result


def _runner(temp: Path) -> dict[str, str]:
    return {
        "os": "Linux",
        "arch": "X64",
        "name": "local-stand-in",
        "temp": str(temp),
        "tool_cache": str(temp / "_tool"),
        "debug": "",
    }


def _steps_context(steps: list[StepResult]) -> dict[str, Any]:
    return {
        s.id: {"outputs": s.outputs, "outcome": s.outcome, "conclusion": s.conclusion}
        for s in steps
        if s.id
    }


def _run_steps(
    run: _Run,
    job_id: str,
    spec: dict[str, Any],
    result: JobResult,
    base_ctx: dict[str, Any],
    job_env: dict[str, str],
    workspace: Path,
    temp: Path,
) -> None:
    """Each step in order; a failure skips later steps unless their if: says otherwise."""
    defaults = {
        **((run.doc.get("defaults") or {}).get("run") or {}),
        **((spec.get("defaults") or {}).get("run") or {}),
    }
    minutes = _num(Scope(base_ctx).render(spec.get("timeout-minutes", 360)))
    deadline = time.monotonic() + 60 * (360 if math.isnan(minutes) else minutes)
    set_env: dict[str, str] = {}
    paths: list[str] = []
    masks: list[str] = []
    failed = False
    home = run.env.get("HOME") or str(run.root / "home")
    Path(home).mkdir(exist_ok=True)
    for index, step in enumerate(spec.get("steps") or []):
        env_ctx = {**job_env, **set_env}
        ctx = {
            **base_ctx,
            "github": {**base_ctx["github"], "workspace": str(workspace)},
            "runner": _runner(temp),
            "env": env_ctx,
            "steps": _steps_context(result.steps),
            "job": {"status": "failure" if failed else "success"},
        }
        where = f"jobs.{job_id}.steps[{index}]"
        status = {"success": not failed, "failure": failed, "always": True, "cancelled": False}
        scope = Scope({**ctx, "secrets": run.secrets}, where=where)
        uses = step.get("uses")
        first_line = (str(step.get("run", "")).strip().splitlines() or [""])[0]
        name = scope.text(step.get("name", f"Run {uses or first_line}"))
        record = StepResult(
            job_id,
            step.get("id"),
            name,
            "skipped",
            "skipped",
            uses=uses,
            pinned=is_pinned(uses) if uses else None,
        )
        result.steps.append(record)
        if time.monotonic() >= deadline or not Scope(ctx, status, f"{where}.if").condition(
            step.get("if")
        ):
            continue
        step_env = {k: scope.text(v) for k, v in (step.get("env") or {}).items()}
        scope.contexts["env"] = {**env_ctx, **step_env}
        files = {k: temp / f"_{k}_{index}" for k in ("output", "env", "path", "summary")}
        for f in files.values():
            f.write_text("")
        github_vars = {
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "GITHUB_WORKFLOW": run.github["workflow"],
            "GITHUB_RUN_ID": run.github["run_id"],
            "GITHUB_RUN_NUMBER": "1",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_JOB": job_id,
            "GITHUB_REF": run.event.ref,
            "GITHUB_REF_NAME": run.github["ref_name"],
            "GITHUB_REF_TYPE": run.github["ref_type"],
            "GITHUB_SHA": run.event.sha,
            "GITHUB_REPOSITORY": run.github["repository"],
            "GITHUB_REPOSITORY_OWNER": run.github["repository_owner"],
            "GITHUB_EVENT_NAME": run.event.name,
            "GITHUB_EVENT_PATH": str(run.root / "event.json"),
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_OUTPUT": str(files["output"]),
            "GITHUB_ENV": str(files["env"]),
            "GITHUB_PATH": str(files["path"]),
            "GITHUB_STEP_SUMMARY": str(files["summary"]),
            "GITHUB_ACTOR": "local-runner",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_API_URL": "https://api.github.com",
            "GITHUB_BASE_REF": run.event.base_ref,
            "GITHUB_HEAD_REF": run.event.head_ref,
            "RUNNER_TEMP": str(temp),
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            "RUNNER_NAME": "local-stand-in",
            "RUNNER_TOOL_CACHE": str(temp / "_tool"),
        }
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": home,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            **_NO_NETWORK,
            **run.env,
        }
        proc_env = {**base, **env_ctx, **step_env, **github_vars}
        proc_env["PATH"] = os.pathsep.join([*reversed(paths), proc_env["PATH"]])
        step_minutes = _num(scope.render(step.get("timeout-minutes", 360)))
        timeout = min(deadline, time.monotonic() + 60 * step_minutes)
        if uses:
            outcome, log = _uses_step(run, job_id, step, record, scope, proc_env, workspace)
        else:
            outcome, log = _run_step(
                step, defaults, scope, proc_env, workspace, temp, index, timeout - time.monotonic()
            )
        masks += _MASK.findall(log)
        record.log = run.mask(log, masks)
        record.annotations = _ANNOTATION.findall(record.log)
        try:
            record.outputs = parse_file_command(files["output"].read_text())
            set_env.update(parse_file_command(files["env"].read_text()))
        except WorkflowError as exc:
            outcome, record.log = "failure", f"{record.log}\n{exc}"
        paths += [p for p in files["path"].read_text().splitlines() if p.strip()]
        record.summary = files["summary"].read_text()
        record.outcome = outcome
        coe = truthy(scope.render(step.get("continue-on-error", False)))
        record.conclusion = "success" if outcome == "failure" and coe else outcome
        failed = failed or record.conclusion == "failure"
        result.annotations += record.annotations
    if time.monotonic() >= deadline:
        failed = True
    result.outcome = "failure" if failed else "success"
    result.summary = "".join(s.summary for s in result.steps)
    result.env = {**job_env, **set_env}


def _run_step(
    step: dict[str, Any],
    defaults: dict[str, Any],
    scope: Scope,
    env: dict[str, str],
    workspace: Path,
    temp: Path,
    index: int,
    timeout: float,
) -> tuple[str, str]:
    script = scope.text(step["run"])
    shell = step.get("shell", defaults.get("shell"))
    argv = _SHELLS.get(shell) or (shlex.split(shell) if shell and "{0}" in shell else None)
    if argv is None:
        return "failure", f"stand-in runner: unsupported shell {shell!r}"
    cwd = workspace / scope.text(
        step.get("working-directory", defaults.get("working-directory", ""))
    )
    if not cwd.is_dir():
        return "failure", f"working-directory {cwd} does not exist"
    path = temp / f"step_{index}.{'py' if shell == 'python' else 'sh'}"
    path.write_text(script)
    log = temp / f"step_{index}.log"
    rc = _spawn([a.replace("{0}", str(path)) for a in argv], cwd, env, timeout, log)
    text = log.read_text(errors="replace")
    if rc is None:
        return "failure", f"{text}\n##[error]The step timed out after {timeout:.1f} s"
    return ("success" if rc == 0 else "failure"), (
        text if rc == 0 else f"{text}\n##[error]Process completed with exit code {rc}."
    )


def _uses_step(
    run: _Run,
    job_id: str,
    step: dict[str, Any],
    record: StepResult,
    scope: Scope,
    env: dict[str, str],
    workspace: Path,
) -> tuple[str, str]:
    uses = str(step["uses"])
    action = uses.partition("@")[0]
    record.inputs = {k: scope.text(v) for k, v in (step.get("with") or {}).items()}
    fn = run.actions.get(action) or BUILTIN_ACTIONS.get(action)
    if fn is None:
        return "failure", (
            f"stand-in runner: no stand-in for action {action!r} (uses: {uses}); "
            f"pass one in run_workflow(actions={{{action!r}: callable}})"
        )
    ctx = StepContext(
        job_id,
        step.get("id"),
        uses,
        record.inputs,
        env,
        workspace,
        run.remote,
        run.event,
        {**run.github, "workspace": str(workspace)},
    )
    try:
        outputs = fn(ctx) or {}
    except Exception as exc:  # an action's failure is the step's failure, as on GitHub
        return "failure", "\n".join([*ctx.lines, f"##[error]{type(exc).__name__}: {exc}"])
    with Path(env["GITHUB_OUTPUT"]).open("a") as out:
        for key, value in outputs.items():
            out.write(f"{key}<<__STAND_IN_EOF__\n{value}\n__STAND_IN_EOF__\n")
    return "success", "\n".join(ctx.lines)


def _static_uses(doc: dict[str, Any]) -> list[UsesRef]:
    found = []
    for job_id, spec in (doc.get("jobs") or {}).items():
        spec = spec or {}
        if "uses" in spec:
            found.append(UsesRef(job_id, None, str(spec["uses"]), is_pinned(str(spec["uses"]))))
        for step in spec.get("steps") or []:
            if "uses" in step:
                found.append(
                    UsesRef(
                        job_id,
                        step.get("id") or step.get("name"),
                        str(step["uses"]),
                        is_pinned(str(step["uses"])),
                    )
                )
    return found


def run_workflow(
    path: Path,
    event: Event,
    *,
    remote: Path,
    workdir: Path,
    secrets: dict[str, str] | None = None,
    vars: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    actions: dict[str, Callable[[StepContext], dict[str, str]]] | None = None,
    jobs: list[str] | None = None,
) -> RunResult:
    """Run the workflow at `path` for `event` against `remote` (a bare repository
    standing in for the GitHub repository). Raises NotTriggered if GitHub would
    not start it. `env` is the runner's process environment on top of a minimal
    one (PATH, LANG, a fresh HOME); `jobs` picks jobs (plus what they need)."""
    doc = load_workflow(path)
    inputs = check_trigger(doc, event, remote)
    run_id = next(_RUN_IDS)
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"run{run_id}-", dir=workdir))
    run = _Run(
        doc,
        event,
        remote,
        root,
        {"GITHUB_TOKEN": FAKE_TOKEN, **(secrets or {})},
        dict(vars or {}),
        dict(env or {}),
        dict(actions or {}),
        inputs,
        run_id,
        _github_context(doc, event, remote, run_id, inputs),
    )
    (root / "event.json").write_text(json.dumps(run.github["event"], indent=2))
    top = Scope({"github": run.github, "inputs": inputs, "vars": run.vars}, where="workflow")
    wf_scope = Scope({**top.contexts, "secrets": run.secrets}, where="workflow env")
    run.workflow_env = {k: wf_scope.text(v) for k, v in (doc.get("env") or {}).items()}
    for job_id in _job_order(doc["jobs"], jobs):
        run.jobs[job_id] = _run_job(run, job_id)
    failed = any(j.conclusion == "failure" for j in run.jobs.values())
    return RunResult(
        "failure" if failed else "success",
        run.jobs,
        top.text(doc.get("run-name", doc.get("name", path.name))),
        doc.get("permissions"),
        _concurrency(doc.get("concurrency"), top),
        _static_uses(doc),
    )
