"""The artifact store: keeps built `.bento` archives under stable keys, over fsspec
(docs/ARCHITECTURE.md, "The artifact store").

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

import functools
import hashlib
import json
import re
import tarfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

from releasectl.errors import BadInput, OperationFailed, Refused, ReleasectlError
from releasectl.names import DIGEST_PATTERN, SHA256_HEX_PATTERN

SIDECAR_SUFFIX = ".json"
_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DIGEST = re.compile(DIGEST_PATTERN)
_HEX = re.compile(SHA256_HEX_PATTERN)
WEIGHTS = "weights"
BUNDLES = "bundles"
_CHUNK = 1 << 20
P = ParamSpec("P")
R = TypeVar("R")


class StoredWeights(NamedTuple):
    key: str
    sha256: str  # hex of the archive's bytes
    new: bool  # False: the same bytes were already stored


class StoreError(OperationFailed):
    """The store could not be read or written."""


CREDENTIALS = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
    "or run where a role grants them"
)
# The client's faults that are the user's environment, not a bug: by class name, so that
# the optional s3 extra need not be importable (docs/ARCHITECTURE.md, "The artifact store").
_FAULTS = {
    "NoCredentialsError": ("no credentials", CREDENTIALS),
    "PartialCredentialsError": ("incomplete credentials", CREDENTIALS),
    "NoRegionError": ("no region", "set AWS_DEFAULT_REGION"),
    "EndpointConnectionError": ("cannot reach its endpoint", "endpoint"),
    "ConnectTimeoutError": ("cannot reach its endpoint", "endpoint"),
    "ProxyConnectionError": ("cannot reach its endpoint", "endpoint"),
    "ClientConnectorError": ("cannot reach its endpoint", "endpoint"),
}


def _at_edge(method: Callable[P, R]) -> Callable[P, R]:
    """The store's faults as one line naming the store and what to set (exit 1): missing
    credentials, an endpoint that does not answer, permission denied, a missing bucket.
    Anything else escapes as it is: a bug, exit 70."""

    @functools.wraps(method)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, ArtifactStore)
        try:
            return method(*args, **kwargs)
        except ReleasectlError:
            raise
        except Exception as exc:
            raise store.fault(exc) from exc

    return guarded


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

    @property
    def endpoint(self) -> str | None:
        """The S3-compatible server's URL, when one is set (FSSPEC_S3_ENDPOINT_URL)."""
        found = getattr(self.fs, "endpoint_url", None) or getattr(self.fs, "client_kwargs", {}).get(
            "endpoint_url"
        )
        return str(found) if found else None

    def fault(self, exc: Exception) -> ReleasectlError:
        """What a fault of the store's client means to the user, or the fault itself (a
        bug) when it is none of the known ones."""
        names = {cls.__name__ for cls in type(exc).__mro__}
        where = f"artifact store {self.url}"
        for name, (what, hint) in _FAULTS.items():
            if name in names:
                if hint == "endpoint":
                    at = f" {self.endpoint}" if self.endpoint else " (AWS's default)"
                    what += at
                    hint = "set FSSPEC_S3_ENDPOINT_URL to the S3-compatible server's URL"
                return StoreError(f"{where}: {what}", hint)
        if isinstance(exc, PermissionError):
            s3 = self.url.startswith(("s3://", "s3a://"))
            return StoreError(
                f"{where}: permission denied ({_first_line(exc)})",
                "the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_PROFILE) "
                "must be valid and allowed to read and write it"
                if s3
                else "this user must be allowed to read and write it",
            )
        if isinstance(exc, FileNotFoundError):
            return StoreError(
                f"{where}: not found ({_first_line(exc)})",
                "create the bucket, or point RELEASECTL_STORE or `store:` in "
                ".releasectl/config.yaml at the team's store",
            )
        if isinstance(exc, OSError):
            return StoreError(f"{where}: {_first_line(exc)}")
        raise exc

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

    @_at_edge
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

    @_at_edge
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
        except PermissionError:
            raise  # the edge names the credentials
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
        except PermissionError:
            raise  # the edge names the credentials
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read {path}: {exc}") from exc
        return doc if isinstance(doc, dict) else None

    @_at_edge
    def reach(self) -> None:
        """Ask an object store for its bucket, so that credentials, the endpoint,
        permission and the bucket itself fail here, before anything is read or written.
        A folder needs no asking: it is made on the first write."""
        protocols = self.fs.protocol
        protocols = {protocols} if isinstance(protocols, str) else set(protocols)
        if self._plain or protocols & {"file", "local", "memory"}:
            return
        self.fs.info(self.root.split("/", 1)[0])

    @_at_edge
    def record(self, key: str) -> dict[str, Any] | None:
        """The sidecar written at put time (untrusted: a listing, not a verdict)."""
        return self._sidecar(key)

    @_at_edge
    def delete(self, key: str) -> None:
        """Forget a key (sidecar first, so it stops counting as stored at once).
        Only for undoing a put whose release did not land."""
        path = self._path(key)
        for victim in (path + SIDECAR_SUFFIX, path):
            try:
                self.fs.rm_file(victim)
            except FileNotFoundError:
                pass
            except PermissionError:
                raise  # the edge names the credentials
            except OSError as exc:
                raise StoreError(f"cannot delete {self.uri(key)}: {exc}") from exc

    @_at_edge
    def exists(self, key: str) -> bool:
        return self.fs.exists(self._path(key)) and self._sidecar(key) is not None

    @_at_edge
    def digest(self, key: str) -> str | None:
        """The content digest recorded at put time (untrusted: re-digest after extracting)."""
        sidecar = self._sidecar(key)
        value = sidecar.get("digest") if sidecar else None
        return value if isinstance(value, str) else None

    @_at_edge
    def files(self, key: str) -> dict[str, str] | None:
        """The per-file digests recorded at put time (see bundle.content_files)."""
        sidecar = self._sidecar(key)
        files = sidecar.get("files") if sidecar else None
        if not isinstance(files, dict):
            return None
        return {str(rel): str(entry) for rel, entry in files.items()}

    @_at_edge
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
        except PermissionError:
            raise  # the edge names the credentials
        except OSError as exc:
            raise StoreError(f"cannot fetch {self.uri(key)}: {exc}") from exc
        finally:
            temp.unlink(missing_ok=True)
        return target

    def require_listable(self) -> None:
        """The store answers a listing with the credentials at hand: checked
        before a release trains and builds (and by its dry run), so that a
        store that cannot be written fails in a second, not after the build.
        A folder, or a prefix in a bucket, that does not exist yet is fine (the
        first write makes it); a bucket that does not exist is not."""
        try:
            self.fs.ls(self.root, detail=False)
            return
        except FileNotFoundError:
            if self._plain or self.url.startswith("file://"):
                return
        except Exception as exc:  # any client's failure (botocore's are not OSError), named
            raise self._unlistable(exc) from None
        bucket = self.root.split("/", 1)[0]
        try:
            self.fs.ls(bucket, detail=False)
        except FileNotFoundError:
            raise StoreError(
                f"the artifact store {self.url} does not exist: no bucket {bucket}",
                "create the bucket, or fix `store:` in .releasectl/config.yaml",
            ) from None
        except Exception as exc:  # as above
            raise self._unlistable(exc) from None

    def _unlistable(self, exc: Exception) -> ReleasectlError:
        """A fault the store's edge knows, named as `fault` names it; any other
        failure of the listing, named whole: it is a check, never a crash."""
        try:
            return self.fault(exc)
        except Exception:
            first = str(exc).splitlines()[0] if str(exc) else "no message"
            return StoreError(
                f"cannot list the artifact store {self.url}: {type(exc).__name__}: {first}",
                "check its credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or "
                "AWS_PROFILE) and endpoint (FSSPEC_S3_ENDPOINT_URL)",
            )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
