"""The one module that talks to BentoML (docs/ARCHITECTURE.md, "Layers").

Every call is a subprocess (`python -m bentoml ...`) with an explicit
`BENTOML_HOME`: bentoml reads its home once per process, so a subprocess per
home is the only way to keep several homes (build cache, deploy slots) apart,
and importing bentoml costs ~1.5 s that `releasectl --help` should not pay. A
build's steps in one home (weights imported, bento built, archive exported) run
in one such process (`releasectl.bundles.bentoml_batch`), bentoml imported once.

What a bento is made of and its pin are `releasectl.bundles.digest`; its `.bento`
archive, `releasectl.bundles.archive`. `bentoml serve` is started by the local
target (`releasectl.serving.local.procs`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from releasectl.errors import BadInput, OperationFailed, Refused
from releasectl.names import SHA256_HEX_PATTERN

DIGEST_PREFIX = "sha256:"
# bentoml's own tag rule (bentoml/_internal/tag.py): lower case, at most 63 characters.
_TAG_PART = re.compile(r"^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$")
_TAG_MAX = 63
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([-._/A-Za-z0-9]*[A-Za-z0-9])?$")
_TAIL_LINES = 15
_TIMEOUT_S = 900
_CHUNK = 1 << 20


class BundleError(OperationFailed):
    """bentoml (or a preparation step) failed, or a bento is not what it should be."""


class DigestMismatch(Refused):
    """Bytes did not match the digest they were pinned by.

    Here, not in `releasectl.bundles.digest`: `import_artifact` raises it, and the
    digest module reads bentoml's metadata through this one (no import cycle)."""


@dataclass(frozen=True)
class Bento:
    """A built bento in one BentoML home."""

    name: str
    version: str
    path: Path

    @property
    def tag(self) -> str:
        return f"{self.name}:{self.version}"


# --- running bentoml ---------------------------------------------------------


