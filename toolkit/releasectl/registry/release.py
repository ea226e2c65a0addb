"""`releasectl release` and `releasectl mark-stable`: the two ways a model's
release state moves forward."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from releasectl import git as g
from releasectl.bundles.archive import export
from releasectl.bundles.build import build_sources, needs_training, store_bundle, store_for, train
from releasectl.bundles.store import ArtifactStore
from releasectl.errors import BadInput, Refused
from releasectl.manifest import edits
from releasectl.manifest import schema as mf
from releasectl.names import ModelName, manifest_path, model_dir, parse_version, tag_name
from releasectl.progress import Progress
from releasectl.registry import history as reg
from releasectl.registry.landing import (
    Change,
    Landed,
    NewTag,
    Planner,
    dry_run_base,
    dry_run_landing,
    head,
    land_local,
    land_pushed,
    require_branch,
    require_clean,
)
from releasectl.registry.succession import next_serial, version_rises
from releasectl.registry.verified import highest_verified, verify_history
from releasectl.serving.kubernetes import desired
from releasectl.signing import TrustRoot, trust_root


@dataclass(frozen=True)
class ReleasePlan:
    model: str
    version: str
    serial: int
    change: Change | None
    tagged_existing: bool = False  # a merged PR already declared the version
    pin: Pin | None = None  # the bundle built, stored and pinned for it


@dataclass(frozen=True)
class Pin:
    """The bundle built for a release before its commit: what the manifest pins."""

    digest: str
    archive: str  # the store-relative key of the stored archive
    trained: mf.Trained | None = None  # weights trained for this release, to pin too
    image: str | None = None  # a kubernetes model's image, <repository>@sha256:<hex>


def plan_release(
    git: g.Git,
    trust: TrustRoot,
    model: str,
    version: str,
    base: str,
    build: Callable[[bool], Pin | None] | None = None,
) -> ReleasePlan:
    """The release of MODEL VERSION on `base`. `build(may_train)` makes the
    bundle to pin; it is called only once every refusal has been ruled out (a
    build costs seconds, a refusal milliseconds). A merged pull request's
    release never trains: it must build to what the pull request pinned."""
    model = ModelName.parse(model)
    wanted = parse_version(version)
    manifest, text = reg.current(git, model, base)
    history = reg.history(git, model, base)
    name = tag_name("release", model, version)
    if history.get(version) is not None or g.tag_exists(git, name):
        raise Refused(f"{name} already exists; tags are never moved", "release a higher version")
    highest = highest_verified(git, trust, history)
    if highest is not None and wanted <= highest:
        raise Refused(
            f"{model} {version} is not greater than the highest release {highest}",
            "choose a higher version",
        )
    path = manifest_path(model)
    tag_message = f"{model} {version}\n\nReleasectl-Model: {model}\nReleasectl-Serial: {{serial}}\n"

    if manifest.version == version:
        # A merged pull request already declares the version: tag the branch
        # commit that brought it, once its author's signature checks out.
        brought = g.first_parent_commits(git, base, model_dir(model))[0]
        check = reg.verify_commit(git, trust, model, brought)
        if not check.ok:
            raise Refused(f"cannot release {model} {version}: {check.detail}")
        pin = build(False) if build else None
        if pin is not None and manifest.bundle.digest not in (None, pin.digest):
            raise Refused(
                f"the bundle built for {model} {version} has digest {pin.digest}, "
                f"but the manifest pins {manifest.bundle.digest}"
            )
        tag = NewTag(name, tag_message.format(serial=manifest.serial), target=brought)
        change = Change(base=base, tags=(tag,))
        return ReleasePlan(model, version, manifest.serial, change, tagged_existing=True, pin=pin)

    if not version_rises(manifest.version, version):
        raise Refused(
            f"{model} {version} is not greater than the current version {manifest.version}",
            "choose a higher version",
        )
    serial = next_serial(manifest.serial)
    # A plain str: the manifest's YAML writer knows no str subclass (ModelVersion).
    changes: dict[str, object] = {"version": str(version), "serial": serial, "rollback": None}
    # Before the build (a refusal costs milliseconds), when no build can make the image;
    # after it, when this build made none (no bundle built, e.g. --no-build).
    desired.require_clean_folder(git, manifest)
    _require_image(git, manifest, may_build=build is not None)
    pin = build(True) if build else None
    _require_image(git, manifest, may_build=False, built=pin.image if pin else None)
    if pin is not None:
        pinned: dict[str, object] = {"digest": pin.digest, "archive": pin.archive}
        if pin.trained is not None:
            pinned["trained"] = pin.trained.model_dump(mode="json")
        if pin.image is not None:
            pinned["image"] = pin.image
        changes["bundle"] = pinned
    new_text = edits.edit(text, path, changes, model=model)
    # A kubernetes model's rendered state goes in the same signed commit
    # (docs/ARCHITECTURE.md, "Kubernetes").
    rendered = desired.for_release(git, mf.load(new_text, path, model=model), base)
    files = {path: new_text, **(rendered.files if rendered else {})}
    trees: tuple[tuple[str, str | None], ...] = ((rendered.folder, None),) if rendered else ()
    message = (
        f"Release {model} {version}\n\n"
        f"Releasectl-Model: {model}\n"
        f"Releasectl-Version: {version}\n"
        f"Releasectl-Serial: {serial}\n"
    )
    change = Change(
        base=base,
        message=message,
        files=files,
        trees=trees,
        tags=(NewTag(name, tag_message.format(serial=serial)),),
        sync_paths=(path, *desired.sync_paths(rendered)),
    )
    return ReleasePlan(model, version, serial, change, pin=pin)


def _require_image(
    git: g.Git, manifest: mf.Manifest, *, may_build: bool, built: str | None = None
) -> None:
    """A kubernetes model's release pins its image (bundle.image): built and
    pushed by the release when deploy.kubernetes.base_image is set and a bundle
    is built, else pinned by the team beforehand (docs/ARCHITECTURE.md,
    "Kubernetes"). `may_build`: the release may still build it; `built`: the
    image this release's build pinned."""
    k8s = manifest.deploy.kubernetes
    if k8s is None or built is not None or manifest.bundle.image is not None:
        return
    if may_build and k8s.base_image is not None:
        return
    raise BadInput(
        f"{manifest_path(manifest.model)}: bundle.image is not pinned",
        "set deploy.kubernetes.base_image and build the bundle to have the release build "
        f"and push the image, or push it to {k8s.image} yourself and pin "
        "bundle.image: <repository>@sha256:<digest>",
    )


