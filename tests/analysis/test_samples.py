"""A gauge needs its own evidence (docs/ARCHITECTURE.md, "Analysis"): a
custom metric may name the counter of the samples behind it (`samples`) and
`min_samples`; until the counter grew by that many within the gauge's window, the
measurement is pending, as for too few requests. The issue's case: the first
accuracy reading came from 3 feedback labels (0.73 < 0.8) on a release that measured
0.85 once 20 had arrived. Time is the injected clock; the exporter is a real
prometheus_client HTTP server on 127.0.0.1 scraped by the real scrape source."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from pydantic import ValidationError

from releasectl.analysis.engine import Judgement, Reading, Status, run_analysis
from releasectl.analysis.sources import ScrapeSource
from releasectl.loopback import free_port
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.render.analysis_template import analysis_template

VERSION = "1.1.0"
ACCURACY = {"name": "accuracy", "metric": "model_accuracy", "min": 0.8}
EVIDENCE = {"samples": "model_feedback_total", "min_samples": 20}


def spec(accuracy: dict[str, Any], **overrides: Any) -> AnalysisSpec:
    data: dict[str, Any] = {
        "interval": "2s",
        "bake": "10s",
        "min_requests": 1,
        "failure_limit": 0,
        "metrics": {"error_rate": {"max": 0.05}, "custom": [accuracy]},
        **overrides,
    }
    return AnalysisSpec.model_validate(data)


class Model:
    """A model server's metrics: requests, the rolling accuracy and its feedback counter,
    exported over real HTTP by prometheus_client."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["endpoint", "http_response_code", "service_name", "service_version"]
        self.requests = Counter(
            "bentoml_service_request", "requests", labels, registry=self.registry
        )
        self.accuracy = Gauge(
            "model_accuracy", "accuracy", ["service_version"], registry=self.registry
        )
        self.feedback = Counter(
            "model_feedback", "labels", ["service_version"], registry=self.registry
        )
        self.server, self.thread = start_http_server(free_port(), "127.0.0.1", self.registry)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def interval(self, labels: int, accuracy: float) -> None:
        self.requests.labels("/predict", "200", "iris", VERSION).inc(10)
        self.feedback.labels(VERSION).inc(labels)
        self.accuracy.labels(VERSION).set(accuracy)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def model() -> Iterator[Model]:
    served = Model()
    try:
        yield served
    finally:
        served.stop()


class Clock:
    """The watch's time; each interval's traffic happens while it sleeps."""

    def __init__(self, model: Model, script: list[tuple[int, float]]) -> None:
        self.now, self.model, self.script = 0.0, model, list(script)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        labels, accuracy = self.script.pop(0) if self.script else (0, 0.86)
        self.model.interval(labels, accuracy)


# Labels per interval and the accuracy they give: few at first, then the true value.
EARLY_FEW = [(3, 0.73), (6, 0.75), (15, 0.85), (20, 0.86), (25, 0.87)]


def watch(analysis: AnalysisSpec, model: Model) -> tuple[Any, list[Any]]:
    clock = Clock(model, EARLY_FEW)
    events: list[Any] = []
    with ScrapeSource(model.url, analysis, VERSION, service_name="iris") as source:
        verdict = run_analysis(
            analysis, source, VERSION, clock=clock, sleep=clock.sleep, on_measurement=events.append
        )
    return verdict, [e for e in events if e.metric == "accuracy"]


def test_a_gauge_from_too_few_samples_is_pending_not_failed(model: Model) -> None:
    verdict, accuracy = watch(spec({**ACCURACY, **EVIDENCE}), model)
    assert verdict.outcome is Judgement.PASSED, verdict.message
    statuses = [e.status for e in accuracy]
    assert statuses[:3] == [Status.PENDING, Status.PENDING, Status.SUCCESSFUL]
    first = accuracy[0]
    assert first.samples == 3 and first.value == pytest.approx(0.73)
    assert "3 samples of model_feedback_total: fewer than min_samples 20" in first.message
    assert "window stays open" in first.message
    # The window spans intervals until 24 labels arrived; then a new one opens.
    assert (accuracy[2].window_intervals, accuracy[2].samples) == (3, 24)
    assert (accuracy[3].window_intervals, accuracy[3].samples) == (1, 20)
    assert verdict.tallies["accuracy"].failed == 0


