"""Builds a release's bundle: from a clean copy of the sources at a revision
(never the working tree), with the bento version set to the release version
and provenance labels, pinned by content digest and kept in the artifact
store (docs/ARCHITECTURE.md, "Bundles"); a stored archive is fetched and
checked against its pin. Which release to build, and re-using its stored
build, is the registry's (`releasectl.registry.builds`).

Weights are inputs, not build products (docs/ARCHITECTURE.md, "Weights are pinned inputs"):
`bundle.train` runs once when a release is made (`train()`), its models are
stored by the sha256 of their bytes and pinned in the manifest, and every
build imports exactly those."""

from __future__ import annotations

import hashlib
import lzma
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from releasectl import git as g
from releasectl.bundles.archive import extract
from releasectl.bundles.bento import (
    Bento,
    ModelArchive,
    archive_path,
    export_model,
    fetch_artifact,
    import_models,
    run_step,
    saved_models,
)
from releasectl.bundles.bento import build as build_bento
from releasectl.bundles.digest import PROVENANCE, content_digest, content_files, digest_of
from releasectl.bundles.store import ArtifactStore
from releasectl.config import store_url
from releasectl.errors import BadInput, OperationFailed, Refused
from releasectl.manifest import schema as mf
from releasectl.names import MANIFEST, model_dir, tag_name


@dataclass(frozen=True)
class BuiltBundle:
    """A bento built from a release's sources, in the BentoML home beside it."""

    bento: Bento
    home: Path
    files: dict[str, str]  # content_files(): what the digest is made of
    sources: frozenset[str]  # the model folder's files at the revision, relative to it
    archive: Path | None = None  # its `.bento` export, when the build was asked for one

    @property
    def digest(self) -> str:
        return digest_of(self.files)


def _labels(model: str, version: str, commit: str) -> dict[str, str]:
    return {
        f"{PROVENANCE}model": model,
        f"{PROVENANCE}tag": tag_name("release", model, version),
        f"{PROVENANCE}commit": commit,
    }


def sources_id(git: g.Git, rev: str, model: str) -> str:
    """`sha256:<hex>` naming the model folder's sources at rev, release.yaml left
    out (a release edits only the manifest): what trained weights were made from."""
    folder = model_dir(model)
    skip = f"{folder}/{MANIFEST}"
    entries = [e for e in g.tree_entries(git, rev, folder) if e.split("\t", 1)[1] != skip]
    return "sha256:" + hashlib.sha256("\0".join(entries).encode()).hexdigest()


def _clean_copy(git: g.Git, rev: str, model: str, dest: Path) -> Path:
    src = g.export_tree(git, rev, model_dir(model), dest)
    # The manifest pins the bundle; it must not be part of it.
    (src / MANIFEST).unlink(missing_ok=True)
    return src


def train(
    git: g.Git, manifest: mf.Manifest, rev: str, work: Path, store: ArtifactStore
) -> tuple[mf.Trained, list[str]]:
    """Run `bundle.train` once, in a clean copy of the sources at rev with an
    empty BentoML home; export every model it saved, store each under the key
    its bytes name, and return the pin plus the keys this call newly stored.
    Training is not bit-reproducible across machines (BLAS kernels, threads),
    so its output is pinned here and never made again by a build
    (docs/ARCHITECTURE.md, "Weights are pinned inputs")."""
    model = manifest.model
    assert manifest.bundle.train  # the caller asks only when there is a train step
    src = _clean_copy(git, rev, model, work / "train-src")
    home = work / "train-home"
    run_step(src, list(manifest.bundle.train), home)
    tags = saved_models(home)
    if not tags:
        raise BadInput(
            f"bundle.train of {model} saved no model into BENTOML_HOME",
            "the step must save its model with bentoml, e.g. bentoml.sklearn.save_model(...)",
        )
    models: list[mf.TrainedModel] = []
    new_keys: list[str] = []
    for tag in tags:
        archive = export_model(tag, work / "weights" / f"{tag.replace(':', '-')}.bentomodel", home)
        stored = store.put_weights(archive, {"model": model, "tag": tag})
        if stored.new:
            new_keys.append(stored.key)
        models.append(mf.TrainedModel(tag=tag, sha256=stored.sha256, key=stored.key))
    return mf.Trained(sources=sources_id(git, rev, model), models=models), new_keys


def needs_training(git: g.Git, manifest: mf.Manifest, rev: str) -> bool:
    """A train step whose pinned weights are missing or were made from other sources."""
    if not manifest.bundle.train:
        return False
    trained = manifest.bundle.trained
    return trained is None or trained.sources != sources_id(git, rev, manifest.model)


# Where the artifacts of MODEL VERSION were stored when it was released, and how to
# bring them to the store: the registry's answer (`releasectl.registry.builds.stranded`),
# given by the caller, since a bundle is built below the registry
# (docs/ARCHITECTURE.md, "Layers").
Stranded = Callable[[g.Git, str, str, ArtifactStore], str]


def _fetch_trained(
    git: g.Git,
    manifest: mf.Manifest,
    store: ArtifactStore,
    dest: Path,
    stranded: Stranded,
) -> list[ModelArchive]:
    """The pinned weights, fetched into dest and checked against their pins."""
    trained = manifest.bundle.trained
    if trained is None:
        if manifest.bundle.train:
            raise BadInput(
                f"{manifest.model} {manifest.version} declares bundle.train but pins no "
                "trained weights (bundle.trained)",
                "`releasectl release` or `releasectl propose` trains once and pins them",
            )
        return []
    archives = []
    for number, pinned in enumerate(trained.models):
        if not store.exists(pinned.key):
            raise OperationFailed(
                f"the pinned weights of {pinned.tag} ({pinned.key}) are not in the "
                f"artifact store {store.url}",
                stranded(git, manifest.model, manifest.version, store),
            )
        archive = fetch_artifact(
            store.uri(pinned.key), pinned.sha256, dest / f"trained-{number}.bentomodel"
        )
        if archive.tag != pinned.tag:
            raise Refused(f"the weights stored as {pinned.key} are {archive.tag}, not {pinned.tag}")
        archives.append(archive)
    return archives


