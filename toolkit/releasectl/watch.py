"""`releasectl watch`: analyse the live version, then act on the verdict.

Pass (after the bake): mark it stable. Fail: revert to the last stable
release (signed commit + rejected tag, pushed with `push`) and switch the local
target back; the caller exits 4. Inconclusive: nothing changes; a human
decides (exit 4). A watcher can also run detached after a deploy, so a bad
version is rolled back with nobody at a terminal.

With `act=False` it only judges: no signing key is needed and nothing is
marked, reverted or redeployed. That is the CI job that runs the model's code
(it holds no key and no write token); a later job that runs no model code
acts on the verdict (docs/ARCHITECTURE.md, "Trust")."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import git as g
from . import registry as reg
from .analysis import Measurement, Verdict, run_analysis
from .config import home
from .deploy import deploy
from .errors import BadInput, OperationFailed
from .metrics import open_source
from .names import MAX_REASON, check_model
from .release import mark_stable
from .revert import Outcome, revert
from .signing import check_signing_key


@dataclass
class Watched:
    model: str
    version: str
    verdict: Verdict
    action: str  # "marked-stable", "reverted", "none", "judged" (act=False)
    revert: Outcome | None = None
    deployed_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "verdict": self.verdict.model_dump(mode="json"),
            "action": self.action,
            "revert_commit": (
                self.revert.landed.commit if self.revert and self.revert.landed else None
            ),
            "serving": self.deployed_version,
        }


def revert_reason(verdict: Verdict) -> str:
    """The reason a failed verdict's revert records: one line, within the
    limit `revert --reason` accepts, whatever the metric names hold."""
    text = "".join(c if c.isprintable() else " " for c in f"analysis failed: {verdict.message}")
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def watch(
    git: g.Git,
    model: str,
    *,
    version: str | None = None,
    push: bool = False,
    act: bool = True,
    on_measurement: Callable[[Measurement], None] | None = None,
) -> Watched:
    from .targets.local import LocalTarget

    check_model(model)
    if act:
        # The verdict must be acted on: find out now, not after the bake, if it cannot be.
        check_signing_key(git)
    status = next((s for s in LocalTarget(home()).status() if s.model == model), None)
    if status is None or status.live is None:
        raise OperationFailed(f"{model} is not live on the local target", "deploy it first")
    live = status.live
    if version is not None and version != live.version:
        raise BadInput(f"{model} {version} is not live (live: {live.version})")
    manifest, _ = reg.current(git, model)
    if manifest.version != live.version:
        raise OperationFailed(
            f"the branch declares {model} {manifest.version}, but {live.version} is live",
            "watch the version the branch declares: deploy it first",
        )
    spec = manifest.analysis
    # The live slot's own server runs this version only, from zero counters:
    # its first scrape already measures everything since it went live.
    source = open_source(spec, live.version, base_url=f"http://127.0.0.1:{live.port}", fresh=True)
    with source:
        verdict = run_analysis(spec, source, live.version, on_measurement=on_measurement)
    if not act:
        return Watched(model, live.version, verdict, "judged", None, live.version)
    if verdict.passed:
        mark_stable(git, model, live.version, push=push)
        return Watched(model, live.version, verdict, "marked-stable", None, live.version)
    if verdict.outcome == "failed":
        outcome = revert(git, model, reason=revert_reason(verdict), push=push)
        result = deploy(git, model)
        return Watched(model, live.version, verdict, "reverted", outcome, result.version)
    return Watched(model, live.version, verdict, "none", None, live.version)


# --- the detached watcher -------------------------------------------------------------


def _watch_file(model: str) -> Path:
    return home() / "watch" / f"{model}.json"


def start_detached(git: g.Git, model: str, version: str) -> dict[str, Any]:
    """Start `releasectl watch` in its own session, logging to the state home;
    it pushes when the branch has an upstream. A newer watcher replaces an
    older one for the same model."""
    check_signing_key(git)  # say now, at the terminal, that it could not act
    stop_detached(model)
    branch = g.current_branch(git)
    push = branch is not None and g.config_get(git, f"branch.{branch}.remote") is not None
    path = _watch_file(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.with_suffix(".log")
    argv = [
        sys.executable,
        "-m",
        "releasectl",
        "-C",
        str(git.cwd),
        "watch",
        model,
        "--version",
        version,
        "--json",
        *(["--push"] if push else []),
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=git.cwd,
        )
    info = {"pid": proc.pid, "model": model, "version": version, "push": push, "log": str(log)}
    path.write_text(json.dumps(info))
    return info


def stop_detached(model: str | None = None) -> None:
    folder = home() / "watch"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if model is not None and path.stem != model:
            continue
        info = json.loads(path.read_text())
        _terminate(int(info["pid"]), "watch")
        path.unlink(missing_ok=True)


def _terminate(pid: int, needle: str) -> None:
    import psutil

    try:
        proc = psutil.Process(pid)
        if needle not in " ".join(proc.cmdline()):
            return  # the pid was reused by something else
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    except psutil.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
    except psutil.Error:
        pass


def detached(model: str) -> dict[str, Any] | None:
    """The model's detached watcher, while it runs (for `status`)."""
    import psutil

    path = _watch_file(model)
    if not path.exists():
        return None
    info: dict[str, Any] = json.loads(path.read_text())
    try:
        alive = "watch" in " ".join(psutil.Process(int(info["pid"])).cmdline())
    except psutil.Error:
        alive = False
    return info if alive else None


