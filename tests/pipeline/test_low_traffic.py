"""`releasectl watch` on real servers when traffic is below `min_requests` per interval:
the requests that do arrive are accumulated into a window until it holds enough to
judge (docs/ARCHITECTURE.md, "Analysis"), so a release that slows its one worker to
a trickle is failed and reverted, not left live as "needs a human"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from releasectl.loopback import free_port
from testing.bentos import iris_registry, set_analysis, set_faults
from testing.cli import watch
from testing.processes import state_home
from testing.repos import Repo
from testing.traffic import Load

pytestmark = pytest.mark.slow

# The iris service has one worker that runs one predict at a time: with 1 s of added
# latency at most ~2 requests finish in a 2 s interval, well below min_requests 5.
LOW_TRAFFIC: dict[str, Any] = {
    "interval": "2s",
    "bake": "40s",  # long: only a verdict reached early ends these watches in time
    "min_requests": 5,
    "failure_limit": 1,
    "inconclusive_limit": 2,
    "consecutive_error_limit": 2,
    "metrics": {"error_rate": {"max": 0.05}, "latency_ms": {"p95": 250}},
}


class Registry:
    def __init__(self, repo: Repo, port: int) -> None:
        self.repo = repo
        self.url = f"http://127.0.0.1:{port}"
        self.next_major = 2

    def release_and_deploy(self, faults: str | None, analysis: dict[str, Any]) -> str:
        version = f"{self.next_major}.0.0"
        self.next_major += 1
        set_faults(self.repo, faults, f"iris: faults for {version}")
        set_analysis(self.repo, analysis)
        self.repo.ok("release", "iris", version)
        self.repo.ok("deploy", "iris", "--no-watch")
        return version

    def live(self) -> str:
        return str(json.loads(self.repo.ok("status", "iris", "--json"))[0]["live"]["version"])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    root: Path = tmp_path_factory.mktemp("low-traffic")
    with state_home(root / "state"):
        port = free_port()
        repo = iris_registry(root, port)
        set_analysis(repo, LOW_TRAFFIC)
        repo.ok("release", "iris", "1.0.0")
        repo.ok("mark-stable", "iris", "1.0.0")
        repo.ok("deploy", "iris")
        yield Registry(repo, port)


def _measurements(lines: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("metric") == metric]


def test_a_latency_fault_that_collapses_throughput_fails_and_is_reverted(
    registry: Registry,
) -> None:
    bad = registry.release_and_deploy("added_latency_ms: 1000\n", LOW_TRAFFIC)
    with Load(registry.url, rate=20, clients=6):
        code, lines, err = watch(registry.repo.path, "iris")

    assert code == 4, err
    verdict = lines[-1]["verdict"]
    assert verdict["outcome"] == "failed", verdict["message"]
    assert verdict["cause"] == "failure_limit" and verdict["metric"] == "latency_ms.p95"
    assert verdict["value"] > 250
    assert lines[-1]["action"] == "reverted" and registry.live() == "1.0.0"
    assert registry.repo.git("tag", "--list", f"rejected/iris/v{bad}") == f"rejected/iris/v{bad}"
    p95 = _measurements(lines, "latency_ms.p95")
    judged = [m for m in p95 if m["status"] == "failed"]
    assert len(judged) == LOW_TRAFFIC["failure_limit"] + 1
    # no single interval held min_requests: each verdict came from a window of several
    assert all(m["window_intervals"] >= 2 and m["requests"] >= 5 for m in judged), judged
    pending = [m for m in p95 if m["status"] == "pending"]
    assert pending and all("the window stays open" in m["message"] for m in pending)
    assert verdict["elapsed_s"] < 40  # decided long before the bake would have ended


def test_no_traffic_is_still_inconclusive_after_inconclusive_limit(registry: Registry) -> None:
    version = registry.release_and_deploy(None, LOW_TRAFFIC)
    refs = registry.repo.snapshot()
    code, lines, err = watch(registry.repo.path, "iris")

    assert code == 4, err
    assert lines[-1]["verdict"]["outcome"] == "inconclusive"
    assert lines[-1]["verdict"]["cause"] == "inconclusive_limit"
    error_rate = _measurements(lines, "error_rate")
    assert [m["status"] for m in error_rate] == ["inconclusive"] * 3  # inconclusive_limit + 1
    assert [m["window_intervals"] for m in error_rate] == [1, 2, 3]
    assert "needs a human" in err and "nothing changed" in err
    assert registry.repo.snapshot() == refs and registry.live() == version


def test_a_healthy_trickle_accumulates_good_requests_and_passes(registry: Registry) -> None:
    # ~3 requests an interval: every judgement needs a window of two intervals
    trickle = {**LOW_TRAFFIC, "bake": "12s", "inconclusive_limit": 3}
    good = registry.release_and_deploy(None, trickle)
    with Load(registry.url, rate=1.5, clients=1):
        code, lines, err = watch(registry.repo.path, "iris")

    assert code == 0, err
    assert lines[-1]["verdict"]["outcome"] == "passed"
    assert lines[-1]["action"] == "marked-stable"
    assert registry.repo.git("tag", "--list", f"stable/iris/v{good}") == f"stable/iris/v{good}"
    judged = [m for m in _measurements(lines, "error_rate") if m["status"] == "successful"]
    assert judged and all(m["window_intervals"] >= 2 and m["requests"] >= 5 for m in judged)
