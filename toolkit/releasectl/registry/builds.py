"""Building the bundle of a verified release (`releasectl build`): from its tag, or
the stored build verified and re-used; and, when a pinned artifact is missing, where
the release stored it. Above the bundles it builds, since it reads the registry
(docs/ARCHITECTURE.md, "Layers")."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from releasectl import git as g
from releasectl.bundles.build import (
    build_sources,
    explain_mismatch,
    recorded_files,
    store_bundle,
    store_for,
    verify_stored,
)
from releasectl.bundles.store import ArtifactStore
from releasectl.config import registry_config
from releasectl.errors import BadInput, Refused, ReleasectlError
from releasectl.manifest import schema as mf
from releasectl.names import manifest_path
from releasectl.progress import Progress, step
from releasectl.registry.history import history_of, require_verified
from releasectl.signing import TrustRoot


@dataclass(frozen=True)
class Built:
    model: str
    version: str
    bento: str
    digest: str
    archive: str  # the stored archive's key, relative to the store
    reused: bool
    seconds: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def build_release(
    git: g.Git,
    trust: TrustRoot,
    model: str,
    version: str,
    *,
    store: ArtifactStore | None = None,
    rebuild: bool = False,
    progress: Progress | None = None,
) -> Built:
    """Build (or verify and re-use) the bundle of release/MODEL/vVERSION.
    `rebuild` builds from the tag even when the store has it (CI proves the
    pin that way); the stored archive must then carry the same digest.
    `progress` hears of the long steps."""
    started = time.monotonic()
    history = history_of(git, model)
    release = history.get(version)
    if release is None:
        raise BadInput(f"{model} has no release {version}", f"see `releasectl history {model}`")
    require_verified(git, trust, release)
    text = g.read_blob(git, release.commit, manifest_path(model))
    assert text is not None  # verified above
    manifest = mf.load(text, manifest_path(model), model=model)
    store = store or store_for(git)
    pinned = manifest.bundle.digest
    if pinned is not None and not rebuild:
        key = store.bundle_key(pinned)
        if store.exists(key):
            with step(progress, f"fetching and checking the stored bundle of {model} {version}"):
                digest = verify_stored(store, key, pinned)
            seconds = time.monotonic() - started
            return Built(model, version, manifest.bundle.bento, digest, key, True, seconds)
    with tempfile.TemporaryDirectory(prefix="releasectl-build-") as tmp:
        with step(progress, f"building the bundle of {model} {version} from its tag"):
            out = Path(tmp) / "out"
            built = build_sources(
                git, manifest, release.commit, Path(tmp), store, stranded=stranded, archive_to=out
            )
        digest = built.digest
        if pinned is not None and digest != pinned:
            raise Refused(
                f"the rebuilt bundle of {model} {version} has digest {digest}, "
                f"but the release pins {pinned}"
                + explain_mismatch(built, recorded_files(store, pinned))
            )
        assert built.archive is not None  # asked for
        with step(progress, f"storing the bundle of {model} {version}"):
            key = store_bundle(store, built.archive, built, model, version)
    seconds = time.monotonic() - started
    return Built(model, version, manifest.bundle.bento, digest, key, False, seconds)


def stranded(git: g.Git, model: str, version: str, store: ArtifactStore) -> str:
    """Where the artifacts of `model` `version` were stored when it was released, and
    how to bring them to `store`: a release made before `store:` was committed lives
    in the releasing clone's own store (docs/ARCHITECTURE.md, "The artifact store")."""
    release = history_of(git, model).get(version)
    if release is None:
        where = "the artifact store of the clone that made it"
    else:
        try:
            committed = registry_config(git, release.commit).store
        except ReleasectlError:  # a hint never hides the error it explains
            committed = None
        by = f" ({release.tag.tagger})" if release.tag.tagger else ""
        where = (
            committed
            if committed
            else f"the local artifact store of the clone that released it{by}, "
            "$RELEASECTL_HOME/artifacts: `store:` was not committed then"
        )
    if where == store.url:
        return f"the store it was released to has lost it: `releasectl build {model} {version}`"
    return (
        f"{model} {version} was stored in {where}; run `releasectl store migrate --to "
        f"{store.url}` there, or point RELEASECTL_STORE or `store:` at the store that holds it"
    )
