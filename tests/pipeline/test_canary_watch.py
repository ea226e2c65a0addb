"""A canary end to end, as a user runs it: `release`, `deploy --no-watch`, then
`releasectl watch`, which drives the agent's steps and judges the candidate by what
the endpoint measured and by how its answers differ from the stable model's
(docs/ARCHITECTURE.md, "Deployment strategies", "Steps and the bake", "Mirroring").
Real git and signing keys, real `bentoml serve`, the real agent."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from releasectl.loopback import free_port
from testing.bentos import FAST_ANALYSIS, iris_registry, set_faults
from testing.cli import RELEASECTL, watch
from testing.processes import state_home
from testing.repos import Repo
from testing.traffic import Load

pytestmark = pytest.mark.slow

STABLE = "1.0.0"
COMPARE = {"field": "label", "max_disagreement": 0.1, "max_latency_ratio": 20.0}


class World:
    def __init__(self, repo: Repo, port: int) -> None:
        self.repo, self.port = repo, port
        self.url = f"http://127.0.0.1:{port}"
        self.planned: dict[str, Any] = {}  # `deploy --dry-run --json` of the last canary

    def canary(
        self,
        version: str,
        faults: str | None,
        steps: list[dict[str, Any]],
        bake: str,
        *deploy: str,
    ) -> dict[str, Any]:
        """Release `version` with these faults as a canary of these steps, and deploy it
        (`deploy`: its options, `--no-watch` by default); what `deploy --json` said."""
        from releasectl.manifest.edits import edit

        set_faults(self.repo, faults, f"iris: faults for {version}")
        path = self.repo.path / "model-releases/iris/release.yaml"
        analysis = {**FAST_ANALYSIS, "bake": bake, "compare": COMPARE}
        strategy = {"kind": "canary", "mirror_routes": ["/predict"], "steps": steps}
        changes = {"analysis": analysis, "deploy": {"strategy": strategy}}
        path.write_text(edit(path.read_text(), "release.yaml", changes))
        self.repo.commit(f"iris: {version} as a canary")
        self.repo.ok("release", "iris", version)
        self.planned = json.loads(self.repo.ok("deploy", "iris", "--dry-run", "--json"))
        said = self.repo.ok("deploy", "iris", *(deploy or ("--no-watch",)), "--json")
        found: dict[str, Any] = json.loads(said)
        return found

    def status(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.repo.ok("status", "iris", "--json"))[0]
        return found


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("canary")
    with state_home(root / "state"):
        port = free_port()
        repo = iris_registry(root, port)
        repo.ok("release", "iris", STABLE)
        repo.ok("mark-stable", "iris", STABLE)
        repo.ok("deploy", "iris")
        yield World(repo, port)


def _measurements(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if "metric" in line]


def test_wrong_answers_fail_on_disagreement_in_the_mirror_step_and_no_user_sees_one(
    world: World,
) -> None:
    """Every answer 200, a different label for 30% of inputs: no error rate or latency
    can see it; the comparison with the stable model's answers to the same mirrored
    requests does, before any user is answered by the candidate."""
    steps = [{"mirror": 100, "for": "20s"}, {"weight": 10, "for": "2s"}]
    world.canary("2.0.0", "degrade: 0.3\n", steps, "30s")
    status = world.status()
    assert status["traffic"]["state"] == "stepping" and status["traffic"]["mirror"] == 100
    assert world.planned["canary"] == "mirror 100% for 20s, weight 10% for 2s, then 100%"
    planned = json.loads(world.repo.ok("watch", "iris", "--dry-run", "--json"))
    assert "mirror 100% for 20s, weight 10% for 2s" in planned["steps"], planned
    with Load(world.url) as load:
        code, lines, err = watch(world.repo.path, "iris")
        load.wait_for(10)
    assert code == 4, err
    verdict = lines[-1]["verdict"]
    assert verdict["outcome"] == "failed" and verdict["metric"] == "compare.disagreement", verdict
    assert verdict["value"] > 0.1
    failed = [m for m in _measurements(lines) if m["status"] == "failed"]
    assert failed and all(m["step"]["kind"] == "mirror" for m in failed), failed
    # No user was answered by the candidate: every answer came from the stable model.
    assert load.failures() == [] and set(load.versions()) == {STABLE}
    assert lines[-1]["action"] == "reverted" and lines[-1]["serving"] == STABLE
    assert world.status()["live"]["version"] == STABLE
    assert world.repo.git("tag", "--list", "rejected/iris/v2.0.0") == "rejected/iris/v2.0.0"


def test_a_healthy_canary_steps_to_full_and_is_marked_stable(world: World) -> None:
    """Mirror, then 50%, then 100% for the rest of the bake: every step is said on
    `watch --json`, the candidate agrees with stable, and it is marked stable."""
    steps = [{"mirror": 100, "for": "2s"}, {"weight": 50, "for": "2s"}]
    world.canary("3.0.0", None, steps, "8s")
    with Load(world.url) as load:
        code, lines, err = watch(world.repo.path, "iris")
        load.wait_for(10)
    assert code == 0, err
    assert lines[-1]["action"] == "marked-stable", lines[-1]
    seen = [line["step"]["kind"] for line in lines if "event" in line and "step" in line]
    assert seen[:1] == ["mirror"] and "weight" in seen and seen[-1] == "full", seen
    compared = [m for m in _measurements(lines) if m["metric"] == "compare.disagreement"]
    assert compared and all(m["step"]["kind"] == "mirror" for m in compared)
    assert any(m["status"] == "successful" for m in compared)
    # Both versions answered users during the weight step, nobody saw an error.
    assert load.failures() == [] and set(load.versions()) == {STABLE, "3.0.0"}
    status = world.status()
    assert status["live"]["version"] == "3.0.0"
    assert status["traffic"]["state"] == "full" and status["standby"]["version"] == STABLE
    assert world.repo.git("tag", "--list", "stable/iris/v3.0.0") == "stable/iris/v3.0.0"


def test_abort_sends_users_back_to_stable_and_reverts_and_a_running_watch_stands_down(
    world: World,
) -> None:
    """`releasectl abort` in the middle of a weight step while an operator's `watch`
    runs: the candidate answers nothing from that moment, the signed revert and
    `rejected/` mark land, and the watch ends with nothing more to judge, leaving the
    abort's outcome as it is (no second revert, no verdict written over it)."""
    steps = [{"mirror": 100, "for": "2s"}, {"weight": 50, "for": "5m"}]
    stable = world.status()["live"]["version"]  # 3.0.0 after the test above, else 1.0.0
    world.canary("4.0.0", None, steps, "6m")
    with Load(world.url) as load:
        watching = subprocess.Popen(
            [RELEASECTL, "watch", "iris", "--json"],
            cwd=world.repo.path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watching.stdout is not None
            started = json.loads(watching.stdout.readline())  # the step it found
            assert started["step"]["kind"] == "mirror", started
            world.repo.ok("abort", "iris", "--reason", "drill")
            out, err = watching.communicate(timeout=120)
        finally:
            if watching.poll() is None:
                watching.kill()
                watching.wait()
        after = load.mark()
        load.wait_for(20)
    assert watching.returncode == 4, err
    last = json.loads(out.splitlines()[-1])
    assert last["verdict"]["cause"] == "canary_ended" and last["action"] == "none", last
    status = world.status()
    assert status["live"]["version"] == stable and status["traffic"] is None
    assert status["watch_outcome"]["aborted_by"] and "drill" in status["watch_outcome"]["message"]
    assert load.failures() == [] and set(load.versions(after)) == {stable}
    assert world.repo.git("tag", "--list", "rejected/iris/v4.0.0") == "rejected/iris/v4.0.0"
    assert "drill" in world.repo.git("log", "-1", "--format=%B")


def test_an_unattended_watcher_drives_the_canary_and_rolls_it_back_in_the_mirror_step(
    world: World,
) -> None:
    """`deploy --watch` with nobody at the terminal: the detached watcher drives the
    steps like an attended watch, fails a candidate erring on half its requests in
    the mirror step, sets its weight to 0 and reverts; no user saw an error."""
    steps = [{"mirror": 100, "for": "20s"}, {"weight": 10, "for": "2s"}]
    stable = world.status()["live"]["version"]
    with Load(world.url) as load:
        deployed = world.canary("5.0.0", "error_ratio: 0.5\n", steps, "30s", "--watch")
        pid = deployed["watcher"]["pid"]
        try:
            psutil.Process(pid).wait(timeout=120)
        finally:
            if psutil.pid_exists(pid):
                psutil.Process(pid).kill()
        load.wait_for(10)
    status = world.status()
    outcome = status["watch_outcome"]
    assert outcome["outcome"] == "failed-recovered" and outcome["serving"] == stable, outcome
    assert outcome["steps"][0]["kind"] == "mirror" and "error_rate" in outcome["message"], outcome
    assert status["live"]["version"] == stable and status["traffic"] is None
    assert load.failures() == [] and set(load.versions()) == {stable}
    assert world.repo.git("tag", "--list", "rejected/iris/v5.0.0") == "rejected/iris/v5.0.0"


def test_promote_gives_the_candidate_everything_and_the_watch_records_it(world: World) -> None:
    """`releasectl promote` on the real agent: the candidate answers every request at
    once; the watch then judges the rest of the bake at 100%, marks it stable and
    records the promote in its outcome."""
    world.canary("6.0.0", None, [{"mirror": 100, "for": "30s"}], "36s")
    promoted = json.loads(world.repo.ok("promote", "iris", "--json"))
    assert promoted["after"]["state"] == "full" and promoted["after"]["promoted"], promoted
    assert world.status()["traffic"]["candidate_weight"] == 100
    with Load(world.url) as load:
        code, lines, err = watch(world.repo.path, "iris")
        load.wait_for(10)
    assert code == 0, err
    assert lines[-1]["action"] == "marked-stable" and lines[-1]["outcome"]["promoted"], lines[-1]
    assert load.failures() == [] and set(load.versions()) == {"6.0.0"}
    assert world.status()["promoted"]["version"] == "6.0.0"
