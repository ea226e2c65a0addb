"""Helpers for tests that build and serve real bentos (no mocks)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from ruamel.yaml import YAML

from releasectl.bundles import bento as bundle
from releasectl.loopback import free_port

REPO = Path(__file__).resolve().parents[1]
IRIS_SRC = REPO / "model-releases" / "iris"
IRIS_BUNDLE_FILES = ("service.py", "bentofile.yaml", "train.py")
SETOSA = [5.1, 3.5, 1.4, 0.2]
VIRGINICA = [6.7, 3.0, 5.2, 2.3]
READY_DEADLINE_S = 90.0
STOP_GRACE_S = 10.0


def copy_iris_sources(dest: Path, faults: Mapping[str, Any] | None = None) -> Path:
    """The iris bundle sources in a fresh folder, optionally with a faults.yaml."""
    dest.mkdir(parents=True)
    for name in IRIS_BUNDLE_FILES:
        shutil.copy2(IRIS_SRC / name, dest / name)
    if faults is not None:
        with (dest / "faults.yaml").open("w") as handle:
            YAML(typ="safe").dump(dict(faults), handle)
    return dest


def build_iris(
    src: Path, home: Path, version: str, labels: Mapping[str, str] | None = None
) -> bundle.Bento:
    bundle.run_step(src, ["python", "train.py"], home)
    return bundle.build(
        src,
        name="iris",
        version=version,
        labels=dict(labels or {"model": "iris"}),
        bentoml_home=home,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder with its bytes, to prove a build wrote nothing there."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"bentoml serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"bentoml serve not ready in {READY_DEADLINE_S}s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM our child, then SIGKILL its own process group if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        # The child leads its own session (pgid == its pid), so the group is it and its workers.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_GRACE_S)


@contextmanager
def serving(bento_dir: Path, home: Path) -> Iterator[str]:
    """`bentoml serve bento_dir` with its own BENTOML_HOME; yields the base URL."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            bundle.serve_command(bento_dir, host="127.0.0.1", port=port),
            env=bundle.bentoml_env(home),
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(proc, url, log)
        yield url
    finally:
        _stop(proc)