def build_sources(
    git: g.Git,
    manifest: mf.Manifest,
    rev: str,
    work: Path,
    store: ArtifactStore | None = None,
    *,
    stranded: Stranded,
    archive_to: Path | None = None,
) -> BuiltBundle:
    """Build the model's folder as it is at `rev` inside `work`: pinned
    weights imported (verified by sha256), then `prepare`, then `bentoml build`,
    and its `.bento` export in `archive_to` when that is given; `stranded` says
    where missing weights went."""
    model, version = manifest.model, manifest.version
    src = _clean_copy(git, rev, model, work / "src")
    if not (src / "bentofile.yaml").is_file():
        raise BadInput(f"{model_dir(model)} has no bentofile.yaml: there is no bundle to build")
    sources = frozenset(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    home = work / "bentoml"
    home.mkdir(parents=True, exist_ok=True)
    weights = work / "weights-in"
    archives = _fetch_trained(git, manifest, store or store_for(git), weights, stranded)
    if manifest.bundle.artifact is not None:
        artifact = manifest.bundle.artifact
        archives.append(
            fetch_artifact(artifact.uri, artifact.sha256, weights / "artifact.bentomodel")
        )
    if manifest.bundle.prepare:
        # The step may read the imported models: they go in before it runs.
        import_models(archives, home)
        archives = []
        run_step(src, list(manifest.bundle.prepare), home)
    commit = g.rev_parse(git, rev) or rev
    name = manifest.bundle.bento
    bento = build_bento(
        src,
        name=name,
        version=version,
        labels=_labels(model, version, commit),
        bentoml_home=home,
        imports=archives,
        archive_to=archive_to,
    )
    archive = archive_path(name, version, archive_to) if archive_to is not None else None
    return BuiltBundle(bento, home, content_files(bento.path), sources, archive)


def explain_mismatch(built: BuiltBundle, recorded: Mapping[str, str] | None) -> str:
    """Which files make a rebuilt bundle differ from its pin, and why that
    usually happens; `recorded` is the pinned build's file map from the store."""
    if recorded is None:
        return (
            "; the pinned build's file list is not in the artifact store, "
            "so the files that differ cannot be named"
        )
    rebuilt = built.files
    changed = sorted(
        rel for rel in recorded.keys() | rebuilt.keys() if recorded.get(rel) != rebuilt.get(rel)
    )
    if not changed:
        return ""
    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    verb = "differs" if len(changed) == 1 else "differ"

    def source_file(rel: str) -> bool:
        return rel.startswith("src/") and rel.removeprefix("src/") in built.sources

    if any(rel.startswith("models/") for rel in changed):
        why = (
            "weights built during the bundle build are not reproducible across machines; "
            "pin them with bundle.train (trained once, at release) or bundle.artifact"
        )
    elif any(source_file(rel) for rel in changed):
        why = "the sources differ from those the pin was built from; release them with a build"
    elif any(rel.startswith("src/") for rel in changed):
        why = (
            "bundle.prepare must write the same bytes on every machine; "
            "move a step that does not into bundle.train"
        )
    else:
        why = "the build environment (bentoml, Python or the bentofile) differs from the pin's"
    return f": {shown} {verb}: {why}"


def store_for(git: g.Git) -> ArtifactStore:
    return ArtifactStore(store_url(git))


def store_bundle(
    store: ArtifactStore, archive: Path, built: BuiltBundle, model: str, version: str
) -> str:
    """Store a built archive under its content-addressed key; returns the key."""
    key = store.bundle_key(built.digest)
    meta = {"model": model, "version": version, "bento": built.bento.name}
    store.put(archive, key, built.digest, built.files, meta)
    return key


def recorded_files(store: ArtifactStore, digest: str) -> dict[str, str] | None:
    """The per-file digests the store keeps for the build pinned by `digest`."""
    return store.files(store.bundle_key(digest))


def verify_stored(store: ArtifactStore, key: str, pinned: str | None) -> str:
    """Fetch a stored archive, extract it and recompute its digest; it must
    equal the pin (when there is one). Returns the digest."""
    with tempfile.TemporaryDirectory(prefix="releasectl-verify-") as tmp:
        return fetch_bundle(store, key, Path(tmp), pinned)[1]


def fetch_bundle(
    store: ArtifactStore, key: str, dest: Path, pinned: str | None
) -> tuple[Path, str]:
    """The stored archive of `key`, extracted under `dest`, and its content
    digest, which must equal `pinned` when given. Stored bytes are untrusted:
    an archive that cannot be read, or whose bento cannot be digested (a
    missing model, unreadable metadata), is refused as damaged, like a wrong
    digest, because it is not what the release pinned."""
    archive = store.get(key, dest / "archive.bento")
    try:
        folder = extract(archive, dest / "bento")
        digest = content_digest(folder)
    except (
        OperationFailed,
        OSError,
        EOFError,
        ValueError,
        tarfile.TarError,
        lzma.LZMAError,
        zlib.error,
    ) as exc:
        shutil.rmtree(dest / "bento", ignore_errors=True)
        raise Refused(f"the stored archive {store.uri(key)} is damaged: {exc}") from None
    if pinned is not None and digest != pinned:
        shutil.rmtree(folder)
        raise Refused(
            f"the stored archive {store.uri(key)} has digest {digest}, "
            f"but the release pins {pinned}"
        )
    return folder, digest
