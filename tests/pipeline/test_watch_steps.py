"""`watch` on a canary (docs/ARCHITECTURE.md, "Steps and the bake"): a failed verdict
aborts the canary before anything else acts, then reverts as without steps; a pass
records the steps it saw. In-process: real git (a signed registry, iris 1.0.0 stable
and 1.1.0 live), `CanaryTarget` a TEST DOUBLE of the local target (the agent's traffic
API is `RecordingStepper`, the metric source a script), so nothing is served here;
the real agent path is tested end to end. Analysis times are tens of milliseconds."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from releasectl import git as g
from releasectl.analysis.engine import Reading, Window
from releasectl.manifest import schema as mf
from releasectl.pipeline import watch as w
from releasectl.serving import outcomes, targets
from testing.cli import run_here
from testing.hostile import World, build_world, copy_world
from testing.steppers import RecordingStepper

PLAN = [("mirror", 10, 0.1), ("weight", 50, 0.1)]
CANARY = {
    "kind": "canary",
    "mirror_routes": ["/predict"],
    "steps": [{"mirror": 10, "for": "100ms"}, {"weight": 50, "for": "100ms"}],
}
ANALYSIS = {
    "interval": "25ms",
    "bake": "300ms",
    "failure_limit": 0,
    "min_requests": 1,
    "compare": {"field": "label", "max_disagreement": 0.1},
}


def manifest(world: World, strategy: dict[str, Any]) -> mf.Manifest:
    text = (world.operator.path / "model-releases/iris/release.yaml").read_text()
    doc = yaml.safe_load(text)
    doc["deploy"]["strategy"] = strategy
    compares = strategy.get("kind") == "canary"  # compare needs a mirror step
    doc["analysis"] = {k: v for k, v in ANALYSIS.items() if compares or k != "compare"}
    return mf.validate(doc, "release.yaml", model="iris")


class Scripted:
    """A baseline, then `values` for every window, 20 requests and 20 pairs each."""

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values

    def read(self, window: Window) -> Reading:
        if window.start == 0 and window.intervals == 1:
            return Reading(baseline=True)
        return Reading(self.values, 20.0, requests_of={"compare.disagreement": 20.0})


class CanaryTarget:
    """A TEST DOUBLE of `releasectl.serving.targets.Local`: the live version and its
    manifest as given, the metric source a script, no switch back (the failed
    version is reverted in git), and the canary through `RecordingStepper`."""

    kind = "local"

    def __init__(self, live: targets.Live, stepper: RecordingStepper | None, source: Scripted):
        self._live, self._stepper, self._source = live, stepper, source
        self.journal = stepper.journal if stepper is not None else []

    def live(self, git: g.Git, model: str, version: str | None, start: bool = True) -> targets.Live:
        return self._live

    @contextlib.contextmanager
    def metric_source(self, live: targets.Live) -> Iterator[Scripted]:
        yield self._source

    def plan_recovery(self, git: g.Git, model: str, version: str) -> None:
        return None

    def follow_revert(self, git: g.Git, reverted: object, outcome: object) -> None:
        self.journal.append("follow the revert")

    def stepper(self, live: targets.Live) -> RecordingStepper | None:
        return self._stepper


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("canary-world"))


@pytest.fixture
def world(shared_world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    monkeypatch.setenv("RELEASECTL_HOME", str(tmp_path / "state"))
    return copy_world(shared_world, tmp_path / "w")


def run(
    world: World,
    monkeypatch: pytest.MonkeyPatch,
    values: dict[str, float],
    *,
    strategy: dict[str, Any] = CANARY,
    stepped: bool = True,
    abort_fails: bool = False,
) -> tuple[w.Watched, CanaryTarget]:
    live = targets.Live("iris", "1.1.0", manifest(world, strategy))
    now = lambda: datetime.now(UTC)  # noqa: E731
    stepper = RecordingStepper(PLAN, now, abort_fails=abort_fails) if stepped else None
    target = CanaryTarget(live, stepper, Scripted(values))
    monkeypatch.setattr(targets, "declared", lambda git, model: target)
    said = target.journal
    result = w.watch(
        g.Git(world.operator.path), "iris", on_event=lambda t: said.append(f"say: {t}")
    )
    return result, target


HEALTHY = {"error_rate": 0.0, "compare.disagreement": 0.0}
DISAGREES = {"error_rate": 0.0, "compare.disagreement": 0.3}


def test_a_failed_mirror_step_aborts_the_canary_before_anything_else_acts(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, target = run(world, monkeypatch, DISAGREES)
    assert result.action == "reverted" and result.verdict.metric == "compare.disagreement"
    journal = target.journal
    aborted = journal.index("abort")
    assert "advance" not in " ".join(journal)
    # nothing acted before the abort: the revert's message and the revert come after it
    assert not any("failed" in line for line in journal[:aborted])
    assert any("reverting" in line for line in journal[aborted:])
    assert journal[-1] == "follow the revert"
    outcome = outcomes.load("iris")
    assert outcome is not None and outcome.record == "done" and outcome.revert_commit
    assert [s.kind for s in outcome.steps or []] == ["mirror", "aborted"]
    assert world.operator.git("log", "-1", "--format=%s").startswith('Revert "iris 1.1.0"')


def test_an_abort_that_fails_is_reported_and_the_revert_still_lands(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, target = run(world, monkeypatch, DISAGREES, abort_fails=True)
    assert result.outcome is not None
    assert "aborting the canary failed: the agent did not answer" in result.outcome.message
    assert result.outcome.record == "done" and target.journal[-1] == "follow the revert"


def test_a_healthy_canary_passes_at_full_and_its_steps_are_recorded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, target = run(world, monkeypatch, HEALTHY)
    assert result.action == "marked-stable", result.line()
    assert [j for j in target.journal if j.startswith("advance")] == ["advance 0", "advance 1"]
    saved = json.loads(outcomes._path("iris").read_text())
    assert [s["kind"] for s in saved["steps"]] == ["mirror", "weight", "full"]
    assert saved["promoted"] is False
    assert any("say: 1.1.0 is at step 1/2: mirror 10%" in j for j in target.journal)


def test_blue_green_asks_no_stepper_and_records_no_steps(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, target = run(world, monkeypatch, {"error_rate": 0.0}, strategy={"kind": "bluegreen"})
    assert result.action == "marked-stable"
    assert target.journal == []  # the stepper was never asked
    saved = json.loads(outcomes._path("iris").read_text())
    assert "steps" not in saved and "promoted" not in saved


def test_watch_json_prints_each_step_as_an_event_line_and_each_measurement_with_its_step(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = targets.Live("iris", "1.1.0", manifest(world, CANARY))
    stepper = RecordingStepper(PLAN, lambda: datetime.now(UTC))
    target = CanaryTarget(live, stepper, Scripted(HEALTHY))
    monkeypatch.setattr(targets, "declared", lambda git, model: target)
    done = run_here(["watch", "iris", "--json"], world.operator.path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    steps = [line["step"] for line in lines if "event" in line and "step" in line]
    assert [(s["index"], s["kind"], s["percent"]) for s in steps] == [
        (0, "mirror", 10),
        (1, "weight", 50),
        (2, "full", 100),
    ]
    measured = [line for line in lines if "metric" in line]
    assert measured[0]["step"] == {"index": 0, "count": 2, "kind": "mirror", "percent": 10}
    assert lines[-1]["outcome"]["steps"][-1]["kind"] == "full"