def release(
    git: g.Git,
    model: str,
    version: str,
    *,
    push: bool = False,
    build: bool | None = None,
    retrain: bool = False,
    progress: Progress | None = None,
) -> tuple[ReleasePlan, Landed]:
    """Release MODEL VERSION. With a bundle to build (`build`, by default when
    the folder has a bentofile.yaml), the bundle is built from the committed
    sources first, stored, and its content digest pinned in the release
    commit; if the release does not land, what it stored is removed.
    `bundle.train` runs when its pinned weights are missing, were trained
    from other sources, or `retrain` asks for it."""
    branch = require_branch(git)
    model = ModelName.parse(model)
    require_clean(git, model_dir(model))
    with tempfile.TemporaryDirectory(prefix="releasectl-release-") as tmp:
        builder = Prebuild(
            git, model, version, build, Path(tmp), retrain=retrain, progress=progress
        )
        try:
            if push:
                plans: list[ReleasePlan] = []

                def planner(tip: str) -> Change | None:
                    trust = trust_root(git, tip)
                    plans.append(plan_release(git, trust, model, version, tip, builder.at(tip)))
                    return plans[-1].change

                landed = _push(git, branch, model, planner)
                assert landed is not None
                return plans[-1], landed
            base = head(git)
            trust = trust_root(git, base)
            p = plan_release(git, trust, model, version, base, builder.at(base))
            assert p.change is not None
            return p, land_local(git, trust, branch, p.change)
        except BaseException:
            builder.undo()
            raise


def preview_release(
    git: g.Git, model: str, version: str, *, push: bool = False
) -> tuple[ReleasePlan, str | None]:
    """`release --dry-run`: the refusals of `release`, in its order, and its
    plan; returns the plan and a note (see `dry_run_base`). The bundle is not
    built (that writes to the store): a failing build shows only in the real
    run, which builds once every other check has passed."""
    branch = require_branch(git)
    model = ModelName.parse(model)
    require_clean(git, model_dir(model))
    base, note = dry_run_base(git, branch, model, push=push, carry_local=True)
    p = plan_release(git, trust_root(git, base), model, version, base)
    dry_run_landing(git, push=push, sync=bool(p.change and p.change.sync_paths))
    return p, note


