"""`releasectl release`: moves a model's release state forward (docs/ARCHITECTURE.md,
"The registry"); its mark, `mark-stable`, is in `registry/marking`."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from releasectl import git as g
from releasectl import trailers
from releasectl.bundles.build import build_sources, needs_training, store_bundle, store_for, train
from releasectl.bundles.store import ArtifactStore
from releasectl.errors import BadInput, Refused
from releasectl.manifest import edits
from releasectl.manifest import schema as mf
from releasectl.names import ModelName, manifest_path, model_dir, parse_version, tag_name
from releasectl.progress import Progress
from releasectl.registry.builds import stranded
from releasectl.registry.history import current, history_of, verify_commit
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
from releasectl.registry.verified import (
    UNSIGNED_TRAILER,
    allowed_unsigned_sources,
    highest_verified,
)
from releasectl.render import desired
from releasectl.render.rules import require_prometheus
from releasectl.signing import TrustRoot, require_allowed_signer
from releasectl.view import trust_root


@dataclass(frozen=True)
class ReleasePlan:
    model: str
    version: str
    serial: int
    change: Change | None
    tagged_existing: bool = False  # a merged PR already declared the version
    pin: Pin | None = None  # the bundle built, stored and pinned for it
    image: str | None = None  # a kubernetes model's pinned image, <repository>@sha256:<hex>
    unsigned_sources: tuple[str, ...] = ()  # allowed by the operator, recorded in a trailer


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
    *,
    allow_unsigned_sources: bool = False,
    will_build: bool | None = None,
    preflight: bool = True,
) -> ReleasePlan:
    """The release of MODEL VERSION on `base`. `build(may_train)` makes the
    bundle to pin; it is called only once every refusal has been ruled out (a
    build costs seconds, a refusal milliseconds). A merged pull request's
    release never trains: it must build to what the pull request pinned.
    Commits that changed the model's sources since its last verified release
    without a release signer's signature refuse it, unless the operator
    allows them, which the release records (docs/ARCHITECTURE.md, "Trust").
    `will_build`: whether a bundle is built (default: when `build` is given);
    a dry run passes it without `build`, to be refused as the real run is.
    `preflight`: check the signer, the store and the image's tools before
    the build (docs/ARCHITECTURE.md, "The command line")."""
    will_build = build is not None if will_build is None else will_build
    model = ModelName.parse(model)
    wanted = parse_version(version)
    manifest, text = current(git, model, base)
    history = history_of(git, model, base)
    name = tag_name("release", model, version)
    if history.get(version) is not None or g.tag_exists(git, name):
        raise Refused(f"{name} already exists; tags are never moved", "release a higher version")
    highest = highest_verified(git, trust, history)
    if highest is not None and wanted <= highest:
        raise Refused(
            f"{model} {version} is not greater than the highest release {highest}",
            "choose a higher version",
        )
    allowed = allowed_unsigned_sources(git, trust, history, base, allow_unsigned_sources)
    recorded = f"{UNSIGNED_TRAILER}: {' '.join(allowed)}\n" if allowed else ""
    path = manifest_path(model)
    # The bake judges a kubernetes model through Prometheus, and that is what writes
    # a failed release's revert back to Git (docs/ARCHITECTURE.md, "Analysis in the cluster").
    require_prometheus(manifest)
    tag_message = (
        f"{model} {version}\n\n{trailers.MODEL}: {model}\n{trailers.SERIAL}: {{serial}}\n"
        + recorded
    )

    if manifest.version == version:
        # A merged pull request already declares the version: tag the branch
        # commit that brought it, once its author's signature checks out.
        brought = g.first_parent_commits(git, base, model_dir(model))[0]
        check = verify_commit(git, trust, model, brought)
        if not check.ok:
            raise Refused(f"cannot release {model} {version}: {check.detail}")
        if preflight:
            _preflight(git, trust, manifest, version, will_build)
        pin = build(False) if build else None
        if pin is not None and manifest.bundle.digest not in (None, pin.digest):
            raise Refused(
                f"the bundle built for {model} {version} has digest {pin.digest}, "
                f"but the manifest pins {manifest.bundle.digest}"
            )
        tag = NewTag(name, tag_message.format(serial=manifest.serial), target=brought)
        change = Change(base=base, tags=(tag,))
        image = pin.image if pin is not None and pin.image else manifest.bundle.image
        return ReleasePlan(
            model,
            version,
            manifest.serial,
            change,
            tagged_existing=True,
            pin=pin,
            image=image,
            unsigned_sources=allowed,
        )

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
    for folder in desired.folders(manifest):  # no local edit a commit would replace
        require_clean(git, folder)
    _require_image(git, manifest, may_build=will_build)
    if preflight:
        _preflight(git, trust, manifest, version, will_build)
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
    released = mf.load(new_text, path, model=model)
    # A kubernetes model's rendered state goes in the same signed commit
    # (docs/ARCHITECTURE.md, "Kubernetes").
    rendered = desired.for_release(git, released, base)
    files = {path: new_text, **(rendered.files if rendered else {})}
    trees: tuple[tuple[str, str | None], ...] = ((rendered.folder, None),) if rendered else ()
    message = (
        f"Release {model} {version}\n\n"
        + trailers.block(
            {trailers.MODEL: model, trailers.VERSION: version, trailers.SERIAL: str(serial)}
        )
        + recorded
    )
    change = Change(
        base=base,
        message=message,
        files=files,
        trees=trees,
        tags=(NewTag(name, tag_message.format(serial=serial)),),
        sync_paths=(path, *desired.sync_paths(rendered)),
    )
    return ReleasePlan(
        model,
        version,
        serial,
        change,
        pin=pin,
        image=released.bundle.image,
        unsigned_sources=allowed,
    )


def _preflight(
    git: g.Git, trust: TrustRoot, manifest: mf.Manifest, version: str, will_build: bool
) -> None:
    """What would refuse the release after its build, checked before it: the manifest's
    current form, the signing key in the trust root, the store listable, a kubernetes
    image's builder and registry there (docs/ARCHITECTURE.md, "The command line")."""
    mf.refuse_old_spelling(manifest)
    require_allowed_signer(git, trust)
    if not will_build:
        return
    store_for(git).require_listable()
    k8s = manifest.deploy.kubernetes
    if k8s is not None and k8s.base_image is not None:
        from releasectl.bundles import image

        tls = not image.is_loopback(k8s.image)
        image.preflight(k8s.image, f"v{version}", registry_tls_verify=tls)


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
    allow_unsigned_sources: bool = False,
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
    allow = allow_unsigned_sources
    with tempfile.TemporaryDirectory(prefix="releasectl-release-") as tmp:
        builder = Prebuild(
            git, model, version, build, Path(tmp), retrain=retrain, progress=progress
        )
        try:
            if push:
                plans: list[ReleasePlan] = []

                def planner(tip: str) -> Change | None:
                    trust = trust_root(git, tip)
                    plans.append(
                        plan_release(
                            git,
                            trust,
                            model,
                            version,
                            tip,
                            builder.at(tip),
                            allow_unsigned_sources=allow,
                            will_build=builder.will(tip),
                        )
                    )
                    return plans[-1].change

                landed = push_change(git, branch, model, planner)
                assert landed is not None
                return plans[-1], landed
            base = head(git)
            trust = trust_root(git, base)
            p = plan_release(
                git,
                trust,
                model,
                version,
                base,
                builder.at(base),
                allow_unsigned_sources=allow,
                will_build=builder.will(base),
            )
            assert p.change is not None
            return p, land_local(git, trust, branch, p.change)
        except BaseException:
            builder.undo()
            raise


