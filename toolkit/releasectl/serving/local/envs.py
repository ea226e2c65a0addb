"""Each bento's own Python environment (docs/ARCHITECTURE.md, "Deploy targets").

A built bento carries the pins it was released with: `env/python/requirements.txt`
(or `requirements.lock.txt` when bentoml locked them), bentoml's own version among
them. The local target serves a bento with the interpreter of an environment made
from exactly those pins by uv, never with releasectl's own environment, so what
serves is what was released.

Environments are cached under a key over the pins, the local wheels they name and
the Python version: the same pins are installed once. One is made in a temporary
folder and renamed into place only when complete (a crash midway leaves a
temporary folder that is never used and is removed by the next maker), under one
lock file per key, so concurrent deploys of the same pins wait for each other
instead of both writing. Packages come from wherever uv is pointed: UV_INDEX_URL,
UV_FIND_LINKS, UV_OFFLINE, uv's own configuration; UV_NO_INDEX=1, which uv itself
does not read, is passed on as --no-index.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from releasectl.bundles.pins import Pins, pins_of
from releasectl.errors import OperationFailed
from releasectl.progress import Progress, step

ENV_CACHE = "RELEASECTL_ENV_CACHE"  # overrides <RELEASECTL_HOME>/envs
MARKER = "releasectl-env.json"  # written last, inside the folder, before the rename
_UV_TIMEOUT_S = 1800
_SOURCE_HINT = (
    "the bento's pins must be installable from the package source uv uses: "
    "set UV_INDEX_URL, or UV_FIND_LINKS with UV_NO_INDEX=1 for a local wheel folder"
)


@dataclass(frozen=True)
class Env:
    path: Path
    created: bool
    seconds: float

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


def cache_root(home: Path) -> Path:
    env = os.environ.get(ENV_CACHE)
    return Path(env) if env else home / "envs"


def uv_bin() -> str:
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise OperationFailed("uv is not installed", "pip install uv") from None
        return found


def _interpreter(python: str) -> str:
    """This interpreter when the bento was built with the same Python; else the
    version, for uv to find among the installed ones."""
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    return sys.executable if python == ours else python


def uv_error_line(output: str, limit: int = 400) -> str:
    """uv's error (`error: …` then `cause: …` lines, or a boxed diagnostic) as one line."""
    parts = []
    for raw in output.splitlines():
        line = re.sub(r"^[\s×╰─▶│├╭╮╯·]+", "", raw).strip()
        line = re.sub(r"^(error|cause|hint):\s*", "", line)
        if line and not line.startswith("Using Python"):
            parts.append(line.rstrip(":"))
    text = ": ".join(parts) or "uv failed without a message"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _uv(argv: list[str], cwd: Path, what: str) -> None:
    try:
        proc = subprocess.run(
            [uv_bin(), *argv],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_UV_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OperationFailed(f"cannot create the Python environment of {what}: {exc}") from None
    if proc.returncode != 0:
        raise OperationFailed(
            f"cannot create the Python environment of {what}: "
            + uv_error_line(proc.stderr + proc.stdout),
            _SOURCE_HINT,
        )


def _make(pins: Pins, cache: Path, final: Path, what: str) -> None:
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{pins.key}-", dir=cache))
    try:
        env = staging / "env"
        venv = ["venv", "--quiet", "--relocatable", "--no-project"]
        _uv([*venv, "--python", _interpreter(pins.python), str(env)], staging, what)
        # Bytecode compiled once here (as bentoml's own images do, UV_COMPILE_BYTECODE):
        # without it every server start compiles bentoml and the model's libraries again
        # when PYTHONDONTWRITEBYTECODE is set, which doubles a cold start.
        install = ["pip", "install", "--quiet", "--compile-bytecode"]
        install += ["--python", str(env / "bin" / "python")]
        if os.environ.get("UV_NO_INDEX", "").lower() in ("1", "true", "yes"):
            # uv reads UV_INDEX_URL and UV_FIND_LINKS itself but has no variable for
            # --no-index; without it a local wheel folder is searched AND the index.
            install.append("--no-index")
        _uv([*install, "-r", str(pins.requirements), *pins.extra], pins.workdir, what)
        record = {
            "python": pins.python,
            "requirements": pins.requirements.read_text(),
            "extra": list(pins.extra),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (env / MARKER).write_text(json.dumps(record, indent=2) + "\n")
        # Relocatable (uv venv --relocatable): nothing in it names the staging path.
        os.rename(env, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure(bento_dir: Path, cache: Path, *, what: str, progress: Progress | None = None) -> Env:
    """The environment that serves bento_dir: the cached one for its pins, else a new one."""
    started = time.monotonic()
    pins = pins_of(bento_dir)
    final = cache / pins.key
    if (final / MARKER).is_file():
        return Env(final, False, time.monotonic() - started)
    locks = cache / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{pins.key}.lock").open("a") as lock:
        # Held while making it: a second deploy of the same pins waits, then re-uses.
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with step(progress, f"waiting for another releasectl making the environment of {what}"):
                fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / MARKER).is_file():
            return Env(final, False, time.monotonic() - started)
        for stale in cache.glob(f".tmp-{pins.key}-*"):
            shutil.rmtree(stale, ignore_errors=True)  # a maker that died; we hold its lock
        if final.exists():
            shutil.rmtree(final)  # no marker: not made here, never trusted
        with step(progress, f"creating the Python environment of {what} ({pins.count()} pins)"):
            _make(pins, cache, final, what)
    return Env(final, True, time.monotonic() - started)