class Prebuild:
    """Builds the bundle once per distinct source tree and stores it, training
    the weights first when the release must (see `release`)."""

    def __init__(
        self,
        git: g.Git,
        model: str,
        version: str,
        build: bool | None,
        work: Path,
        *,
        retrain: bool = False,
        progress: Progress | None = None,
    ):
        self.git, self.model, self.version, self.build, self.work = git, model, version, build, work
        self.retrain, self.progress = retrain, progress
        self.pins: dict[tuple[str, bool], Pin] = {}
        self.stored: list[tuple[ArtifactStore, str]] = []

    def at(self, base: str) -> Callable[[bool], Pin | None]:
        """The `build` callback of plan_release for a release on `base`."""
        return lambda may_train: self.pin(base, may_train)

    def pin(self, base: str, may_train: bool = True) -> Pin | None:
        if not builds(self.git, self.model, base, self.build):
            return None
        tree = g.tree_id(self.git, base, model_dir(self.model)) or base
        if (tree, may_train) not in self.pins:
            manifest, _ = reg.current(self.git, self.model, base)
            manifest = manifest.model_copy(update={"version": self.version})
            work = self.work / f"{tree[:12]}-{int(may_train)}"
            store = store_for(self.git)
            trained = None
            if may_train and (
                (self.retrain and manifest.bundle.train) or needs_training(self.git, manifest, base)
            ):
                trained, new_keys = train(self.git, manifest, base, work, store)
                self.stored += [(store, key) for key in new_keys]
                pinned = manifest.bundle.model_copy(update={"trained": trained})
                manifest = manifest.model_copy(update={"bundle": pinned})
            built = build_sources(self.git, manifest, base, work, store)
            archive = export(built.bento, work / "out", built.home)
            key = store.bundle_key(built.digest)
            existed = store.exists(key)
            store_bundle(store, archive, built, self.model, self.version)
            if not existed:
                self.stored.append((store, key))
            image_ref = _image(manifest, archive, built.digest, self.version, self.progress)
            self.pins[tree, may_train] = Pin(built.digest, key, trained, image_ref)
        return self.pins[tree, may_train]

    def undo(self) -> None:
        for store, key in self.stored:
            store.delete(key)


def _image(
    manifest: mf.Manifest, archive: Path, digest: str, version: str, progress: Progress | None
) -> str | None:
    """A kubernetes model's image, built from the release's own bundle and pushed,
    when the manifest names a base to build it on (docs/ARCHITECTURE.md, "Images")."""
    k8s = manifest.deploy.kubernetes
    if k8s is None or k8s.base_image is None:
        return None
    from releasectl.bundles import image

    return image.build_and_push(
        archive,
        repository=k8s.image,
        base_image=k8s.base_image,
        bundle_digest=digest,
        tag=f"v{version}",
        port=manifest.deploy.port,
        registry_tls_verify=not image.is_loopback(k8s.image),
        progress=progress,
    )


def builds(git: g.Git, model: str, base: str, build: bool | None) -> bool:
    """Whether a release on `base` builds a bundle: `build`, by default when the
    model's folder has a bentofile.yaml."""
    if build is not None:
        return build
    return g.read_blob(git, base, f"{model_dir(model)}/bentofile.yaml") is not None


@dataclass(frozen=True)
class ReleasePreview:
    """What `release --dry-run` reports: the plan, and whether bundle.train
    would run first (then the bundle's digest is known only after training)."""

    plan: ReleasePlan
    trains: bool = False


