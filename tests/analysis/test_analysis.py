"""The analysis logic: spec parsing, measurement semantics and every verdict path.

Time is the injected clock/sleep seam, so these tests are deterministic and instant;
the readings are scripted through the MetricSource protocol. Real sources over real
HTTP are exercised in test_metrics.py."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pytest
from pydantic import ValidationError

from releasectl.analysis.engine import (
    AnalysisVerdict,
    Cause,
    Judgement,
    Measurement,
    Reading,
    Status,
    Window,
    checks_for,
    measure,
    run_analysis,
)
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.manifest.durations import format_duration, parse_duration

VERSION = "1.4.0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


class ScriptedSource:
    """Plays back readings; the last one repeats. A reading may be an exception to raise.
    Each reading stands for what a real source reports for the window it is asked for;
    the windows asked for are recorded."""

    def __init__(self, readings: Iterable[Reading | Exception], read_cost: float = 0.0) -> None:
        self.readings = list(readings)
        self.calls = 0
        self.clock: FakeClock | None = None
        self.read_cost = read_cost
        self.windows: list[Window] = []

    def read(self, window: Window) -> Reading:
        self.windows.append(window)
        item = self.readings[min(self.calls, len(self.readings) - 1)]
        self.calls += 1
        if self.clock is not None:
            self.clock.now += self.read_cost
        if isinstance(item, Exception):
            raise item
        return item


def spec(**overrides: Any) -> AnalysisSpec:
    data: dict[str, Any] = {"interval": "2s", "bake": "10s", "failure_limit": 1}
    data.update(overrides)
    return AnalysisSpec.model_validate(data)


def healthy(**values: float) -> Reading:
    return Reading(values={"error_rate": 0.0, **values}, requests=100)


def watch(
    analysis: AnalysisSpec, readings: Iterable[Reading | Exception], read_cost: float = 0.0
) -> tuple[AnalysisVerdict, list[Measurement], FakeClock]:
    clock = FakeClock()
    source = ScriptedSource([Reading(baseline=True), *readings], read_cost)
    source.clock = clock
    events: list[Measurement] = []
    verdict = run_analysis(
        analysis, source, VERSION, clock=clock, sleep=clock.sleep, on_measurement=events.append
    )
    return verdict, events, clock


# --- verdict paths ------------------------------------------------------------------


def test_twenty_percent_errors_fail_within_failure_limit_plus_one_intervals() -> None:
    verdict, events, clock = watch(spec(), [Reading(values={"error_rate": 0.2}, requests=50)])

    assert verdict.outcome is Judgement.FAILED
    assert verdict.cause is Cause.FAILURE_LIMIT
    assert verdict.intervals == 2  # failure_limit + 1
    assert clock.now == 4.0
    assert verdict.threshold is not None
    assert (verdict.metric, verdict.value, verdict.threshold.max) == ("error_rate", 0.2, 0.05)
    assert "error_rate 0.2 is above max 0.05" in verdict.message
    assert "2 failed measurements > failure_limit 1" in verdict.message
    assert [e.status for e in events] == [Status.FAILED, Status.FAILED]


def test_failure_limit_zero_fails_at_the_first_bad_interval() -> None:
    verdict, _, clock = watch(spec(failure_limit=0), [Reading({"error_rate": 0.2}, 50)])
    assert verdict.outcome is Judgement.FAILED
    assert verdict.intervals == 1
    assert clock.now == 2.0


def test_slow_p95_fails_naming_metric_value_and_threshold() -> None:
    analysis = spec(metrics={"latency_ms": {"p95": 100}})
    verdict, _, _ = watch(analysis, [healthy(**{"latency_ms.p95": 300.0})])

    assert verdict.outcome is Judgement.FAILED
    assert verdict.metric == "latency_ms.p95"
    assert verdict.value == 300.0
    assert verdict.threshold is not None and verdict.threshold.max == 100
    assert "latency_ms.p95 300 ms is above max 100 ms" in verdict.message


def test_accuracy_gauge_below_min_fails() -> None:
    analysis = spec(
        metrics={"custom": [{"name": "accuracy", "metric": "model_accuracy", "min": 0.9}]}
    )
    verdict, _, _ = watch(analysis, [healthy(accuracy=0.7)])

    assert verdict.outcome is Judgement.FAILED
    assert verdict.metric == "accuracy"
    assert "accuracy 0.7 is below min 0.9" in verdict.message


def test_healthy_version_passes_when_the_bake_ends() -> None:
    analysis = spec(metrics={"latency_ms": {"p95": 100, "p99": 250}})
    verdict, events, clock = watch(
        analysis, [healthy(**{"latency_ms.p95": 40.0, "latency_ms.p99": 90.0})]
    )

    assert verdict.outcome is Judgement.PASSED
    assert verdict.passed
    assert verdict.cause is Cause.BAKE_PASSED
    assert clock.now == 10.0
    assert verdict.intervals == 5
    assert verdict.tallies["latency_ms.p99"].successful == 5
    assert {e.status for e in events} == {Status.SUCCESSFUL}
    assert clock.sleeps == [2.0] * 5


def test_one_bad_interval_is_tolerated_by_failure_limit() -> None:
    bad = Reading({"error_rate": 0.5}, 100)
    verdict, _, _ = watch(spec(), [bad, healthy()])
    assert verdict.outcome is Judgement.PASSED
    assert verdict.tallies["error_rate"].failed == 1


def test_no_traffic_is_inconclusive_after_inconclusive_limit() -> None:
    verdict, events, _ = watch(spec(inconclusive_limit=2), [Reading(requests=0)])

    assert verdict.outcome is Judgement.INCONCLUSIVE
    assert verdict.cause is Cause.INCONCLUSIVE_LIMIT
    assert verdict.intervals == 3
    assert verdict.message.startswith("needs a human")
    assert "no requests" in events[0].message


def test_too_few_requests_are_pending_and_nan_is_inconclusive() -> None:
    # Before accumulation, 19 of 20 requests made an inconclusive measurement on its own.
    analysis = spec(min_requests=20, inconclusive_limit=10)
    few = Reading({"error_rate": 0.0}, requests=19)
    nan = Reading({"error_rate": math.nan}, requests=100)
    verdict, events, _ = watch(analysis, [few, nan, healthy()])

    assert [e.status for e in events[:2]] == [Status.PENDING, Status.INCONCLUSIVE]
    assert "window 1 interval, 19 requests: fewer than min_requests 20" in events[0].message
    assert events[1].value is None and "NaN" in events[1].message
    assert events[1].window_intervals == 2  # the 19 were not thrown away
    assert verdict.tallies["error_rate"].inconclusive == 1
    assert verdict.tallies["error_rate"].pending == 1


def test_bake_without_a_successful_measurement_is_inconclusive() -> None:
    analysis = spec(
        inconclusive_limit=100,
        metrics={"custom": [{"name": "accuracy", "metric": "model_accuracy", "min": 0.9}]},
    )
    verdict, _, _ = watch(analysis, [healthy()])  # the gauge never shows up

    assert verdict.outcome is Judgement.INCONCLUSIVE
    assert verdict.cause is Cause.NO_SUCCESS
    assert "successful measurement of accuracy" in verdict.message


def test_unreadable_metrics_never_pass_and_never_crash() -> None:
    verdict, events, _ = watch(
        spec(consecutive_error_limit=2, bake="1m"), [ConnectionError("connection refused")]
    )

    assert verdict.outcome is Judgement.FAILED
    assert verdict.cause is Cause.ERROR_LIMIT
    assert verdict.intervals == 3
    assert "could not read metrics" in verdict.message
    assert "connection refused" in verdict.message
    assert all(e.status is Status.ERROR for e in events)


def test_a_bug_in_a_source_is_an_error_not_a_crash() -> None:
    verdict, _, _ = watch(spec(consecutive_error_limit=0), [ZeroDivisionError()])
    assert verdict.outcome is Judgement.FAILED
    assert "ZeroDivisionError" in verdict.message


def test_the_baseline_read_failing_counts_as_an_error() -> None:
    clock = FakeClock()
    source = ScriptedSource([OSError("down"), Reading(baseline=True), healthy()])
    verdict = run_analysis(spec(), source, VERSION, clock=clock, sleep=clock.sleep)
    assert verdict.outcome is Judgement.PASSED
    assert verdict.tallies["error_rate"].errors == 1


def test_errors_between_successes_reset_the_consecutive_count() -> None:
    flaky: list[Reading | Exception] = [OSError("blip"), healthy()] * 10
    verdict, _, _ = watch(spec(consecutive_error_limit=1, bake="20s"), flaky)
    assert verdict.outcome is Judgement.PASSED
    assert verdict.tallies["error_rate"].errors == 5


def test_per_metric_error_leaves_other_metrics_measured() -> None:
    analysis = spec(
        source={"kind": "prometheus", "url": "http://127.0.0.1:9"},
        consecutive_error_limit=1,
        metrics={"custom": [{"name": "accuracy", "query": "bad(", "min": 0.9}]},
    )
    broken = Reading({"error_rate": 0.0}, 100, errors={"accuracy": "parse error"})
    verdict, events, _ = watch(analysis, [broken])

    assert verdict.cause is Cause.ERROR_LIMIT
    assert verdict.metric == "accuracy"
    assert events[0].status is Status.SUCCESSFUL
    assert events[1].status is Status.ERROR


def test_failure_takes_precedence_over_inconclusive_in_the_same_interval() -> None:
    analysis = spec(
        failure_limit=0,
        inconclusive_limit=0,
        metrics={"custom": [{"name": "accuracy", "metric": "model_accuracy", "min": 0.9}]},
    )
    verdict, _, _ = watch(analysis, [Reading({"error_rate": 0.0}, 100)])
    assert verdict.outcome is Judgement.INCONCLUSIVE  # accuracy has no data

    verdict, _, _ = watch(analysis, [Reading({"accuracy": 0.1}, requests=0)])
    assert verdict.outcome is Judgement.FAILED


def test_slow_reads_keep_the_schedule() -> None:
    verdict, _, clock = watch(spec(), [healthy()], read_cost=0.5)
    assert verdict.passed
    assert clock.sleeps == [1.5] * 5
    assert verdict.elapsed_s == 10.5


def test_measurement_event_is_one_json_line() -> None:
    _, events, _ = watch(spec(), [Reading({"error_rate": 0.2}, 50)])
    line = events[0].model_dump_json()

    assert "\n" not in line
    assert json.loads(line) == {
        "version": VERSION,
        "metric": "error_rate",
        "status": "failed",
        "value": 0.2,
        "threshold": {"min": None, "max": 0.05},
        "requests": 50.0,
        "interval": 1,
        "elapsed_s": 2.0,
        "message": "error_rate 0.2 is above max 0.05",
        "window_intervals": 1,  # added with accumulated windows; nothing else changed
    }


# --- accumulated windows (docs/ARCHITECTURE.md, "Analysis") ----------------------------
#
# A scripted reading stands for what a source reports for the whole window it is asked
# for (test_metrics.py shows the real sources summing and widening).

SLOW = {"latency_ms": {"p95": 100}}


def slow(requests: float) -> Reading:
    """A window in which every request breached: p95 2 s, no errors."""
    return Reading({"error_rate": 0.0, "latency_ms.p95": 2000.0}, requests=requests)


def test_a_trickle_of_breaching_requests_fails_once_the_window_holds_min_requests() -> None:
    # 2 requests an interval, min_requests 5: each window closes after 3 intervals
    analysis = spec(min_requests=5, bake="1m", inconclusive_limit=0, metrics=SLOW)
    clock = FakeClock()
    source = ScriptedSource([Reading(baseline=True), *[slow(2), slow(4), slow(6)] * 2])
    events: list[Measurement] = []
    verdict = run_analysis(
        analysis, source, VERSION, clock=clock, sleep=clock.sleep, on_measurement=events.append
    )

    assert verdict.outcome is Judgement.FAILED and verdict.cause is Cause.FAILURE_LIMIT
    assert verdict.metric == "latency_ms.p95" and verdict.intervals == 6
    assert source.windows == [
        Window(0, 1),  # the baseline read
        *[Window(1, n) for n in (1, 2, 3)],
        *[Window(4, n) for n in (1, 2, 3)],
    ]
    p95 = [e for e in events if e.metric == "latency_ms.p95"]
    assert [e.status for e in p95] == [Status.PENDING, Status.PENDING, Status.FAILED] * 2
    assert [e.window_intervals for e in p95] == [1, 2, 3] * 2
    assert "2000 ms so far, window 2 intervals, 4 requests" in p95[1].message
    assert "fewer than min_requests 5, the window stays open" in p95[1].message
    assert "is above max 100 ms (window 3 intervals, 6 requests)" in verdict.message
    assert verdict.tallies["latency_ms.p95"].model_dump() == {
        "successful": 0,
        "failed": 2,
        "inconclusive": 0,  # inconclusive_limit 0 was never at risk
        "errors": 0,
        "consecutive_errors": 0,
        "pending": 4,
    }


def test_no_traffic_is_inconclusive_after_inconclusive_limit_not_at_the_bake_end() -> None:
    analysis = spec(min_requests=5, bake="1m", inconclusive_limit=2)
    verdict, events, clock = watch(analysis, [Reading({"error_rate": math.nan}, requests=0)])

    assert verdict.outcome is Judgement.INCONCLUSIVE and verdict.cause is Cause.INCONCLUSIVE_LIMIT
    assert verdict.intervals == 3 and clock.now == 6.0
    assert [e.window_intervals for e in events] == [1, 2, 3]  # the window never closed
    assert "no requests in the window of 3 intervals (min_requests 5)" in events[2].message


def test_a_healthy_trickle_passes_and_a_short_last_window_is_one_inconclusive() -> None:
    analysis = spec(min_requests=5, inconclusive_limit=1)
    good = {"error_rate": 0.0}
    readings = [Reading(good, 3), Reading(good, 6), Reading(good, 3), Reading(good, 6)]
    verdict, events, _ = watch(analysis, [*readings, Reading(good, 3)])

    assert verdict.outcome is Judgement.PASSED and verdict.intervals == 5
    statuses = [e.status for e in events]
    assert statuses == [Status.PENDING, Status.SUCCESSFUL] * 2 + [Status.INCONCLUSIVE]
    assert "3 requests: fewer than min_requests 5 when the bake ended" in events[-1].message
    assert verdict.tallies["error_rate"].inconclusive == 1


def test_a_bake_that_ends_on_an_open_window_without_a_judgement_needs_a_human() -> None:
    analysis = spec(min_requests=50, inconclusive_limit=0, metrics=SLOW)
    verdict, events, _ = watch(analysis, [slow(2), slow(4), slow(6), slow(8), slow(10)])

    assert verdict.outcome is Judgement.INCONCLUSIVE and verdict.cause is Cause.INCONCLUSIVE_LIMIT
    assert verdict.intervals == 5
    p95 = [e.status for e in events if e.metric == "latency_ms.p95"]
    assert p95 == [Status.PENDING] * 4 + [Status.INCONCLUSIVE]
    assert "window 5 intervals, 10 requests" in verdict.message


def test_an_unreadable_interval_keeps_the_window_open() -> None:
    analysis = spec(min_requests=5, metrics=SLOW)
    clock = FakeClock()
    readings: list[Reading | Exception] = [Reading(baseline=True), slow(2), OSError("blip")]
    source = ScriptedSource([*readings, slow(6), slow(2), slow(6)])
    verdict = run_analysis(analysis, source, VERSION, clock=clock, sleep=clock.sleep)

    assert verdict.outcome is Judgement.FAILED
    # the source is asked for intervals 1-3 after the blip: nothing read is thrown away
    opened = [(1, 1), (1, 2), (1, 3), (4, 1), (4, 2)]
    assert source.windows[1:] == [Window(*w) for w in opened]


def test_custom_gauges_keep_their_per_interval_meaning() -> None:
    analysis = spec(
        min_requests=5,
        metrics={"custom": [{"name": "accuracy", "metric": "model_accuracy", "min": 0.9}]},
    )
    trickle = Reading({"error_rate": 0.0, "accuracy": 0.5}, requests=2)
    verdict, events, _ = watch(analysis, [trickle])

    assert verdict.outcome is Judgement.FAILED and verdict.metric == "accuracy"
    accuracy = [e for e in events if e.metric == "accuracy"]
    assert [e.window_intervals for e in accuracy] == [1, 1]
    assert [e.status for e in events if e.metric == "error_rate"] == [Status.PENDING] * 2


def test_min_requests_zero_judges_any_window_with_a_request() -> None:
    analysis = spec(min_requests=0, inconclusive_limit=5)
    verdict, events, _ = watch(analysis, [Reading({"error_rate": 0.0}, 0), healthy()])
    assert verdict.passed
    assert [e.status for e in events[:2]] == [Status.INCONCLUSIVE, Status.SUCCESSFUL]
    assert events[1].window_intervals == 2


@pytest.mark.parametrize(
    ("requests", "bake_over", "status"),
    [
        (None, False, Status.INCONCLUSIVE),
        (0, False, Status.INCONCLUSIVE),
        (4, False, Status.PENDING),
        (4, True, Status.INCONCLUSIVE),
        (5, False, Status.FAILED),
        (5, True, Status.FAILED),
    ],
)
def test_measure_a_window(requests: float | None, bake_over: bool, status: Status) -> None:
    analysis = spec(min_requests=5, metrics=SLOW)
    reading = Reading({"error_rate": 0.0, "latency_ms.p95": 2000.0}, requests=requests)
    events = measure(
        checks_for(analysis),
        reading,
        version=VERSION,
        min_requests=5,
        interval=7,
        elapsed_s=14.0,
        window=3,
        bake_over=bake_over,
    )
    p95 = next(e for e in events if e.metric == "latency_ms.p95")
    assert p95.status is status
    assert p95.window_intervals == 3 and p95.interval == 7


# --- the spec -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2s", 2), ("5s", 5), ("1m", 60), ("10m", 600), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("garbage", ["10", "abc", "5 m", "-2s", "0s", "2x", "", "1m 2s"])
def test_garbage_durations_are_refused_clearly(garbage: str) -> None:
    with pytest.raises(ValidationError, match="duration"):
        AnalysisSpec.model_validate({"interval": garbage})


def test_bare_number_duration_is_refused() -> None:
    with pytest.raises(ValidationError, match="with a unit"):
        AnalysisSpec.model_validate({"bake": 300})


def test_defaults_are_sane_and_round_trip() -> None:
    default = AnalysisSpec()
    assert default.interval == 10 and default.bake == 300
    assert default.source.kind == "scrape"
    assert default.metrics.error_rate is not None and default.metrics.error_rate.max == 0.05
    dumped = default.model_dump(mode="json")
    assert dumped["interval"] == "10s" and dumped["bake"] == "5m"
    assert AnalysisSpec.model_validate(dumped) == default


def test_full_spec_parses() -> None:
    parsed = AnalysisSpec.model_validate(
        {
            "interval": "5s",
            "bake": "10m",
            "min_requests": 20,
            "failure_limit": 2,
            "inconclusive_limit": 4,
            "consecutive_error_limit": 3,
            "source": {"kind": "prometheus", "url": "http://127.0.0.1:9090", "window": "1m"},
            "metrics": {
                "error_rate": {"max": 0.01},
                "latency_ms": {"p50": 20, "p90": 50, "p95": 80, "p99": 200},
                "custom": [
                    {"name": "accuracy", "query": 'min(acc{v="$version"})', "min": 0.9, "max": 1}
                ],
            },
        }
    )
    assert parsed.source.kind == "prometheus" and parsed.source.window == 60
    assert parsed.metrics.latency_ms.limits() == {"p50": 20, "p90": 50, "p95": 80, "p99": 200}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"intervall": "2s"}, "Extra inputs are not permitted"),
        ({"metrics": {"error_rate": {"max": 0.1, "min": 0}}}, "Extra inputs"),
        ({"source": {"kind": "prometheus"}}, "url"),
        ({"source": "prometheus"}, "needs a url"),
        ({"source": "graphite"}, "source"),
        ({"interval": "1m", "bake": "30s"}, "shorter than one interval"),
        ({"metrics": {"custom": [{"name": "acc", "metric": "a"}]}}, "needs 'min', 'max'"),
        ({"metrics": {"custom": [{"name": "acc", "min": 1}]}}, "needs 'query'"),
        ({"metrics": {"custom": [{"name": "acc", "query": "q", "min": 1}]}}, "needs 'metric'"),
        ({"metrics": {"custom": [{"name": "a", "metric": "a", "min": 2, "max": 1}]}}, "min 2"),
        ({"metrics": {"custom": [{"name": "error_rate", "metric": "a", "min": 1}]}}, "reserved"),
        ({"metrics": {"error_rate": None}}, "no metric to analyse"),
        ({"metrics": {"latency_ms": {"p75": 10}}}, "Extra inputs"),
        ({"failure_limit": -1}, "greater than or equal to 0"),
    ],
)
def test_bad_specs_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AnalysisSpec.model_validate(data)


def test_custom_names_must_be_unique() -> None:
    custom = {"name": "acc", "metric": "a", "min": 1}
    with pytest.raises(ValidationError, match="unique: acc"):
        AnalysisSpec.model_validate({"metrics": {"custom": [custom, custom]}})


def test_json_schema_shows_durations_as_strings() -> None:
    schema = AnalysisSpec.model_json_schema()
    assert schema["properties"]["interval"]["type"] == "string"
    assert schema["additionalProperties"] is False
