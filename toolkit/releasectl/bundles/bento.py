"""The one module that talks to BentoML.

Every call is a subprocess (`python -m bentoml ...`) with an explicit
`BENTOML_HOME`: bentoml reads its home once per process, so a subprocess per
call is the only way to keep several homes (build cache, deploy slots) apart,
and importing bentoml costs ~1.5 s that `releasectl --help` should not pay.

The pin of a release is `content_digest()`, not the archive's bytes: bentoml
writes the current time into bento.yaml and model.yaml, and an `.bento`
archive (tar.xz) carries mtimes, so neither is reproducible.
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from releasectl.errors import BadInput, OperationFailed, Refused

DIGEST_PREFIX = "sha256:"
PROVENANCE = "releasectl."  # label prefix of build provenance, outside the digest
# bentoml's own tag rule (bentoml/_internal/tag.py): lower case, at most 63 characters.
_TAG_PART = re.compile(r"^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$")
_TAG_MAX = 63
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([-._/A-Za-z0-9]*[A-Za-z0-9])?$")
_TAIL_LINES = 15
_TIMEOUT_S = 900
_CHUNK = 1 << 20
# Bumped whenever the digest's definition changes, so old and new pins never collide.
_DIGEST_SCHEME = b"releasectl-bento-digest/2\n"


class BundleError(OperationFailed):
    """bentoml (or a preparation step) failed, or a bento is not what it should be."""


class DigestMismatch(Refused):
    """Bytes did not match the digest they were pinned by."""


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


def serve_command(
    bento_dir: Path, *, host: str, port: int, python: Path | None = None
) -> list[str]:
    """argv serving an extracted bento, with `python` (the bento's own environment's
    interpreter; default this one); run it with a BENTOML_HOME of its own
    (`bentoml serve` wipes `$BENTOML_HOME/prometheus_multiproc_dir` at start)."""
    return [
        str(python) if python is not None else sys.executable,
        "-m",
        "bentoml",
        "serve",
        str(bento_dir.absolute()),
        "--host",
        host,
        "--port",
        str(port),
    ]


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


def _bentoml(args: Sequence[str], *, bentoml_home: Path, cwd: Path | None = None) -> str:
    return _run([sys.executable, "-m", "bentoml", *args], bentoml_home=bentoml_home, cwd=cwd)


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
    _bentoml(["models", "export", tag, str(dest)], bentoml_home=bentoml_home)
    if not dest.is_file():
        raise BundleError(f"bentoml models export did not write {dest}")
    return dest


def _expected_hex(sha256: str) -> str:
    hex_digest = sha256.removeprefix(DIGEST_PREFIX).lower()
    if not re.fullmatch(r"[0-9a-f]{64}", hex_digest):
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
            member = next(m for m in tar.getmembers() if _member_path(m.name) == "model.yaml")
            extracted = tar.extractfile(member)
            info = _load_yaml(extracted.read() if extracted else b"")
        return _tag(str(info["name"]), str(info["version"]))
    except (tarfile.TarError, StopIteration, OSError, KeyError, BundleError) as exc:
        raise BundleError(f"{archive.name} is not a bentoml model archive: {exc!r}") from exc


def import_artifact(uri: str, sha256: str, bentoml_home: Path) -> str:
    """Put pre-built weights (a `bentoml models export` archive) into bentoml_home.

    The bytes are checked against sha256 BEFORE bentoml sees them. An existing
    model of the same tag in that home is replaced, since bentoml refuses to
    import over it and the verified archive is what the build must use.
    Returns the model tag.
    """
    expected = _expected_hex(sha256)
    bentoml_home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="releasectl-model-") as tmp:
        local = Path(tmp).absolute() / "model.bentomodel"
        actual = _fetch(uri, local)
        if actual != expected:
            raise DigestMismatch(
                f"model archive {uri} has sha256 {actual}, expected {expected}",
                hint="the artifact changed after it was pinned",
            )
        tag = _archive_model_tag(local)
        name, version = tag.split(":")
        if (bentoml_home / "models" / name / version).exists():
            _bentoml(["models", "delete", "-y", tag], bentoml_home=bentoml_home)
        # Absolute path: bentoml 1.4 resolves relative import/export paths against `/`.
        _bentoml(["models", "import", str(local)], bentoml_home=bentoml_home)
    return tag


# --- building -----------------------------------------------------------------


def _tag(name: str, version: str) -> str:
    for part in (name, version):
        if len(part) > _TAG_MAX or not _TAG_PART.match(part):
            raise BadInput(
                f"{part!r} is not valid in a bentoml tag",
                hint="lower-case letters, digits, '.', '_', '-'; at most 63 characters",
            )
    return f"{name}:{version}"


def _label_args(labels: Mapping[str, str]) -> list[str]:
    args: list[str] = []
    for key, value in sorted(labels.items()):
        if not _LABEL_KEY.match(key) or "\n" in value:
            raise BadInput(f"bad bento label {key}={value!r}")
        args += ["--label", f"{key}={value}"]
    return args


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


def build(
    src_dir: Path,
    *,
    name: str,
    version: str,
    labels: dict[str, str],
    bentoml_home: Path,
) -> Bento:
    """`bentoml build` src_dir as name:version, with labels, into bentoml_home.

    Labels go through `--label` (bentoml merges them over bentofile labels and
    records them in bento.yaml and src/bentofile.yaml), so src_dir is never
    written to. A bento of the same tag already in this home is deleted first:
    bentoml refuses to build over it, and a stale bento must never stand in for
    a fresh build (the caller compares digests, not tags).
    """
    tag = _tag(name, version)
    label_args = _label_args(labels)
    src_dir = src_dir.absolute()
    bentoml_home = bentoml_home.absolute()
    if not (src_dir / "bentofile.yaml").is_file():
        raise BadInput(f"{src_dir} has no bentofile.yaml")
    if _is_within(bentoml_home, src_dir):
        # It would be swept into the build context by any broad include pattern.
        raise BadInput(f"BENTOML_HOME {bentoml_home} is inside the build context {src_dir}")
    _require_uv()
    path = bentoml_home / "bentos" / name / version
    if path.exists():
        _bentoml(["delete", "-y", tag], bentoml_home=bentoml_home)
    _bentoml(
        [
            "build",
            "-f",
            "bentofile.yaml",
            "--name",
            name,
            "--version",
            version,
            *label_args,
            str(src_dir),
        ],
        bentoml_home=bentoml_home,
        cwd=src_dir,
    )
    if not (path / "bento.yaml").is_file():
        raise BundleError(f"bentoml build reported success but {path} has no bento.yaml")
    return Bento(name=name, version=version, path=path)


def export(bento: Bento, dest: Path, bentoml_home: Path) -> Path:
    """Write the bento with its models as a `.bento` archive; return its absolute path.

    dest is a folder (the archive is named `<name>-<version>.bento` inside it)
    or a file path ending in `.bento`.
    """
    dest = dest.absolute()
    target = dest if dest.suffix == ".bento" else dest / f"{bento.name}-{bento.version}.bento"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    # Absolute path: bentoml 1.4 resolves relative export paths against `/`.
    _bentoml(["export", bento.tag, str(target)], bentoml_home=bentoml_home)
    if not target.is_file():
        raise BundleError(f"bentoml export did not write {target}")
    return target


# --- archives -----------------------------------------------------------------


def _member_path(name: str) -> str | None:
    """A member's path relative to the archive root, None for the root itself."""
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "")]
    return "/".join(parts) or None


