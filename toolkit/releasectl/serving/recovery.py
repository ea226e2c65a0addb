"""Recovery first, record second: switching the local target back to the last
verified stable release the moment a verdict fails, before any git write
(docs/ARCHITECTURE.md, "Unattended rollback").

The recovery is planned before the bake: the stable release is found and
verified, and its bundle fetched and digest-checked, while the new version is
still being measured. When the verdict fails, the switch is one request to the
target (the warm standby when it holds that release, else a cold start), and
nothing on the way waits on a fetch, a signature or a push. The revert commit
that records it follows; until it lands, the target serves the stable
release's own state (its commit and serial), which the deploy gate's memory
never lowers."""

from __future__ import annotations

from dataclasses import dataclass

from releasectl import git as g
from releasectl.config import home
from releasectl.errors import ReleasectlError
from releasectl.registry.history import current, history_of
from releasectl.registry.verified import last_stable
from releasectl.serving.deploy import DeployState, bundle_dir, model_lock
from releasectl.view import trust_root


@dataclass(frozen=True)
class Recovery:
    """Where a failed verdict switches back to, or why it cannot."""

    model: str
    stable: str | None  # the stable version, None when there is none
    problem: str | None  # why recovery is impossible; None when it is ready
    state: DeployState | None = None
    request: object | None = None  # targets.local.DeployRequest, ready to send


def plan(git: g.Git, model: str, live_version: str) -> Recovery:
    """Everything the switch back needs, done now. Never raises: a model with no
    stable release still gets watched, and its failure is reported as one that
    could not be recovered."""
    from releasectl.serving.local import DeployRequest

    try:
        trust = trust_root(git)
        history = history_of(git, model)
        release, _ = last_stable(git, trust, history)
        if release is None:
            return Recovery(model, None, f"{model} has no verified stable release to go back to")
        if release.version == live_version:
            return Recovery(
                model, release.version, f"{model} {live_version} is itself the last stable release"
            )
        manifest, _ = current(git, model, release.commit)
        state = DeployState(model, release.commit, manifest)
        folder = bundle_dir(git, state)  # fetched and digest-checked before the bake
        request = DeployRequest(
            model=model,
            # The stable release was baked already: it skips the bake.
            release=state.release_ref().model_copy(update={"fast_track": True}),
            bento_dir=folder,
            port=manifest.deploy.port,
            # The rejected version is not kept warm: nothing should switch back to it.
            standby_seconds=0,
        )
    except ReleasectlError as exc:
        return Recovery(model, None, exc.line())
    return Recovery(model, manifest.version, None, state, request)


def switch_back(recovery: Recovery) -> str:
    """Serve the stable release now; returns how ("warm" or "cold")."""
    from releasectl.serving.local import DeployRequest, LocalTarget

    request, state = recovery.request, recovery.state
    assert isinstance(request, DeployRequest) and state is not None, recovery.problem
    # One deploy of a model at a time, so the gate's memory stays exact.
    with model_lock(recovery.model, state):
        result = LocalTarget(home()).deploy(request)
    return str(result.switch)
