"""The detached watcher's process control: finds it again and stops it through
its pid file, `watch/<model>.json` under the state home (docs/ARCHITECTURE.md,
"Unattended rollback"). It is started by `releasectl.pipeline.detached_watch`,
in its own session after a deploy, so a bad version is rolled back with nobody
at a terminal."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from releasectl.config import home
from releasectl.serving import outcomes


def watch_file(model: str) -> Path:
    return home() / "watch" / f"{model}.json"


def stop_detached(model: str | None = None) -> list[dict[str, Any]]:
    """Stop detached watchers (one model's, or all); returns those that ran.
    A watcher stopped on purpose leaves no crash behind for `status`."""
    folder = home() / "watch"
    stopped: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if "." in path.stem or (model is not None and path.stem != model):
            continue  # <model>.outcome.json, <model>.exit.json
        info = json.loads(path.read_text())
        if _terminate(int(info["pid"]), "watch"):
            stopped.append(info)
        path.unlink(missing_ok=True)
    return stopped


def _terminate(pid: int, needle: str) -> bool:
    """Stop the process if it is still ours; True if it was running."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if needle not in " ".join(proc.cmdline()):
            return False  # the pid was reused by something else
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    except psutil.TimeoutExpired:
        os.kill(pid, signal.SIGKILL)
    except psutil.Error:
        return False
    return True


def detached(model: str) -> dict[str, Any] | None:
    """The model's detached watcher, for `status`: running (`alive`), or ended
    with its exit code, or gone without one (killed); None if there never was one."""
    import psutil

    path = watch_file(model)
    if not path.exists():
        return None
    info: dict[str, Any] = json.loads(path.read_text())
    try:
        alive = "watch" in " ".join(psutil.Process(int(info["pid"])).cmdline())
    except psutil.Error:
        alive = False
    info["alive"] = alive
    ended = outcomes.load_exit(model)
    info["exit_code"] = ended["code"] if ended and ended.get("pid") == info["pid"] else None
    return info


def forget_ended(model: str) -> None:
    """A new state went live: the record of a watcher that has ended (its exit code
    or its death) is history, like its outcome. A watcher still running is left
    alone: it may be the one deploying the revert it wrote."""
    info = detached(model)
    if info is not None and not info["alive"]:
        watch_file(model).unlink(missing_ok=True)
        outcomes.exit_path(model).unlink(missing_ok=True)