def _safe_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in tar.getmembers():
        if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
            raise Refused(f"unsafe path in bento archive: {member.name!r}")
        if not (member.isfile() or member.isdir()):
            # bentoml writes only files and folders; a link could point anywhere.
            raise Refused(f"unsupported member in bento archive: {member.name!r}")
        if _member_path(member.name) is not None:
            yield member


def extract(archive: Path, dest_dir: Path) -> Path:
    """Unpack a `.bento` archive into dest_dir, a folder `bentoml serve <dir>` can serve.

    bentoml 1.4 writes `.bento` as tar.xz (older versions and `--format gz`
    give tar.gz; both are read). Members must be plain files or folders below
    the root. The tree appears under dest_dir only once complete.
    """
    dest_dir = dest_dir.absolute()
    if dest_dir.exists() and any(dest_dir.iterdir()):
        raise BadInput(f"{dest_dir} exists and is not empty")
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}-", dir=dest_dir.parent))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(staging, members=list(_safe_members(tar)), filter="data")
        if not (staging / "bento.yaml").is_file():
            raise BundleError(f"{archive} is not a bento archive (no bento.yaml at its root)")
        staging.chmod(0o755)
        if dest_dir.exists():
            dest_dir.rmdir()
        staging.rename(dest_dir)
    except tarfile.TarError as exc:
        raise BundleError(f"cannot read bento archive {archive}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest_dir


# --- the content digest ---------------------------------------------------------


def _load_yaml(data: bytes) -> dict[str, Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe").load(io.BytesIO(data))
    except YAMLError as exc:
        raise BundleError(f"unreadable bentoml metadata: {exc}") from exc
    if not isinstance(doc, dict):
        raise BundleError("bentoml metadata is not a mapping")
    return doc


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
    doc = _without_provenance(_load_yaml(data))
    doc.pop("creation_time", None)
    model_lists = [doc.get("models") or []]
    model_lists += [service.get("models") or [] for service in doc.get("services") or []]
    for models in model_lists:
        for model in models:
            model.pop("creation_time", None)
    return _canonical(doc)


def _normalized_model_yaml(data: bytes) -> bytes:
    doc = _load_yaml(data)
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
        data = _canonical(_without_provenance(_load_yaml(path.read_bytes())))
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
    doc = _load_yaml(bento_yaml.read_bytes())
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
