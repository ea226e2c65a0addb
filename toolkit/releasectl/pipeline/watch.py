"""`releasectl watch`: analyse the live version, then act on the verdict.

Pass (after the bake): mark it stable. Fail: recovery first, record second
(docs/ARCHITECTURE.md, "Unattended rollback"): switch the local target back to
the last verified stable release (planned before the bake, so the switch waits
on nothing), then write the signed revert commit and rejected tag, then push,
retrying a refused push with backoff for a bounded time; the caller exits 4.
Inconclusive: nothing changes; a human decides (exit 4). Every outcome but a
pass is also sent to the registry's notification hook, and every outcome is
kept for `status`. A watcher can run detached after a deploy, so a bad version
is rolled back with nobody at a terminal (`releasectl.pipeline.detached_watch`
starts it, `releasectl.serving.watcher` stops it).

With `act=False` it only judges: no signing key is needed and nothing is
marked, reverted or redeployed. That is the CI job that runs the model's code
(it holds no key and no write token); a later job that runs no model code
acts on the verdict (docs/ARCHITECTURE.md, "Trust").

A kubernetes-target model is judged in the cluster through Prometheus and acted
on through Git alone: the pushed revert is the way back, since Argo CD syncs it
(docs/ARCHITECTURE.md, "Analysis in the cluster")."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from releasectl import git as g
from releasectl.analysis.engine import (
    AnalysisVerdict,
    Cause,
    Judgement,
    Measurement,
    run_analysis,
)
from releasectl.errors import (
    ANALYSIS_FAILED,
    FAILED,
    OK,
    PushRefused,
    ReleasectlError,
    Severity,
    for_code,
)
from releasectl.names import MAX_REASON, check_model
from releasectl.pipeline.canary import Driven, OnStep
from releasectl.registry.landing import Landed
from releasectl.registry.marking import mark_stable
from releasectl.registry.revert import RevertResult, revert
from releasectl.serving import notify, outcomes, targets
from releasectl.serving import recovery as rec
from releasectl.signing import check_signing_key
from releasectl.text import one_line

RECORD_TIMEOUT_S = 600.0  # how long a refused push of the record is retried
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0


@dataclass
class Watched:
    model: str
    version: str
    verdict: AnalysisVerdict
    action: str  # "marked-stable", "reverted", "none", "judged" (act=False)
    revert: RevertResult | None = None
    deployed_version: str | None = None
    outcome: outcomes.WatchOutcome | None = None

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
            # Judged only: the line a later job's `revert --reason` records.
            **({"reason": self.reason} if self.action == "judged" else {}),
        }

    @property
    def reason(self) -> str:
        return revert_reason(self.verdict)

    @property
    def exit_code(self) -> int:
        """`releasectl watch`'s exit: 0 marked stable (or, judged only, passed);
        4 any other verdict; 1 marked stable but the mark not recorded."""
        if self.action == "judged":
            return OK if self.verdict.passed else ANALYSIS_FAILED
        if self.action != "marked-stable":
            return ANALYSIS_FAILED
        if self.outcome is not None and self.outcome.record == "failed":
            return FAILED
        return OK

    def line(self) -> str:
        """One line for the terminal and the failing exit."""
        if self.action == "judged" and not self.verdict.passed:
            what = f"{self.model} {self.version}"
            if self.verdict.outcome is Judgement.FAILED:
                return f"{what} failed analysis: {self.verdict.message}; judged only: not reverted"
            return f"{what} needs a human: {self.verdict.message}; nothing changed"
        return f"{self.model}: {self.outcome.line()}" if self.outcome else self.verdict.message

    def problem(self) -> ReleasectlError | None:
        """The error the watch exits with; None when it passed (and, acting,
        its mark was recorded). A pass whose mark was not recorded is a warning
        (exit 1)."""
        code = self.exit_code
        if code == OK:
            return None
        severity: Severity = "warning" if self.action == "marked-stable" else "error"
        return for_code(code)(self.line(), report=self.to_json(), severity=severity)


def revert_reason(verdict: AnalysisVerdict) -> str:
    """The reason a failed verdict's revert records: one line, within the
    limit `revert --reason` accepts, whatever the metric names hold."""
    return one_line(f"analysis failed: {verdict.message}", MAX_REASON)


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
    on_step: OnStep | None = None,
) -> Watched:
    """`on_step`: each step of a canary the watch saw (else said through `on_event`)."""
    say: Say = on_event or (lambda _text: None)
    hook = _before_bake(git, model, act)
    target = targets.declared(git, model)
    live = target.live(git, model, version)
    canary = _canary(target, live, say, on_step)
    # The way back is prepared while the bake runs (verifying the stable release
    # and fetching its bundle takes seconds): the first measurement waits on
    # nothing, and the switch on a failed verdict waits on nothing either.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recovery") if act else None
    planned = pool.submit(_plan_recovery, target, git, live, say) if pool else None
    if pool is not None:
        pool.shutdown(wait=False)
    with _crash_concluded(act, hook, model, live.version):
        with target.metric_source(live) as source:
            verdict = run_analysis(
                live.manifest.analysis,
                source,
                live.version,
                on_measurement=on_measurement,
                steps=canary,
            )
        if planned is None:
            return Watched(model, live.version, verdict, "judged", None, live.version)
        if verdict.cause is Cause.CANARY_ENDED or _aborted(model, live.version):
            # Whoever ended it acted and keeps its outcome; this watch writes nothing.
            return Watched(model, live.version, verdict, "none", None, None)
        if canary is not None and verdict.outcome is Judgement.FAILED:
            canary.abort()  # the candidate answers nothing, before anything else acts
        recovery = planned.result()
        return _act(
            git,
            target,
            model,
            live.version,
            verdict,
            recovery,
            hook,
            push,
            record_timeout,
            say,
            canary,
        )


def _aborted(model: str, version: str) -> bool:
    """`releasectl abort` ended this version while the watch ran (a race it may not
    have seen as a step): its outcome stands."""
    saved = outcomes.load(model)
    return saved is not None and saved.version == version and saved.aborted_by is not None


def _canary(
    target: targets.Target, live: targets.Live, say: Say, on_step: OnStep | None
) -> Driven | None:
    """The canary of the live version when the target steps it from here
    (docs/ARCHITECTURE.md, "Steps and the bake"); None for blue-green, a verified
    revert's deploy, or a target that runs its steps itself."""
    if live.manifest.deploy.strategy.kind != "canary":
        return None
    stepper = target.stepper(live)
    info = stepper.current() if stepper is not None else None
    if stepper is None or info is None:
        return None
    return Driven(stepper, info, say, on_step)


