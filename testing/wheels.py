"""The local wheelhouse the supply-chain tests install from, and a runner
environment that can reach nothing else.

`scripts/test` fills `.venv/wheelhouse` before pytest starts (`scripts/bootstrap
wheelhouse`: a wheel of releasectl built from the working tree and of every
dependency of releasectl[example]); at test time nothing is downloaded: every
install is `--no-index` from that folder, with pip's own configuration files
switched off so that no site-wide index or constraint file takes part."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testing.paths import ROOT

WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
# pip reads no configuration file at all when PIP_CONFIG_FILE is os.devnull.
PIP_ENV = {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def wheelhouse() -> Path:
    """The wheelhouse, or a failure that says how to make it (never a skip)."""
    if not list(WHEELHOUSE.glob("releasectl-*.whl")):
        pytest.fail(
            f"no releasectl wheel in {WHEELHOUSE}: run scripts/bootstrap wheelhouse "
            "(scripts/test does it before pytest)",
            pytrace=False,
        )
    return WHEELHOUSE


def tool_dir(root: Path) -> Path:
    """A folder holding only `python` (this interpreter's base, as actions/setup-python
    would put it on PATH): releasectl is NOT on a PATH built from it."""
    folder = root / "toolcache"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "python"
    if not link.exists():
        link.symlink_to(getattr(sys, "_base_executable", sys.executable))
    return folder


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without anything that would point pip or uv elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    return {**env, **PIP_ENV, **extra}


def new_venv(path: Path) -> Path:
    """A fresh virtual environment from the base interpreter; returns its bin folder."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(path)], check=True, env=clean_env())
    return path / "bin"
