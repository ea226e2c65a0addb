"""Helpers for tests/test_local_target.py: build the fixture bentos, drive traffic, find and
kill processes by PID."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

FIXTURES = Path(__file__).parent / "fixtures"


def build_bento(bentoml_home: Path, source: str, version: str) -> Path:
    env = dict(os.environ, BENTOML_HOME=str(bentoml_home), BENTOML_DO_NOT_TRACK="true")
    subprocess.run(
        [sys.executable, "-m", "bentoml", "build", str(FIXTURES / source), "--version", version],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return bentoml_home / "bentos" / source / version


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


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def ask_version(url: str, client: httpx.Client | None = None) -> str:
    http = client or httpx.Client(trust_env=False)
    r = http.post(f"{url}/version", json={}, timeout=10)
    r.raise_for_status()
    return str(r.json()["version"])


@dataclass
class Traffic:
    """A thread that calls the endpoint every `interval` seconds and records every answer."""

    url: str
    interval: float = 0.02
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=10) as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    self.answers.append((sent, ask_version(self.url, http)))
                except Exception as exc:
                    self.failures.append(repr(exc))
                self._stop.wait(self.interval)

    def versions_sent_after(self, t: float) -> set[str]:
        return {v for sent, v in self.answers if sent > t}

    def rate(self, start: float, end: float) -> float:
        return sum(1 for sent, _ in self.answers if start <= sent <= end) / (end - start)

    def wait_for(self, count: int, timeout: float = 30) -> None:
        """Wait until `count` more answers have arrived (traffic really flows)."""
        target = len(self.answers) + count
        wait_until(lambda: len(self.answers) >= target, timeout, f"{count} answers")


@dataclass
class Steps:
    """A progress reporter (releasectl.progress.Progress) that remembers the steps."""

    began: list[str] = field(default_factory=list)
    ended: list[tuple[str, bool]] = field(default_factory=list)

    def begin(self, step: str) -> None:
        self.began.append(step)

    def end(self, step: str, seconds: float, ok: bool) -> None:
        self.ended.append((step, ok))
