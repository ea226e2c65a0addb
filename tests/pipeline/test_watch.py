"""`releasectl watch` on real servers: a bad version is caught and reverted,
a good one is marked stable, no data is never a pass."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from releasectl.analysis.engine import Judgement, Measurement, run_analysis
from releasectl.analysis.sources import ScrapeSource
from releasectl.loopback import free_port
from releasectl.manifest.analysis import AnalysisSpec
from testing.bentos import FAST_ANALYSIS as FAST
from testing.bentos import iris_registry, set_analysis, set_faults
from testing.cli import watch
from testing.processes import state_home, stop
from testing.repos import Repo, git
from testing.traffic import Load

pytestmark = pytest.mark.slow


class World:
    def __init__(self, repo: Repo, home: Path, port: int, bare: Path) -> None:
        self.repo, self.home, self.port, self.bare = repo, home, port, bare
        self.url = f"http://127.0.0.1:{port}"
        self.next_major = 2

    def release_and_deploy(self, faults: str | None, analysis: dict[str, Any] | None = None) -> str:
        """A new release with these faults (None: healthy), deployed; its version."""
        r = self.repo
        version = f"{self.next_major}.0.0"
        self.next_major += 1
        current = (r.path / "model-releases/iris/faults.yaml").exists()
        if faults is not None or current:
            set_faults(r, faults, f"iris: faults for {version}")
        if analysis is not None:
            set_analysis(r, analysis)
        r.ok("release", "iris", version)
        r.ok("deploy", "iris", "--no-watch")
        return version

    def live(self) -> str:
        out = json.loads(self.repo.ok("status", "iris", "--json"))
        return cast(str, out[0]["live"]["version"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("watch")
    with state_home(root / "state") as home:
        port = free_port()
        repo = iris_registry(root, port)
        bare = root / "remote.git"
        git(root, "init", "-q", "--bare", "-b", "main", str(bare))
        repo.git("remote", "add", "origin", str(bare))
        repo.git("push", "-q", "-u", "origin", "main")
        set_analysis(repo, FAST)
        repo.ok("release", "iris", "1.0.0", "--push")
        repo.ok("mark-stable", "iris", "1.0.0", "--push")
        repo.ok("deploy", "iris")
        yield World(repo, home, port, bare)


def _verdict(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return cast(dict[str, Any], lines[-1]["verdict"])


def _measurements(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "metric" in line]


def test_errors_fail_fast_and_are_reverted(world: World) -> None:
    bad = world.release_and_deploy("error_ratio: 0.2\n")
    with Load(world.url) as load:
        code, lines, err = watch(world.repo.path, "iris")
        switched = load.mark()
        load.wait_for(20)
    assert code == 4, err
    verdict = _verdict(lines)
    assert verdict["outcome"] == "failed" and verdict["metric"] == "error_rate"
    assert verdict["intervals"] <= FAST["failure_limit"] + 1
    assert "error_rate" in err and "max 0.05" in err and "reverted to 1.0.0" in err
    assert lines[-1]["action"] == "reverted" and lines[-1]["serving"] == "1.0.0"
    # the revert and the rejected tag exist and verify
    revert = lines[-1]["revert_commit"]
    assert world.repo.head() == revert
    assert f"Releasectl-Revert-From: {bad}" in world.repo.git("log", "-1", "--format=%B")
    assert json.loads(world.repo.ok("verify", "iris", "--json"))["ok"]
    assert world.repo.git("tag", "--list", f"rejected/iris/v{bad}") == f"rejected/iris/v{bad}"
    assert world.live() == "1.0.0"
    assert load.failures(switched) == []
    assert set(load.versions(switched)) == {"1.0.0"}


def test_latency_fails_naming_metric_value_and_threshold(world: World) -> None:
    world.release_and_deploy("added_latency_ms: 300\n")
    with Load(world.url, rate=20, clients=10):
        code, lines, err = watch(world.repo.path, "iris")
    assert code == 4
    verdict = _verdict(lines)
    assert verdict["metric"] == "latency_ms.p95"
    assert verdict["value"] > 300 and verdict["threshold"]["max"] == 100
    assert "latency_ms.p95" in err and "max 100" in err
    assert world.live() == "1.0.0"


def test_degraded_predictions_fail_on_accuracy(world: World) -> None:
    accuracy = {
        **FAST,
        "metrics": {
            "error_rate": {"max": 0.05},
            "custom": [{"name": "accuracy", "metric": "iris_rolling_accuracy", "min": 0.9}],
        },
    }
    world.release_and_deploy("degrade: true\n", accuracy)
    with Load(world.url, feedback=True):
        code, lines, err = watch(world.repo.path, "iris")
    assert code == 4, err
    verdict = _verdict(lines)
    assert verdict["metric"] == "accuracy" and verdict["value"] < 0.9
    assert world.live() == "1.0.0"


def test_a_worker_that_dies_fails_on_the_endpoint_not_by_its_own_counters(world: World) -> None:
    """The version's worker process dies on a fifth of its inputs: the requests it took
    down never reach its own counters, only the endpoint's (docs/ARCHITECTURE.md,
    "Measured by the endpoint"). Each death stalls the one worker for seconds (a new
    process loads the model), so one window over enough requests decides
    (failure_limit 0), and scrapes of the version's own /metrics that time out while
    it restarts may not end its judgement before the bake does."""
    analysis = {
        **FAST,
        "failure_limit": 0,
        "consecutive_error_limit": 4,
        "metrics": {"error_rate": {"max": 0.05}},
    }
    bad = world.release_and_deploy("crash_ratio: 0.2\n", analysis)
    port = json.loads(world.repo.ok("status", "iris", "--json"))[0]["live"]["port"]
    spec = AnalysisSpec.model_validate(analysis)
    own: list[Measurement] = []
    with Load(world.url) as load:
        load.wait_for(5, deadline=60)
        # Judged by its own /metrics alone, as the local target judged it before.
        with ScrapeSource(f"http://127.0.0.1:{port}", spec, bad, fresh=True) as source:
            by_itself = run_analysis(spec, source, bad, on_measurement=own.append)
        # Judged by what the endpoint measured: `watch`, as a user runs it.
        code, lines, err = watch(world.repo.path, "iris")
    assert by_itself.outcome in (Judgement.PASSED, Judgement.INCONCLUSIVE), by_itself.message
    assert "failed" not in [m.status for m in own]
    # What it read, if anything (its /metrics may time out the whole bake), says whose word.
    read = [m for m in own if m.status != "error"]
    assert all(m.self_reported and "(self-reported)" in m.message for m in read)
    assert code == 4, err
    verdict = _verdict(lines)
    assert verdict["outcome"] == "failed" and verdict["metric"] == "error_rate", verdict
    assert verdict["value"] >= 0.15
    assert not any(m.get("self_reported") for m in _measurements(lines))
    assert world.live() == "1.0.0"


def test_a_healthy_version_passes_and_is_marked_stable(world: World) -> None:
    good = world.release_and_deploy(None, FAST)
    with Load(world.url):
        code, lines, err = watch(world.repo.path, "iris", "--push")
    assert code == 0, err
    assert lines[-1]["action"] == "marked-stable"
    assert _verdict(lines)["outcome"] == "passed"
    assert len(_measurements(lines)) >= 3 * 2  # every metric, every interval of the bake
    assert json.loads(world.repo.ok("verify", "iris", good, "--json"))["ok"]
    assert git(world.bare, "tag", "--list", f"stable/iris/v{good}") == f"stable/iris/v{good}"


def test_no_traffic_is_inconclusive_and_changes_nothing(world: World) -> None:
    version = world.release_and_deploy(None)
    refs = world.repo.snapshot()
    code, lines, err = watch(world.repo.path, "iris")
    assert code == 4
    verdict = _verdict(lines)
    assert verdict["outcome"] == "inconclusive"
    inconclusive = [m for m in _measurements(lines) if m["metric"] == "error_rate"]
    assert [m["status"] for m in inconclusive] == ["inconclusive"] * (
        FAST["inconclusive_limit"] + 1
    )
    assert "needs a human" in err and "nothing changed" in err
    assert world.repo.snapshot() == refs
    assert world.live() == version


@pytest.fixture(scope="module")
def prometheus(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus server (Debian's package) scraping the model's endpoint."""
    binary = shutil.which("prometheus")
    assert binary, "the tests need Debian's prometheus package (scripts/test installs it)"
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: iris\n    static_configs: [{{targets: ['127.0.0.1:{world.port}']}}]\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < end and proc.poll() is None, "prometheus did not start"
            time.sleep(0.1)
        yield url
    finally:
        stop(proc)


