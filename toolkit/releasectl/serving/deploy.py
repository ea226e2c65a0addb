"""Deploying what a branch's manifest pins, through the deploy gate.

The gate (docs/ARCHITECTURE.md, "The deploy gate"): a state is accepted only
if its serial is higher than the deployed one and its commit descends from
the deployed commit, or if it is the deployed state itself (a redeploy
converges). So replaying an old signed commit is refused, while a revert,
which is new state pointing at an old bundle, passes. "Deployed" is the
highest state the target has ever served, a memory that survives `agent stop`
and restarts; a verified rejected release, and a state or release that is not
on the current branch, are never deployed. The bundle comes from
the artifact store and its content digest is checked before anything is
served; a known release is never rebuilt here."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from releasectl import git as g
from releasectl import view
from releasectl.bundles.build import fetch_bundle, store_for
from releasectl.bundles.digest import content_digest
from releasectl.config import bundles_dir, home
from releasectl.errors import OperationFailed, Refused
from releasectl.manifest import schema as mf
from releasectl.names import ModelName, ModelVersion, manifest_path, model_dir, tag_name
from releasectl.progress import Progress, step
from releasectl.registry.builds import stranded
from releasectl.registry.history import (
    Release,
    current,
    history_of,
    require_verified,
    verify_commit,
    verify_tag,
)
from releasectl.registry.revert import revert_problem
from releasectl.serving.release_ref import ReleaseRef
from releasectl.signing import TrustRoot
from releasectl.view import trust_root

if TYPE_CHECKING:
    from releasectl.bundles.store import ArtifactStore
    from releasectl.serving.local import LocalTarget, ModelStatus


@dataclass(frozen=True)
class DeployState:
    """A release state to deploy: a commit and the manifest it declares."""

    model: str
    commit: str
    manifest: mf.Manifest
    verified_revert: bool = False  # revert_problem() found nothing

    @property
    def fast_track(self) -> bool:
        # A revert points at a stable, known-good bundle: it skips the bake.
        # A rollback record alone is only text; the revert must verify.
        return self.verified_revert

    def release_ref(self) -> ReleaseRef:
        """The release this state declares, as the target is asked to serve it."""
        return ReleaseRef(
            version=self.manifest.version,
            digest=self.manifest.bundle.digest or "",
            commit=self.commit,
            serial=self.manifest.serial,
            fast_track=self.fast_track,
        )


def resolve(
    git: g.Git, model: str, version: str | None = None, *, trust: TrustRoot | None = None
) -> DeployState:
    model = ModelName.parse(model)
    if version is not None:
        version = ModelVersion.parse(version)  # bad input (exit 2), not "no such release"
    rev = "HEAD" if version is None else f"refs/tags/{tag_name('release', model, version)}"
    commit = g.rev_parse(git, rev)
    if commit is None and version is None:
        raise g.unborn_head(git) or OperationFailed("HEAD has no commit")
    if commit is None:
        raise OperationFailed(f"{model} has no release {version}")
    # The state is named by the commit that last changed the model's folder, not
    # the branch tip: another model's release or someone's unpushed notes commit
    # (rebased later, so never on any branch again) must not become the deploy
    # gate's memory (docs/ARCHITECTURE.md, "The deploy gate").
    commit = g.last_change_on_branch(git, commit, model_dir(model)) or commit
    manifest, _ = current(git, model, commit)
    verified = (
        manifest.rollback is not None
        and revert_problem(git, trust or trust_root(git), model, commit, manifest) is None
    )
    return DeployState(model, commit, manifest, verified)


def check_trust(git: g.Git, trust: TrustRoot, state: DeployState) -> Release:
    """The state's commit is vouched for by an allowed signer, and the release
    it declares verifies strictly; returns that release."""
    check = verify_commit(git, trust, state.model, state.commit)
    if not check.ok:
        raise Refused(f"{state.model} at {state.commit[:12]} does not verify: {check.detail}")
    release = history_of(git, state.model).get(state.manifest.version)
    if release is None:
        raise Refused(f"{state.model} {state.manifest.version} has no release tag")
    require_verified(git, trust, release)
    vouch(git, state, release)
    return release


def vouch(git: g.Git, state: DeployState, release: Release) -> None:
    """The manifest decides what is served and how it is judged, so it is obeyed
    only through the verified view (docs/ARCHITECTURE.md, "Trust"): every change
    of it after the verified release's commit is signed by a release signer. A
    verified revert holds the stable release's own content and needs no walk."""
    if state.verified_revert or state.commit == release.commit:
        return
    view.require(git, state.commit, [manifest_path(state.model)], since=release.commit)


