"""The pins a bento is served with: reads its own requirements file (bentoml's
version among them), its Python version and its local wheels, and makes a key
over all of them (docs/ARCHITECTURE.md, "Deploy targets"). The local target
makes an environment from them (serving/local/envs.py) and an image installs
exactly them (bundles/image.py): one reading of a bento's pins.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import platform
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from releasectl.errors import BadInput

_SCHEME = b"releasectl-env/1\n"  # bumped when what goes into an environment changes


@dataclass(frozen=True)
class Pins:
    """What an environment is made from."""

    requirements: Path  # the bento's requirements file
    extra: tuple[str, ...]  # bentoml==<ours>, only when the bento does not pin bentoml
    workdir: Path  # where relative paths in the file point (as bentoml's Dockerfile does)
    python: str  # "3.11"
    key: str

    def count(self) -> int:
        return len(_requirement_lines(self.requirements.read_text())) + len(self.extra)


def _requirement_lines(text: str) -> list[str]:
    lines = (line.split(" #", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def _pins_bentoml(text: str) -> bool:
    """bentoml by name, or a local bentoml sdist or wheel (`./wheels/bentoml-1.4.0.tar.gz`)."""
    return any(
        re.match(r"^bentoml\s*(\[[^\]]*\])?\s*(==|@|$|[<>=!~;])", line, re.IGNORECASE)
        or re.search(r"(^|/)bentoml-\d", line)
        for line in _requirement_lines(text)
    )


def _python_version(bento_dir: Path) -> str:
    """The Python the bento was built with (major.minor): bento.yaml's image, else
    env/python/version.txt (older bentos), else this interpreter's."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe").load((bento_dir / "bento.yaml").read_text()) or {}
    except (OSError, YAMLError, UnicodeDecodeError):
        doc = {}
    image = doc.get("image") if isinstance(doc, dict) else None
    found = str(image.get("python_version") or "") if isinstance(image, dict) else ""
    if not found:
        with contextlib.suppress(OSError):
            found = (bento_dir / "env" / "python" / "version.txt").read_text().strip()
    match = re.match(r"^(\d+)\.(\d+)", found)
    if match is None:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"{match.group(1)}.{match.group(2)}"


def _local_wheels(bento_dir: Path) -> Iterator[tuple[str, Path]]:
    for folder in ("src/wheels", "env/python/wheels"):
        root = bento_dir / folder
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file():
                    yield f"{folder}/{path.relative_to(root).as_posix()}", path


def pins_of(bento_dir: Path) -> Pins:
    py = bento_dir / "env" / "python"
    requirements = next(
        (p for p in (py / "requirements.lock.txt", py / "requirements.txt") if p.is_file()), None
    )
    if requirements is None:
        raise BadInput(
            f"{bento_dir} has no env/python/requirements.txt: not a bento built by bentoml 1.4",
            "rebuild it: releasectl build MODEL VERSION --rebuild",
        )
    text = requirements.read_text()
    extra = () if _pins_bentoml(text) else (f"bentoml=={importlib.metadata.version('bentoml')}",)
    python = _python_version(bento_dir)
    digest = hashlib.sha256(_SCHEME)
    for part in (python, sys.platform, platform.machine(), requirements.name, text, *extra):
        digest.update(part.encode() + b"\0")
    for rel, path in _local_wheels(bento_dir):
        digest.update(f"{rel}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\0".encode())
    workdir = bento_dir / "src" if (bento_dir / "src").is_dir() else py
    return Pins(requirements, extra, workdir, python, digest.hexdigest()[:32])
