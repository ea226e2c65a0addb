"""The `local` deploy target with real processes: real bentos, real `bentoml serve` servers,
a real agent. Every process a test starts is stopped by PID when the test ends."""

from __future__ import annotations

import importlib.metadata
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import httpx
import psutil
import pytest

from releasectl.errors import OperationFailed
from releasectl.loopback import free_port
from releasectl.serving.local import DeployRequest, LocalTarget, envs
from releasectl.serving.local.state import Paths, load_state
from testing.bentos import build_bento
from testing.processes import kill_all, processes_under, wait_until
from testing.traffic import Traffic, ask_version

pytestmark = pytest.mark.slow


@dataclass
class Steps:
    """A progress reporter (releasectl.progress.Progress) that remembers the steps."""

    began: list[str] = field(default_factory=list)
    ended: list[tuple[str, bool]] = field(default_factory=list)

    def begin(self, step: str) -> None:
        self.began.append(step)

    def end(self, step: str, seconds: float, ok: bool) -> None:
        self.ended.append((step, ok))


@pytest.fixture(scope="module")
def bentos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    home = tmp_path_factory.mktemp("bentoml-build")
    return {
        "1.0.0": build_bento(home, "echo", "1.0.0"),
        "2.0.0": build_bento(home, "echo", "2.0.0"),
        "broken": build_bento(home, "broken", "1.0.0"),
        "hang": build_bento(home, "hang", "1.0.0"),
    }


