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

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from releasectl import git as g
from releasectl import loopback
from releasectl.analysis.engine import AnalysisVerdict, Judgement, Measurement, run_analysis
from releasectl.analysis.sources import open_source
from releasectl.config import home
from releasectl.errors import BadInput, OperationFailed, PushRefused, ReleasectlError
from releasectl.manifest import schema as mf
from releasectl.names import MAX_REASON, check_model
from releasectl.registry import history as reg
from releasectl.registry.landing import Landed
from releasectl.registry.marking import mark_stable
from releasectl.registry.revert import RevertResult, revert
from releasectl.serving import notify, outcomes
from releasectl.serving import recovery as rec
from releasectl.serving.deploy import deploy, trusted
from releasectl.signing import check_signing_key
from releasectl.text import one_line

if TYPE_CHECKING:
    from releasectl.serving.local import ModelStatus, SlotInfo

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
        }


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
) -> Watched:
    from releasectl.serving.local import LocalTarget

    say: Say = on_event or (lambda _text: None)
    hook = _before_bake(git, model, act)
    cluster = _in_cluster(git, model)
    if cluster is not None:
        return _watch_in_cluster(
            git, cluster, version, push, act, hook, on_measurement, record_timeout, say
        )
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
        source = open_source(spec, live.version, base_url=loopback.url(live.port), fresh=True)
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
    # The thresholds and the metric source are obeyed only as the verified view
    # vouches for them (docs/ARCHITECTURE.md, "Trust").
    return live, trusted(git, model).manifest


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
    verdict: AnalysisVerdict,
    recovery: rec.Recovery,
    hook: notify.NotifySpec | None,
    push: bool,
    record_timeout: float,
    say: Say,
) -> Watched:
    outcome, settled = _unless_failed(git, model, version, verdict, hook, push)
    if settled is not None:
        return settled

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
    outcomes.save(outcome)  # what was done so far survives a kill from here on

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


def _unless_failed(
    git: g.Git,
    model: str,
    version: str,
    verdict: AnalysisVerdict,
    hook: notify.NotifySpec | None,
    push: bool,
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
        model=model, version=version, outcome=kind, message=verdict.message, serving=version
    )
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


def _on_branch(git: g.Git, commit: str) -> bool:
    head = g.rev_parse(git, "HEAD")
    return head is not None and g.is_ancestor(git, commit, head)


def _crashed(model: str, version: str, exc: BaseException) -> outcomes.WatchOutcome:
    message = exc.line() if isinstance(exc, ReleasectlError) else f"{type(exc).__name__}: {exc}"
    saved = outcomes.load(model)
    if saved is not None and saved.version == version and saved.outcome == "failed-recovered":
        # The switch back happened before the crash: say so, and that the record did not.
        saved.record, saved.record_error = "failed", f"the watcher crashed: {message}"
        return saved
    return outcomes.WatchOutcome(
        model=model, version=version, outcome="crashed", message=message, serving=version
    )


def _conclude(hook: notify.NotifySpec | None, outcome: outcomes.WatchOutcome) -> None:
    """Keep the outcome for `status`; tell the hook about anything but a clean pass."""
    if outcome.outcome != "passed" or outcome.record == "failed":
        outcome.notified = notify.send(hook, outcome.model_dump(mode="json"))
    outcomes.save(outcome)


# --- a kubernetes-target model: judged in the cluster ----------------------------------


def _in_cluster(git: g.Git, model: str) -> mf.Manifest | None:
    """The manifest the branch declares when its target is kubernetes, else None (a
    model that cannot be read is left to the local path, which refuses it as before)."""
    try:
        manifest, _ = reg.current(git, model)
    except BadInput:
        return None
    return manifest if manifest.deploy.target == "kubernetes" else None


def _cluster_refusals(manifest: mf.Manifest, version: str | None) -> None:
    from releasectl.manifest.analysis import PrometheusSourceSpec

    model, declared = manifest.model, manifest.version
    if version is not None and version != declared:
        raise BadInput(
            f"{model} runs on kubernetes, where the branch's version {declared} is "
            f"deployed, not {version}",
            "drop --version or pass the declared one",
        )
    if not isinstance(manifest.analysis.source, PrometheusSourceSpec):
        raise BadInput(
            f"{model} runs on kubernetes: watch reads its metrics from Prometheus, "
            "not by scraping a local server",
            "set analysis.source to {kind: prometheus, url: http://...}",
        )


