"""Where a release runs: one `Target` interface over the local agent and a
Kubernetes cluster (docs/ARCHITECTURE.md, "Deploy targets").

The target kind is looked up here, once, from the manifest; deploy, its dry
run, watch, its dry run and the deploy job ask the target what to do and never
branch on the kind. A target says what it serves (`live`), deploys a verified
state (`deploy`, `preview`), offers the metric source its live version is
judged by (`metric_source`), switches back to the stable release
(`plan_recovery`, `switch_back`), follows a landed revert (`follow_revert`),
and names the folder it renders (`renders`). Traffic weights and steps are
meant to be added to this interface, not as another branch on the kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from releasectl import git as g
from releasectl import loopback
from releasectl.analysis.sources import (
    EndpointMetrics,
    PrometheusSource,
    ScrapeSource,
    open_source,
)
from releasectl.bundles.digest import content_digest
from releasectl.config import home
from releasectl.errors import BadInput, OperationFailed, ReleasectlError
from releasectl.manifest import schema as mf
from releasectl.manifest.analysis import AnalysisSpec, PrometheusSourceSpec
from releasectl.manifest.strategy import steps_text
from releasectl.names import manifest_path
from releasectl.progress import Progress
from releasectl.registry.history import current
from releasectl.registry.revert import RevertResult
from releasectl.render.analysis_template import VERSION_LABEL
from releasectl.render.canary import mesh_of
from releasectl.render.kubernetes import folder_of
from releasectl.render.mesh import mesh_queries, self_reported
from releasectl.serving import outcomes
from releasectl.serving import recovery as rec
from releasectl.serving.deploy import (
    DeployPreview,
    DeployState,
    admit,
    bundle_dir,
    cached,
    check_trust,
    model_lock,
    resolve,
    stored,
    trusted,
    warm,
)
from releasectl.signing import TrustRoot
from releasectl.view import trust_root

if TYPE_CHECKING:
    from releasectl.serving.local import DeployResult, LocalTarget
    from releasectl.serving.local.models import TrafficAction, TrafficInfo, TrafficPlan


@dataclass(frozen=True)
class Live:
    """The version a target serves for a model, to be judged, and the manifest
    it is judged by (as the verified view vouches for it)."""

    model: str
    version: str
    manifest: mf.Manifest
    port: int | None = None  # the live server's own port, where there is one


class Stepper(Protocol):
    """A running canary's traffic on a target, as `watch`, `promote` and `abort` drive it
    (docs/ARCHITECTURE.md, "Deployment strategies"). Every call asks the target (the local
    agent), which holds the steps in its persistent state; none waits on anything else."""

    def current(self) -> TrafficInfo | None:
        """The canary now; None when the model has none (blue-green, or another version)."""
        ...

    def change(self, action: TrafficAction, from_step: int | None = None) -> TrafficInfo:
        """`advance` (from `from_step`, refused unless it is the current step), `promote`
        (100% now) or `abort` (weight 0 and no mirror, now)."""
        ...


class Target(Protocol):
    kind: ClassVar[str]

    def running(self) -> bool:
        """Whether what serves is up now (else what it serves is as last recorded)."""
        ...

    def deploy(
        self,
        git: g.Git,
        state: DeployState,
        trust: TrustRoot,
        *,
        ready_timeout: float = 120.0,
        progress: Progress | None = None,
    ) -> DeployResult: ...

    def preview(self, git: g.Git, state: DeployState, trust: TrustRoot) -> DeployPreview: ...

    def live(self, git: g.Git, model: str, version: str | None, *, start: bool = True) -> Live:
        """The version to judge, refused in the order `watch` promises."""
        ...

    def metric_source(self, live: Live) -> ScrapeSource | PrometheusSource: ...

    def plan_recovery(self, git: g.Git, model: str, version: str) -> rec.Recovery | None:
        """Everything a switch back needs, made before the bake; None when the
        target goes back by following the pushed revert."""
        ...

    def follow_revert(
        self, git: g.Git, reverted: RevertResult | None, outcome: outcomes.WatchOutcome
    ) -> None:
        """Serve what a landed revert declares, and say so in the outcome."""
        ...

    def way_back(self, to_version: str) -> str:
        """How a failed version's revert reaches this target, for dry runs."""
        ...

    def renders(self) -> str | None:
        """The folder of the state this target is synced from, None for none."""
        ...

    def stepper(self, live: Live) -> Stepper | None:
        """The canary of the live version, driven from here; None when this target
        runs its steps itself (an Argo Rollout) or the live version has none."""
        ...

    def rollouts_command(self, model: str, action: TrafficAction) -> list[str] | None:
        """The command that promotes or aborts a canary this target runs itself
        (`kubectl argo rollouts ...`), for the operator to run; None when `stepper`
        drives it from here."""
        ...


