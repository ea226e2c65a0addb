"""A step's processes: each step runs in its own session and whatever it leaves
behind is killed, by process group, when the step ends."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process left in the group? Orphans are reaped by
    whatever PID 1 is, sometimes slowly, so `killpg(pgid, 0)` is not enough."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            return True
    return False


def _kill_group(pgid: int) -> None:
    """Stop everything still running in a step's session: TERM, then KILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.02)


def spawn(argv: list[str], cwd: Path, env: dict[str, str], timeout: float, log: Path) -> int | None:
    """Run in its own session with output to a file (a leftover background process
    holding a pipe open must not hang the step); None on timeout."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc: int | None = proc.wait(timeout=max(timeout, 0.001))
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            _kill_group(proc.pid)
            proc.wait()
    return rc
