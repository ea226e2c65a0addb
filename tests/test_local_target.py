"""The `local` deploy target with real processes: real bentos, real `bentoml serve` servers,
a real agent. Every process a test starts is stopped by PID when the test ends."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from local_target_helpers import (
    Traffic,
    ask_version,
    build_bento,
    free_port,
    kill_all,
    processes_under,
    wait_until,
)
from releasectl.errors import OperationFailed
from releasectl.targets.local import DeployRequest, LocalTarget
from releasectl.targets.local.state import Paths, load_state

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bentos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    home = tmp_path_factory.mktemp("bentoml-build")
    return {
        "1.0.0": build_bento(home, "echo", "1.0.0"),
        "2.0.0": build_bento(home, "echo", "2.0.0"),
        "broken": build_bento(home, "broken", "1.0.0"),
        "hang": build_bento(home, "hang", "1.0.0"),
    }


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


@pytest.fixture
def port() -> int:
    return free_port()


def request(bentos: dict[str, Path], which: str, port: int, **kw: object) -> DeployRequest:
    version = which if which[0].isdigit() else "3.0.0"
    return DeployRequest(
        model="echo",
        version=version,
        digest=f"sha256:{which}",
        commit=f"commit-{which}",
        serial={"1.0.0": 1, "2.0.0": 2}.get(which, 3),
        bento_dir=bentos[which],
        port=port,
        **kw,  # type: ignore[arg-type]
    )


def url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def agent_pid(home: Path) -> int:
    return int(json.loads((home / "local" / "agent.json").read_text())["pid"])


def servers(home: Path) -> set[int]:
    """PIDs of the `bentoml serve` processes of every slot under this home."""
    return {
        p.pid
        for p in processes_under(home / "local")
        if "serve" in p.cmdline() and "/slots/" in " ".join(p.cmdline())
    }


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_cold_switch_then_warm_rollback(
    target: LocalTarget, bentos: dict[str, Path], home: Path, port: int
) -> None:
    first = target.deploy(request(bentos, "1.0.0", port))
    assert (first.switch, first.version, first.endpoint) == ("cold", "1.0.0", url(port))
    assert ask_version(url(port)) == "1.0.0"
    v1_pid = target.status("echo")[0].live.pid  # type: ignore[union-attr]

    with Traffic(url(port)) as traffic:
        traffic.wait_for(5)
        start = time.monotonic()
        second = target.deploy(request(bentos, "2.0.0", port))
        switched = time.monotonic()
        traffic.wait_for(10)
    assert traffic.failures == []
    assert traffic.rate(start, switched) >= 20
    assert traffic.versions_sent_after(switched) == {"2.0.0"}
    assert (second.switch, second.previous_version) == ("cold", "1.0.0")

    [status] = target.status()
    assert status.health == "ready"
    assert status.live is not None and status.live.version == "2.0.0"
    assert status.live.serial == 2 and status.live.commit == "commit-2.0.0"
    assert status.standby is not None and status.standby.version == "1.0.0"
    assert status.standby_until is not None
    assert status.last_deploy is not None and status.last_deploy.ok

    with Traffic(url(port)) as traffic:
        traffic.wait_for(5)
        start = time.monotonic()
        back = target.deploy(request(bentos, "1.0.0", port))
        switched = time.monotonic()
        traffic.wait_for(10)
    assert switched - start < 1.0
    assert back.switch == "warm"
    assert traffic.failures == []
    assert traffic.versions_sent_after(switched) == {"1.0.0"}
    [status] = target.status("echo")
    assert status.live is not None and status.live.pid == v1_pid
    assert status.standby is not None and status.standby.version == "2.0.0"

    # Every path goes through, BentoML's own endpoints included.
    with httpx.Client(trust_env=False) as http:
        assert http.get(f"{url(port)}/readyz").status_code == 200
        metrics = http.get(f"{url(port)}/metrics")
        assert metrics.status_code == 200
        assert "bentoml_service_request_total" in metrics.text
        assert http.get(f"{url(port)}/no-such-path").status_code == 404

    # The agent stays small: it never loads bentoml.
    info = json.loads((home / "local" / "agent.json").read_text())
    ping = httpx.get(
        f"http://127.0.0.1:{info['port']}/v1/ping",
        headers={"x-releasectl-token": info["token"]},
        trust_env=False,
    ).json()
    assert ping["bentoml_loaded"] is False
    assert ping["rss"] < 80 * 2**20


def test_never_ready_version_fails_and_old_keeps_serving(
    target: LocalTarget, bentos: dict[str, Path], home: Path, port: int
) -> None:
    target.deploy(request(bentos, "1.0.0", port))
    v1_servers = servers(home)

    with Traffic(url(port)) as traffic:
        traffic.wait_for(5)
        with pytest.raises(OperationFailed) as failed:
            target.deploy(request(bentos, "broken", port))
        traffic.wait_for(5)
        with pytest.raises(OperationFailed) as timed_out:
            target.deploy(request(bentos, "hang", port, ready_timeout=3))
        traffic.wait_for(5)
    assert "did not become ready: the server exited" in failed.value.message
    assert "RuntimeError: broken bundle: refusing to load" in failed.value.message
    assert "not ready after 3 s" in timed_out.value.message
    assert "last lines of" in timed_out.value.message
    assert traffic.failures == []
    assert {v for _, v in traffic.answers} == {"1.0.0"}

    [status] = target.status("echo")
    assert status.live is not None and status.live.version == "1.0.0"
    assert status.health == "ready" and status.deploying is None
    assert status.last_deploy is not None and not status.last_deploy.ok
    assert servers(home) == v1_servers


def test_agent_killed_mid_deploy_then_deploy_converges(
    target: LocalTarget, bentos: dict[str, Path], home: Path, port: int
) -> None:
    target.deploy(request(bentos, "1.0.0", port))
    v1_pid = target.status("echo")[0].live.pid  # type: ignore[union-attr]
    paths = Paths(home.resolve())

    errors: list[Exception] = []

    def deploy_hang() -> None:
        try:
            target.deploy(request(bentos, "hang", port))
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=deploy_hang)
    thread.start()

    def pending_pid() -> int | None:
        pending = load_state(paths).models["echo"].pending
        return pending.pid if pending is not None and pending.create_time else None

    wait_until(lambda: pending_pid() is not None, 30, "the new slot to start")
    hang_pid = pending_pid()
    assert hang_pid is not None
    os.kill(agent_pid(home), signal.SIGKILL)
    thread.join(timeout=30)
    assert len(errors) == 1 and isinstance(errors[0], OperationFailed)
    assert not gone(v1_pid), "a dead agent must not take servers down"

    [status] = target.status("echo")  # starts a new agent, which reconciles
    assert status.live is not None and status.live.version == "1.0.0"
    assert status.live.pid == v1_pid and status.health == "ready"
    assert status.deploying is None
    assert status.last_deploy is not None and not status.last_deploy.ok
    assert "interrupted" in status.last_deploy.message
    assert gone(hang_pid)
    assert ask_version(url(port)) == "1.0.0"

    result = target.deploy(request(bentos, "2.0.0", port))
    assert result.switch == "cold"
    assert ask_version(url(port)) == "2.0.0"
    [status] = target.status("echo")
    assert status.live is not None and status.standby is not None
    assert servers(home) == {status.live.pid, status.standby.pid}

    target.stop()
    assert not target.running()
    assert processes_under(home) == []


def test_standby_expiry_stops_old_slot(
    target: LocalTarget, bentos: dict[str, Path], home: Path, port: int
) -> None:
    target.deploy(request(bentos, "1.0.0", port))
    v1_pid = target.status("echo")[0].live.pid  # type: ignore[union-attr]
    target.deploy(request(bentos, "2.0.0", port, standby_seconds=1))
    assert target.status("echo")[0].standby is not None

    wait_until(lambda: gone(v1_pid), 30, "the standby server to stop")
    wait_until(lambda: target.status("echo")[0].standby is None, 10, "the standby to be dropped")
    assert ask_version(url(port)) == "2.0.0"
    assert servers(home) == {target.status("echo")[0].live.pid}  # type: ignore[union-attr]


def test_agent_restart_keeps_serving(
    target: LocalTarget, bentos: dict[str, Path], home: Path, port: int
) -> None:
    target.deploy(request(bentos, "1.0.0", port, fast_track=True))
    v1_pid = target.status("echo")[0].live.pid  # type: ignore[union-attr]
    old_agent = psutil.Process(agent_pid(home))

    old_agent.terminate()  # SIGTERM stops the agent only; its servers keep running
    old_agent.wait(timeout=30)
    assert not target.running()
    assert not gone(v1_pid)

    [status] = target.status("echo")
    assert agent_pid(home) != old_agent.pid
    assert status.live is not None and status.live.pid == v1_pid
    assert status.live.fast_track and status.health == "ready"
    assert status.last_deploy is not None and status.last_deploy.ok
    assert ask_version(url(port)) == "1.0.0"

    target.stop()
    assert gone(v1_pid)
    assert processes_under(home) == []
    [status] = target.status("echo")
    assert status.live is None and status.health == "none"
