"""Processes the tests start, found and stopped by PID: slot servers and agents under a
state home, `bentoml serve` children; and polling with a deadline instead of sleeping."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from testing.repos import RELEASECTL


def processes_under(path: Path) -> list[psutil.Process]:
    """Every live process whose command line mentions `path` (agents and slot servers)."""
    marker = str(path)
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any(marker in arg for arg in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def kill_all(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a child this test started, by its PID: SIGTERM, then SIGKILL after `grace`."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def bentoml_processes(home: Path) -> list[psutil.Process]:
    """`bentoml serve` processes started for slots under this RELEASECTL_HOME."""
    found = []
    needle = str(home)
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.info.get("environ") or {}
        except psutil.Error:
            continue
        if "bentoml" in cmd and (needle in cmd or needle in env.get("BENTOML_HOME", "")):
            found.append(proc)
    return found


def env_home() -> Path:
    return Path(os.environ["RELEASECTL_HOME"])


@contextmanager
def state_home(home: Path) -> Iterator[Path]:
    """RELEASECTL_HOME pointed at `home` for the block; on the way out the agent
    and every server it started are stopped, and by PID whatever stop missed."""
    saved = os.environ.get("RELEASECTL_HOME")
    os.environ["RELEASECTL_HOME"] = str(home)
    try:
        yield home
    finally:
        subprocess.run([RELEASECTL, "agent", "stop"], capture_output=True, check=False)
        leftover = bentoml_processes(home)
        for proc in leftover:
            proc.kill()
        if saved is None:
            os.environ.pop("RELEASECTL_HOME", None)
        else:
            os.environ["RELEASECTL_HOME"] = saved
        assert not leftover, f"bentoml processes left running: {[p.pid for p in leftover]}"