def trusted(git: g.Git, model: str) -> DeployState:
    """The state the branch declares for `model`, once its commit, its release
    and every change of its manifest since that release verify."""
    state = resolve(git, model, None)
    check_trust(git, trust_root(git), state)
    return state


def check_policy(git: g.Git, trust: TrustRoot, state: DeployState, release: Release) -> None:
    """A verified `rejected/` release is never deployed, and neither is a state
    or release off the current branch, however good its tag (docs/ARCHITECTURE.md,
    "The deploy gate"): the branch is the desired state."""
    mark = release.rejected
    if mark is not None and mark.commit == release.commit and verify_tag(git, trust, mark).ok:
        raise Refused(
            f"{release.tag.name} was rejected ({mark.name}): it is never deployed again",
            f"deploy the branch's state (git pull: a revert follows a rejection), "
            f"or run `releasectl revert {state.model} --deploy`",
        )
    if state.commit != release.commit:
        # A state that declares a release serves that release's bundle, not
        # whatever digest a later commit wrote next to its version.
        released, _ = current(git, state.model, release.commit)
        if released.bundle.digest != state.manifest.bundle.digest:
            raise Refused(
                f"{state.model} at {state.commit[:12]} declares {state.manifest.version} but "
                f"pins another bundle than {release.tag.name}",
                "a new bundle is a new release: `releasectl release` or `propose`",
            )
    tip = g.rev_parse(git, "HEAD")
    for what, commit in (("the state", state.commit), (release.tag.name, release.commit)):
        if tip is None or not g.is_ancestor(git, commit, tip):
            raise Refused(
                f"{what} ({commit[:12]}) is not on the current branch: only the branch's "
                "history is deployed",
                "merge it, or deploy from the branch that holds it",
            )


def gate(
    git: g.Git, state: DeployState, deployed_serial: int | None, deployed_commit: str | None
) -> None:
    if deployed_commit is None or deployed_serial is None or deployed_commit == state.commit:
        return
    serial = state.manifest.serial
    if serial <= deployed_serial:
        raise Refused(
            f"{state.model} serial {serial} is not higher than the deployed serial "
            f"{deployed_serial} (the highest this target has served): an older state is "
            "never replayed",
            f"to go back, run `releasectl revert {state.model} --deploy`",
        )
    if g.rev_parse(git, deployed_commit) is None or not g.is_ancestor(
        git, deployed_commit, state.commit
    ):
        raise Refused(
            f"{state.commit[:12]} does not descend from the deployed commit {deployed_commit[:12]}",
            "deploy from the branch that holds the deployed state (git fetch first)",
        )


def cached(state: DeployState) -> Path:
    """Where the state's bundle is (or will be) extracted, by content digest."""
    digest = state.manifest.bundle.digest or ""
    return bundles_dir() / state.model / digest.removeprefix("sha256:")[:32]


def _pinned(state: DeployState) -> str:
    pinned = state.manifest.bundle.digest
    if pinned is None:
        raise OperationFailed(
            f"{state.model} {state.manifest.version} pins no bundle digest",
            "release it with its bundle: `releasectl release` builds and pins it",
        )
    return pinned


