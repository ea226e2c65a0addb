"""The AnalysisTemplate made from a release's `analysis` block: its limits, its
queries (the Prometheus source's own, scoped by `version`), and its conditions,
which judge every value as `watch` does and leave missing data inconclusive.
Also the condition evaluator the agreement test (test_k8s_agreement.py) relies on."""

from __future__ import annotations

import math
from typing import Any

import pytest

from releasectl.analysis.engine import Status, checks_for, judge
from releasectl.analysis.sources import PrometheusSource, _reduce
from releasectl.errors import BadInput
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.render.analysis_template import (
    DEFAULT_PROMETHEUS,
    analysis_template,
    measurement_count,
    queries,
)
from testing.argo import evaluate, measurement_phase, metric_phase

PROM = "http://prometheus.monitoring:9090"
ACCURACY = {"name": "accuracy", "query": 'min(acc{version="$version"})', "min": 0.9}
BANDED = {"name": "drift", "query": "max(drift{version=$version})", "min": -0.5, "max": 0.25}


def spec(**overrides: Any) -> AnalysisSpec:
    data: dict[str, Any] = {
        "interval": "10s",
        "bake": "1m",
        "min_requests": 20,
        "failure_limit": 2,
        "inconclusive_limit": 3,
        "consecutive_error_limit": 5,
        "source": {"kind": "prometheus", "url": PROM, "window": "30s"},
        "metrics": {
            "error_rate": {"max": 0.05},
            "latency_ms": {"p95": 250, "p99": 400},
            "custom": [ACCURACY, BANDED],
        },
    }
    data.update(overrides)
    return AnalysisSpec.model_validate(data)


# --- the evaluator ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "result", "expected"),
    [
        ("result[0] <= 0.05", [0.01], True),
        ("result[0] <= 0.05", [0.2], False),
        ("result[0] <= 0.05", [math.nan], False),  # any comparison with NaN is false
        ("result[0] > 0.05", [math.nan], False),
        ("len(result) == 0", [], True),
        ("len(result) == 0", [1.0], False),
        ("isNaN(result[0])", [math.nan], True),
        ("!isNaN(result[0])", [math.nan], False),
        ("any(result, {# > 1})", [0.5, 2.0], True),
        ("all(result, {# > 1})", [0.5, 2.0], False),
        ("all(result, {# > 1})", [], True),
        ("any(result, {# > 1})", [], False),
        ("1 > 2 && 1 > 2 || 2 > 1", [], True),  # && binds tighter than ||
        ("1 > 2 && (1 > 2 || 2 > 1)", [], False),
        ("!(1 > 2) && !!(2 > 1)", [], True),
    ],
)
def test_the_evaluator_reads_the_grammar_it_is_for(
    condition: str, result: list[float], expected: bool
) -> None:
    assert evaluate(condition, result) is expected


def test_the_evaluator_refuses_what_it_was_not_written_for() -> None:
    for text in ("result[0] <= ", "result[0] <= 0.05 extra", "sum(result) > 1", "result + 1"):
        with pytest.raises(SyntaxError):
            evaluate(text, [1.0])
    with pytest.raises(IndexError):
        evaluate("result[0] > 1", [])


def test_a_condition_that_cannot_be_evaluated_is_an_error_measurement() -> None:
    metric = {"successCondition": "result[0] <= 0.05", "failureCondition": "result[0] > 0.05"}
    assert measurement_phase(metric, []) == "Error"
    assert measurement_phase(metric, [0.2]) == "Failed"
    assert measurement_phase(metric, [0.01]) == "Successful"


def test_the_run_rules_count_past_the_limits() -> None:
    metric = {"failureLimit": 1, "inconclusiveLimit": 1, "consecutiveErrorLimit": 1, "count": 3}
    assert metric_phase(metric, ["Failed"]) is None
    assert metric_phase(metric, ["Failed", "Successful", "Failed"]) == "Failed"
    assert metric_phase(metric, ["Error", "Error"]) == "Error"
    # An Error is no measurement toward count (Argo: "measured without Error").
    assert metric_phase(metric, ["Error", "Successful", "Error"]) is None
    assert metric_phase(metric, ["Successful", "Error", "Successful", "Successful"]) == "Successful"
    assert metric_phase(metric, ["Inconclusive", "Inconclusive"]) == "Inconclusive"
    assert metric_phase(metric, ["Successful", "Inconclusive"]) is None


# --- the template -----------------------------------------------------------------------


