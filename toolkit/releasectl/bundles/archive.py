"""Bento archives: exports a built bento to one `.bento` file (what the artifact
store keeps) and extracts one safely to a folder `bentoml serve` can serve
(docs/ARCHITECTURE.md, "The artifact store").
"""

from __future__ import annotations

import lzma
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from releasectl.bundles.bento import Bento, BundleError, archive_path, member_path, run_bentoml
from releasectl.errors import BadInput, Refused


def export(bento: Bento, dest: Path, bentoml_home: Path) -> Path:
    """Write the bento with its models as a `.bento` archive; return its absolute path.

    dest is a folder (the archive is named `<name>-<version>.bento` inside it)
    or a file path ending in `.bento`.
    """
    target = archive_path(bento.name, bento.version, dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    # Absolute path: bentoml 1.4 resolves relative export paths against `/`.
    run_bentoml(["export", bento.tag, str(target)], bentoml_home=bentoml_home)
    if not target.is_file():
        raise BundleError(f"bentoml export did not write {target}")
    return target


def _safe_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    for member in tar.getmembers():
        if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
            raise Refused(f"unsafe path in bento archive: {member.name!r}")
        if not (member.isfile() or member.isdir()):
            # bentoml writes only files and folders; a link could point anywhere.
            raise Refused(f"unsupported member in bento archive: {member.name!r}")
        if member_path(member.name) is not None:
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
            # tarfile stops quietly at the first unreadable header after the
            # first member, so a damaged stream can look like a shorter archive.
            # Reading the rest runs the compressor's own integrity checks
            # (xz's CRC, gzip's CRC and length) over every byte.
            while tar.fileobj is not None and tar.fileobj.read(1 << 20):
                pass
        if not (staging / "bento.yaml").is_file():
            raise BundleError(f"{archive} is not a bento archive (no bento.yaml at its root)")
        staging.chmod(0o755)
        if dest_dir.exists():
            dest_dir.rmdir()
        staging.rename(dest_dir)
    except (tarfile.TarError, lzma.LZMAError, zlib.error, EOFError) as exc:
        raise BundleError(f"cannot read bento archive {archive}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest_dir
