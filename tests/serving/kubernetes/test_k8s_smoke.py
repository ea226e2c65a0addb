"""Pre-promotion analysis needs no client traffic (docs/ARCHITECTURE.md,
"Analysis in the cluster"): the preview Service gets none, so a Rollout's
pre-promotion analysis is the model's smoke requests (Argo Rollouts `web` metrics)
or nothing, and every traffic threshold runs after promotion. In-process over every
strategy and every metric kind; the smoke conditions on a real served bento's
answers are in test_k8s_agreement.py, beside its served bentos."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from releasectl.manifest import schema as mf
from releasectl.manifest.edits import render_new
from releasectl.render.kubernetes import objects
from releasectl.render.smoke import json_path
from testing.argo import evaluate, json_path_value

IMAGE = "registry.example/ml/iris@sha256:" + "ab" * 32
PROM = {"kind": "prometheus", "url": "http://prometheus.monitoring.svc:9090"}
METRIC_KINDS: dict[str, dict[str, Any]] = {
    "error_rate": {"error_rate": {"max": 0.05}},
    "latency": {"error_rate": None, "latency_ms": {"p95": 250}},
    "gauge": {"error_rate": None, "custom": [{"name": "acc", "metric": "acc_g", "min": 0.9}]},
    "query": {"error_rate": None, "custom": [{"name": "acc", "query": "min(acc)", "min": 0.9}]},
    "all": {
        "error_rate": {"max": 0.05},
        "latency_ms": {"p99": 400},
        "custom": [{"name": "acc", "metric": "acc_g", "min": 0.9}],
    },
}
SMOKE = [
    {
        "path": "/predict",
        "json": {"features": [5.1, 3.5, 1.4, 0.2]},
        "expect": {"field": "label", "equals": "setosa"},
    },
    {
        "path": "/predict",
        "json": {"features": [6.7, 3.0, 5.2, 2.3]},
        "expect": {"field": "class", "equals": 2},
    },
]


def manifest(strategy: str, metrics: dict[str, Any], smoke: list[Any]) -> mf.Manifest:
    new = mf.load(render_new("iris"), "iris")
    document = json.loads(json.dumps(new.model_dump(mode="json", by_alias=True, exclude_none=True)))
    document["bundle"]["image"] = IMAGE
    document["deploy"] |= {
        "target": "kubernetes",
        "strategy": {"kind": strategy},
        "kubernetes": {"image": IMAGE.split("@")[0], "namespace": "ml"},
    }
    document["analysis"] = {"source": PROM, "metrics": metrics, "smoke": smoke}
    return mf.validate(document, "release.yaml", model="iris")


CASES = list(itertools.product(["bluegreen", "deployment"], METRIC_KINDS, [False, True]))


@pytest.mark.parametrize(("strategy", "kind", "smoke"), CASES)
def test_no_pre_promotion_metric_needs_client_traffic(
    strategy: str, kind: str, smoke: bool
) -> None:
    rendered = objects(manifest(strategy, METRIC_KINDS[kind], SMOKE if smoke else []), 1)
    templates = {
        o["metadata"]["name"]: o for o in rendered.values() if o["kind"] == "AnalysisTemplate"
    }
    workloads = [o for o in rendered.values() if o["kind"] in ("Rollout", "Deployment")]
    assert len(workloads) == 1
    if strategy == "deployment":
        # No Rollouts controller reads a Deployment: no analysis is rendered at all.
        assert workloads[0]["kind"] == "Deployment" and templates == {}
        return
    blue_green = workloads[0]["spec"]["strategy"]["blueGreen"]
    pre_analysis = blue_green.get("prePromotionAnalysis", {})
    pre = [t["templateName"] for t in pre_analysis.get("templates", [])]
    post = [t["templateName"] for t in blue_green["postPromotionAnalysis"]["templates"]]
    assert pre == (["iris-smoke"] if smoke else [])
    assert post == ["iris"]
    for name in pre:
        for metric in templates[name]["spec"]["metrics"]:
            # A request of its own to the preview Service: no client traffic needed.
            assert list(metric["provider"]) == ["web"], metric
            assert metric["provider"]["web"]["url"].startswith("http://iris-preview.ml.svc:80/")
    # Every traffic threshold is judged after promotion, on the active Service's traffic.
    traffic = [
        m for t in templates.values() for m in t["spec"]["metrics"] if "prometheus" in m["provider"]
    ]
    assert traffic and all(m in templates["iris"]["spec"]["metrics"] for m in traffic)


def test_a_smoke_metric_posts_the_body_and_reads_the_field_once() -> None:
    rendered = objects(manifest("bluegreen", METRIC_KINDS["error_rate"], SMOKE), 1)
    first, second = rendered["smoke-template.yaml"]["spec"]["metrics"]
    web = first["provider"]["web"]
    assert web["method"] == "POST" and json.loads(web["body"]) == SMOKE[0]["json"]
    assert web["url"] == "http://iris-preview.ml.svc:80/predict"
    assert web["jsonPath"] == json_path("label") == "{$.label}"
    assert (first["count"], first["failureLimit"]) == (1, 0)
    assert first["successCondition"] == 'result == "setosa"'
    assert second["successCondition"] == "result == 2"
    # The conditions as the controller reads them, on an answer and on a wrong one.
    answer = {"label": "setosa", "class": 0}
    value = json_path_value(answer, web["jsonPath"])
    assert evaluate(first["successCondition"], value)
    assert not evaluate(first["failureCondition"], value)
    wrong = json_path_value(answer, second["provider"]["web"]["jsonPath"])
    assert evaluate(second["failureCondition"], wrong)
    assert not evaluate(second["successCondition"], wrong)