def preview(
    git: g.Git, model: str, version: str, *, build: bool | None = None, retrain: bool = False
) -> ReleasePreview:
    """The release `release` would make on HEAD, nothing written: when there is
    a bundle, it is built from the committed sources with the weights the
    manifest pins, in a temporary BentoML home, and stored nowhere; its digest
    is what `check` computes for the same commit, the one to pin by hand."""
    base = head(git)
    trains = False
    with tempfile.TemporaryDirectory(prefix="releasectl-dry-run-") as tmp:

        def build_only(may_train: bool) -> Pin | None:
            nonlocal trains
            if not builds(git, model, base, build):
                return None
            manifest, _ = reg.current(git, model, base)
            manifest = manifest.model_copy(update={"version": version})
            if may_train and (
                (retrain and manifest.bundle.train) or needs_training(git, manifest, base)
            ):
                trains = True
                return None
            store = store_for(git)
            built = build_sources(git, manifest, base, Path(tmp), store)
            return Pin(built.digest, store.bundle_key(built.digest))

        p = plan_release(git, trust_root(git, base), model, version, base, build_only)
    return ReleasePreview(p, trains)


def plan_mark_stable(
    git: g.Git, trust: TrustRoot, model: str, version: str, base: str
) -> tuple[reg.Release, Change | None]:
    model = ModelName.parse(model)
    parse_version(version)
    history = reg.history(git, model, base)
    target = history.get(version)
    if target is None:
        raise BadInput(f"{model} has no release {version}", f"see `releasectl history {model}`")
    # Marks decide only when they verify (docs/ARCHITECTURE.md, "Trust").
    verdict = verify_history(git, trust, history, [target])[version]
    if verdict.rejected is not None and verdict.rejected.ok:
        raise Refused(f"{target.tag.name} was rejected; it cannot be marked stable")
    reg.require_verified(git, trust, target)
    if verdict.stable is not None:
        if verdict.stable.ok:
            return target, None
        assert target.stable is not None
        ref = f"refs/tags/{target.stable.name}"
        branch = g.current_branch(git)
        remote = g.upstream(git, branch)[0] if branch else "origin"
        raise Refused(
            f"{target.stable.name} exists but does not verify ({verdict.stable.problem}): "
            "the name is taken, and a genuine mark cannot be made under it",
            f"an admin removes it: `git push {remote} :{ref}`, then `git tag -d "
            f"{target.stable.name}` here; see `releasectl doctor`",
        )
    tag = NewTag(
        tag_name("stable", model, version),
        f"{model} {version} is stable\n\nReleasectl-Model: {model}\n",
        target=target.commit,
    )
    return target, Change(base=base, tags=(tag,))


def mark_stable(
    git: g.Git, model: str, version: str, *, push: bool = False, leave_local: bool = False
) -> tuple[reg.Release, Landed | None]:
    """Returns the release and what was landed (None when it already was stable).
    With `leave_local` (and `push`) the mark is planned on the remote's tip and
    no unpushed local commit goes with it (the unattended watcher)."""
    if push:
        found: list[reg.Release] = []

        def planner(tip: str) -> Change | None:
            release, change = plan_mark_stable(git, trust_root(git, tip), model, version, tip)
            found.append(release)
            return change

        branch = require_branch(git)
        landed = _push(git, branch, model, planner, leave_local=leave_local)
        return found[-1], landed
    base = head(git)
    trust = trust_root(git, base)
    release_, change = plan_mark_stable(git, trust, model, version, base)
    if change is None:
        return release_, None
    return release_, land_local(git, trust, require_branch(git), change)


def preview_mark_stable(
    git: g.Git, model: str, version: str, *, push: bool = False
) -> tuple[reg.Release, Change | None, str | None]:
    """`mark-stable --dry-run`: the refusals of `mark_stable`, in its order;
    returns the release, the change (None: already stable) and a note."""
    note = None
    if push:
        base, note = dry_run_base(git, require_branch(git), model, push=True, carry_local=True)
    else:
        base = head(git)
    release_, change = plan_mark_stable(git, trust_root(git, base), model, version, base)
    if change is not None and not push:
        require_branch(git)
        dry_run_landing(git, push=False, sync=False)
    return release_, change, note


def _push(
    git: g.Git, branch: str, model: str, planner: Planner, *, leave_local: bool = False
) -> Landed | None:
    """Land on the remote's tip, carrying the local commits the change is made
    on (a release's sources, a mark's release) and the model's registry tags
    the remote lacks."""
    return land_pushed(
        git,
        lambda tip: trust_root(git, tip),
        branch,
        planner,
        model,
        carry_local=not leave_local,
        leave_local=leave_local,
    )
