"""The local agent is known by what no clock step moves (its boot id and start time in
clock ticks since boot), and an agent start never forgets a live agent
(docs/ARCHITECTURE.md, "Deploy targets"). Real agents and real `bentoml serve` servers;
every process a test starts is stopped by PID when it ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from psutil import _pslinux

from releasectl.errors import OperationFailed
from releasectl.loopback import free_port
from releasectl.serving.local import DeployRequest, LocalTarget, client
from testing.bentos import build_bento
from testing.processes import kill_all, processes_under
from testing.repos import RELEASECTL
from testing.traffic import ask_version

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bentos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    home = tmp_path_factory.mktemp("bentoml-build")
    return {v: build_bento(home, "echo", v) for v in ("1.0.0", "2.0.0")}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "rc"
    monkeypatch.setenv("RELEASECTL_HOME", str(home))
    return home


@pytest.fixture
def target(home: Path) -> Iterator[LocalTarget]:
    target = LocalTarget()
    try:
        yield target
    finally:
        try:
            target.stop()
        finally:
            kill_all(processes_under(home))


def request(bentos: dict[str, Path], version: str, port: int) -> DeployRequest:
    serial = int(version[0])
    return DeployRequest.model_validate(
        {
            "model": "echo",
            "version": version,
            "digest": f"sha256:{version}",
            "commit": f"commit-{version}",
            "serial": serial,
            "bento_dir": bentos[version],
            "port": port,
        }
    )


def agent_pid(home: Path) -> int:
    return int(json.loads((home / "local" / "agent.json").read_text())["pid"])


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RELEASECTL_HOME": str(home)}
    return subprocess.run(
        [RELEASECTL, *args], capture_output=True, text=True, env=env, cwd=home, check=False
    )


def test_a_wall_clock_step_between_deploys_loses_no_agent(
    target: LocalTarget,
    bentos: dict[str, Path],
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """psutil derives a process's start from the boot time in /proc/stat, which the kernel
    computes from the wall clock: an NTP step of 11 s moves it. Stepping that source (in
    this process, as a step does for every process) must not hide the running agent."""
    port = free_port()
    target.deploy(request(bentos, "1.0.0", port))
    agent = agent_pid(home)
    booted = _pslinux.boot_time()
    monkeypatch.setattr(_pslinux, "boot_time", lambda: booted + 11.0)
    assert psutil.Process(agent).create_time() != pytest.approx(booted, abs=1e-9)

    result = target.deploy(request(bentos, "2.0.0", port))
    assert (result.version, result.switch) == ("2.0.0", "cold")
    assert ask_version(f"http://127.0.0.1:{port}") == "2.0.0"
    assert agent_pid(home) == agent and target.agent() is not None

    stopped = target.stop()
    assert stopped.agent == agent
    assert {(role, version) for _, role, version, _ in stopped.servers} == {
        ("live", "2.0.0"),
        ("standby", "1.0.0"),
    }
    assert processes_under(home) == []


def test_a_start_cut_short_forgets_no_live_agent(
    target: LocalTarget,
    bentos: dict[str, Path],
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A start that a client makes while an agent runs (as one that misjudged it dead did),
    and whose new agent is killed as soon as it exists: the running agent keeps its
    record, and the next command reaches it."""
    port = free_port()
    target.deploy(request(bentos, "1.0.0", port))
    agent = agent_pid(home)

    def killed_at_once(*args: Any, **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(*args, **kw)
        proc.kill()
        return proc

    monkeypatch.setattr(
        client, "subprocess", types.SimpleNamespace(Popen=killed_at_once, DEVNULL=-3, STDOUT=-2)
    )
    with pytest.raises(OperationFailed, match="did not start"):
        target._spawn_agent()
    monkeypatch.undo()

    result = target.deploy(request(bentos, "2.0.0", port))
    assert result.version == "2.0.0" and agent_pid(home) == agent
    assert ask_version(f"http://127.0.0.1:{port}") == "2.0.0"


def test_an_agent_killed_before_it_answers_is_replaced_by_the_next_command(
    target: LocalTarget,
    bentos: dict[str, Path],
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The new agent wrote its record and is killed before the starting client asked it
    anything: that command fails (exit 1, saying to run it again), the next one starts a
    new agent and deploys."""
    port = free_port()
    answers = LocalTarget._answers
    killed: list[int] = []

    def killed_first(self: LocalTarget, info: Any) -> bool:
        if not killed:
            os.kill(info.pid, signal.SIGKILL)
            psutil.wait_procs([psutil.Process(info.pid)], timeout=10)
            killed.append(info.pid)
        return answers(self, info)

    monkeypatch.setattr(LocalTarget, "_answers", killed_first)
    with pytest.raises(OperationFailed, match="did not start") as failed:
        target.deploy(request(bentos, "1.0.0", port))
    assert failed.value.code == 1 and "again" in (failed.value.hint or "")
    monkeypatch.undo()

    result = target.deploy(request(bentos, "1.0.0", port))
    assert result.version == "1.0.0" and agent_pid(home) != killed[0]
    assert ask_version(f"http://127.0.0.1:{port}") == "1.0.0"


def test_status_and_stop_find_an_agent_whose_record_is_stale(
    target: LocalTarget, bentos: dict[str, Path], home: Path
) -> None:
    """The record is gone (as an earlier start deleted it) while the agent holds the home's
    lock and serves: `agent status` names it, the next deploy replaces it and adopts its
    server, and `agent stop` stops everything."""
    port = free_port()
    target.deploy(request(bentos, "1.0.0", port))
    agent = agent_pid(home)
    [before] = target.status("echo")
    (home / "local" / "agent.json").unlink()

    status = cli(home, "agent", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) == {"running": True, "pid": agent, "reachable": False}
    assert "stale" in cli(home, "agent", "status").stdout

    result = target.deploy(request(bentos, "2.0.0", port))
    assert result.switch == "cold" and agent_pid(home) != agent
    assert not psutil.pid_exists(agent) or psutil.Process(agent).status() == "zombie"
    [after] = target.status("echo")
    assert after.standby is not None and before.live is not None
    assert after.standby.pid == before.live.pid  # adopted, not restarted

    replaced_by = agent_pid(home)
    (home / "local" / "agent.json").unlink()
    stopped = cli(home, "agent", "stop", "--json")
    assert stopped.returncode == 0, stopped.stderr
    shown = json.loads(stopped.stdout)
    assert shown["agent"] == replaced_by
    assert {s["version"] for s in shown["servers"]} == {"1.0.0", "2.0.0"}
    assert processes_under(home) == []


def test_the_holder_of_a_lock_and_of_a_port_are_found_by_pid(tmp_path: Path) -> None:
    """What `agent status` and `agent stop` look at when no record leads to the agent."""
    import fcntl
    import socket

    from releasectl.serving.local import procs

    lock = tmp_path / "agent.lock"
    with lock.open("a") as held:
        assert procs.lock_holders(lock) == []
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert procs.lock_holders(lock) == [os.getpid()]
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert procs.listeners([port]) == []
        server.listen()
        assert procs.listeners([port]) == [os.getpid()]
    me = procs.identity(os.getpid())
    assert me is not None and me == procs.identity(os.getpid())
    assert me.startswith(Path("/proc/sys/kernel/random/boot_id").read_text().strip() + "/")
    assert procs.identity(2**22 + 1) is None  # no such process
