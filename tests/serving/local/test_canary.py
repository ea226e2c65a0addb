"""The local canary with real processes (docs/ARCHITECTURE.md, "Deployment strategies"):
one agent, real `bentoml serve` servers of the echo bento (1.0.0 stable, 2.0.0 the
candidate) on 127.0.0.1, one canary deployed once for the module and driven through
its steps by the tests in order. Every process is stopped by PID at the end."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from releasectl.analysis.endpoint import CANDIDATE, MIRROR, STABLE
from releasectl.errors import OperationFailed, Refused
from releasectl.loopback import free_port
from releasectl.serving.local import DeployRequest, LocalTarget
from releasectl.serving.local.client import AgentStepper
from releasectl.serving.local.models import ModelStatus, TrafficInfo, TrafficPlan, TrafficRequest
from releasectl.serving.local.state import Paths, load_state
from testing.bentos import build_bento
from testing.processes import kill_all, processes_under, wait_until

pytestmark = pytest.mark.slow

PLAN = TrafficPlan.model_validate(
    {
        "steps": [
            {"kind": "mirror", "percent": 100, "seconds": 60},
            {"kind": "weight", "percent": 30, "seconds": 60},
            {"kind": "weight", "percent": 60, "seconds": 60},
        ],
        "mirror_routes": ["/version"],
        "client_key": "X-Client-Id",
    }
)
CLIENTS = [f"user-{n}" for n in range(40)]


@dataclass
class Canary:
    target: LocalTarget
    home: Path
    url: str
    bentos: dict[str, Path]
    port: int
    first: TrafficInfo | None
    sides: dict[str, str]  # each client's version at the weight step, before the restart


def deploy_request(bentos: dict[str, Path], version: str, port: int, **kw: object) -> DeployRequest:
    fields: dict[str, object] = {
        "model": "echo",
        "version": version,
        "digest": f"sha256:{version}",
        "commit": f"commit-{version}",
        "serial": int(version[0]),
        "bento_dir": bentos[version],
        "port": port,
        "standby_seconds": 300,
    }
    return DeployRequest.model_validate({**fields, **kw})


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canary]:
    built = tmp_path_factory.mktemp("bentoml-build-canary")
    bentos = {v: build_bento(built, "echo", v) for v in ("1.0.0", "2.0.0")}
    bentos["3.0.0"] = build_bento(built, "broken", "3.0.0")  # never becomes ready
    home = tmp_path_factory.mktemp("canary") / "rc"
    target, port = LocalTarget(home), free_port()
    try:
        target.deploy(deploy_request(bentos, "1.0.0", port))
        result = target.deploy(deploy_request(bentos, "2.0.0", port, traffic=PLAN))
        url = f"http://127.0.0.1:{port}"
        yield Canary(target, home, url, bentos, port, result.traffic, {})
    finally:
        try:
            target.stop()
        finally:
            kill_all(processes_under(home))


def answers(url: str, n: int, client: str | None = None) -> list[str]:
    """The versions that answered `n` user requests (with `client` as X-Client-Id)."""
    headers = {"X-Client-Id": client} if client is not None else {}
    with httpx.Client(trust_env=False, timeout=10) as http:
        out = []
        for _ in range(n):
            r = http.post(f"{url}/version", json={}, headers=headers)
            assert r.status_code == 200, r.text
            out.append(r.json()["version"])
    return out


def status(canary: Canary) -> ModelStatus:
    (found,) = canary.target.status("echo")
    return found


def figures(found: ModelStatus) -> dict[tuple[str, str], int]:
    assert found.traffic is not None
    return {(f.version, f.role): f.requests for f in found.traffic.roles}


def change(canary: Canary, action: str, from_step: int | None = None) -> TrafficInfo:
    request = TrafficRequest.model_validate(
        {"model": "echo", "version": "2.0.0", "action": action, "from_step": from_step}
    )
    return canary.target.traffic(request)


def test_a_canary_deploy_keeps_stable_serving_and_mirrors_to_the_candidate(
    canary: Canary,
) -> None:
    first = canary.first
    assert first is not None
    assert (first.stable, first.candidate, first.step, first.state) == (
        "1.0.0",
        "2.0.0",
        0,
        "stepping",
    )
    assert (first.candidate_weight, first.mirror) == (0, 100)
    found = status(canary)
    assert found.live is not None and found.standby is not None
    # The candidate is the live slot (the one judged); stable serves beside it, no expiry.
    assert (found.live.version, found.standby.version, found.standby_until) == (
        "2.0.0",
        "1.0.0",
        None,
    )
    # Every user answer comes from stable; the candidate gets the copies.
    assert set(answers(canary.url, 60)) == {"1.0.0"}
    wait_until(lambda: figures(status(canary)).get(("2.0.0", MIRROR), 0) >= 60, 30, "60 copies")
    seen = figures(status(canary))
    assert seen[("1.0.0", STABLE)] == 60 and ("2.0.0", CANDIDATE) not in seen


def test_a_weight_step_sends_its_share_to_the_candidate_sticky_per_client(
    canary: Canary,
) -> None:
    info = change(canary, "advance", from_step=0)
    assert (info.step, info.state, info.candidate_weight, info.mirror) == (1, "stepping", 30, 0)
    got = Counter(answers(canary.url, 300))
    assert set(got) == {"1.0.0", "2.0.0"}
    assert 0.15 <= got["2.0.0"] / 300 <= 0.45, got
    for client in CLIENTS:
        seen = set(answers(canary.url, 4, client))
        assert len(seen) == 1, (client, seen)
        canary.sides[client] = seen.pop()
    on_candidate = sum(v == "2.0.0" for v in canary.sides.values())
    assert 0 < on_candidate < len(CLIENTS)


def test_a_stale_step_is_refused_and_changes_nothing(canary: Canary) -> None:
    before = load_state(Paths(canary.home)).models["echo"].traffic
    for stale in (0, None):
        with pytest.raises(Refused, match="cannot advance from step"):
            change(canary, "advance", from_step=stale)
    assert load_state(Paths(canary.home)).models["echo"].traffic == before


def test_a_killed_agent_restarts_into_the_same_step_and_split(canary: Canary) -> None:
    record = json.loads((canary.home / "local" / "agent.json").read_text())
    os.kill(record["pid"], signal.SIGKILL)
    psutil.wait_procs([psutil.Process(record["pid"])], timeout=10)
    found = status(canary)  # starts a new agent, which adopts the servers
    assert canary.target.agent() is not None
    assert canary.target.agent().pid != record["pid"]  # type: ignore[union-attr]
    assert found.traffic is not None
    assert (found.traffic.step, found.traffic.candidate_weight) == (1, 30)
    for client in CLIENTS[:10]:
        assert set(answers(canary.url, 2, client)) == {canary.sides[client]}, client


def test_promote_gives_the_candidate_everything_stable_kept_warm(canary: Canary) -> None:
    info = change(canary, "promote")
    assert (info.state, info.promoted, info.candidate_weight, info.step) == ("full", True, 100, 3)
    assert set(answers(canary.url, 40)) == {"2.0.0"}
    found = status(canary)
    assert found.standby is not None and found.standby.version == "1.0.0"
    assert found.standby_until is not None


def test_abort_sends_the_very_next_requests_to_stable(canary: Canary) -> None:
    # As watch drives it: through the target's Stepper, which knows only its candidate.
    assert AgentStepper(canary.target, "echo", "1.0.0").current() is None
    stepper = AgentStepper(canary.target, "echo", "2.0.0")
    now = stepper.current()
    assert now is not None and now.state == "full"
    info = stepper.change("abort")
    assert (info.state, info.candidate_weight, info.mirror) == ("aborted", 0, 0)
    assert set(answers(canary.url, 40)) == {"1.0.0"}
    assert status(canary).standby_until is None  # stable kept while the revert comes
    with pytest.raises(Refused):
        change(canary, "promote")


def test_a_recovery_deploy_of_stable_is_a_warm_switch_that_ends_the_canary(
    canary: Canary,
) -> None:
    before = status(canary)
    assert before.live is not None
    result = canary.target.deploy(
        deploy_request(canary.bentos, "1.0.0", canary.port, standby_seconds=0)
    )
    assert (result.switch, result.version, result.traffic) == ("warm", "1.0.0", None)
    found = status(canary)
    assert (found.traffic, found.standby) == (None, None)
    assert set(answers(canary.url, 20)) == {"1.0.0"}
    candidate_pid = before.live.pid
    assert candidate_pid is not None
    wait_until(lambda: not psutil.pid_exists(candidate_pid), 60, "the candidate stopped")


def test_a_candidate_that_never_starts_leaves_stable_serving_alone(canary: Canary) -> None:
    before = status(canary)
    with pytest.raises(OperationFailed, match=r"1\.0\.0 stays live"):
        canary.target.deploy(deploy_request(canary.bentos, "3.0.0", canary.port, traffic=PLAN))
    found = status(canary)
    assert (found.live, found.standby, found.deploying) == (before.live, before.standby, None)
    steps = [(s.traffic.state, s.traffic.step) if s.traffic else None for s in (before, found)]
    assert steps[0] == steps[1]
    assert set(answers(canary.url, 20)) == {"1.0.0"}
