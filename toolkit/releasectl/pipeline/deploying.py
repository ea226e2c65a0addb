"""`deploy`, then watch: the policy that decides whether a deploy is followed
by a detached watcher, owned by the library
(docs/ARCHITECTURE.md, "Unattended rollback").

A deploy is watched when `--watch` says so, else when the manifest's
`analysis.auto` does; a verified revert never is (its bundle is known good: no
bake). A watch that would act needs a usable signing key and notification
hook, so both are checked before anything is deployed, not found missing after
the bake. The deploy state, the trust root and the hook are each resolved once
here and handed on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from releasectl import git as g
from releasectl.pipeline.detached_watch import Watcher, start_detached
from releasectl.progress import Progress
from releasectl.registry.revert import RevertResult, revert
from releasectl.serving import notify, targets
from releasectl.serving.deploy import DeployPreview, DeployState, resolve
from releasectl.signing import TrustRoot, check_signing_key
from releasectl.view import trust_root

if TYPE_CHECKING:
    from releasectl.serving.local import DeployResult


@dataclass(frozen=True)
class Deployed:
    """What `deploy` did: the target's result and the watcher started after it."""

    result: DeployResult
    watcher: Watcher | None

    def to_json(self) -> dict[str, Any]:
        watcher = self.watcher.to_json() if self.watcher else None
        return {**self.result.model_dump(mode="json"), "watcher": watcher}


@dataclass(frozen=True)
class DeployPlan:
    """What `deploy --dry-run` found: the deploy it would make, and whether a
    watcher would follow it (`asked`: --watch or --no-watch said so)."""

    preview: DeployPreview
    watch: bool
    asked: bool

    def to_json(self) -> dict[str, Any]:
        return {**self.preview.to_json(), "watch": self.watch}


def _policy(
    git: g.Git, model: str, version: str | None, watch: bool | None, target: str | None
) -> tuple[DeployState, TrustRoot, bool]:
    targets.check_asked(target)
    trust = trust_root(git)
    state = resolve(git, model, version, trust=trust)
    auto = state.manifest.analysis.auto if watch is None else watch
    # A revert is fast-tracked: its bundle is known good, there is no bake.
    auto = auto and not state.fast_track
    if auto:
        check_signing_key(git)  # before deploying, not after the bake
        notify.load(git)  # and a malformed notification hook
    return state, trust, auto


def deploy_and_watch(
    git: g.Git,
    model: str,
    *,
    version: str | None = None,
    watch: bool | None = None,
    target: str | None = None,
    ready_timeout: float = 120.0,
    progress: Progress | None = None,
) -> Deployed:
    """Deploy MODEL's state (or release VERSION) to its target (`target`, when
    named, must be the manifest's), then, when the policy says so, start the
    detached watcher on what went live."""
    state, trust, auto = _policy(git, model, version, watch, target)
    result = targets.deploy(
        git,
        model,
        ready_timeout=ready_timeout,
        progress=progress,
        trust=trust,
        state=state,
        asked=target,
    )
    watcher = start_detached(git, model, result.version) if auto else None
    return Deployed(result, watcher)


def plan_deploy(
    git: g.Git,
    model: str,
    *,
    version: str | None = None,
    watch: bool | None = None,
    target: str | None = None,
) -> DeployPlan:
    """`deploy --dry-run`: the refusals of `deploy --watch` in its order, then
    what the deploy would do; nothing is started, fetched or written."""
    state, trust, auto = _policy(git, model, version, watch, target)
    preview = targets.preview(git, model, trust=trust, state=state, asked=target)
    return DeployPlan(preview, auto, asked=watch is not None)


@dataclass(frozen=True)
class RevertedAndDeployed:
    """What `revert --deploy` did: the revert, and the deploy of its state when
    it wrote one to redeploy."""

    revert: RevertResult
    deployed: DeployResult | None

    def to_json(self) -> dict[str, Any]:
        doc = self.revert.to_json()
        if self.deployed is not None:
            doc["deploy"] = self.deployed.model_dump(mode="json")
        return doc


def revert_and_deploy(
    git: g.Git, model: str, *, to: str | None, reason: str, push: bool, deploy: bool
) -> RevertedAndDeployed:
    """`revert`, then with `deploy` the state it wrote goes to the model's target
    (a verified revert is fast-tracked: no bake, no watcher)."""
    reverted = revert(git, model, to=to, reason=reason, push=push)
    deployed = targets.deploy(git, model) if deploy and reverted.redeploys else None
    return RevertedAndDeployed(reverted, deployed)
