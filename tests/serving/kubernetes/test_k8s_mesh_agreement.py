"""Agreement on the mesh's figures: a canary routed by Istio is judged on Istio's
request metrics for the destination version (render/mesh.py), and the rendered
AnalysisTemplate and `watch`'s engine reach the same verdict on them.

A mesh-style exposition (testing/mesh.py: `istio_requests_total` and
`istio_request_duration_milliseconds_bucket` as the destination proxies report
them) serves a healthy iris 1.0.0, a failing iris 2.0.0 (20% 503s, 30% slow), and
failing strangers at the healthy version (another model, another namespace) that
scoping must leave out; a real Prometheus scrapes it every second. For error rate and
a latency quantile, the template's metric runs as the Argo Rollouts controller runs
it (testing/argo.py) and `watch`'s engine (`run_analysis`) reads the same numbers
through the source the kubernetes target gives a canary routed by Istio
(`Kubernetes.metric_source`); a version nobody serves is inconclusive on both sides
(docs/ARCHITECTURE.md, "Kubernetes", "The canary")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from releasectl.analysis.engine import Judgement, run_analysis
from releasectl.analysis.sources import PrometheusSource
from releasectl.loopback import free_port
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.manifest.durations import parse_duration
from releasectl.manifest.schema import Manifest
from releasectl.render.analysis_template import analysis_template, queries
from releasectl.render.mesh import MEASURED, Mesh
from releasectl.serving.targets import Kubernetes, Live
from testing.argo import assert_both_judge, judged_both_ways, run_metric
from testing.kubernetes import REPOSITORY, image
from testing.mesh import mesh_exposition
from testing.prometheus import prometheus_scraping, prometheus_values

pytestmark = pytest.mark.slow

HEALTHY, FAILING, ABSENT = "1.0.0", "2.0.0", "9.9.9"
MESH = Mesh("iris", "models")
METRICS: dict[str, dict[str, Any]] = {
    "error_rate": {"error_rate": {"max": 0.05}},
    "latency_ms.p95": {"error_rate": None, "latency_ms": {"p95": 200}},
}
EXPECTED = {HEALTHY: "Successful", FAILING: "Failed", ABSENT: "Inconclusive"}
WATCH_AS_ARGO = {
    Judgement.PASSED: "Successful",
    Judgement.FAILED: "Failed",
    Judgement.INCONCLUSIVE: "Inconclusive",
}


def _analysis(prometheus: str, metric: str) -> dict[str, Any]:
    # Three measurements two seconds apart over four one-second scrapes: a failure
    # still needs two failed measurements (failure_limit 1).
    return {
        "interval": "2s",
        "bake": "6s",
        "min_requests": 5,
        "failure_limit": 1,
        "inconclusive_limit": 2,
        "consecutive_error_limit": 2,
        "source": {"kind": "prometheus", "url": prometheus, "scrape_interval": "1s"},
        "metrics": METRICS[metric],
    }


def analysis(prometheus: str, metric: str) -> AnalysisSpec:
    return AnalysisSpec.model_validate(_analysis(prometheus, metric))


def canary(prometheus: str, metric: str, version: str, router: dict[str, Any]) -> Live:
    """iris `version` as a kubernetes canary behind `router`, judged as `watch` judges it."""
    manifest = Manifest.model_validate(
        {
            "apiVersion": "releasectl/v1",
            "model": "iris",
            "version": version,
            "serial": 1,
            "bundle": {"bento": "iris", "image": image(1)},
            "analysis": _analysis(prometheus, metric),
            "deploy": {
                "target": "kubernetes",
                "strategy": {"kind": "canary", "steps": [{"weight": 10, "for": "1s"}]},
                "kubernetes": {"image": REPOSITORY, "namespace": "models", "traffic": router},
            },
        }
    )
    return Live("iris", version, manifest)


ISTIO = {"istio": {"virtual_service": "iris"}}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus scraping the mesh exposition every second; ready when both
    served versions have a full range of samples."""
    with mesh_exposition(free_port()) as proxy:
        ready = [
            f'sum(rate(istio_requests_total{{destination_canonical_revision="{v}"}}[4s]))'
            for v in (HEALTHY, FAILING)
        ]
        # The target's own labels are not the ones the mesh queries select on.
        with prometheus_scraping(
            tmp_path_factory.mktemp("prometheus"),
            free_port(),
            {"proxy": proxy},
            ready,
            model="istio-proxy",
            scrape_interval="1s",
        ) as url:
            yield url


def _watch(url: str, metric: str, version: str) -> tuple[str, str]:
    live = canary(url, metric, version, ISTIO)
    with Kubernetes(live.manifest).metric_source(live) as source:
        verdict = run_analysis(live.manifest.analysis, source, version)
    return WATCH_AS_ARGO[verdict.outcome], verdict.message


def _argo(url: str, metric: str, version: str) -> tuple[str, list[str]]:
    spec = analysis(url, metric)
    [template_metric] = analysis_template(spec, "iris", name="iris", mesh=MESH)["spec"]["metrics"]
    promql = queries(spec, "iris", version, MESH)[metric]
    assert "istio_" in promql and "bentoml" not in promql
    phase, phases = run_metric(
        template_metric, lambda: prometheus_values(url, promql), seconds=parse_duration
    )
    return ("Failed" if phase == "Error" else phase), phases


@pytest.fixture(scope="module")
def verdicts(prometheus: str) -> dict[tuple[str, str], dict[str, Any]]:
    cases = [(metric, version) for metric in METRICS for version in EXPECTED]
    return judged_both_ways(prometheus, cases, _watch, _argo)


@pytest.mark.parametrize("version", list(EXPECTED))
@pytest.mark.parametrize("metric", list(METRICS))
def test_the_mesh_queries_and_the_engine_agree(
    verdicts: dict[tuple[str, str], dict[str, Any]], metric: str, version: str
) -> None:
    assert_both_judge(verdicts, (metric, version), EXPECTED[version])


def test_watch_reads_the_rollouts_queries_and_marks_the_pods_own_figures() -> None:
    """The canary's source asks Prometheus the rendered AnalysisTemplate's queries for
    the mesh's metrics; behind the Gateway API (no standard request metrics) it keeps
    the pods' own figures, marked self-reported, as the render marks them."""
    url = "http://127.0.0.1:9"  # never asked: only the queries are compared
    for metric in METRICS:
        live = canary(url, metric, FAILING, ISTIO)
        with Kubernetes(live.manifest).metric_source(live) as source:
            assert isinstance(source, PrometheusSource)
            rendered = queries(live.manifest.analysis, "iris", FAILING, MESH)
            # The template's query is the source's, with its min_requests guard around it.
            assert all(source.queries[k] in rendered[k] for k in rendered), rendered
            assert set(rendered) <= MEASURED and not source.self_reported
        gateway = canary(url, metric, FAILING, {"gateway_api": {"http_route": "iris"}})
        with Kubernetes(gateway.manifest).metric_source(gateway) as source:
            assert isinstance(source, PrometheusSource)
            assert "istio_" not in " ".join(source.queries.values())
            assert source.self_reported == {c for c in source.queries if c != "requests"}