@contextlib.contextmanager
def _crash_concluded(
    act: bool, hook: notify.NotifySpec | None, model: str, version: str
) -> Iterator[None]:
    """A watch that acts concludes even when it crashes: the outcome says so and
    the hook hears of it (KeyboardInterrupt and SystemExit are not crashes)."""
    try:
        yield
    except Exception as exc:
        if act:
            _conclude(hook, _crashed(model, version, exc))
        raise


def _before_bake(git: g.Git, model: str, act: bool) -> notify.NotifySpec | None:
    """The refusals that need no target: the model, and when the verdict is to be
    acted on, a usable key and hook (found out now, not after the bake)."""
    check_model(model)
    if not act:
        return None
    check_signing_key(git)
    return notify.load(git)


def _plan_recovery(
    target: targets.Target, git: g.Git, live: targets.Live, say: Say
) -> rec.Recovery | None:
    recovery = target.plan_recovery(git, live.model, live.version)
    if recovery is not None:
        say(
            f"if {live.version} fails, {recovery.stable} serves again"
            if recovery.problem is None
            else f"if {live.version} fails, it cannot be switched back: {recovery.problem}"
        )
    return recovery


def _act(
    git: g.Git,
    target: targets.Target,
    model: str,
    version: str,
    verdict: AnalysisVerdict,
    recovery: rec.Recovery | None,
    hook: notify.NotifySpec | None,
    push: bool,
    record_timeout: float,
    say: Say,
    canary: Driven | None = None,
) -> Watched:
    outcome, settled = _unless_failed(git, model, version, verdict, hook, push, canary)
    if settled is not None:
        return settled
    if canary is not None and canary.abort_error is not None:
        outcome.message += f"; {canary.abort_error}"

    if recovery is None:
        say(f"{version} failed: reverting; the cluster follows the revert once it is pushed")
    reverted = recover_and_record(
        git, target, outcome, recovery, hook, revert_reason(verdict), push, record_timeout, say
    )
    return Watched(model, version, verdict, "reverted", reverted, outcome.serving, outcome)