def _watch_in_cluster(
    git: g.Git,
    manifest: mf.Manifest,
    version: str | None,
    push: bool,
    act: bool,
    hook: notify.NotifySpec | None,
    on_measurement: Callable[[Measurement], None] | None,
    record_timeout: float,
    say: Say,
) -> Watched:
    """The version the branch declares is the one Argo CD syncs to the cluster; it is
    judged through Prometheus by the `version` label its pods carry, and a failure is
    recovered by the revert itself: pushed, Argo CD syncs the stable state back
    (docs/ARCHITECTURE.md, "Analysis in the cluster"). Nothing runs on this machine."""
    from releasectl.analysis.sources import PrometheusSource
    from releasectl.manifest.analysis import PrometheusSourceSpec
    from releasectl.render.analysis_template import VERSION_LABEL

    _cluster_refusals(manifest, version)
    # Bad input first (exit 2); then the thresholds and the Prometheus URL are
    # obeyed only as the verified view vouches for them (docs/ARCHITECTURE.md, "Trust").
    manifest = trusted(git, manifest.model).manifest
    model, declared, spec = manifest.model, manifest.version, manifest.analysis
    assert isinstance(spec.source, PrometheusSourceSpec)  # refused above otherwise
    try:
        with PrometheusSource(
            spec.source.url, spec, declared, version_label=VERSION_LABEL, model=model
        ) as src:
            verdict = run_analysis(spec, src, declared, on_measurement=on_measurement)
    except BaseException as exc:
        if act and not isinstance(exc, KeyboardInterrupt | SystemExit):
            _conclude(hook, _crashed(model, declared, exc))
        raise
    if not act:
        return Watched(model, declared, verdict, "judged", None, declared)
    try:
        outcome, settled = _unless_failed(git, model, declared, verdict, hook, push)
        if settled is not None:
            return settled
        outcome.record = "pending"
        outcomes.save(outcome)
        say(f"{declared} failed: reverting; the cluster follows the revert once it is pushed")
        reverted, error = _record_revert(
            git, model, revert_reason(verdict), push, record_timeout, say
        )
        landed = reverted.landed if reverted else None
        if error is not None:
            outcome.record, outcome.record_error = "failed", error
        else:
            _recorded(outcome, landed)
            outcome.revert_commit = landed.commit if landed else None
        if reverted is not None and landed is not None and landed.pushed_to:
            # Argo CD syncs what the remote holds: the stable state is on its way back.
            outcome.outcome, outcome.serving = "failed-recovered", reverted.plan.to_version
        elif error is None:
            outcome.note = "not pushed: the cluster follows the remote, push the revert"
        _conclude(hook, outcome)
        return Watched(model, declared, verdict, "reverted", reverted, outcome.serving, outcome)
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt | SystemExit):
            _conclude(hook, _crashed(model, declared, exc))
        raise


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
    from releasectl.serving.local import LocalTarget
    from releasectl.view import trust_root

    _before_bake(git, model, act)
    cluster = _in_cluster(git, model)
    if cluster is not None:
        _cluster_refusals(cluster, version)
        cluster = trusted(git, model).manifest
        # No local agent is involved: `running` only tells the CLI not to mention one.
        watched, manifest, running = cluster.version, cluster, True
    else:
        target = LocalTarget(home())
        running = target.running()
        live, manifest = _live_and_declared(git, model, version, target.status(start=False))
        watched = live.version
    bake = format_duration(manifest.analysis.bake)
    inconclusive = "nothing changes; exit 4: a human decides"
    if not act:
        return WatchPlan(
            model,
            watched,
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
        back = (
            ": Argo CD syncs the cluster back once it is pushed"
            if cluster is not None
            else f", switch the local target back to {p.to_version}"
        )
        on_fail = (
            f"revert {model} {p.from_version} -> {p.to_version}{where}{back}; exit 4"
            if p.change is not None
            else f"nothing to revert ({p.note}); exit 4"
        )
    except ReleasectlError as exc:
        on_fail = f"try to revert {model}, which would fail: {exc.message}; exit 4"
    return WatchPlan(
        model, watched, manifest.analysis.bake, running, on_pass, on_fail, inconclusive
    )
