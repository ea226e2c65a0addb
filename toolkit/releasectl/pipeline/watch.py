"""`releasectl watch`: analyse the live version, then act on the verdict.

Pass (after the bake): mark it stable. Fail: recovery first, record second
(docs/ARCHITECTURE.md, "Unattended rollback"): switch the local target back to
the last verified stable release (planned before the bake, so the switch waits
on nothing), then write the signed revert commit and rejected tag, then push,
retrying a refused push with backoff for a bounded time; the caller exits 4.
Inconclusive: nothing changes; a human decides (exit 4). Every outcome but a
pass is also sent to the registry's notification hook, and every outcome is
kept for `status`. A watcher can run detached after a deploy, so a bad version
is rolled back with nobody at a terminal.

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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from releasectl import git as g
from releasectl.analysis.engine import Measurement, Verdict, run_analysis
from releasectl.analysis.sources import open_source
from releasectl.config import home
from releasectl.errors import BadInput, OperationFailed, ReleasectlError
from releasectl.manifest import schema as mf
from releasectl.names import MAX_REASON, check_model
from releasectl.pipeline import notify
from releasectl.pipeline import outcomes as out
from releasectl.registry import history as reg
from releasectl.registry.landing import Landed
from releasectl.registry.release import mark_stable
from releasectl.registry.revert import RevertResult, revert
from releasectl.serving import recovery as rec
from releasectl.serving.deploy import deploy
from releasectl.signing import check_signing_key

if TYPE_CHECKING:
    from releasectl.serving.local import ModelStatus, SlotInfo

RECORD_TIMEOUT_S = 600.0  # how long a refused push of the record is retried
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


@dataclass
class Watched:
    model: str
    version: str
    verdict: Verdict
    action: str  # "marked-stable", "reverted", "none", "judged" (act=False)
    revert: RevertResult | None = None
    deployed_version: str | None = None
    outcome: out.WatchOutcome | None = None

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
            "outcome": self.outcome.model_dump(mode="json") if self.outcome else None,
        }


def revert_reason(verdict: Verdict) -> str:
    """The reason a failed verdict's revert records: one line, within the
    limit `revert --reason` accepts, whatever the metric names hold."""
    text = "".join(c if c.isprintable() else " " for c in f"analysis failed: {verdict.message}")
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


Say = Callable[[str], None]


def watch(
    git: g.Git,
    model: str,
    *,
    version: str | None = None,
    push: bool = False,
    act: bool = True,
    on_measurement: Callable[[Measurement], None] | None = None,
    on_event: Say | None = None,
    record_timeout: float = RECORD_TIMEOUT_S,
) -> Watched:
    from releasectl.serving.local import LocalTarget

    say: Say = on_event or (lambda _text: None)
    hook = _before_bake(git, model, act)
    live, manifest = _live_and_declared(git, model, version, LocalTarget(home()).status())
    # The way back is prepared while the bake runs (verifying the stable release
    # and fetching its bundle takes seconds): the first measurement waits on
    # nothing, and the switch on a failed verdict waits on nothing either.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recovery") if act else None
    planned = pool.submit(_plan_recovery, git, model, live.version, say) if pool else None
    if pool is not None:
        pool.shutdown(wait=False)
    spec = manifest.analysis
    try:
        # The live slot's own server runs this version only, from zero counters:
        # its first scrape already measures everything since it went live.
        source = open_source(
            spec, live.version, base_url=f"http://127.0.0.1:{live.port}", fresh=True
        )
        with source:
            verdict = run_analysis(spec, source, live.version, on_measurement=on_measurement)
    except BaseException as exc:
        if act and not isinstance(exc, KeyboardInterrupt | SystemExit):
            _conclude(hook, _crashed(model, live.version, exc))
        raise
    if planned is None:
        return Watched(model, live.version, verdict, "judged", None, live.version)
    try:
        recovery = planned.result()
        return _act(git, model, live.version, verdict, recovery, hook, push, record_timeout, say)
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt | SystemExit):
            _conclude(hook, _crashed(model, live.version, exc))
        raise


def _before_bake(git: g.Git, model: str, act: bool) -> notify.NotifySpec | None:
    """The refusals that need no target: the model, and when the verdict is to be
    acted on, a usable key and hook (found out now, not after the bake)."""
    check_model(model)
    if not act:
        return None
    check_signing_key(git)
    return notify.load(git)


def _live_and_declared(
    git: g.Git, model: str, version: str | None, statuses: list[ModelStatus]
) -> tuple[SlotInfo, mf.Manifest]:
    """The live version (the one asked for, if any), which the branch declares."""
    status = next((s for s in statuses if s.model == model), None)
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
    return live, manifest


def _plan_recovery(git: g.Git, model: str, version: str, say: Say) -> rec.Recovery:
    recovery = rec.plan(git, model, version)
    say(
        f"if {version} fails, {recovery.stable} serves again"
        if recovery.problem is None
        else f"if {version} fails, it cannot be switched back: {recovery.problem}"
    )
    return recovery


def _act(
    git: g.Git,
    model: str,
    version: str,
    verdict: Verdict,
    recovery: rec.Recovery,
    hook: notify.NotifySpec | None,
    push: bool,
    record_timeout: float,
    say: Say,
) -> Watched:
    kind: out.Kind = (
        "passed"
        if verdict.passed
        else "failed-unrecovered"
        if verdict.outcome == "failed"
        else "needs-human"
    )
    outcome = out.WatchOutcome(
        model=model, version=version, outcome=kind, message=verdict.message, serving=version
    )
    if kind == "passed":
        try:
            _recorded(outcome, mark_stable(git, model, version, push=push, leave_local=push)[1])
        except ReleasectlError as exc:
            outcome.record, outcome.record_error = "failed", exc.line()
        _conclude(hook, outcome)
        return Watched(model, version, verdict, "marked-stable", None, version, outcome)
    if kind == "needs-human":
        _conclude(hook, outcome)
        return Watched(model, version, verdict, "none", None, version, outcome)

    # Recovery first: the stable release serves before any git write.
    outcome.record = "pending"
    started = time.monotonic()
    if recovery.problem is None:
        say(f"{version} failed: switching back to {recovery.stable}")
        try:
            outcome.recovered = rec.switch_back(recovery)
            outcome.outcome, outcome.serving = "failed-recovered", recovery.stable
            outcome.recovery_seconds = round(time.monotonic() - started, 3)
        except ReleasectlError as exc:
            outcome.message += f"; switching back to {recovery.stable} failed: {exc.line()}"
    else:
        outcome.message += f"; {recovery.problem}"
    out.save(outcome)  # what was done so far survives a kill from here on

    # Record second: the signed revert and rejected tag, pushed when there is a remote.
    reverted: RevertResult | None = None
    if recovery.stable is not None:
        reverted, error = _record_revert(
            git, model, revert_reason(verdict), push, record_timeout, say
        )
        landed = reverted.landed if reverted else None
        if error is not None:
            outcome.record, outcome.record_error = "failed", error
        else:
            _recorded(outcome, landed)
            outcome.revert_commit = landed.commit if landed else None
        if landed is not None and landed.commit and _on_branch(git, landed.commit):
            # The target now takes the revert's own state (same bundle: no restart).
            try:
                outcome.serving = deploy(git, model).version
                outcome.outcome = "failed-recovered"
            except ReleasectlError as exc:
                note = f"deploying the revert failed: {exc.line()}"
                outcome.note = f"{outcome.note}; {note}" if outcome.note else note
    else:
        outcome.record = "none"
    _conclude(hook, outcome)
    return Watched(model, version, verdict, "reverted", reverted, outcome.serving, outcome)


def _recorded(outcome: out.WatchOutcome, landed: Landed | None) -> None:
    outcome.record = "done"
    outcome.pushed_to = landed.pushed_to if landed else None
    outcome.note = landed.note if landed else None


def _record_revert(
    git: g.Git, model: str, reason: str, push: bool, timeout: float, say: Say
) -> tuple[RevertResult | None, str | None]:
    """The revert, landed; a push the remote refuses is tried again with backoff
    until `timeout`. Never raises: the caller reports what could not be done."""
    deadline = time.monotonic() + timeout
    delay = RETRY_FIRST_S
    while True:
        try:
            return revert(git, model, reason=reason, push=push, leave_local=push), None
        except ReleasectlError as exc:
            retry = push and exc.code == OperationFailed.code
            if not retry or time.monotonic() + delay > deadline:
                return None, exc.line()
            say(f"recording the revert failed: {exc.line()}; retrying in {delay:g} s")
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


def _on_branch(git: g.Git, commit: str) -> bool:
    head = g.rev_parse(git, "HEAD")
    return head is not None and g.is_ancestor(git, commit, head)


def _crashed(model: str, version: str, exc: BaseException) -> out.WatchOutcome:
    message = exc.line() if isinstance(exc, ReleasectlError) else f"{type(exc).__name__}: {exc}"
    saved = out.load(model)
    if saved is not None and saved.version == version and saved.outcome == "failed-recovered":
        # The switch back happened before the crash: say so, and that the record did not.
        saved.record, saved.record_error = "failed", f"the watcher crashed: {message}"
        return saved
    return out.WatchOutcome(
        model=model, version=version, outcome="crashed", message=message, serving=version
    )


def _conclude(hook: notify.NotifySpec | None, outcome: out.WatchOutcome) -> None:
    """Keep the outcome for `status`; tell the hook about anything but a clean pass."""
    if outcome.outcome != "passed" or outcome.record == "failed":
        outcome.notified = notify.send(hook, outcome.model_dump(mode="json"))
    out.save(outcome)


# --- the detached watcher -------------------------------------------------------------


def _watch_file(model: str) -> Path:
    return home() / "watch" / f"{model}.json"


def start_detached(git: g.Git, model: str, version: str) -> dict[str, Any]:
    """Start `releasectl watch` in its own session, logging to the state home;
    it pushes when the branch has an upstream. A newer watcher replaces an
    older one for the same model."""
    check_signing_key(git)  # say now, at the terminal, that it could not act
    notify.load(git)  # and that its hook is malformed
    stop_detached(model)
    out.exit_path(model).unlink(missing_ok=True)
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
        "--detached",
        *(["--push"] if push else []),
    ]
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            argv,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=git.cwd,
        )
    info = {"pid": proc.pid, "model": model, "version": version, "push": push, "log": str(log)}
    path.write_text(json.dumps(info))
    return info


def stop_detached(model: str | None = None) -> list[dict[str, Any]]:
    """Stop detached watchers (one model's, or all); returns those that ran.
    A watcher stopped on purpose leaves no crash behind for `status`."""
    folder = home() / "watch"
    stopped: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if "." in path.stem or (model is not None and path.stem != model):
            continue  # <model>.outcome.json, <model>.exit.json
        info = json.loads(path.read_text())
        if _terminate(int(info["pid"]), "watch"):
            stopped.append(info)
        path.unlink(missing_ok=True)
    return stopped


def _terminate(pid: int, needle: str) -> bool:
    """Stop the process if it is still ours; True if it was running."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if needle not in " ".join(proc.cmdline()):
            return False  # the pid was reused by something else
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    except psutil.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
    except psutil.Error:
        return False
    return True


def detached(model: str) -> dict[str, Any] | None:
    """The model's detached watcher, for `status`: running (`alive`), or ended
    with its exit code, or gone without one (killed); None if there never was one."""
    import psutil

    path = _watch_file(model)
    if not path.exists():
        return None
    info: dict[str, Any] = json.loads(path.read_text())
    try:
        alive = "watch" in " ".join(psutil.Process(int(info["pid"])).cmdline())
    except psutil.Error:
        alive = False
    info["alive"] = alive
    ended = out.load_exit(model)
    info["exit_code"] = ended["code"] if ended and ended.get("pid") == info["pid"] else None
    return info


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
    from releasectl.analysis.engine import format_duration
    from releasectl.errors import ReleasectlError
    from releasectl.registry.landing import head
    from releasectl.registry.release import plan_mark_stable
    from releasectl.registry.revert import plan as plan_revert
    from releasectl.serving.local import LocalTarget
    from releasectl.signing import trust_root

    _before_bake(git, model, act)
    target = LocalTarget(home())
    running = target.running()
    live, manifest = _live_and_declared(git, model, version, target.status(start=False))
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