def test_without_samples_the_first_few_labels_fail_the_release(model: Model) -> None:
    """What the issue saw: judged on 3 labels, the good release spends its budget."""
    verdict, accuracy = watch(spec(ACCURACY), model)
    assert verdict.outcome is Judgement.FAILED and accuracy[0].status is Status.FAILED
    assert accuracy[0].samples is None and "samples" not in accuracy[0].model_dump_json()


class Scripted:
    def __init__(self, readings: list[Reading]) -> None:
        self.readings = readings

    def read(self, window: Any) -> Reading:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


def _run(analysis: AnalysisSpec, readings: list[Reading]) -> tuple[Any, list[Any]]:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    events: list[Any] = []
    verdict = run_analysis(
        analysis,
        Scripted(readings),
        VERSION,
        clock=lambda: now[0],
        sleep=sleep,
        on_measurement=events.append,
    )
    return verdict, [e for e in events if e.metric == "accuracy"]


def _reading(accuracy: float, labels: float) -> Reading:
    return Reading(
        values={"error_rate": 0.0, "accuracy": accuracy}, requests=10, samples={"accuracy": labels}
    )


def test_a_bake_that_never_gathers_the_samples_needs_a_human() -> None:
    verdict, accuracy = _run(
        spec({**ACCURACY, **EVIDENCE}),
        [Reading(baseline=True, samples={"accuracy": 7})]
        + [_reading(0.5, 7 + n) for n in range(1, 7)],
    )
    assert verdict.outcome is Judgement.INCONCLUSIVE, verdict.message
    assert "without a successful measurement of accuracy" in verdict.message
    assert [e.status for e in accuracy][-1] is Status.INCONCLUSIVE
    assert "when the bake ended" in accuracy[-1].message
    assert {e.status for e in accuracy[:-1]} == {Status.PENDING}
    assert accuracy[0].samples == 1  # counted from the baseline's 7, not from zero


def test_a_counter_that_restarts_counts_from_zero() -> None:
    verdict, accuracy = _run(
        spec({**ACCURACY, **EVIDENCE}),
        [Reading(baseline=True, samples={"accuracy": 30}), _reading(0.9, 5), _reading(0.9, 25)],
    )
    assert [e.samples for e in accuracy[:2]] == [5, 25]
    assert [e.status for e in accuracy[:2]] == [Status.PENDING, Status.SUCCESSFUL]
    assert verdict.outcome is Judgement.PASSED


def test_min_samples_needs_its_counter_and_samples_alone_needs_one() -> None:
    with pytest.raises(ValidationError, match="min_samples needs 'samples'"):
        spec({**ACCURACY, "min_samples": 5})
    [custom] = spec({**ACCURACY, "samples": "model_feedback_total"}).metrics.custom
    assert custom.needed_samples == 1


def test_the_cluster_template_gives_no_result_until_the_samples_grew() -> None:
    analysis = spec(
        {"name": "accuracy", "query": 'min(model_accuracy{version="$version"})', "min": 0.8}
        | EVIDENCE,
        source={"kind": "prometheus", "url": "http://127.0.0.1:9", "window": "2m"},
    )
    template = analysis_template(analysis, "iris", name="iris")
    [metric] = [m for m in template["spec"]["metrics"] if m["name"] == "accuracy"]
    query = metric["provider"]["prometheus"]["query"]
    grown = 'sum(increase(model_feedback_total{version="{{args.version}}",model="iris"}[120s]))'
    assert query.endswith(f") and on() ({grown} >= 20)"), query
