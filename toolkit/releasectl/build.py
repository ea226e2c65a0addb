"""Building a release's bundle: from a clean copy of the sources at the tag
(never the working tree), with the bento version set to the release version
and provenance labels, pinned by content digest and kept in the artifact
store. A stored build is verified and re-used, never silently rebuilt."""

from __future__ import annotations

import lzma
import tarfile
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from . import bundle
from . import git as g
from . import manifest as mf
from . import registry as reg
from .bundle import PROVENANCE
from .config import store_url
from .errors import BadInput, OperationFailed, Refused
from .names import MANIFEST, manifest_path, model_dir, tag_name
from .signing import TrustRoot
from .store import ArtifactStore


@dataclass(frozen=True)
class Built:
    model: str
    version: str
    bento: str
    digest: str
    archive: str  # the stored archive's URI
    reused: bool
    seconds: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _labels(model: str, version: str, commit: str) -> dict[str, str]:
    return {
        f"{PROVENANCE}model": model,
        f"{PROVENANCE}tag": tag_name("release", model, version),
        f"{PROVENANCE}commit": commit,
    }


def build_sources(
    git: g.Git, manifest: mf.Manifest, rev: str, work: Path
) -> tuple[bundle.Bento, Path, str]:
    """Build the model's folder as it is at `rev` inside `work`; returns the
    bento, the BentoML home it is in, and its content digest."""
    model, version = manifest.model, manifest.version
    src = g.export_tree(git, rev, model_dir(model), work / "src")
    # The manifest pins the bundle; it must not be part of it.
    (src / MANIFEST).unlink(missing_ok=True)
    if not (src / "bentofile.yaml").is_file():
        raise BadInput(f"{model_dir(model)} has no bentofile.yaml: there is no bundle to build")
    home = work / "bentoml"
    if manifest.bundle.artifact is not None:
        bundle.import_artifact(manifest.bundle.artifact.uri, manifest.bundle.artifact.sha256, home)
    if manifest.bundle.prepare:
        bundle.prepare(src, list(manifest.bundle.prepare), home)
    commit = g.rev_parse(git, rev) or rev
    bento = bundle.build(
        src,
        name=manifest.bundle.bento,
        version=version,
        labels=_labels(model, version, commit),
        bentoml_home=home,
    )
    return bento, home, bundle.content_digest(bento.path)


def store_for(git: g.Git) -> ArtifactStore:
    return ArtifactStore(store_url(git))


def build_release(
    git: g.Git,
    trust: TrustRoot,
    model: str,
    version: str,
    *,
    store: ArtifactStore | None = None,
    rebuild: bool = False,
) -> Built:
    """Build (or verify and re-use) the bundle of release/MODEL/vVERSION.
    `rebuild` builds from the tag even when the store has it (CI proves the
    pin that way); the stored archive must then carry the same digest."""
    started = time.monotonic()
    history = reg.history(git, model)
    release = history.get(version)
    if release is None:
        raise BadInput(f"{model} has no release {version}", f"see `releasectl history {model}`")
    reg.require_verified(git, trust, release)
    text = g.read_blob(git, release.commit, manifest_path(model))
    assert text is not None  # verified above
    manifest = mf.load(text, manifest_path(model), model=model)
    store = store or store_for(git)
    key = store.key_for(model, version, manifest.bundle.bento)
    if store.exists(key) and not rebuild:
        digest = verify_stored(store, key, manifest.bundle.digest)
        return Built(
            model,
            version,
            manifest.bundle.bento,
            digest,
            store.uri(key),
            True,
            time.monotonic() - started,
        )
    with tempfile.TemporaryDirectory(prefix="releasectl-build-") as tmp:
        bento, home, digest = build_sources(git, manifest, release.commit, Path(tmp))
        if manifest.bundle.digest is not None and digest != manifest.bundle.digest:
            raise Refused(
                f"the rebuilt bundle of {model} {version} has digest {digest}, "
                f"but the release pins {manifest.bundle.digest}"
            )
        archive = bundle.export(bento, Path(tmp) / "out", home)
        uri = store.put(archive, key, digest)
    return Built(
        model, version, manifest.bundle.bento, digest, uri, False, time.monotonic() - started
    )


def verify_stored(store: ArtifactStore, key: str, pinned: str | None) -> str:
    """Fetch a stored archive, extract it and recompute its digest; it must
    equal the pin (when there is one). Returns the digest."""
    with tempfile.TemporaryDirectory(prefix="releasectl-verify-") as tmp:
        folder = fetch_bundle(store, key, Path(tmp))
        digest = bundle.content_digest(folder)
    if pinned is not None and digest != pinned:
        raise Refused(f"the stored archive {store.uri(key)} has digest {digest}, not {pinned}")
    return digest


def fetch_bundle(store: ArtifactStore, key: str, dest: Path) -> Path:
    """The stored archive of `key`, extracted under `dest`. A damaged archive
    is refused like a wrong digest: it is not what the release pinned."""
    archive = store.get(key, dest / "archive.bento")
    try:
        return bundle.extract(archive, dest / "bento")
    except (
        OperationFailed,
        OSError,
        EOFError,
        ValueError,
        tarfile.TarError,
        lzma.LZMAError,
        zlib.error,
    ) as exc:
        raise Refused(f"the stored archive {store.uri(key)} is damaged: {exc}") from None
