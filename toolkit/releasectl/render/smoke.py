"""The pre-promotion AnalysisTemplate of a blue-green Rollout: the smoke requests
the model declares (`analysis.smoke`), sent by Argo Rollouts' `web` provider to the
preview Service (docs/ARCHITECTURE.md, "Analysis in the cluster").

No client calls the preview Service, so a pre-promotion metric that needs traffic
(an error rate, a latency quantile, a gauge fed by feedback) could only ever be
Inconclusive and pause the rollout. A smoke request makes its own traffic: it POSTs
the declared body, reads the declared field with `jsonPath` and compares it with
the declared value. Traffic thresholds run after promotion, and in `watch`."""

from __future__ import annotations

import json
from typing import Any

from releasectl.manifest.analysis import AnalysisSpec, SmokeSpec
from releasectl.manifest.durations import format_duration

API_VERSION = "argoproj.io/v1alpha1"
TIMEOUT_SECONDS = 10


def template_name(model: str) -> str:
    return f"{model}-smoke"


def preview_url(
    model: str, namespace: str, port: int, path: str, service: str | None = None
) -> str:
    """The preview Service (a canary's: `service`) as a pod of the Rollouts controller
    reaches it."""
    return f"http://{service or model + '-preview'}.{namespace}.svc:{port}{path}"


def json_path(field: str) -> str:
    """The Kubernetes JSONPath Argo's web provider reads the answer with."""
    return "{$." + field + "}"


def literal(value: str | int | float | bool) -> str:
    """`value` as an expr literal: JSON's spelling is expr's for strings, numbers and
    booleans (a string's escapes included)."""
    return json.dumps(value)


def success_condition(smoke: SmokeSpec) -> str:
    return f"result == {literal(smoke.expect.equals)}"


def failure_condition(smoke: SmokeSpec) -> str:
    return f"result != {literal(smoke.expect.equals)}"


def smoke_metric(spec: AnalysisSpec, smoke: SmokeSpec, index: int, url: str) -> dict[str, Any]:
    """One request, measured once; a wrong answer fails the run at once (failureLimit 0),
    an unreachable preview is retried each interval up to the consecutive-error limit."""
    return {
        "name": f"smoke-{index + 1}",
        "count": 1,
        "interval": format_duration(spec.interval),
        "failureLimit": 0,
        "consecutiveErrorLimit": spec.consecutive_error_limit,
        "successCondition": success_condition(smoke),
        "failureCondition": failure_condition(smoke),
        "provider": {
            "web": {
                "url": url,
                "method": "POST",
                "headers": [{"key": "Content-Type", "value": "application/json"}],
                "body": json.dumps(smoke.json_body, sort_keys=True, separators=(",", ":")),
                "timeoutSeconds": TIMEOUT_SECONDS,
                "jsonPath": json_path(smoke.expect.field),
            }
        },
    }


def smoke_template(
    spec: AnalysisSpec,
    model: str,
    *,
    namespace: str,
    port: int,
    labels: dict[str, str],
    service: str | None = None,
) -> dict[str, Any] | None:
    """The AnalysisTemplate of the smoke requests, sent to the preview Service (or
    `service`); None when the model declares none (the Rollout then has no
    pre-promotion analysis)."""
    if not spec.smoke:
        return None
    metrics = [
        smoke_metric(spec, smoke, i, preview_url(model, namespace, port, smoke.path, service))
        for i, smoke in enumerate(spec.smoke)
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": {"name": template_name(model), "labels": labels},
        "spec": {"metrics": metrics},
    }
