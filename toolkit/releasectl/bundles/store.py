"""The artifact store: built `.bento` archives under stable keys, over fsspec.

A plain folder path is the default; any fsspec URL works (`file://`,
`memory://`, `s3://` with the `s3` extra). Next to each archive sits a JSON
sidecar with its content digest and the per-file digests it is made of. The
sidecar is a convenience for listing, early checks and explaining a mismatch
only: callers re-digest the extracted bento before trusting it.

Keys are content-addressed: a bundle's archive is `bundles/<hex>.bento`
from its content digest, trained weights are `weights/<hex>.bentomodel`
from the sha256 of their bytes; model and version are metadata in the
sidecar. Storing the same content twice is a no-op, two contents never share
a key, and manifests record these store-relative keys, never local paths.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from releasectl.errors import BadInput, OperationFailed, Refused, ReleasectlError
from releasectl.names import DIGEST_PATTERN, SHA256_HEX_PATTERN

SIDECAR_SUFFIX = ".json"
_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DIGEST = re.compile(DIGEST_PATTERN)
_HEX = re.compile(SHA256_HEX_PATTERN)
WEIGHTS = "weights"
BUNDLES = "bundles"
_CHUNK = 1 << 20


class StoredWeights(NamedTuple):
    key: str
    sha256: str  # hex of the archive's bytes
    new: bool  # False: the same bytes were already stored


class StoreError(OperationFailed):
    """The store could not be read or written."""


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(not _KEY_PART.match(part) or ".." in part for part in parts):
        raise BadInput(
            f"bad artifact key {key!r}",
            hint="relative, '/'-separated names of letters, digits, '.', '_', '-'; no '..'",
        )
    return key


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class ArtifactStore:
    """Archives under `<root>/<key>`, each with a `<key>.json` sidecar."""

    def __init__(self, url: str) -> None:
        import fsspec

        try:
            self.fs, root = fsspec.core.url_to_fs(url)
        except (ImportError, ValueError) as exc:
            # e.g. s3:// without the `s3` extra installed
            raise BadInput(f"cannot open artifact store {url}: {exc}") from exc
        self.url = url
        self.root = root.rstrip("/")
        self._plain = "://" not in url

    @staticmethod
    def bundle_key(digest: str) -> str:
        """The content-addressed key of a built bundle's archive: from its
        content digest, so that two contents never share a key and a rebuilt
        release candidate never collides with an earlier build."""
        if not _DIGEST.match(digest):
            raise BadInput(f"not a content digest: {digest!r}")
        return f"{BUNDLES}/{digest.removeprefix('sha256:')}.bento"

    @staticmethod
    def weights_key(sha256_hex: str) -> str:
        """The content-addressed key of an exported model archive."""
        if not _HEX.match(sha256_hex):
            raise BadInput(f"not a sha256 digest: {sha256_hex!r}")
        return f"{WEIGHTS}/{sha256_hex}.bentomodel"

    def _path(self, key: str) -> str:
        return f"{self.root}/{_check_key(key)}"

    def uri(self, key: str) -> str:
        """Where key lives, as a plain path for a plain-folder store, else a URL."""
        path = self._path(key)
        return path if self._plain else self.fs.unstrip_protocol(path)

    def _write_atomically(self, local: Path, path: str) -> None:
        # Readers never see a partial object under the final name: temp name, then move.
        temp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            self.fs.put_file(str(local), temp)
            self.fs.mv(temp, path)
        except BaseException:
            if self.fs.exists(temp):
                self.fs.rm(temp)
            raise

    def put(
        self,
        local_archive: Path,
        key: str,
        digest: str,
        files: Mapping[str, str] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> str:
        """Store local_archive under key with its content digest (and the
        per-file digests it is made of); return the stored URI.

        Putting a key again with the same digest keeps what is stored (the
        archive bytes differ between builds, the content does not) once the
        stored archive is re-digested and found to hold that content: a
        sidecar is only a claim, and anyone who can write to the store can
        plant garbage under a digest, which is then replaced. Under a key that
        is not the digest's own, a different digest is refused: stored
        releases are immutable (docs/ARCHITECTURE.md, "The artifact store").
        """
        if not _DIGEST.match(digest):
            raise BadInput(f"not a content digest: {digest!r}")
        path = self._path(key)
        stored = self.digest(key)
        if stored is not None and self.fs.exists(path):
            if stored != digest and key != self.bundle_key(digest):
                raise Refused(f"{self.uri(key)} is already stored with digest {stored}")
            if stored == digest and self._holds(key, digest):
                return self.uri(key)
        sidecar: dict[str, Any] = {
            "digest": digest,
            "archive_sha256": _sha256_file(local_archive),
            "size": local_archive.stat().st_size,
        }
        if files is not None:
            sidecar["files"] = dict(sorted(files.items()))
        sidecar.update(meta or {})
        self._store(local_archive, key, sidecar)
        return self.uri(key)

    def _holds(self, key: str, digest: str) -> bool:
        """The archive stored under `key` extracts to a bento of content `digest`."""
        import tempfile

        from releasectl.bundles.archive import extract
        from releasectl.bundles.digest import content_digest

        with tempfile.TemporaryDirectory(prefix="releasectl-put-") as tmp:
            try:
                archive = self.get(key, Path(tmp) / "stored.bento")
                return content_digest(extract(archive, Path(tmp) / "bento")) == digest
            except (ReleasectlError, OSError, ValueError, EOFError, tarfile.TarError):
                return False

    def put_weights(self, local: Path, meta: Mapping[str, str]) -> StoredWeights:
        """Store an exported model archive under the key its bytes name."""
        sha256_hex = _sha256_file(local)
        key = self.weights_key(sha256_hex)
        sidecar = self._sidecar(key)
        known = sidecar is not None and sidecar.get("sha256") == sha256_hex
        if known and self.fs.exists(self._path(key)):
            return StoredWeights(key, sha256_hex, new=False)
        doc = {"sha256": sha256_hex, "size": local.stat().st_size, **dict(meta)}
        self._store(local, key, doc)
        return StoredWeights(key, sha256_hex, new=True)

    def _store(self, local: Path, key: str, sidecar: dict[str, Any]) -> None:
        path = self._path(key)
        try:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self._write_atomically(local, path)
            # The sidecar goes last: a key counts as stored only once both exist.
            self._write_json(path + SIDECAR_SUFFIX, sidecar)
        except OSError as exc:
            raise StoreError(f"cannot write {self.uri(key)}: {exc}") from exc

    def _write_json(self, path: str, doc: dict[str, Any]) -> None:
        temp = f"{path}.tmp-{uuid.uuid4().hex}"
        with self.fs.open(temp, "w") as handle:
            json.dump(doc, handle, sort_keys=True)
        self.fs.mv(temp, path)

    def _sidecar(self, key: str) -> dict[str, Any] | None:
        path = self._path(key) + SIDECAR_SUFFIX
        try:
            with self.fs.open(path, "r") as handle:
                doc = json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        return doc if isinstance(doc, dict) else None

    def delete(self, key: str) -> None:
        """Forget a key (sidecar first, so it stops counting as stored at once).
        Only for undoing a put whose release did not land."""
        path = self._path(key)
        for victim in (path + SIDECAR_SUFFIX, path):
            try:
                self.fs.rm_file(victim)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"cannot delete {self.uri(key)}: {exc}") from exc

    def exists(self, key: str) -> bool:
        return self.fs.exists(self._path(key)) and self._sidecar(key) is not None

    def digest(self, key: str) -> str | None:
        """The content digest recorded at put time (untrusted: re-digest after extracting)."""
        sidecar = self._sidecar(key)
        value = sidecar.get("digest") if sidecar else None
        return value if isinstance(value, str) else None

    def files(self, key: str) -> dict[str, str] | None:
        """The per-file digests recorded at put time (see bundle.content_files)."""
        sidecar = self._sidecar(key)
        files = sidecar.get("files") if sidecar else None
        if not isinstance(files, dict):
            return None
        return {str(rel): str(entry) for rel, entry in files.items()}

    def get(self, key: str, dest: Path) -> Path:
        """Copy key to dest (a file path, or a folder to put the key's file name in)."""
        path = self._path(key)
        if not self.exists(key):
            raise StoreError(f"{self.uri(key)} is not in the artifact store")
        dest = dest.absolute()
        target = dest / key.rsplit("/", 1)[-1] if dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
        try:
            self.fs.get_file(path, str(temp))
            temp.replace(target)
        except OSError as exc:
            raise StoreError(f"cannot fetch {self.uri(key)}: {exc}") from exc
        finally:
            temp.unlink(missing_ok=True)
        return target
