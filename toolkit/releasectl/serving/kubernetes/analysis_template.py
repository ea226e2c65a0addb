"""The Argo Rollouts AnalysisTemplate of a model (docs/ARCHITECTURE.md, "Kubernetes").

Placeholder: replaced by the analysis engineer (the full template: every metric
of the `analysis` block, with the conditions that agree with `watch`). It keeps
the agreed signatures so that render.py can call it meanwhile."""

from __future__ import annotations

from typing import Any

from releasectl.analysis.engine import AnalysisSpec, PrometheusSourceSpec

DEFAULT_PROMETHEUS = "http://prometheus.monitoring.svc:9090"
REQUESTS = "bentoml_service_request_total"


def _error_rate(version: str) -> str:
    every = f'version="{version}"'
    return (
        f'(sum(rate({REQUESTS}{{{every},http_response_code=~"5.."}}[1m])) or vector(0))'
        f" / sum(rate({REQUESTS}{{{every}}}[1m]))"
    )


def queries(spec: AnalysisSpec, model: str, version: str) -> dict[str, str]:
    """The PromQL of each metric with the version filled in."""
    return {"error_rate": _error_rate(version)} if spec.metrics.error_rate else {}


def analysis_template(spec: AnalysisSpec, model: str, *, name: str) -> dict[str, Any]:
    source = spec.source
    address = source.url if isinstance(source, PrometheusSourceSpec) else DEFAULT_PROMETHEUS
    limit = spec.metrics.error_rate.max if spec.metrics.error_rate else 1.0
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name},
        "spec": {
            "args": [{"name": "version"}],
            "metrics": [
                {
                    "name": "error-rate",
                    "interval": f"{int(spec.interval)}s",
                    "count": max(1, int(spec.bake // spec.interval)),
                    "failureLimit": spec.failure_limit,
                    "inconclusiveLimit": spec.inconclusive_limit,
                    "consecutiveErrorLimit": spec.consecutive_error_limit,
                    "successCondition": f"len(result) == 1 && result[0] <= {limit}",
                    "failureCondition": f"len(result) == 1 && result[0] > {limit}",
                    "provider": {
                        "prometheus": {
                            "address": address,
                            "query": _error_rate("{{args.version}}"),
                        }
                    },
                }
            ],
        },
    }