def preview_release(
    git: g.Git,
    model: str,
    version: str,
    *,
    push: bool = False,
    build: bool | None = None,
    allow_unsigned_sources: bool = False,
) -> tuple[ReleasePlan, str | None]:
    """`release --dry-run`: the refusals of `release`, in its order, and its
    plan; returns the plan and a note (see `dry_run_base`). The bundle is not
    built (that writes to the store), but what would refuse it is checked (the
    signer, the store, an image's builder and registry): a failing build shows
    only in the real run, which builds once every other check has passed."""
    branch = require_branch(git)
    model = ModelName.parse(model)
    require_clean(git, model_dir(model))
    base, note = dry_run_base(git, branch, model, push=push, carry_local=True)
    will_build = builds(git, model, base, build)
    p = plan_release(
        git,
        trust_root(git, base),
        model,
        version,
        base,
        will_build=will_build,
        allow_unsigned_sources=allow_unsigned_sources,
    )
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

    def will(self, base: str) -> bool:
        """Whether `at(base)` builds a bundle."""
        return builds(self.git, self.model, base, self.build)

    def at(self, base: str) -> Callable[[bool], Pin | None]:
        """The `build` callback of plan_release for a release on `base`."""
        return lambda may_train: self.pin(base, may_train)

    def pin(self, base: str, may_train: bool = True) -> Pin | None:
        if not builds(self.git, self.model, base, self.build):
            return None
        tree = g.tree_id(self.git, base, model_dir(self.model)) or base
        if (tree, may_train) not in self.pins:
            manifest, _ = current(self.git, self.model, base)
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
            built = build_sources(
                self.git, manifest, base, work, store, stranded=stranded, archive_to=work / "out"
            )
            assert built.archive is not None  # asked for
            archive = built.archive
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
        name=f"{manifest.model} {version}",
    )


