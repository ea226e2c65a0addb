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

from releasectl.analysis import (
    AnalysisSpec,
    Cause,
    Measurement,
    Outcome,
    Reading,
    Status,
    Verdict,
    format_duration,
    parse_duration,
    run_analysis,
)

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
    """Plays back readings; the last one repeats. A reading may be an exception to raise."""

    def __init__(self, readings: Iterable[Reading | Exception], read_cost: float = 0.0) -> None:
        self.readings = list(readings)
        self.calls = 0
        self.clock: FakeClock | None = None
        self.read_cost = read_cost

    def read(self) -> Reading:
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
) -> tuple[Verdict, list[Measurement], FakeClock]:
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

    assert verdict.outcome is Outcome.FAILED
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
    assert verdict.outcome is Outcome.FAILED
    assert verdict.intervals == 1
    assert clock.now == 2.0


def test_slow_p95_fails_naming_metric_value_and_threshold() -> None:
    analysis = spec(metrics={"latency_ms": {"p95": 100}})
    verdict, _, _ = watch(analysis, [healthy(**{"latency_ms.p95": 300.0})])

    assert verdict.outcome is Outcome.FAILED
    assert verdict.metric == "latency_ms.p95"
    assert verdict.value == 300.0
    assert verdict.threshold is not None and verdict.threshold.max == 100
    assert "latency_ms.p95 300 ms is above max 100 ms" in verdict.message


def test_accuracy_gauge_below_min_fails() -> None:
    analysis = spec(
        metrics={"custom": [{"name": "accuracy", "metric": "model_accuracy", "min": 0.9}]}
    )
    verdict, _, _ = watch(analysis, [healthy(accuracy=0.7)])

    assert verdict.outcome is Outcome.FAILED
    assert verdict.metric == "accuracy"
    assert "accuracy 0.7 is below min 0.9" in verdict.message


def test_healthy_version_passes_when_the_bake_ends() -> None:
    analysis = spec(metrics={"latency_ms": {"p95": 100, "p99": 250}})
    verdict, events, clock = watch(
        analysis, [healthy(**{"latency_ms.p95": 40.0, "latency_ms.p99": 90.0})]
    )

    assert verdict.outcome is Outcome.PASSED
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
    assert verdict.outcome is Outcome.PASSED
    assert verdict.tallies["error_rate"].failed == 1


def test_no_traffic_is_inconclusive_after_inconclusive_limit() -> None:
    verdict, events, _ = watch(spec(inconclusive_limit=2), [Reading(requests=0)])

    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.cause is Cause.INCONCLUSIVE_LIMIT
    assert verdict.intervals == 3
    assert verdict.message.startswith("needs a human")
    assert "no requests" in events[0].message


def test_too_few_requests_and_nan_are_inconclusive() -> None:
    analysis = spec(min_requests=20, inconclusive_limit=10)
    few = Reading({"error_rate": 0.0}, requests=19)
    nan = Reading({"error_rate": math.nan}, requests=100)
    _, events, _ = watch(analysis, [few, nan, healthy()])

    assert [e.status for e in events[:2]] == [Status.INCONCLUSIVE, Status.INCONCLUSIVE]
    assert "19 requests in the interval (min_requests 20)" in events[0].message
    assert events[1].value is None and "NaN" in events[1].message


def test_bake_without_a_successful_measurement_is_inconclusive() -> None:
    analysis = spec(
        inconclusive_limit=100,
        metrics={"custom": [{"name": "accuracy", "metric": "model_accuracy", "min": 0.9}]},
    )
    verdict, _, _ = watch(analysis, [healthy()])  # the gauge never shows up

    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert verdict.cause is Cause.NO_SUCCESS
    assert "successful measurement of accuracy" in verdict.message


def test_unreadable_metrics_never_pass_and_never_crash() -> None:
    verdict, events, _ = watch(
        spec(consecutive_error_limit=2, bake="1m"), [ConnectionError("connection refused")]
    )

    assert verdict.outcome is Outcome.FAILED
    assert verdict.cause is Cause.ERROR_LIMIT
    assert verdict.intervals == 3
    assert "could not read metrics" in verdict.message
    assert "connection refused" in verdict.message
    assert all(e.status is Status.ERROR for e in events)


def test_a_bug_in_a_source_is_an_error_not_a_crash() -> None:
    verdict, _, _ = watch(spec(consecutive_error_limit=0), [ZeroDivisionError()])
    assert verdict.outcome is Outcome.FAILED
    assert "ZeroDivisionError" in verdict.message


def test_the_baseline_read_failing_counts_as_an_error() -> None:
    clock = FakeClock()
    source = ScriptedSource([OSError("down"), Reading(baseline=True), healthy()])
    verdict = run_analysis(spec(), source, VERSION, clock=clock, sleep=clock.sleep)
    assert verdict.outcome is Outcome.PASSED
    assert verdict.tallies["error_rate"].errors == 1


def test_errors_between_successes_reset_the_consecutive_count() -> None:
    flaky: list[Reading | Exception] = [OSError("blip"), healthy()] * 10
    verdict, _, _ = watch(spec(consecutive_error_limit=1, bake="20s"), flaky)
    assert verdict.outcome is Outcome.PASSED
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
    assert verdict.outcome is Outcome.INCONCLUSIVE  # accuracy has no data

    verdict, _, _ = watch(analysis, [Reading({"accuracy": 0.1}, requests=0)])
    assert verdict.outcome is Outcome.FAILED


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
    }


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
