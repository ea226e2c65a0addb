"""Agreement: the AnalysisTemplate a release renders for Argo Rollouts and `watch`
reach the same verdict on the same data.

Two real iris bentos serve under load, a healthy 1.0.0 and a faulty 2.0.0 (5xx
errors, added latency, wrong predictions); a real Prometheus scrapes both. In the
cluster, the version label comes from the pod label through relabelling; here each
scrape target carries it as a static label, which is the same label on the same
series (and so does the `model` label; a faulty wine 1.0.0 is scraped beside the
healthy iris 1.0.0 and must not be judged with it). For error rate, a latency
quantile and a custom metric, each alone in the
analysis block, two judges run side by side against that Prometheus:

- `watch`'s engine (`run_analysis`) with the Prometheus source scoped by `version`;
- the template's metric run as the Argo Rollouts controller runs it: its query
  (from `queries()`) through Prometheus's HTTP API every interval, its success and
  failure conditions evaluated (testing/argo.py), its limits applied.

A version nobody serves is the third case: no data must be inconclusive on both sides.

Prometheus scrapes every SCRAPE seconds, as a cluster's does (10 s here; 30 s is
kube-prometheus-stack's default), and the analysis declares it: every range is derived
from it (four scrapes), never shorter, so `rate` has the samples it needs. The
interval and the bake are derived from it too, to keep the wall time to a few
intervals. Ranges of one interval (as releasectl made them before) give no data here.

The same served bentos answer the smoke requests of the pre-promotion analysis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from releasectl.analysis.engine import Judgement, run_analysis
from releasectl.analysis.promql import query_range
from releasectl.analysis.sources import PrometheusSource
from releasectl.bundles.archive import export, extract
from releasectl.loopback import free_port
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.manifest.durations import parse_duration
from releasectl.render.analysis_template import (
    VERSION_LABEL,
    analysis_template,
    queries,
)
from releasectl.render.smoke import smoke_template
from testing.argo import assert_both_judge, judged_both_ways, run_metric, run_web_metric
from testing.bentos import build_iris, copy_iris_sources, serving
from testing.prometheus import prometheus_scraping, prometheus_values
from testing.traffic import Load

pytestmark = pytest.mark.slow

HEALTHY, FAULTY, ABSENT = "1.0.0", "2.0.0", "9.9.9"
SCRAPE = 10  # seconds between Prometheus' scrapes of each bento
FAULTS = {"error_ratio": 0.2, "added_latency_ms": 300, "degrade": True}
METRICS: dict[str, dict[str, Any]] = {
    "error_rate": {"error_rate": {"max": 0.05}},
    "latency_ms.p95": {"error_rate": None, "latency_ms": {"p95": 200}},
    "accuracy": {
        "error_rate": None,
        "custom": [
            {
                "name": "accuracy",
                # A custom query is the team's own: it selects the model too.
                "query": 'min(iris_rolling_accuracy{model="iris",version="$version"})',
                "min": 0.9,
            }
        ],
    },
    # The scaffold's form: the gauge's name alone, selected by the version's labels.
    "accuracy_gauge": {
        "error_rate": None,
        "custom": [{"name": "accuracy_gauge", "metric": "iris_rolling_accuracy", "min": 0.9}],
    },
}
SMOKE = {
    "path": "/predict",
    "json": {"features": [5.1, 3.5, 1.4, 0.2]},
    "expect": {"field": "label", "equals": "setosa"},
}
EXPECTED = {HEALTHY: "Successful", FAULTY: "Failed", ABSENT: "Inconclusive"}
# watch's verdicts in Argo's words; an Error run aborts the rollout as a failure does.
WATCH_AS_ARGO = {
    Judgement.PASSED: "Successful",
    Judgement.FAILED: "Failed",
    Judgement.INCONCLUSIVE: "Inconclusive",
}


def analysis(prometheus: str, metric: str) -> AnalysisSpec:
    return AnalysisSpec.model_validate(
        {
            # One measurement per scrape, three in the bake: as short as a run can be
            # while a failure still needs two failed measurements (failure_limit 1).
            "interval": f"{SCRAPE}s",
            "bake": f"{3 * SCRAPE}s",
            "min_requests": 5,
            "failure_limit": 1,
            "inconclusive_limit": 2,
            "consecutive_error_limit": 2,
            # No window: the ranges come from the scrape interval alone.
            "source": {"kind": "prometheus", "url": prometheus, "scrape_interval": f"{SCRAPE}s"},
            "metrics": METRICS[metric],
            "smoke": [SMOKE],
        }
    )


def ready_queries(version: str) -> list[str]:
    """Data the judges need, asked independently of the product's ranges: a rate over
    a range that holds two scrapes, and the accuracy gauge (fed by the load's feedback)."""
    scope = f'{{model="iris",version="{version}"}}'
    return [
        f"sum(rate(bentoml_service_request_total{scope}[{3 * SCRAPE}s]))",
        f"min(iris_rolling_accuracy{scope})",
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The two versions built from the iris example, each served with its own home."""
    root = tmp_path_factory.mktemp("agreement")
    with ExitStack() as stack:
        urls = {}
        for version, faults in ((HEALTHY, None), (FAULTY, FAULTS)):
            src = copy_iris_sources(root / version / "src", faults)
            home = root / version / "bentoml"
            bento = build_iris(src, home, version)
            # Served as a target serves a release: the exported bundle, models inside.
            archive = export(bento, root / version / "out", home)
            extracted = extract(archive, root / version / "bento")
            urls[version] = stack.enter_context(serving(extracted, root / version / "slot"))
        # Load all along: predictions with their true labels, so accuracy is known.
        stack.enter_context(Load(urls[HEALTHY], rate=30, feedback=True))
        stack.enter_context(Load(urls[FAULTY], rate=20, clients=10, feedback=True))
        yield urls


@pytest.fixture(scope="module")
def prometheus(served: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's Prometheus scraping both servers every SCRAPE seconds, each target
    labelled with its version; ready when both have two scrapes and accuracy."""
    home = tmp_path_factory.mktemp("prometheus")
    ready_when = [promql for version in served for promql in ready_queries(version)]
    # Another model's pods at the healthy version: the faulty server scraped again as
    # wine 1.0.0. Were the queries scoped by version alone, iris 1.0.0 would fail.
    wine = [("wine", HEALTHY, served[FAULTY])]
    with prometheus_scraping(
        home, free_port(), served, ready_when, strangers=wine, scrape_interval=f"{SCRAPE}s"
    ) as url:
        yield url


def _watch(url: str, metric: str, version: str) -> tuple[str, str]:
    spec = analysis(url, metric)
    with PrometheusSource(url, spec, version, version_label=VERSION_LABEL, model="iris") as source:
        verdict = run_analysis(spec, source, version)
    return WATCH_AS_ARGO[verdict.outcome], verdict.message


def _argo(url: str, metric: str, version: str) -> tuple[str, list[str]]:
    spec = analysis(url, metric)
    [template_metric] = analysis_template(spec, "iris", name="iris")["spec"]["metrics"]
    assert template_metric["name"] == metric
    promql = queries(spec, "iris", version)[metric]
    phase, phases = run_metric(
        template_metric, lambda: prometheus_values(url, promql), seconds=parse_duration
    )
    return ("Failed" if phase == "Error" else phase), phases


@pytest.fixture(scope="module")
def verdicts(prometheus: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Both judges for every metric and version, all at once (they only read)."""
    cases = [(metric, version) for metric in METRICS for version in EXPECTED]
    return judged_both_ways(prometheus, cases, _watch, _argo)


@pytest.mark.parametrize("version", list(EXPECTED))
@pytest.mark.parametrize("metric", list(METRICS))
def test_the_template_and_watch_agree(
    verdicts: dict[tuple[str, str], dict[str, Any]], metric: str, version: str
) -> None:
    assert_both_judge(verdicts, (metric, version), EXPECTED[version])


def test_the_ranges_span_four_scrapes_and_the_product_s_queries_have_data(prometheus: str) -> None:
    """At a cluster's scrape interval, every query the template and watch run returns a
    number for a served version: ranges of one interval (as before) hold one sample."""
    for metric in METRICS:
        spec = analysis(prometheus, metric)
        assert query_range(spec) == 4 * SCRAPE
        for version in (HEALTHY, FAULTY):
            for name, promql in queries(spec, "iris", version).items():
                values = prometheus_values(prometheus, promql)
                assert values and all(v == v for v in values), (metric, version, name, promql)


@pytest.mark.parametrize(("version", "expected"), [(HEALTHY, "Successful"), (FAULTY, "Failed")])
def test_the_smoke_condition_judges_a_served_bento_s_answers(
    served: dict[str, str], version: str, expected: str
) -> None:
    """The pre-promotion smoke metric, its request sent as Argo's web provider sends it,
    to a real served bento: the right answer passes, a wrong one (2.0.0 degrades every
    prediction) fails."""
    spec = analysis("http://unused", "error_rate")
    template = smoke_template(spec, "iris", namespace="ml", port=80, labels={})
    assert template is not None
    [metric] = template["spec"]["metrics"]
    phase, phases = run_web_metric(metric, served[version])
    assert phase == expected, phases