def _via(prometheus: str, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    # This Prometheus scrapes every second: ranges of four scrapes (4s).
    source = {"kind": "prometheus", "url": prometheus, "scrape_interval": "1s"}
    spec = {**FAST, "source": source}
    return {**spec, "metrics": metrics} if metrics else spec


PROM_ACCURACY = {
    "error_rate": {"max": 0.05},
    "custom": [
        {
            "name": "accuracy",
            "query": 'max(iris_rolling_accuracy{service_version="$version"})',
            "min": 0.9,
        }
    ],
}


@pytest.mark.parametrize(
    ("faults", "metrics", "load", "code", "outcome", "metric"),
    [
        ("error_ratio: 0.2\n", None, {}, 4, "failed", "error_rate"),
        (
            "added_latency_ms: 300\n",
            None,
            {"rate": 20, "clients": 10},
            4,
            "failed",
            "latency_ms.p95",
        ),
        ("degrade: true\n", PROM_ACCURACY, {"feedback": True}, 4, "failed", "accuracy"),
        (None, None, {}, 0, "passed", None),
        (None, None, None, 4, "inconclusive", None),
    ],
    ids=["errors", "latency", "accuracy", "healthy", "no-traffic"],
)
def test_the_same_verdicts_through_a_prometheus_server(
    world: World,
    prometheus: str,
    faults: str | None,
    metrics: dict[str, Any] | None,
    load: dict[str, Any] | None,
    code: int,
    outcome: str,
    metric: str | None,
) -> None:
    version = world.release_and_deploy(faults, _via(prometheus, metrics))
    refs = world.repo.snapshot()
    if load is None:
        got, lines, err = watch(world.repo.path, "iris")
    else:
        with Load(world.url, **load):
            got, lines, err = watch(world.repo.path, "iris")
    assert got == code, err
    verdict = _verdict(lines)
    assert verdict["outcome"] == outcome
    if metric:
        assert verdict["metric"] == metric
        assert world.repo.git("tag", "--list", f"rejected/iris/v{version}")
        assert world.live() != version
    elif outcome == "passed":
        assert world.repo.git("tag", "--list", f"stable/iris/v{version}")
    else:
        assert world.repo.snapshot() == refs and world.live() == version
    # every query reached Prometheus and parsed: no metric errors on the way
    assert [m for m in _measurements(lines) if m["status"] == "error"] == []


def test_an_unattended_watcher_rolls_back_and_pushes(world: World) -> None:
    r = world.repo
    r.git("push", "-q", "origin", "main", "--tags")
    stable = json.loads(r.ok("show", "iris", "--json"))["last_stable"]
    bad = f"{world.next_major}.0.0"
    world.next_major += 1
    set_faults(r, "error_ratio: 0.3\n", "iris: a bad build")
    set_analysis(r, FAST)
    r.ok("release", "iris", bad, "--push")
    out = json.loads(r.ok("deploy", "iris", "--watch", "--json"))
    watcher = out["watcher"]
    assert watcher["push"] is True
    status = json.loads(r.ok("status", "iris", "--json"))[0]
    assert status["watcher"]["pid"] == watcher["pid"]  # status shows it while it runs
    try:
        with Load(world.url):
            end = time.monotonic() + 120
            while not git(world.bare, "tag", "--list", f"rejected/iris/v{bad}"):
                assert time.monotonic() < end, Path(watcher["log"]).read_text()
                time.sleep(0.2)
        head = git(world.bare, "rev-parse", "main")
        message = git(world.bare, "log", "-1", "--format=%B", head)
        assert f"Releasectl-Revert-From: {bad}" in message
        end = time.monotonic() + 60
        while world.live() != stable and time.monotonic() < end:
            time.sleep(0.2)
        assert world.live() == stable
    finally:
        import psutil

        if psutil.pid_exists(watcher["pid"]):
            proc = psutil.Process(watcher["pid"])
            proc.wait(timeout=60)