class Local:
    """The local agent: deploys through the gate, judged by scraping the live
    server, switched back at once on a failed verdict."""

    kind: ClassVar[str] = "local"

    def __init__(self, manifest: mf.Manifest | None = None) -> None:
        self.manifest = manifest

    def _agent(self) -> LocalTarget:
        from releasectl.serving.local import LocalTarget

        return LocalTarget(home())

    def running(self) -> bool:
        return self._agent().running()

    def deploy(
        self,
        git: g.Git,
        state: DeployState,
        trust: TrustRoot,
        *,
        ready_timeout: float = 120.0,
        progress: Progress | None = None,
    ) -> DeployResult:
        from releasectl.serving.local import DeployRequest

        release = check_trust(git, trust, state)
        agent = self._agent()
        with model_lock(state.model, state):
            deployed = admit(git, trust, state, release, agent)
            folder = cached(state) if warm(state, deployed) else bundle_dir(git, state, progress)
            request = DeployRequest(
                model=state.model,
                release=state.release_ref(),
                bento_dir=folder,
                port=state.manifest.deploy.port,
                standby_seconds=state.manifest.deploy.standby,
                ready_timeout=ready_timeout,
                traffic=traffic_plan(state),
            )
            result = agent.deploy(request, progress)
        if result.switch != "none":
            from releasectl.serving import watcher

            # A new state is live: the last watcher's outcome and line are history now.
            outcomes.clear(state.model)
            watcher.forget_ended(state.model)
        return result

    def preview(self, git: g.Git, state: DeployState, trust: TrustRoot) -> DeployPreview:
        release = check_trust(git, trust, state)
        agent = self._agent()
        running = agent.running()
        deployed = admit(git, trust, state, release, agent, start=False)
        wanted = (state.manifest.version, state.manifest.bundle.digest)
        live = deployed.live if deployed else None
        standby = deployed.standby if deployed else None
        switch = "cold"
        if live is not None and (live.version, live.digest) == wanted:
            switch = "none"
        elif standby is not None and (standby.version, standby.digest) == wanted:
            switch = "warm"
        # A canary starts beside a live version of another release; the first deploy
        # (nothing live) and a verified revert go live at once.
        plan = traffic_plan(state) if live is not None and switch != "none" else None
        if warm(state, deployed):
            source = "a warm server (checked when it was deployed)"
        else:
            here = cached(state)
            pinned = state.manifest.bundle.digest
            if pinned is not None and here.exists() and content_digest(here) == pinned:
                source = f"the local cache {here}"
            else:
                store, key = stored(git, state)
                source = f"{store.url} ({key})"
        return DeployPreview(
            model=state.model,
            version=state.manifest.version,
            commit=state.commit,
            serial=state.manifest.serial,
            fast_track=state.fast_track,
            endpoint=loopback.url(state.manifest.deploy.port),
            live=live.version if live else None,
            standby_s=state.manifest.deploy.standby,
            switch=switch,
            bundle=source,
            agent_running=running,
            canary=_steps(plan) if plan is not None else None,
        )

    def live(self, git: g.Git, model: str, version: str | None, *, start: bool = True) -> Live:
        statuses = self._agent().status(start=start)
        status = next((s for s in statuses if s.model == model), None)
        if status is None or status.live is None:
            raise OperationFailed(f"{model} is not live on the local target", "deploy it first")
        live = status.live
        if version is not None and version != live.version:
            raise BadInput(f"{model} {version} is not live (live: {live.version})")
        manifest, _ = current(git, model)
        if manifest.version != live.version:
            raise OperationFailed(
                f"the branch declares {model} {manifest.version}, but {live.version} is live",
                "watch the version the branch declares: deploy it first",
            )
        # The thresholds and the metric source are obeyed only as the verified view
        # vouches for them (docs/ARCHITECTURE.md, "Trust").
        return Live(model, live.version, trusted(git, model).manifest, live.port)

    def metric_source(self, live: Live) -> ScrapeSource | PrometheusSource:
        # Error rate and latency as the endpoint measured them, not as the version
        # reports them; custom metrics from the live server's own /metrics,
        # self-reported (docs/ARCHITECTURE.md, "Measured by the endpoint"). Both count
        # from zero for a version that went live on a new server: the first scrape
        # already measures everything since.
        base = loopback.url(live.port) if live.port is not None else None
        endpoint = EndpointMetrics(self._agent().metrics_url, live.model)
        return open_source(
            live.manifest.analysis, live.version, base_url=base, fresh=True, endpoint=endpoint
        )

    def plan_recovery(self, git: g.Git, model: str, version: str) -> rec.Recovery | None:
        return rec.plan(git, model, version)

    def follow_revert(
        self, git: g.Git, reverted: RevertResult | None, outcome: outcomes.WatchOutcome
    ) -> None:
        landed = reverted.landed if reverted else None
        if landed is None or not landed.commit or not _on_branch(git, landed.commit):
            return
        # The target now takes the revert's own state (same bundle: no restart).
        try:
            outcome.serving = deploy(git, outcome.model).version
            outcome.kind = "failed-recovered"
        except ReleasectlError as exc:
            note = f"deploying the revert failed: {exc.line()}"
            outcome.note = f"{outcome.note}; {note}" if outcome.note else note

    def way_back(self, to_version: str) -> str:
        return f", switch the local target back to {to_version}"

    def renders(self) -> str | None:
        return None

    def stepper(self, live: Live) -> Stepper | None:
        from releasectl.serving.local.client import AgentStepper

        return AgentStepper(self._agent(), live.model, live.version)

    def rollouts_command(self, model: str, action: TrafficAction) -> list[str] | None:
        return None