def recover_and_record(
    git: g.Git,
    target: targets.Target,
    outcome: outcomes.WatchOutcome,
    recovery: rec.Recovery | None,
    hook: notify.NotifySpec | None,
    reason: str,
    push: bool,
    record_timeout: float,
    say: Say,
) -> RevertResult | None:
    """The way back of a failed version, for a failed verdict and `abort` alike:
    recovery first (the stable release serves before any git write), record second
    (the signed revert and rejected tag, pushed when asked, a refused push retried),
    then the outcome kept and the hook told (docs/ARCHITECTURE.md, "Unattended rollback")."""
    model = outcome.model
    outcome.record = "pending"
    started = time.monotonic()
    if recovery is not None and recovery.problem is None:
        say(f"{outcome.version} failed: switching back to {recovery.stable}")
        try:
            outcome.recovered = rec.switch_back(recovery)
            outcome.kind, outcome.serving = "failed-recovered", recovery.stable
            outcome.recovery_seconds = round(time.monotonic() - started, 3)
        except ReleasectlError as exc:
            outcome.message += f"; switching back to {recovery.stable} failed: {exc.line()}"
    elif recovery is not None:
        outcome.message += f"; {recovery.problem}"
    outcomes.save(outcome)  # what was done so far survives a kill from here on

    reverted: RevertResult | None = None
    if recovery is None or recovery.stable is not None:
        reverted, error = _record_revert(git, model, reason, push, record_timeout, say)
        landed = reverted.landed if reverted else None
        if error is not None:
            outcome.record, outcome.record_error = "failed", error
        else:
            _recorded(outcome, landed)
            outcome.revert_commit = landed.commit if landed else None
        target.follow_revert(git, reverted, outcome)
    else:
        outcome.record = "none"
    _conclude(hook, outcome)
    return reverted


def _unless_failed(
    git: g.Git,
    model: str,
    version: str,
    verdict: AnalysisVerdict,
    hook: notify.NotifySpec | None,
    push: bool,
    canary: Driven | None = None,
) -> tuple[outcomes.WatchOutcome, Watched | None]:
    """The outcome of a verdict, and what was done about it unless it failed: a pass
    is marked stable, an inconclusive verdict changes nothing."""
    kind: outcomes.Kind = (
        "passed"
        if verdict.passed
        else "failed-unrecovered"
        if verdict.outcome is Judgement.FAILED
        else "needs-human"
    )
    outcome = outcomes.WatchOutcome(
        model=model, version=version, kind=kind, message=verdict.message, serving=version
    )
    if canary is not None:
        outcome.steps, outcome.promoted = canary.steps, canary.promoted
    if kind == "passed":
        try:
            _recorded(outcome, mark_stable(git, model, version, push=push, leave_local=push)[1])
        except ReleasectlError as exc:
            outcome.record, outcome.record_error = "failed", exc.line()
        _conclude(hook, outcome)
        return outcome, Watched(model, version, verdict, "marked-stable", None, version, outcome)
    if kind == "needs-human":
        _conclude(hook, outcome)
        return outcome, Watched(model, version, verdict, "none", None, version, outcome)
    return outcome, None


def _recorded(outcome: outcomes.WatchOutcome, landed: Landed | None) -> None:
    outcome.record = "done"
    outcome.pushed_to = landed.pushed_to if landed else None
    outcome.note = landed.note if landed else None


def _record_revert(
    git: g.Git, model: str, reason: str, push: bool, timeout: float, say: Say
) -> tuple[RevertResult | None, str | None]:
    """The revert, landed; a push the remote refuses (or that timed out) is tried
    again with backoff until `timeout`, and nothing else is: no other failure
    changes by waiting (docs/ARCHITECTURE.md, "Errors by kind"). Never raises:
    the caller reports what could not be done, with the attempts it took."""
    deadline = time.monotonic() + timeout
    delay, attempts = RETRY_FIRST_S, 1
    while True:
        try:
            return revert(git, model, reason=reason, push=push, leave_local=push), None
        except ReleasectlError as exc:
            if not isinstance(exc, PushRefused) or time.monotonic() + delay > deadline:
                tried = f" (tried {attempts} times)" if attempts > 1 else ""
                return None, exc.line() + tried
            say(f"recording the revert failed: {exc.line()}; retrying in {delay:g} s")
            time.sleep(delay)
            delay, attempts = min(delay * 2, RETRY_MAX_S), attempts + 1


