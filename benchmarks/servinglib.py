"""What the serving and analysis benchmarks share: a throwaway world (HOME, git config,
BENTOML_HOME, RELEASECTL_HOME under one temporary folder) with a registry holding the real iris
example, built the way the tests build it (testing/bentos.py), a load generator in its
own process (benchmarks/loadgen.py), and clean-up of every process started."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "benchmarks"
RESULTS = HERE / "results"
LOADGEN = HERE / "loadgen.py"
RELEASECTL_BIN = str(Path(sys.executable).with_name("releasectl"))
# The test-support package (testing/) builds the registry; reuse it rather than copy it.
sys.path.insert(0, str(ROOT))


def isolate(root: Path) -> None:
    """Point HOME, git's global config, BentoML and releasectl into `root` (as tests/conftest.py
    does), so nothing here touches the developer's configuration or state."""
    home = root / "home"
    home.mkdir(parents=True)
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Bench Operator\n\temail = operator@example.test\n"
        "[init]\n\tdefaultBranch = main\n"
    )
    os.environ.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_EDITOR="false",
        BENTOML_HOME=str(home / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        RELEASECTL_HOME=str(root / "state"),
    )
    for var in ("SSH_AUTH_SOCK", "GNUPGHOME", "RELEASECTL_ALLOWED_SIGNERS"):
        os.environ.pop(var, None)


@dataclass
class World:
    root: Path
    port: int
    repo: Any  # conftest.Repo
    children: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return Path(os.environ["RELEASECTL_HOME"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def status(self) -> dict[str, Any]:
        out = json.loads(self.repo.ok("status", "iris", "--json"))
        return dict(out[0])

    def agent_pid(self) -> int:
        return int(json.loads((self.home / "local" / "agent.json").read_text())["pid"])

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.home / "local" / "state.json").read_text()))

    def edit_manifest(self, key: str, value: Any) -> None:
        from releasectl.manifest.edits import edit

        path = self.repo.path / "model-releases/iris/release.yaml"
        path.write_text(edit(path.read_text(), "release.yaml", {key: value}))

    def release(self, version: str, note: str) -> None:
        """A new release of iris (a new bento: `release` builds, stores and pins it)."""
        self.repo.write("model-releases/iris/NOTES.md", f"{version}: {note}\n")
        self.repo.commit(f"iris: {version}")
        self.repo.ok("release", "iris", version)

    def spawn(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        self.children.append(proc)
        return proc


@contextlib.contextmanager
def world(name: str, keep: bool = False) -> Iterator[World]:
    """A registry with the real iris model whose endpoint is on a free port. On the way out:
    `releasectl agent stop`, then every process started here is killed by PID."""
    root = Path(tempfile.mkdtemp(prefix=f"releasectl-{name}-"))
    isolate(root)
    from releasectl.loopback import free_port
    from testing.bentos import iris_registry
    from testing.processes import bentoml_processes

    port = free_port()
    w = World(root, port, None)
    try:
        w.repo = iris_registry(root, port)
        yield w
    finally:
        if w.repo is not None:
            w.repo.cli("agent", "stop")
        for proc in w.children:
            stop(proc)
        leftovers = bentoml_processes(w.home)
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(leftovers, timeout=10)
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def stop(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a child started in its own session: its process group, SIGTERM then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # Workers of a server may outlive their parent: the group again, by its id.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def loadgen(
    w: World,
    url: str,
    *,
    connections: int,
    duration: float,
    rate: float | None = None,
    trace: Path | None = None,
) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(LOADGEN), url, "--connections", str(connections)]
    cmd += ["--duration", str(duration)]
    if rate:
        cmd += ["--rate", str(rate)]
    if trace:
        cmd += ["--trace", str(trace)]
    return w.spawn(cmd, stdout=subprocess.PIPE, text=True)


def finish_loadgen(proc: subprocess.Popen[str], *, interrupt: bool = False) -> dict[str, Any]:
    if interrupt and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    return dict(json.loads(out))


def read_trace(path: Path) -> list[tuple[float, float, int, str]]:
    """(sent, answered, status, version) per request, monotonic seconds."""
    rows = []
    for line in path.read_text().splitlines():
        sent, answered, status, version = line.split(" ", 3)
        rows.append((float(sent), float(answered), int(status), version))
    return sorted(rows, key=lambda r: r[1])


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def finish(name: str, doc: dict[str, Any], started: float, report: Any) -> int:
    """Close a benchmark run: load and wall time, the JSON result, the report."""
    doc["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    doc["wall_seconds"] = round(time.monotonic() - started, 1)
    path = write_result(name, doc)
    print(report(doc))
    print(f"\n(written to {path})")
    return 0


def write_result(name: str, doc: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def table(rows: list[tuple[str, str, str, bool | None]]) -> str:
    lines = ["| measure | measured | target | pass |", "|---|---|---|---|"]
    for what, measured, target, ok in rows:
        verdict = "—" if ok is None else ("pass" if ok else "**FAIL**")
        lines.append(f"| {what} | {measured} | {target} | {verdict} |")
    return "\n".join(lines)


def wait_until(check: Any, timeout: float, what: str, poll: float = 0.1) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def watch_lines(w: World, model: str) -> tuple[int, list[tuple[float, dict[str, Any]]], str, float]:
    """`releasectl watch MODEL --json` in the registry: its exit, every stdout line with its
    arrival time, its stderr, and when it started."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    proc = w.spawn(
        [RELEASECTL_BIN, "watch", model, "--json"],
        cwd=w.repo.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[tuple[float, dict[str, Any]]] = []
    err: list[str] = []
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None and stderr is not None
    reader = threading.Thread(target=lambda: err.append(stderr.read()), daemon=True)
    reader.start()
    for line in stdout:
        if line.strip():
            lines.append((time.monotonic(), json.loads(line)))
    code = proc.wait(timeout=300)
    reader.join(timeout=10)
    return code, lines, "".join(err), t0
