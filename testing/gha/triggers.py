"""Whether GitHub would start a workflow for an event: the `on:` triggers, branch/tag and
paths filters, and typed `workflow_dispatch` inputs."""

from __future__ import annotations

import functools
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testing.gha.errors import NotTriggered, WorkflowError
from testing.gha.expressions import prop, to_number, to_str
from testing.gha.files import load_workflow


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
        return str(prop(prop(self.payload.get("pull_request"), "base"), "ref") or "")

    @property
    def head_ref(self) -> str:
        return str(prop(prop(self.payload.get("pull_request"), "head"), "ref") or "")


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
    on = doc.get("on")
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
            if math.isnan(to_number(value)):
                raise WorkflowError(f"workflow_dispatch: input {name!r} must be a number")
            value = to_number(value)
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
