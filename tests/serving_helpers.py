"""A registry with the real iris model, and a client that keeps sending
requests to an endpoint while a test changes what serves it."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bundle_helpers import IRIS_BUNDLE_FILES, IRIS_SRC, SETOSA
from conftest import RELEASECTL, Repo, git, new_repo
from releasectl.loopback import free_port


def iris_registry(root: Path, port: int) -> Repo:
    """A registry holding the real iris example, with its endpoint on `port`."""
    repo = new_repo(root)
    folder = repo.path / "model-releases" / "iris"
    folder.mkdir(parents=True)
    for name in (*IRIS_BUNDLE_FILES, "release.yaml"):
        text = (IRIS_SRC / name).read_text()
        if name == "release.yaml":
            text = text.replace("port: 3000", f"port: {port}")
        (folder / name).write_text(text)
    repo.commit("add iris")
    return repo


def team_registry(root: Path) -> tuple[Repo, Path, Path]:
    """Clone A (`root/a`) with the iris example and one artifact store for the
    team, configured in the repository (`store:`), and a bare remote holding it.
    Returns the clone, the remote and the store folder."""
    a = iris_registry(root / "a", free_port())
    store = root / "team-store"
    a.write(".releasectl/config.yaml", f"store: {store}\n")
    a.commit("one artifact store for the team")
    bare = root / "remote.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    a.git("remote", "add", "origin", str(bare))
    a.git("push", "-q", "-u", "origin", "main")
    return a, bare, store


def set_faults(repo: Repo, text: str | None, message: str) -> None:
    path = repo.path / "model-releases/iris/faults.yaml"
    if text is None and not path.exists():
        return  # already healthy
    if text is None:
        path.unlink()
        repo.git("rm", "-q", "--cached", "model-releases/iris/faults.yaml")
    else:
        path.write_text(text)
    repo.commit(message)


@dataclass
class Load:
    """Sends POST /predict at `rate` per second until stopped; records every
    outcome with the version that answered."""

    url: str
    rate: float = 30.0
    clients: int = 6  # several, so that a slow answer does not slow the whole load
    feedback: bool = False  # also report the true label of every prediction
    results: list[tuple[float, int, str | None]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        for _ in range(self.clients):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            next_at = time.monotonic()
            while not self._stop.is_set():
                try:
                    r = client.post(f"{self.url}/predict", json={"features": SETOSA})
                    body = r.json() if r.status_code == 200 else {}
                    outcome = (time.monotonic(), r.status_code, body.get("version"))
                    if self.feedback and "id" in body:
                        client.post(
                            f"{self.url}/feedback", json={"items": [{"id": body["id"], "label": 0}]}
                        )
                except httpx.HTTPError as exc:
                    outcome = (time.monotonic(), 0, type(exc).__name__)
                with self._lock:
                    self.results.append(outcome)
                next_at += self.clients / self.rate
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def mark(self) -> int:
        return len(self.results)

    def failures(self, since: int = 0) -> list[tuple[float, int, str | None]]:
        return [r for r in self.results[since:] if r[1] != 200]

    def versions(self, since: int = 0) -> list[str | None]:
        return [r[2] for r in self.results[since:] if r[1] == 200]

    def wait_for(self, count: int, deadline: float = 30.0) -> None:
        """Until `count` more responses have come back (a readiness check)."""
        goal = len(self.results) + count
        end = time.monotonic() + deadline
        while len(self.results) < goal:
            assert time.monotonic() < end, "the load generator stalled"
            time.sleep(0.02)

    def rate_seen(self, since: int) -> float:
        times = sorted(r[0] for r in self.results[since:])
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


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


def set_analysis(repo: Repo, analysis: dict, message: str = "iris: analysis settings") -> None:
    from releasectl.manifest.schema import edit

    path = repo.path / "model-releases/iris/release.yaml"
    path.write_text(edit(path.read_text(), "release.yaml", {"analysis": analysis}))
    if repo.git("status", "--porcelain", "--", str(path)):
        repo.commit(message)


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
