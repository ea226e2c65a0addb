"""The request metrics a canary on Kubernetes is judged by, as the mesh measured
them outside the candidate's process (docs/ARCHITECTURE.md, "Kubernetes").

Istio's standard metrics, `istio_requests_total` and
`istio_request_duration_milliseconds_bucket`, reported by the candidate pod's
sidecar proxy (`reporter="destination"`): it sees every request that reaches the
pod, mirrored copies included, and counts a worker that crashed, reset the
connection or timed out as the 5xx it answered for it. The series are scoped by
namespace, model and version through the canonical service labels Istio's
injector sets from the pod labels the render already puts on every pod
(`app.kubernetes.io/name` -> `destination_canonical_service`,
`app.kubernetes.io/version` -> `destination_canonical_revision`): two models at
one version never mix. Probes and Prometheus' own scrapes do not pass through the
inbound proxy (Istio rewrites probes to its agent and merges the app's metrics
there), so, unlike the bento's counters, no endpoint needs leaving out.

The Gateway API has no standard request metrics (each implementation exposes its
own), so the Gateway API router keeps the bento's own figures, marked
self-reported on the AnalysisTemplate. Custom metrics (accuracy) always come from
the bento, self-reported.
"""

from __future__ import annotations

from dataclasses import dataclass

from releasectl.analysis.engine import checks_for
from releasectl.analysis.exposition import QUANTILES
from releasectl.analysis.promql import promql_duration, promql_string
from releasectl.manifest.analysis import AnalysisSpec

REQUESTS = "istio_requests_total"
DURATION_BUCKETS = "istio_request_duration_milliseconds_bucket"
# Measured by the mesh when the router is Istio; everything else is the bento's own.
MEASURED = frozenset({"requests", "error_rate"} | {f"latency_ms.{q}" for q in QUANTILES})
# Where the render records which metrics the pods report about themselves.
SELF_REPORTED = "releasectl.dev/self-reported"


@dataclass(frozen=True)
class Mesh:
    """Istio's request metrics for `model`'s pods in `namespace`."""

    model: str
    namespace: str


def _selector(mesh: Mesh, version: str, extra: str = "") -> str:
    matchers = [
        'reporter="destination"',
        f"destination_workload_namespace={promql_string(mesh.namespace)}",
        f"destination_canonical_service={promql_string(mesh.model)}",
        f"destination_canonical_revision={promql_string(version)}",
    ]
    if extra:
        matchers.append(extra)
    return "{" + ",".join(matchers) + "}"


def mesh_queries(spec: AnalysisSpec, mesh: Mesh, version: str, window_s: float) -> dict[str, str]:
    """PromQL for the analysis' request metrics, plus `requests`, from Istio's metrics;
    the same shapes as the bento's (`releasectl.analysis.promql.build_queries`)."""
    window = f"[{promql_duration(window_s)}]"
    every = _selector(mesh, version)
    errors = _selector(mesh, version, 'response_code=~"5.."')
    queries = {
        "requests": f"sum(increase({REQUESTS}{every}{window}))",
        # `or vector(0)`: with no 5xx series at all the numerator would be empty, not zero.
        "error_rate": f"(sum(rate({REQUESTS}{errors}{window})) or vector(0))"
        f" / sum(rate({REQUESTS}{every}{window}))",
    }
    for name, q in QUANTILES.items():
        # Already in milliseconds.
        queries[f"latency_ms.{name}"] = (
            f"histogram_quantile({q}, sum by (le) (rate({DURATION_BUCKETS}{every}{window})))"
        )
    wanted = {c.name for c in checks_for(spec)} | {"requests"}
    return {k: v for k, v in queries.items() if k in wanted}


def self_reported(spec: AnalysisSpec, mesh: Mesh | None) -> list[str]:
    """The analysis' metrics read from the pods' own counters, not measured by the mesh."""
    return [c.name for c in checks_for(spec) if mesh is None or c.name not in MEASURED]