def _crashed(model: str, version: str, exc: BaseException) -> outcomes.WatchOutcome:
    message = exc.line() if isinstance(exc, ReleasectlError) else f"{type(exc).__name__}: {exc}"
    saved = outcomes.load(model)
    if saved is not None and saved.version == version and saved.kind == "failed-recovered":
        # The switch back happened before the crash: say so, and that the record did not.
        saved.record, saved.record_error = "failed", f"the watcher crashed: {message}"
        return saved
    return outcomes.WatchOutcome(
        model=model, version=version, kind="crashed", message=message, serving=version
    )


def _conclude(hook: notify.NotifySpec | None, outcome: outcomes.WatchOutcome) -> None:
    """Keep the outcome for `status`; tell the hook about anything but a clean pass."""
    if outcome.kind != "passed" or outcome.record == "failed":
        outcome.notified = notify.send(hook, outcome.model_dump(mode="json"))
    outcomes.save(outcome)


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
    steps: str | None = None  # a canary's: what the watch does with them

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "dry_run": True}


def _steps_plan(target: targets.Target, model: str, manifest: Any) -> str | None:
    """What `watch` does with a canary's steps, from the manifest it is judged by."""
    strategy = manifest.deploy.strategy
    if strategy.kind != "canary":
        return None
    if target.rollouts_command(model, "promote") is not None:
        return "Argo Rollouts runs the steps in the cluster; watch judges the version"
    from releasectl.manifest.strategy import steps_text

    return (
        f"advance the running canary's steps ({steps_text(strategy.steps or [])}) as each "
        "one's measurements pass, "
        "then 100% for the rest of the bake; on a failed verdict the candidate's weight "
        "goes to 0 before anything else"
    )


def plan_watch(
    git: g.Git, model: str, *, version: str | None = None, push: bool = False, act: bool = True
) -> WatchPlan:
    """`watch --dry-run`: the refusals `watch` makes before its bake, in its
    order and with its messages (the model, with `act` a usable signing key,
    a live version, the one asked for, the one the branch declares), with no
    agent started and nothing measured; then what each verdict would lead to.
    What can only fail after the bake (the remote moved, the revert has no
    stable release to go back to) is said in those lines, not refused: the
    real command finds it only then."""
    from releasectl.errors import ReleasectlError
    from releasectl.manifest.durations import format_duration
    from releasectl.registry.landing import head
    from releasectl.registry.marking import plan_mark_stable
    from releasectl.registry.revert import plan as plan_revert
    from releasectl.view import trust_root

    _before_bake(git, model, act)
    target = targets.declared(git, model)
    live = target.live(git, model, version, start=False)
    watched, manifest, running = live.version, live.manifest, target.running()
    bake = format_duration(manifest.analysis.bake)
    inconclusive = "nothing changes; exit 4: a human decides"
    steps = _steps_plan(target, model, manifest)
    if not act:
        return WatchPlan(
            model,
            watched,
            manifest.analysis.bake,
            running,
            f"report passed after the {bake} bake (judged only: not marked stable)",
            "report failed (judged only: not reverted); exit 4",
            inconclusive,
            steps,
        )
    where = " and push it" if push else ""
    base = head(git)
    trust = trust_root(git, base)
    try:
        _, change = plan_mark_stable(git, trust, model, watched, base)
        on_pass = (
            f"mark {model} {watched} stable after the {bake} bake "
            f"(stable/{model}/v{watched}){where}"
            if change is not None
            else f"nothing: {model} {watched} is already stable"
        )
    except ReleasectlError as exc:
        on_pass = f"try to mark {model} {watched} stable, which would fail: {exc.message}"
    who = g.config_get(git, "user.email") or "unknown"
    try:
        p = plan_revert(git, model, base, reason="analysis failed", who=who, trust=trust)
        back = target.way_back(p.to_version)
        on_fail = (
            f"revert {model} {p.from_version} -> {p.to_version}{where}{back}; exit 4"
            if p.change is not None
            else f"nothing to revert ({p.note}); exit 4"
        )
    except ReleasectlError as exc:
        on_fail = f"try to revert {model}, which would fail: {exc.message}; exit 4"
    return WatchPlan(
        model, watched, manifest.analysis.bake, running, on_pass, on_fail, inconclusive, steps
    )