# --- what `watch` would do (`watch --dry-run`, `agent stop`) ------------------------------


@dataclass(frozen=True)
class WatchPlan:
    model: str
    version: str  # the live version it would watch
    bake_s: float
    agent_running: bool
    on_pass: str
    on_fail: str
    on_inconclusive: str

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "dry_run": True}


def check_watch(
    git: g.Git, model: str, *, version: str | None = None, push: bool = False, act: bool = True
) -> WatchPlan:
    """`watch --dry-run`: the refusals `watch` makes before its bake, in its
    order and with its messages (the model, with `act` a usable signing key,
    a live version, the one asked for, the one the branch declares), with no
    agent started and nothing measured; then what each verdict would lead to.
    What can only fail after the bake (the remote moved, the revert has no
    stable release to go back to) is said in those lines, not refused: the
    real command finds it only then."""
    from .analysis import format_duration
    from .changes import head
    from .errors import ReleasectlError
    from .release import plan_mark_stable
    from .revert import plan as plan_revert
    from .signing import trust_root
    from .targets.local import LocalTarget

    check_model(model)
    if act:
        check_signing_key(git)
    target = LocalTarget(home())
    running = target.running()
    status = next((s for s in target.status(start=False) if s.model == model), None)
    if status is None or status.live is None:
        raise OperationFailed(f"{model} is not live on the local target", "deploy it first")
    live = status.live
    if version is not None and version != live.version:
        raise BadInput(f"{model} {version} is not live (live: {live.version})")
    manifest, _ = reg.current(git, model)
    if manifest.version != live.version:
        raise OperationFailed(
            f"the branch declares {model} {manifest.version}, but {live.version} is live",
            "watch the version the branch declares: deploy it first",
        )
    bake = format_duration(manifest.analysis.bake)
    inconclusive = "nothing changes; exit 4: a human decides"
    if not act:
        return WatchPlan(
            model,
            live.version,
            manifest.analysis.bake,
            running,
            f"report passed after the {bake} bake (judged only: not marked stable)",
            "report failed (judged only: not reverted); exit 4",
            inconclusive,
        )
    where = " and push it" if push else ""
    base = head(git)
    trust = trust_root(git, base)
    try:
        _, change = plan_mark_stable(git, trust, model, live.version, base)
        on_pass = (
            f"mark {model} {live.version} stable after the {bake} bake "
            f"(stable/{model}/v{live.version}){where}"
            if change is not None
            else f"nothing: {model} {live.version} is already stable"
        )
    except ReleasectlError as exc:
        on_pass = f"try to mark {model} {live.version} stable, which would fail: {exc.message}"
    who = g.config_get(git, "user.email") or "unknown"
    try:
        p = plan_revert(git, model, base, reason="analysis failed", who=who, trust=trust)
        on_fail = (
            f"revert {model} {p.from_version} -> {p.to_version}{where}, switch the local "
            f"target back to {p.to_version}; exit 4"
            if p.change is not None
            else f"nothing to revert ({p.note}); exit 4"
        )
    except ReleasectlError as exc:
        on_fail = f"try to revert {model}, which would fail: {exc.message}; exit 4"
    return WatchPlan(
        model, live.version, manifest.analysis.bake, running, on_pass, on_fail, inconclusive
    )


def running_watchers() -> list[dict[str, Any]]:
    """Every detached watcher that runs now (for `agent stop` to say which it stops)."""
    folder = home() / "watch"
    names = sorted(path.stem for path in folder.glob("*.json")) if folder.is_dir() else []
    found = [detached(name) for name in names]
    return [info for info in found if info is not None]