class Kubernetes:
    """A cluster Argo CD syncs from the branch: nothing is applied from here, the
    live version is judged through Prometheus by its pods' `version` label, and
    the way back is the pushed revert
    (docs/ARCHITECTURE.md, "Analysis in the cluster")."""

    kind: ClassVar[str] = "kubernetes"

    def __init__(self, manifest: mf.Manifest) -> None:
        self.manifest = manifest

    def running(self) -> bool:
        return True  # no local agent is involved

    def _not_here(self) -> OperationFailed:
        return OperationFailed(
            f"{self.manifest.model} deploys to the kubernetes target, "
            "which this command does not drive",
            f"Argo CD syncs {self.renders()}/ from the pushed commit",
        )

    def deploy(
        self,
        git: g.Git,
        state: DeployState,
        trust: TrustRoot,
        *,
        ready_timeout: float = 120.0,
        progress: Progress | None = None,
    ) -> DeployResult:
        raise self._not_here()

    def preview(self, git: g.Git, state: DeployState, trust: TrustRoot) -> DeployPreview:
        raise self._not_here()

    def live(self, git: g.Git, model: str, version: str | None, *, start: bool = True) -> Live:
        declared = self.manifest.version
        if version is not None and version != declared:
            raise BadInput(
                f"{model} runs on kubernetes, where the branch's version {declared} is "
                f"deployed, not {version}",
                "drop --version or pass the declared one",
            )
        if not isinstance(self.manifest.analysis.source, PrometheusSourceSpec):
            raise BadInput(
                f"{model} runs on kubernetes: watch reads its metrics from Prometheus, "
                "not by scraping a local server",
                "set analysis.source to {kind: prometheus, url: http://...}",
            )
        # Bad input first (exit 2); then the thresholds and the Prometheus URL are
        # obeyed only as the verified view vouches for them (docs/ARCHITECTURE.md, "Trust").
        manifest = trusted(git, model).manifest
        return Live(model, manifest.version, manifest)

    def metric_source(self, live: Live) -> ScrapeSource | PrometheusSource:
        spec: AnalysisSpec = live.manifest.analysis
        source = spec.source
        assert isinstance(source, PrometheusSourceSpec)  # refused by live() otherwise
        # A canary is judged on the numbers its Rollout's analysis reads: with Istio,
        # error rate and latency from the mesh's request metrics for the destination
        # version, measured outside the pod; the rest is the pods' own, self-reported
        # (docs/ARCHITECTURE.md, "The canary").
        canary, mesh = live.manifest.deploy.strategy.kind == "canary", mesh_of(live.manifest)
        return PrometheusSource(
            source.url,
            spec,
            live.version,
            version_label=VERSION_LABEL,
            model=live.model,
            measured=(lambda s: mesh_queries(spec, mesh, live.version, s)) if mesh else None,
            self_reported=frozenset(self_reported(spec, mesh) if canary else ()),
        )

    def plan_recovery(self, git: g.Git, model: str, version: str) -> rec.Recovery | None:
        return None

    def follow_revert(
        self, git: g.Git, reverted: RevertResult | None, outcome: outcomes.WatchOutcome
    ) -> None:
        landed = reverted.landed if reverted else None
        if reverted is not None and landed is not None and landed.pushed_to:
            # Argo CD syncs what the remote holds: the stable state is on its way back.
            outcome.kind, outcome.serving = "failed-recovered", reverted.plan.to_version
        elif outcome.record != "failed":
            outcome.note = "not pushed: the cluster follows the remote, push the revert"

    def way_back(self, to_version: str) -> str:
        return ": Argo CD syncs the cluster back once it is pushed"

    def renders(self) -> str | None:
        return folder_of(self.manifest)

    def stepper(self, live: Live) -> Stepper | None:
        return None  # Argo Rollouts runs the steps in the cluster

    def rollouts_command(self, model: str, action: TrafficAction) -> list[str] | None:
        """`kubectl argo rollouts promote --full|abort` on the Rollout the render names
        (the model, in its namespace), for the operator (docs/ARCHITECTURE.md, "The canary")."""
        manifest = self.manifest
        k8s = manifest.deploy.kubernetes
        kind = manifest.deploy.strategy.kind
        if action == "advance":
            raise BadInput(f"{model}: the Rollout advances its own steps in the cluster")
        if k8s is None or kind not in ("canary", "bluegreen"):
            raise BadInput(
                f"{model} deploys to kubernetes as a plain Deployment (deploy.strategy.kind "
                f"{kind}): there is no Rollout to {action}",
                f"go back with `releasectl revert {model} --push`; Argo CD syncs it",
            )
        argv = ["kubectl", "argo", "rollouts", action, manifest.model, "-n", k8s.namespace]
        # promote: to 100% now, skipping the remaining steps, as the local promote does.
        return [*argv, "--full"] if action == "promote" else argv