def stored(git: g.Git, state: DeployState) -> tuple[ArtifactStore, str]:
    """The store and key of the state's bundle, refused when it is not there."""
    pinned = _pinned(state)
    store = store_for(git)
    # Content-addressed: the pin names the key, whatever `bundle.archive` says.
    key = store.bundle_key(pinned)
    if not store.exists(key):
        raise OperationFailed(
            f"the bundle of {state.model} {state.manifest.version} ({key}) is not in the "
            f"artifact store {store.url}",
            stranded(git, state.model, state.manifest.version, store),
        )
    return store, key


def bundle_dir(git: g.Git, state: DeployState, progress: Progress | None = None) -> Path:
    """The state's bundle, extracted and digest-checked, ready to serve."""
    pinned = _pinned(state)
    target = cached(state)
    if target.exists():
        try:
            if content_digest(target) == pinned:
                return target
        except OperationFailed:
            pass  # a model or bento.yaml gone: as tampered
        shutil.rmtree(target)  # tampered or half-written: fetch it again
    store, key = stored(git, state)
    target.parent.mkdir(parents=True, exist_ok=True)
    what = f"fetching and extracting the bundle of {state.model} {state.manifest.version}"
    with (
        step(progress, what),
        tempfile.TemporaryDirectory(prefix="fetch-", dir=target.parent) as tmp,
    ):
        folder, _ = fetch_bundle(store, key, Path(tmp), pinned)
        folder.rename(target)
    return target


@contextlib.contextmanager
def model_lock(model: str, state: DeployState) -> Iterator[None]:
    """One deploy of a model at a time, whoever starts it (two CI runs, an
    operator, a watcher): the gate must see what the other one deployed.
    Each holder appends a line to `locks/<model>.jsonl`, the deploy journal."""
    folder = home() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    asked = time.time()
    outcome = "failed"
    with (folder / f"{model}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        acquired = time.time()
        try:
            yield
            outcome = "deployed"
        except Refused:
            outcome = "refused"
            raise
        finally:
            entry = {
                "pid": os.getpid(),
                "commit": state.commit,
                "serial": state.manifest.serial,
                "version": state.manifest.version,
                "waited_s": round(acquired - asked, 3),
                "acquired": acquired,
                "released": time.time(),
                "outcome": outcome,
            }
            with (folder / f"{model}.jsonl").open("a") as journal:
                journal.write(json.dumps(entry) + "\n")
        # closing the lock file releases the lock, after the journal line


def admit(
    git: g.Git,
    trust: TrustRoot,
    state: DeployState,
    release: Release,
    target: LocalTarget,
    *,
    start: bool = True,
) -> ModelStatus | None:
    """The deploy gate and the policy, against what the target serves and has
    served; returns the model's status there (None: never deployed)."""
    from releasectl.serving.local.state import high_water

    deployed = next((s for s in target.status(start=start) if s.model == state.model), None)
    live = deployed.live if deployed else None
    # The live slot, and the memory that outlives it (agent stop, restarts).
    marks = [(m.serial, m.commit) for m in (live, high_water(target.paths, state.model)) if m]
    serial, commit = max(marks) if marks else (None, None)
    gate(git, state, serial, commit)
    check_policy(git, trust, state, release)
    return deployed


def warm(state: DeployState, deployed: ModelStatus | None) -> bool:
    """A warm server holds exactly this content, checked when it was deployed:
    a switch does not read the folder again."""
    servers = [s for s in (deployed.live, deployed.standby) if s] if deployed else []
    digest = state.manifest.bundle.digest
    return any(s.digest == digest for s in servers) and cached(state).is_dir()


@dataclass(frozen=True)
class DeployPreview:
    """What `deploy` would do (`deploy --dry-run`)."""

    model: str
    version: str
    commit: str
    serial: int
    fast_track: bool
    endpoint: str
    live: str | None  # the version live now (as recorded, when the agent is not running)
    standby_s: float  # how long the version live before stays warm after a switch
    switch: str  # "none": already live; "warm": the standby takes over; "cold": a new server
    bundle: str  # where the bundle would come from
    agent_running: bool
    canary: str | None = None  # the steps a canary would start, beside the live version

    def to_json(self) -> dict[str, object]:
        return {**dataclasses.asdict(self), "dry_run": True}