def bentoml_env(bentoml_home: Path) -> dict[str, str]:
    """The environment for any bentoml process that must use bentoml_home and only it."""
    # No bytecode: the build context is imported by `bentoml build` and must stay untouched.
    return {
        **os.environ,
        "BENTOML_HOME": str(bentoml_home.absolute()),
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _tail(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return "\n".join(lines[-_TAIL_LINES:])


def _run(argv: Sequence[str], *, bentoml_home: Path, cwd: Path | None = None) -> str:
    """Run argv (never through a shell); return its combined output or raise BundleError."""
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=bentoml_env(bentoml_home),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BundleError(f"could not run {' '.join(argv)}: {exc}") from exc
    if proc.returncode != 0:
        raise BundleError(f"{' '.join(argv)} exited with {proc.returncode}:\n{_tail(proc.stdout)}")
    return proc.stdout


def run_bentoml(args: Sequence[str], *, bentoml_home: Path, cwd: Path | None = None) -> str:
    """`python -m bentoml <args>` with bentoml_home; its output, or BundleError."""
    return _run([sys.executable, "-m", "bentoml", *args], bentoml_home=bentoml_home, cwd=cwd)


def _run_batch(ops: list[list[Any]], *, bentoml_home: Path) -> str:
    """bentoml operations in order, in one process (`releasectl.bundles.bentoml_batch`)."""
    argv = [sys.executable, "-m", "releasectl.bundles.bentoml_batch", json.dumps(ops)]
    return _run(argv, bentoml_home=bentoml_home)


# --- getting weights into a home ---------------------------------------------


def run_step(src_dir: Path, argv: list[str], bentoml_home: Path) -> None:
    """Run one of the model's steps (`bundle.train` or `bundle.prepare`) in
    src_dir; what it saves with bentoml lands in bentoml_home.

    "python" as argv[0] means this interpreter, so the step sees the same
    packages that `bentoml build` will pin.
    """
    if not argv:
        raise BadInput("the step's command is empty")
    command = [sys.executable, *argv[1:]] if argv[0] == "python" else list(argv)
    bentoml_home.mkdir(parents=True, exist_ok=True)
    _run(command, bentoml_home=bentoml_home, cwd=src_dir)


def saved_models(bentoml_home: Path) -> list[str]:
    """The `name:version` tags of every model saved in bentoml_home, sorted."""
    store = bentoml_home / "models"
    if not store.is_dir():
        return []
    return sorted(
        f"{folder.parent.name}:{folder.name}"
        for folder in store.glob("*/*")
        if folder.is_dir() and (folder / "model.yaml").is_file()
    )


def export_model(tag: str, dest: Path, bentoml_home: Path) -> Path:
    """`bentoml models export` one model of bentoml_home to the file dest."""
    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    # Absolute path: bentoml 1.4 resolves relative export paths against `/`.
    run_bentoml(["models", "export", tag, str(dest)], bentoml_home=bentoml_home)
    if not dest.is_file():
        raise BundleError(f"bentoml models export did not write {dest}")
    return dest


def _expected_hex(sha256: str) -> str:
    hex_digest = sha256.removeprefix(DIGEST_PREFIX).lower()
    if not re.fullmatch(SHA256_HEX_PATTERN, hex_digest):
        raise BadInput(f"not a sha256 digest: {sha256!r}")
    return hex_digest


def _fetch(uri: str, dest: Path) -> str:
    """Copy uri (any fsspec URL or a local path) to dest; return the sha256 hex of the bytes."""
    import fsspec

    digest = hashlib.sha256()
    try:
        with fsspec.open(uri, "rb") as src, dest.open("wb") as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (OSError, ValueError, ImportError) as exc:
        raise BundleError(f"could not fetch {uri}: {exc}") from exc
    return digest.hexdigest()


def _archive_model_tag(archive: Path) -> str:
    """The `name:version` inside a `bentoml models export` archive."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            member = next(m for m in tar.getmembers() if member_path(m.name) == "model.yaml")
            extracted = tar.extractfile(member)
            info = load_metadata(extracted.read() if extracted else b"")
        return _tag(str(info["name"]), str(info["version"]))
    except (tarfile.TarError, StopIteration, OSError, KeyError, BundleError) as exc:
        raise BundleError(f"{archive.name} is not a bentoml model archive: {exc!r}") from exc


@dataclass(frozen=True)
class ModelArchive:
    """A `bentoml models export` archive whose bytes were checked against their pin."""

    path: Path
    tag: str


def fetch_artifact(uri: str, sha256: str, dest: Path) -> ModelArchive:
    """Copy pre-built weights (a `bentoml models export` archive) to the file dest,
    checking the bytes against sha256 BEFORE bentoml ever sees them."""
    expected = _expected_hex(sha256)
    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    actual = _fetch(uri, dest)
    if actual != expected:
        dest.unlink(missing_ok=True)
        raise DigestMismatch(
            f"model archive {uri} has sha256 {actual}, expected {expected}",
            hint="the artifact changed after it was pinned",
        )
    return ModelArchive(dest, _archive_model_tag(dest))


def _import_ops(archives: Sequence[ModelArchive], bentoml_home: Path) -> list[list[Any]]:
    """Operations importing each archive; a model of the same tag already in the home
    (or imported before it) is deleted first: bentoml refuses to import over it, and
    the verified archive is what the build must use."""
    ops: list[list[Any]] = []
    present: set[str] = set()
    for archive in archives:
        name, version = archive.tag.split(":")
        if archive.tag in present or (bentoml_home / "models" / name / version).exists():
            ops.append(["delete_model", archive.tag])
        # Absolute path: bentoml 1.4 resolves relative import/export paths against `/`.
        ops.append(["import_model", str(archive.path.absolute())])
        present.add(archive.tag)
    return ops


def import_models(archives: Sequence[ModelArchive], bentoml_home: Path) -> None:
    """Put checked model archives into bentoml_home (one bentoml process)."""
    if archives:
        bentoml_home.mkdir(parents=True, exist_ok=True)
        _run_batch(_import_ops(archives, bentoml_home), bentoml_home=bentoml_home)


def import_artifact(uri: str, sha256: str, bentoml_home: Path) -> str:
    """Put pre-built weights (a `bentoml models export` archive) into bentoml_home,
    the bytes checked against sha256 first (`fetch_artifact`); returns the model tag."""
    with tempfile.TemporaryDirectory(prefix="releasectl-model-") as tmp:
        archive = fetch_artifact(uri, sha256, Path(tmp) / "model.bentomodel")
        import_models([archive], bentoml_home)
    return archive.tag


# --- building -----------------------------------------------------------------


def _tag(name: str, version: str) -> str:
    for part in (name, version):
        if len(part) > _TAG_MAX or not _TAG_PART.match(part):
            raise BadInput(
                f"{part!r} is not valid in a bentoml tag",
                hint="lower-case letters, digits, '.', '_', '-'; at most 63 characters",
            )
    return f"{name}:{version}"


def _check_labels(labels: Mapping[str, str]) -> None:
    for key, value in sorted(labels.items()):
        if not _LABEL_KEY.match(key) or "\n" in value:
            raise BadInput(f"bad bento label {key}={value!r}")


def _require_uv() -> None:
    """bentoml 1.4 `build` calls uv even with lock_packages false, and pip-installs it
    from the index when missing: refuse that hidden network step up front."""
    try:
        importlib.metadata.version("uv")
    except importlib.metadata.PackageNotFoundError:
        if shutil.which("uv") is None:
            raise BundleError(
                "bentoml build needs uv and would download it", hint="pip install uv"
            ) from None


def _is_within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def archive_path(name: str, version: str, dest: Path) -> Path:
    """Where an export of bento name:version to dest goes: dest itself when it ends in
    `.bento`, else `<name>-<version>.bento` inside the folder dest."""
    dest = dest.absolute()
    return dest if dest.suffix == ".bento" else dest / f"{name}-{version}.bento"


def build(
    src_dir: Path,
    *,
    name: str,
    version: str,
    labels: dict[str, str],
    bentoml_home: Path,
    imports: Sequence[ModelArchive] = (),
    archive_to: Path | None = None,
) -> Bento:
    """`bentoml build` src_dir as name:version, with labels, into bentoml_home: after
    importing the checked model archives `imports`, and followed by an export of the
    bento to `archive_path(name, version, archive_to)` when that is given; all in one
    bentoml process.

    Labels are passed to the build (bentoml merges them over bentofile labels and
    records them in bento.yaml and src/bentofile.yaml), so src_dir is never
    written to. A bento of the same tag already in this home is deleted first:
    bentoml refuses to build over it, and a stale bento must never stand in for
    a fresh build (the caller compares digests, not tags).
    """
    tag = _tag(name, version)
    _check_labels(labels)
    src_dir = src_dir.absolute()
    bentoml_home = bentoml_home.absolute()
    if not (src_dir / "bentofile.yaml").is_file():
        raise BadInput(f"{src_dir} has no bentofile.yaml")
    if _is_within(bentoml_home, src_dir):
        # It would be swept into the build context by any broad include pattern.
        raise BadInput(f"BENTOML_HOME {bentoml_home} is inside the build context {src_dir}")
    _require_uv()
    bentoml_home.mkdir(parents=True, exist_ok=True)
    ops = _import_ops(imports, bentoml_home)
    path = bentoml_home / "bentos" / name / version
    if path.exists():
        ops.append(["delete_bento", tag])
    ops.append(["build", str(src_dir), name, version, dict(sorted(labels.items()))])
    archive = None
    if archive_to is not None:
        archive = archive_path(name, version, archive_to)
        archive.parent.mkdir(parents=True, exist_ok=True)
        archive.unlink(missing_ok=True)
        ops.append(["export_bento", tag, str(archive)])
    _run_batch(ops, bentoml_home=bentoml_home)
    if not (path / "bento.yaml").is_file():
        raise BundleError(f"bentoml build reported success but {path} has no bento.yaml")
    if archive is not None and not archive.is_file():
        raise BundleError(f"bentoml export did not write {archive}")
    return Bento(name=name, version=version, path=path)


def member_path(name: str) -> str | None:
    """A member's path relative to the archive root, None for the root itself."""
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "")]
    return "/".join(parts) or None


def load_metadata(data: bytes) -> dict[str, Any]:
    """One of bentoml's metadata files (bento.yaml, model.yaml, bentofile.yaml) as a mapping."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe").load(io.BytesIO(data))
    except YAMLError as exc:
        raise BundleError(f"unreadable bentoml metadata: {exc}") from exc
    if not isinstance(doc, dict):
        raise BundleError("bentoml metadata is not a mapping")
    return doc