def builds(git: g.Git, model: str, base: str, build: bool | None) -> bool:
    """Whether a release on `base` builds a bundle: `build`, by default when the
    model's folder has a bentofile.yaml."""
    if build is not None:
        return build
    return g.read_blob(git, base, f"{model_dir(model)}/bentofile.yaml") is not None


@dataclass(frozen=True)
class ReleasePreview:
    """What `release --dry-run` reports: the bundle it would pin (None: no
    bundle, or not known yet), and whether bundle.train would run first (then
    the bundle's digest is known only after training)."""

    pin: Pin | None
    trains: bool = False


class _Known(Exception):
    """The dry run's build has told what it can: stop planning."""

    def __init__(self, pin: Pin | None) -> None:
        self.pin = pin


def preview(
    git: g.Git,
    model: str,
    version: str,
    *,
    build: bool | None = None,
    retrain: bool = False,
    allow_unsigned_sources: bool = False,
) -> ReleasePreview:
    """The release `release` would make on HEAD, nothing written: when there is
    a bundle, it is built from the committed sources with the weights the
    manifest pins, in a temporary BentoML home, and stored nowhere; its digest
    is what `check` computes for the same commit, the one to pin by hand.
    `preview_release` has made the refusals; a kubernetes image is built and
    pinned only by the real run."""
    base = head(git)
    with tempfile.TemporaryDirectory(prefix="releasectl-dry-run-") as tmp:

        def build_only(may_train: bool) -> Pin | None:
            if not builds(git, model, base, build):
                return None
            manifest, _ = current(git, model, base)
            manifest = manifest.model_copy(update={"version": version})
            if may_train and (
                (retrain and manifest.bundle.train) or needs_training(git, manifest, base)
            ):
                raise _Known(None)
            store = store_for(git)
            built = build_sources(git, manifest, base, Path(tmp), store, stranded=stranded)
            pin = Pin(built.digest, store.bundle_key(built.digest))
            k8s = manifest.deploy.kubernetes
            if may_train and k8s is not None and k8s.base_image is not None:
                raise _Known(pin)  # the image: built and pushed by the real run alone
            return pin

        try:
            p = plan_release(
                git,
                trust_root(git, base),
                model,
                version,
                base,
                build_only,
                will_build=builds(git, model, base, build),
                preflight=False,
                allow_unsigned_sources=allow_unsigned_sources,
            )
        except _Known as known:
            return ReleasePreview(known.pin, trains=known.pin is None)
    return ReleasePreview(p.pin)


def push_change(
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
