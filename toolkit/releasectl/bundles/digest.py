"""The content digest: what pins a release's bento (docs/ARCHITECTURE.md, "Bundles").

The pin of a release is `content_digest()`, not the archive's bytes: bentoml
writes the current time into bento.yaml and model.yaml, and an `.bento`
archive (tar.xz) carries mtimes, so neither is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from releasectl.bundles.bento import DIGEST_PREFIX, BundleError, load_metadata

PROVENANCE = "releasectl."  # label prefix of build provenance, outside the digest
_CHUNK = 1 << 20
# Bumped whenever the digest's definition changes, so old and new pins never collide.
_DIGEST_SCHEME = b"releasectl-bento-digest/2\n"


def _canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def _without_provenance(doc: dict[str, Any]) -> dict[str, Any]:
    """Provenance labels (`releasectl.*`: commit, tag) say where a build came
    from, not what it is; leaving them out lets `release` pin the digest before
    its commit exists and a rebuild at the tag match it."""
    labels = doc.get("labels")
    if isinstance(labels, dict):
        doc["labels"] = {k: v for k, v in labels.items() if not str(k).startswith(PROVENANCE)}
    return doc


def _normalized_bento_yaml(data: bytes) -> bytes:
    """bento.yaml without its build and model-save timestamps."""
    doc = _without_provenance(load_metadata(data))
    doc.pop("creation_time", None)
    model_lists = [doc.get("models") or []]
    model_lists += [service.get("models") or [] for service in doc.get("services") or []]
    for models in model_lists:
        for model in models:
            model.pop("creation_time", None)
    return _canonical(doc)


def _normalized_model_yaml(data: bytes) -> bytes:
    doc = load_metadata(data)
    doc.pop("creation_time", None)
    return _canonical(doc)


def _is_model_yaml(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) == 4 and parts[0] == "models" and parts[3] == "model.yaml"


def _is_latest_pointer(rel: str) -> bool:
    parts = rel.split("/")
    return len(parts) == 3 and parts[0] == "models" and parts[2] == "latest"


def _file_digest(path: Path, rel: str) -> str:
    if rel == "bento.yaml":
        data = _normalized_bento_yaml(path.read_bytes())
    elif _is_model_yaml(rel):
        data = _normalized_model_yaml(path.read_bytes())
    elif rel == "src/bentofile.yaml":
        data = _canonical(_without_provenance(load_metadata(path.read_bytes())))
    else:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()
    return hashlib.sha256(data).hexdigest()


def _walk(root: Path, prefix: str) -> Iterator[tuple[str, Path]]:
    """(relative posix path under prefix, path) for every entry below root but folders."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath, filename)
            yield prefix + path.relative_to(root).as_posix(), path
        for dirname in dirnames:
            path = Path(dirpath, dirname)
            if path.is_symlink():
                yield prefix + path.relative_to(root).as_posix(), path


def _listed_models(bento_yaml: Path) -> list[tuple[str, str]]:
    doc = load_metadata(bento_yaml.read_bytes())
    models = list(doc.get("models") or [])
    for service in doc.get("services") or []:
        models += service.get("models") or []
    tags = {str(model["tag"]) for model in models}
    return sorted((name, version) for name, _, version in (t.partition(":") for t in tags))


def _model_store_of(bento_dir: Path, model_store: Path | None) -> Path | None:
    if model_store is not None:
        return model_store
    home = bento_dir.parent.parent
    return home.parent / "models" if home.name == "bentos" else None


def _entries(bento_dir: Path, model_store: Path | None) -> Iterator[tuple[str, Path]]:
    bento_yaml = bento_dir / "bento.yaml"
    if not bento_yaml.is_file():
        raise BundleError(f"{bento_dir} is not a bento (no bento.yaml)")
    for rel, path in _walk(bento_dir, ""):
        if not rel.startswith("models/"):
            yield rel, path
    if (bento_dir / "models").is_dir():
        # An extracted archive: every model it carries counts, not only the listed ones.
        for rel, path in _walk(bento_dir / "models", "models/"):
            if not _is_latest_pointer(rel):
                yield rel, path
        return
    # A bento in a BentoML home: bentoml keeps its models in the home's model store.
    store = _model_store_of(bento_dir, model_store)
    for name, version in _listed_models(bento_yaml):
        folder = store / name / version if store else None
        if folder is None or not (folder / "model.yaml").is_file():
            raise BundleError(f"model {name}:{version} of {bento_dir} not found (in {store})")
        yield from _walk(folder, f"models/{name}/{version}/")


def content_files(bento_dir: Path, model_store: Path | None = None) -> dict[str, str]:
    """What the content digest is made of: for every file of a bento and its
    models, its relative path mapped to `<kind> <sha256 hex>` (kind `f` file,
    `x` executable, `l` symlink, hashed as its target text, never followed).

    Equal for a built bento in a BentoML home (whose models live in the home's
    model store, `model_store` or `<home>/models` by default) and for the
    folder extracted from its `.bento` archive (whose models are under
    `models/`). Left out: `creation_time` in bento.yaml (top level and per
    model) and in model.yaml, the `models/<name>/latest` pointers, folders,
    timestamps, owners. Kept: every other byte, and whether a file is
    executable. The store keeps this map beside each archive, so that a
    digest that does not match its pin can name the files that differ.
    """
    bento_dir = bento_dir.absolute()
    files: dict[str, str] = {}
    for rel, path in sorted(_entries(bento_dir, model_store), key=lambda entry: entry[0]):
        if path.is_symlink():
            files[rel] = "l " + hashlib.sha256(os.readlink(path).encode()).hexdigest()
        else:
            kind = "x" if path.stat().st_mode & 0o100 else "f"
            files[rel] = f"{kind} {_file_digest(path, rel)}"
    return files


def digest_of(files: Mapping[str, str]) -> str:
    """`sha256:<hex>`: the content digest of a `content_files()` map."""
    total = hashlib.sha256(_DIGEST_SCHEME)
    for rel in sorted(files):
        total.update(f"{files[rel]} {rel}\0".encode())
    return DIGEST_PREFIX + total.hexdigest()


def content_digest(bento_dir: Path, model_store: Path | None = None) -> str:
    """`sha256:<hex>` over a bento's files and its models (see content_files)."""
    return digest_of(content_files(bento_dir, model_store))