def test_limits_interval_and_count_come_from_the_analysis_block() -> None:
    template = analysis_template(spec(), "iris", name="iris-analysis")
    assert template["apiVersion"] == "argoproj.io/v1alpha1"
    assert template["kind"] == "AnalysisTemplate"
    assert template["metadata"]["name"] == "iris-analysis"
    assert template["metadata"]["labels"]["app.kubernetes.io/name"] == "iris"
    assert template["spec"]["args"] == [{"name": "version"}]
    metrics = template["spec"]["metrics"]
    assert [m["name"] for m in metrics] == [c.name for c in checks_for(spec())]
    for metric in metrics:
        assert metric["interval"] == "10s" and metric["initialDelay"] == "10s"
        assert metric["count"] == 6  # a 1m bake, one measurement every 10s
        assert (metric["failureLimit"], metric["inconclusiveLimit"]) == (2, 3)
        assert metric["consecutiveErrorLimit"] == 5
        assert metric["provider"]["prometheus"]["address"] == PROM
        query = metric["provider"]["prometheus"]["query"]
        assert 'version="{{args.version}}"' in query
        # Built queries select the model too: another model at the same version is not it.
        assert "bentoml_" not in query or 'model="iris"' in query
    assert sum('model="iris"' in m["provider"]["prometheus"]["query"] for m in metrics) >= 2


def test_count_covers_the_bake_as_watch_measures_it() -> None:
    assert measurement_count(spec(interval="10s", bake="1m")) == 6
    assert measurement_count(spec(interval="7s", bake="20s")) == 3  # 7, 14, 21 >= 20
    assert measurement_count(spec(interval="1s", bake="1s")) == 1


def test_an_all_inconclusive_run_is_never_a_pass() -> None:
    # Argo passes a run whose inconclusive measurements stay within the limit; watch
    # passes nothing without a success. The limit stays below the count.
    short = spec(interval="10s", bake="30s", inconclusive_limit=5)
    [metric, *_] = analysis_template(short, "iris", name="iris")["spec"]["metrics"]
    assert metric["count"] == 3 and metric["inconclusiveLimit"] == 2
    assert metric_phase(metric, ["Inconclusive"] * 3) == "Inconclusive"


def test_the_address_is_an_argument_or_the_prometheus_source_or_the_default() -> None:
    cluster = "http://prometheus-server.monitoring.svc:80"
    template = analysis_template(spec(), "iris", name="iris", address=cluster)
    assert {m["provider"]["prometheus"]["address"] for m in template["spec"]["metrics"]} == {
        cluster
    }
    scrape = spec(source="scrape", metrics={"error_rate": {"max": 0.05}})
    [metric] = analysis_template(scrape, "iris", name="iris")["spec"]["metrics"]
    assert metric["provider"]["prometheus"]["address"] == DEFAULT_PROMETHEUS


def test_the_queries_are_the_prometheus_sources_scoped_by_model_and_version() -> None:
    analysis = spec()
    ours = queries(analysis, "iris", "1.4.0")
    source = PrometheusSource(PROM, analysis, "1.4.0", version_label="version", model="iris")
    try:
        for name, promql in ours.items():
            # watch's own query, with the version label of the cluster
            assert source.queries[name] in promql
            assert 'version="1.4.0"' in promql and "service_version" not in promql
            assert "{{" not in promql
    finally:
        source.close()
    assert 'model="iris"' in ours["error_rate"] and 'model="iris"' in source.queries["requests"]
    assert 'model="wine"' in queries(analysis, "wine", "1.4.0")["error_rate"]
    # per-request metrics say nothing below min_requests; gauges are judged as read
    assert ours["error_rate"].endswith(f"and on() ({source.queries['requests']} >= 20)")
    assert ours["accuracy"] == 'min(acc{version="1.4.0"})'
    assert ours["drift"] == 'max(drift{version="1.4.0"})'  # $version outside quotes: quoted


def test_a_version_that_is_not_semver_is_refused() -> None:
    with pytest.raises(BadInput):
        queries(spec(), "iris", '1.0"} or vector(0) #')


# --- the conditions judge as watch judges ----------------------------------------------

VALUES = [
    [],
    [math.nan],
    [math.nan, math.nan],
    [0.0],
    [0.05],
    [0.0500001],
    [0.2],
    [250.0],
    [250.5],
    [399.0],
    [-0.5],
    [-0.6],
    [0.25],
    [0.3],
    [0.95],
    [0.89],
    [math.inf],
    [-math.inf],
    [math.nan, 0.01],
    [0.01, 0.2],
    [0.95, 0.5, math.nan],
    [0.2, -0.7],
]
STATUS = {
    Status.SUCCESSFUL: "Successful",
    Status.FAILED: "Failed",
    Status.INCONCLUSIVE: "Inconclusive",
}


@pytest.mark.parametrize("values", VALUES, ids=repr)
def test_each_metrics_conditions_give_watchs_judgement(values: list[float]) -> None:
    analysis = spec()
    template = analysis_template(analysis, "iris", name="i")
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    for check in checks_for(analysis):
        # as watch reads it: no series is no data, several are judged by the worst
        value = _reduce(values, check.min, check.max)
        status, _ = judge(check, value, requests=1000, min_requests=analysis.min_requests)
        assert measurement_phase(metrics[check.name], values) == STATUS[status], (
            check.name,
            values,
        )