@pytest.fixture(scope="module")
def more_bentos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Built only for the tests that use them: a service that cannot start, two versions
    pinning an older semver than ours, and pins that cannot be installed."""
    home = tmp_path_factory.mktemp("bentoml-build-more")
    return {
        "crash": build_bento(home, "crash", "1.0.0"),
        "pinned-1": build_bento(home, "pinned", "1.0.0"),
        "pinned-2": build_bento(home, "pinned", "2.0.0"),
        "badpin": build_bento(home, "badpin", "1.0.0"),
        "portrace": build_bento(home, "portrace", "1.0.0"),
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
    """A request for bento `which`; `kw` adds or overrides fields (model, version…)."""
    fields: dict[str, object] = {
        "model": "echo",
        "version": which if which[0].isdigit() else "3.0.0",
        "digest": f"sha256:{which}",
        "commit": f"commit-{which}",
        "serial": {"1.0.0": 1, "2.0.0": 2}.get(which, 3),
        "bento_dir": bentos[which],
        "port": port,
    }
    return DeployRequest.model_validate({**fields, **kw})


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


def gone(pid: int | None) -> bool:
    assert pid is not None
    try:
        return cast(bool, psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
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
        warm = time.monotonic()
        traffic.wait_for(10)
        start = time.monotonic()
        second = target.deploy(request(bentos, "2.0.0", port))
        switched = time.monotonic()
        traffic.wait_for(10)
    assert traffic.failures == []
    # The new server's cold start does not hold the live one's traffic: it keeps flowing
    # at a good part of the rate it had before (a rate measured on this machine, now).
    assert traffic.rate(start, switched) >= traffic.rate(warm, start) / 4
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


def test_versions_that_cannot_serve_fail_and_the_old_keeps_serving(
    target: LocalTarget,
    bentos: dict[str, Path],
    more_bentos: dict[str, Path],
    home: Path,
    port: int,
) -> None:
    target.deploy(request(bentos, "1.0.0", port))
    v1_servers = servers(home)
    crash = request(more_bentos, "crash", port, version="4.0.0", serial=4)
    badpin = crash.model_copy(
        update={"version": "5.0.0", "digest": "sha256:badpin", "bento_dir": more_bentos["badpin"]}
    )

    with Traffic(url(port)) as traffic:
        traffic.wait_for(5)
        # The service fails to import: `bentoml serve` itself exits.
        with pytest.raises(OperationFailed) as failed:
            target.deploy(request(bentos, "broken", port))
        traffic.wait_for(5)
        # The service imports but its constructor raises: bentoml keeps restarting the
        # worker and the server never exits, yet the deploy fails at once, long before
        # its 120 s ready timeout.
        with pytest.raises(OperationFailed) as crashed:
            target.deploy(crash)
        returned = time.time()
        traffic.wait_for(5)
        with pytest.raises(OperationFailed) as timed_out:
            target.deploy(request(bentos, "hang", port, ready_timeout=3))
        traffic.wait_for(5)
        # Pins that cannot be installed: no environment, so nothing starts.
        with pytest.raises(OperationFailed) as unpinned:
            target.deploy(badpin)
        traffic.wait_for(5)
    assert traffic.failures == []
    assert {v for _, v in traffic.answers} == {"1.0.0"}

    assert "did not become ready: the server exited" in failed.value.message
    assert "RuntimeError: broken bundle: refusing to load" in failed.value.message

    summary, *log = crashed.value.message.splitlines()
    assert summary.startswith("echo 4.0.0 did not become ready: its worker process (pid ")
    assert "(RuntimeError: crash bundle: cannot start); 1.0.0 stays live" in summary
    assert log[0].startswith("--- last lines of ") and len(log) <= 21
    assert any(line.startswith("RuntimeError: crash bundle: cannot start") for line in log)
    [mark] = (home / "local" / "echo" / "slots").glob("*/crashed-at")
    first_crash = float(mark.read_text().split()[0])
    # The requirement is a latency bound: the deploy fails within 5 s of the crash.
    assert returned - first_crash < 5.0, f"failed {returned - first_crash:.1f} s after the crash"

    assert "not ready after 3 s" in timed_out.value.message
    assert "last lines of" in timed_out.value.message

    assert unpinned.value.code == 1 and "\n" not in unpinned.value.line()
    assert unpinned.value.message.startswith("cannot create the Python environment of echo 5.0.0: ")
    assert "semver==99.0.0" in unpinned.value.message

    [status] = target.status("echo")
    assert status.live is not None and status.live.version == "1.0.0"
    assert status.health == "ready" and status.deploying is None
    assert status.last_deploy is not None and not status.last_deploy.ok
    assert servers(home) == v1_servers


def test_a_server_that_loses_a_port_race_at_start_is_started_again_on_new_ports(
    target: LocalTarget, more_bentos: dict[str, Path], home: Path, port: int
) -> None:
    """Free ports are picked, then bound by `bentoml serve` (its own and its process
    manager's); another process may bind one in between. Such a start is tried again
    on new ports, a bounded number of times; any other start-up failure is final."""
    bento = more_bentos["portrace"]
    starts, lose = bento.parent / "starts", bento.parent / "ports-to-lose"
    race = request(more_bentos, "portrace", port, model="race", version="1.0.0", serial=1)
    lose.write_text("1")
    result = target.deploy(race)
    # The lost start imported the service once; the one that serves, more than once
    # (bentoml's main process and its worker both do).
    assert result.version == "1.0.0" and int(starts.read_text()) > 2
    assert httpx.post(f"{url(port)}/version", json={}).json() == {"version": "portrace"}

    # A server that keeps losing: given up after three starts, the live one stays.
    starts.unlink()
    lose.write_text("9")
    again = race.model_copy(update={"version": "2.0.0", "serial": 2, "digest": "sha256:again"})
    with pytest.raises(OperationFailed) as failed:
        target.deploy(again)
    assert starts.read_text() == "3"  # three starts, each dead at its first import
    assert "race 2.0.0 did not become ready" in failed.value.message
    assert "Address already in use" in failed.value.message
    [status] = target.status("race")
    assert status.live is not None and status.live.version == "1.0.0"
    assert len(servers(home)) == 1


@pytest.fixture
def own_env_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty environment cache for this test only (list it before `target`)."""
    cache = tmp_path / "envs"
    monkeypatch.setenv(envs.ENV_CACHE, str(cache))
    return cache


def test_a_bento_is_served_from_its_own_pins_and_the_environment_is_reused(
    own_env_cache: Path, target: LocalTarget, more_bentos: dict[str, Path], port: int
) -> None:
    ours = importlib.metadata.version("semver")
    assert ours != "3.0.2", "the test needs releasectl's semver to differ from the bento's pin"

    def pinned(n: int) -> DeployRequest:
        bento = more_bentos[f"pinned-{n}"]
        # Flat release fields, which CarriesRelease nests before validation.
        return DeployRequest(  # type: ignore[call-arg]
            model="pinned",
            version=f"{n}.0.0",
            digest=f"sha256:pinned-{n}",
            commit=f"commit-{n}",
            serial=n,
            bento_dir=bento,
            port=port,
        )

    made = Steps()
    target.deploy(pinned(1), made)
    assert made.began == [
        "creating the Python environment of pinned 1.0.0 (2 pins)",
        "waiting for pinned 1.0.0 to go live",
    ]
    with httpx.Client(trust_env=False) as http:
        answer = http.post(f"{url(port)}/version", json={}, timeout=10).json()
    assert answer["version"] == "1.0.0" and answer["semver"] == "3.0.2"
    env = Path(answer["prefix"])
    assert env.parent == own_env_cache
    before = (env.stat().st_ino, (env / envs.MARKER).stat().st_mtime_ns)

    reused = Steps()
    target.deploy(pinned(2), reused)
    assert reused.began == ["waiting for pinned 2.0.0 to go live"]  # no environment made
    with httpx.Client(trust_env=False) as http:
        answer = http.post(f"{url(port)}/version", json={}, timeout=10).json()
    assert answer == {"version": "2.0.0", "semver": "3.0.2", "prefix": str(env)}
    assert (env.stat().st_ino, (env / envs.MARKER).stat().st_mtime_ns) == before
    assert [p.name for p in own_env_cache.iterdir() if not p.name.startswith(".")] == [env.name]
    # Re-use is a lookup (the creation above took seconds): a generous bound.
    again = envs.ensure(more_bentos["pinned-2"], own_env_cache, what="pinned 2.0.0")
    assert again.path == env and not again.created and again.seconds < 2.0


MAKE_ENV = (
    "import sys; from pathlib import Path; from releasectl.serving.local import envs; "
    "e = envs.ensure(Path(sys.argv[1]), Path(sys.argv[2]), what='echo'); print(e.created, e.path)"
)


def test_a_killed_maker_leaves_nothing_used_and_concurrent_makers_share_one(
    bentos: dict[str, Path], tmp_path: Path
) -> None:
    cache = tmp_path / "envs"
    argv = [sys.executable, "-c", MAKE_ENV, str(bentos["1.0.0"]), str(cache)]

    def maker() -> subprocess.Popen[str]:
        # Its own process group: the maker and the uv it runs are killed together.
        return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)

    victim = maker()
    try:
        installing = lambda: any(cache.glob(".tmp-*/env/bin/python"))  # noqa: E731
        wait_until(installing, 60, "the first maker to start installing")
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.communicate()
    assert [p for p in cache.iterdir() if not p.name.startswith(".")] == []

    makers = [maker(), maker()]
    outputs = [m.communicate(timeout=600)[0].split() for m in makers]
    assert [m.returncode for m in makers] == [0, 0]
    assert sorted(created for created, _ in outputs) == ["False", "True"]
    [env] = {Path(path) for _, path in outputs}
    assert (env / envs.MARKER).is_file()
    assert list(cache.glob(".tmp-*")) == []  # the killed maker's leftovers are gone
    check = "import sys, bentoml; print(sys.prefix)"
    proc = subprocess.run([env / "bin" / "python", "-c", check], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(env)


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
        return pending.pid if pending is not None and pending.identity else None

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
