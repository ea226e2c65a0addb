"""Real bentos, no mocks: the iris example's sources, built and served by real bentoml;
the fixture bentos under tests/fixtures; and registries that hold the iris model."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from ruamel.yaml import YAML

from releasectl.bundles.bento import Bento, run_step
from releasectl.bundles.bento import build as bentoml_build
from releasectl.loopback import free_port
from releasectl.serving.local.procs import spawn_server
from testing.paths import FIXTURES, ROOT
from testing.repos import Repo, git, new_repo

IRIS_SRC = ROOT / "model-releases" / "iris"
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
) -> Bento:
    run_step(src, ["python", "train.py"], home)
    return bentoml_build(
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
def serving(bento_dir: Path, slot: Path) -> Iterator[str]:
    """`bentoml serve bento_dir`, started as the local target starts it (in the folder
    `slot`, with a BENTOML_HOME of its own); yields the base URL."""
    slot.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = spawn_server(slot, bento_dir, port, Path(sys.executable))
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(proc, url, slot / "server.log")
        yield url
    finally:
        _stop(proc)


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


def set_analysis(
    repo: Repo, analysis: dict[str, Any], message: str = "iris: analysis settings"
) -> None:
    from releasectl.manifest.edits import edit

    path = repo.path / "model-releases/iris/release.yaml"
    path.write_text(edit(path.read_text(), "release.yaml", {"analysis": analysis}))
    if repo.git("status", "--porcelain", "--", str(path)):
        repo.commit(message)


# Watch settings that judge within seconds: a 2 s interval, a 6 s bake, one failed
# interval fails the release.
FAST_ANALYSIS: dict[str, Any] = {
    "interval": "2s",
    "bake": "6s",
    "min_requests": 5,
    "failure_limit": 1,
    "inconclusive_limit": 2,
    "consecutive_error_limit": 2,
    "metrics": {"error_rate": {"max": 0.05}, "latency_ms": {"p95": 100}},
}