KINDS: dict[str, type[Local] | type[Kubernetes]] = {"local": Local, "kubernetes": Kubernetes}


def check_asked(asked: str | None) -> None:
    """A target named on the command line is one there is."""
    if asked is not None and asked not in KINDS:
        raise BadInput(f"unknown target {asked!r}", f"the targets are: {', '.join(KINDS)}")


def of(manifest: mf.Manifest, asked: str | None = None) -> Target:
    """The target a manifest deploys to: the one place the kind is looked up.
    `asked`: the target the caller named, which must be the manifest's."""
    check_asked(asked)
    kind = manifest.deploy.target
    if asked is not None and asked != kind:
        raise BadInput(
            f"{manifest.model} deploys to the {kind} target, not {asked}",
            f"drop --target, or set deploy.target in {manifest_path(manifest.model)}",
        )
    return KINDS[kind](manifest)


def declared(git: g.Git, model: str) -> Target:
    """The target the branch declares for `model`. A manifest that cannot be read
    is left to the local target, which refuses it in its own order."""
    try:
        manifest, _ = current(git, model)
    except BadInput:
        return Local()
    return of(manifest)


def deploy(
    git: g.Git,
    model: str,
    *,
    version: str | None = None,
    ready_timeout: float = 120.0,
    progress: Progress | None = None,
    trust: TrustRoot | None = None,
    state: DeployState | None = None,
    asked: str | None = None,
) -> DeployResult:
    """Deploy MODEL's state on the current branch (or release VERSION) to its
    target, through the gate; `trust` and `state`, when the caller resolved them
    already, are not resolved again. `progress` hears of the long steps."""
    trust = trust or trust_root(git)
    state = state or resolve(git, model, version, trust=trust)
    return of(state.manifest, asked).deploy(
        git, state, trust, ready_timeout=ready_timeout, progress=progress
    )


def preview(
    git: g.Git,
    model: str,
    *,
    version: str | None = None,
    trust: TrustRoot | None = None,
    state: DeployState | None = None,
    asked: str | None = None,
) -> DeployPreview:
    """`deploy --dry-run`: every refusal of `deploy`, in its order (the state,
    its trust, the gate, the policy, the pinned bundle in the cache or the
    store), and what it would serve; nothing is started, fetched or written.
    A stopped agent stays stopped: what the target serves and has served is
    read from its state file. The stored archive's own digest is checked by
    the deploy that fetches it, before anything serves it."""
    trust = trust or trust_root(git)
    state = state or resolve(git, model, version, trust=trust)
    return of(state.manifest, asked).preview(git, state, trust)


def traffic_plan(state: DeployState) -> TrafficPlan | None:
    """The canary a deploy of `state` starts, from its verified manifest's
    `deploy.strategy`; None for blue-green and for a verified revert, which never steps
    (docs/ARCHITECTURE.md, "Deployment strategies")."""
    from releasectl.serving.local import TrafficPlan
    from releasectl.serving.local.models import PlannedStep

    strategy = state.manifest.deploy.strategy
    if strategy.kind != "canary" or state.fast_track or not strategy.steps:
        return None
    compare = state.manifest.analysis.compare
    return TrafficPlan(
        steps=[PlannedStep(kind=s.kind, percent=s.percent, seconds=s.for_) for s in strategy.steps],
        mirror_routes=strategy.mirror_routes or [],
        client_key=strategy.client_key,
        compare_field=compare.field if compare is not None else None,
    )


def _steps(plan: TrafficPlan) -> str:
    """`mirror 100% for 30s, weight 10% for 30s, then 100%`."""
    return steps_text(plan.steps) + ", then 100%"


def _on_branch(git: g.Git, commit: str) -> bool:
    head = g.rev_parse(git, "HEAD")
    return head is not None and g.is_ancestor(git, commit, head)
