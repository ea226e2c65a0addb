"""The canary's steps as `watch` drives them (docs/ARCHITECTURE.md, "Steps and the bake"):
`run_analysis` with the `Stepping` hook `watch` gives it (`releasectl.pipeline.canary.Driven`)
over `RecordingStepper`, a test double of the agent's traffic API; a scripted metric source
whose numbers follow the step the double is in; fake time, so no test waits.

The compare checks read from the same scrape of the agent as the endpoint's counts are
tested at the end, on a real `Meter` exposition."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from releasectl.analysis.engine import (
    AnalysisVerdict,
    Judgement,
    Measurement,
    Reading,
    Window,
    run_analysis,
)
from releasectl.analysis.sources import EndpointMetrics, ScrapeSource
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.pipeline.canary import Driven
from releasectl.serving.local.meter import Meter
from testing.steppers import FakeTime, Plan, RecordingStepper

VERSION = "1.1.0"
EPOCH = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
PLAN: Plan = [("mirror", 10, 20.0), ("weight", 50, 20.0)]  # then 100% for the bake's rest
SAME, DIFFERENT = 0.02, 0.3


def spec(**overrides: Any) -> AnalysisSpec:
    data: dict[str, Any] = {
        "interval": "10s",
        "bake": "60s",
        "failure_limit": 0,
        "min_requests": 10,
        "compare": {"field": "label", "max_disagreement": 0.1},
    }
    data.update(overrides)
    return AnalysisSpec.model_validate(data)


Script = Callable[[Window, RecordingStepper], Reading]


def healthy(window: Window, stepper: RecordingStepper) -> Reading:
    """A good candidate: no errors, the compared field agrees on 98% of 50 pairs each
    interval of the window."""
    pairs = 50.0 * window.intervals
    return Reading(
        values={"error_rate": 0.0, "compare.disagreement": SAME},
        requests=100.0 * window.intervals,
        requests_of={"compare.disagreement": pairs},
    )


class Source:
    """Plays `script` for each window after a baseline; records the windows."""

    def __init__(self, script: Script, stepper: RecordingStepper) -> None:
        self.script, self.stepper = script, stepper
        self.windows: list[Window] = []

    def read(self, window: Window) -> Reading:
        self.windows.append(window)
        if len(self.windows) == 1:
            return Reading(baseline=True)
        return self.script(window, self.stepper)


class Run:
    def __init__(self, analysis: AnalysisSpec, script: Script = healthy, **stepper: Any) -> None:
        self.time = FakeTime(EPOCH)
        self.said: list[str] = []
        self.stepper = RecordingStepper(PLAN, self.time.wall, **stepper)
        info = self.stepper.current()  # as `watch` reads it before the bake
        assert info is not None
        self.driven = Driven(self.stepper, info, self.said.append)
        self.source = Source(script, self.stepper)
        self.events: list[Measurement] = []
        self.verdict: AnalysisVerdict = run_analysis(
            analysis,
            self.source,
            VERSION,
            clock=self.time,
            sleep=self.time.sleep,
            on_measurement=self.events.append,
            steps=self.driven,
            wall=self.time.wall,
        )

    def kinds(self, metric: str = "error_rate") -> list[str]:
        """The step of each measurement of `metric`, in order."""
        return [m.step.kind for m in self.events if m.metric == metric and m.step]

    def at(self, action: str) -> list[float]:
        """When (elapsed s) the watch asked the stepper for `action`."""
        asked = self.stepper.asked
        return [(t - EPOCH).total_seconds() for t, what in asked if what.startswith(action)]


def test_a_healthy_candidate_goes_mirror_weight_full_and_passes_after_the_bake_at_full() -> None:
    run = Run(spec())
    assert run.verdict.outcome is Judgement.PASSED
    assert run.kinds() == ["mirror", "mirror", "weight", "weight", "full", "full"]
    # compare is measured only while the mirror step runs
    assert run.kinds("compare.disagreement") == ["mirror", "mirror"]
    assert [m.requests for m in run.events if m.metric == "compare.disagreement"] == [50, 50]
    # each step for its 20 s, then 100% for the bake's other 20 s: 60 s in all
    assert run.at("advance") == [20.0, 40.0]
    assert run.stepper.journal.count("advance 0") == run.stepper.journal.count("advance 1") == 1
    assert run.verdict.elapsed_s == 60.0
    assert run.driven.steps[-1].kind == "full" and not run.driven.promoted
    assert any("at step 2/2: weight 50%" in line for line in run.said)
    # `watch --json` lines carry the step
    line = json.loads(run.events[0].model_dump_json())
    assert line["step"] == {"index": 0, "count": 2, "kind": "mirror", "percent": 10}


def test_a_candidate_failing_in_the_mirror_step_fails_there() -> None:
    def erring(window: Window, stepper: RecordingStepper) -> Reading:
        found = healthy(window, stepper)
        return Reading(
            {**found.values, "error_rate": 0.5}, found.requests, requests_of=found.requests_of
        )

    run = Run(spec(), erring)
    assert run.verdict.outcome is Judgement.FAILED and run.verdict.metric == "error_rate"
    assert run.verdict.elapsed_s == 10.0 and run.kinds() == ["mirror"]
    assert run.at("advance") == []


def test_compare_disagreement_of_30_percent_with_max_10_fails_in_the_mirror_step() -> None:
    def disagreeing(window: Window, stepper: RecordingStepper) -> Reading:
        found = healthy(window, stepper)
        values = {**found.values, "compare.disagreement": DIFFERENT}
        return Reading(values, found.requests, requests_of=found.requests_of)

    run = Run(spec(), disagreeing)
    verdict = run.verdict
    assert verdict.outcome is Judgement.FAILED and verdict.metric == "compare.disagreement"
    assert verdict.value == DIFFERENT and "above max 0.1" in verdict.message
    assert run.stepper.step == 0 and run.at("advance") == []


def test_pending_compare_pairs_extend_the_step() -> None:
    def trickle(window: Window, stepper: RecordingStepper) -> Reading:
        found = healthy(window, stepper)
        # 4 pairs an interval: the window needs three intervals to hold min_requests 10
        return Reading(
            found.values,
            found.requests,
            requests_of={"compare.disagreement": 4.0 * window.intervals},
        )

    run = Run(spec(), trickle)
    compare = [m for m in run.events if m.metric == "compare.disagreement"]
    assert [m.status for m in compare] == ["pending", "pending", "successful"]
    assert compare[-1].requests == 12 and compare[-1].window_intervals == 3
    # the mirror step's 20 s passed with the pairs pending: it ran 10 s more
    assert run.at("advance") == [30.0, 50.0]
    assert run.verdict.outcome is Judgement.PASSED and run.verdict.elapsed_s == 70.0


def test_a_promote_seen_mid_watch_skips_to_full_and_is_recorded() -> None:
    # call 1: watch's first read; call 2: the engine's read at the baseline (mirror);
    # before call 3 (t=10) another terminal promotes
    run = Run(spec(), others={3: "promote"})
    assert run.driven.promoted and [t.kind for t in run.driven.steps] == ["mirror", "full"]
    assert any("100% (promoted)" in line for line in run.said)
    assert run.at("advance") == []
    # compare, never measured to a success, is not needed for the pass
    assert run.verdict.outcome is Judgement.PASSED
    # 100% began at the promote (10 s), then the bake's 20 s rest at full
    assert run.verdict.elapsed_s == 30.0


def test_a_stale_advance_is_read_again_not_an_error() -> None:
    # another watcher advances right before this one's `advance 0` (call 4, at 20 s)
    run = Run(spec(), others={4: "advance"})
    journal = run.stepper.journal
    at = journal.index("advance 0")
    assert journal[at - 1] == "elsewhere: advance" and journal[at + 1] == "current"
    assert run.stepper.step == 2  # no step skipped: the weight step advanced once, by us
    assert run.kinds() == ["mirror", "mirror", "weight", "weight", "full", "full"]
    assert run.verdict.outcome is Judgement.PASSED
    assert not any("cannot" in line for line in run.said)


def test_a_step_that_cannot_be_read_or_advanced_is_said_and_the_watch_goes_on() -> None:
    # call 3: the read at 10 s; call 4: the advance at 20 s, which did not reach the agent
    run = Run(spec(), unanswered=frozenset({3, 4}))
    assert any("cannot read the canary's step: cannot reach the agent" in s for s in run.said)
    assert any("cannot advance the canary from step 1" in s for s in run.said)
    assert run.at("advance") == [20.0, 30.0, 50.0]  # tried again an interval later
    assert run.verdict.outcome is Judgement.PASSED


def test_a_watch_started_mid_step_counts_the_time_spent_but_never_skips_it() -> None:
    run = Run(spec(), since=EPOCH - timedelta(seconds=15))
    assert run.at("advance") == [10.0, 30.0]  # 15 s spent before: 10 s more were enough
    assert run.kinds()[0] == "mirror"  # but measured in it first

    # A wall clock far ahead of `since` credits at most the step's duration, and one
    # behind it credits nothing: the step is measured either way.
    ahead = Run(spec(), since=EPOCH - timedelta(days=3))
    assert ahead.at("advance")[0] == 10.0 and ahead.kinds()[0] == "mirror"
    behind = Run(spec(), since=EPOCH + timedelta(hours=1))
    assert behind.at("advance") == [20.0, 40.0]


def test_a_step_advances_only_when_its_latest_conclusive_measurement_succeeded() -> None:
    def flaky(window: Window, stepper: RecordingStepper) -> Reading:
        found = healthy(window, stepper)
        bad = stepper.wall() == EPOCH + timedelta(seconds=20)  # the second measured interval
        values = {**found.values, "error_rate": 0.5 if bad else 0.0}
        return Reading(values, found.requests, requests_of=found.requests_of)

    run = Run(spec(failure_limit=1), flaky)
    assert [m.status for m in run.events if m.metric == "error_rate"][:3] == [
        "successful",
        "failed",
        "successful",
    ]
    assert run.at("advance")[0] == 30.0  # not at 20 s, when the latest one failed
    assert run.verdict.outcome is Judgement.PASSED


def test_the_scrape_source_reads_the_compare_pairs_from_the_same_scrape() -> None:
    meter, gets = Meter(), []

    def agent(request: httpx.Request) -> httpx.Response:
        gets.append(str(request.url))
        return httpx.Response(200, content=meter.exposition())

    def traffic(requests: int, same: int, different: int) -> None:
        for _ in range(requests):
            meter.tally("iris", VERSION, "mirror").record("200", 0.01)
        pairs = meter.mirror_pairs("iris", VERSION)
        stable = b'{"label": "setosa"}'
        for body in [b'{"label": "setosa"}'] * same + [b'{"label": "virginica"}'] * different:
            pairs.pair("label", stable, body, 0.01, 0.02)

    url = "http://127.0.0.1:9/metrics"
    endpoint = EndpointMetrics(lambda: url, "iris")
    transport = httpx.MockTransport(agent)
    with ScrapeSource(
        "http://127.0.0.1:9", spec(), VERSION, endpoint=endpoint, fresh=True, transport=transport
    ) as source:
        traffic(requests=20, same=3, different=1)
        first = source.read(Window(0, 1))
        traffic(requests=0, same=9, different=1)
        second = source.read(Window(0, 2))  # the window stays open: its pairs add up
    assert len(gets) == 2 and set(gets) == {url}  # one GET an interval, of the agent
    assert first.requests == 20 and first.requests_of["compare.disagreement"] == 4
    assert first.values["compare.disagreement"] == pytest.approx(0.25)
    assert second.requests_of["compare.disagreement"] == 14
    assert second.values["compare.disagreement"] == pytest.approx(2 / 14)
    assert second.values["compare.latency_ratio"] == pytest.approx(2.0)
