"""The Argo Rollouts `AnalysisTemplate` of a release, made from the `analysis` block `watch` uses.

One model feeds both (docs/ARCHITECTURE.md, "Analysis in the cluster"): the limits
are the block's, and each metric's PromQL comes from the Prometheus source's own
query builder (`releasectl.analysis.sources.build_queries`), scoped by the `model`
and `version` labels that Prometheus relabels from the pod labels the Rollout sets
(two models at one version never mix their series), with the version
left as the template argument `{{args.version}}`. Every metric has an explicit
`successCondition` and `failureCondition`, so an empty result or NaN meets neither
and the measurement is Inconclusive: missing data never passes and never fails.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from releasectl.analysis.engine import MetricCheck, checks_for
from releasectl.analysis.exposition import Scope
from releasectl.analysis.promql import build_queries, query_range, samples_query
from releasectl.manifest.analysis import AnalysisSpec, PrometheusSourceSpec
from releasectl.manifest.durations import format_duration
from releasectl.names import ModelVersion
from releasectl.render.mesh import Mesh, mesh_queries

API_VERSION = "argoproj.io/v1alpha1"
# The label Prometheus's Kubernetes service discovery relabels from the pod label
# `app.kubernetes.io/version` (docs/ARCHITECTURE.md, "Analysis in the cluster").
VERSION_LABEL = "version"
VERSION_ARG = "{{args.version}}"
# Where Prometheus is in the cluster when neither the caller nor the analysis block
# says: kube-prometheus' service. A wrong address errors every measurement, and
# errors beyond consecutiveErrorLimit abort the rollout: it can never pass unseen.
DEFAULT_PROMETHEUS = "http://prometheus.monitoring.svc:9090"


def analysis_template(
    spec: AnalysisSpec,
    model: str,
    *,
    name: str,
    address: str | None = None,
    mesh: Mesh | None = None,
) -> dict[str, Any]:
    """The AnalysisTemplate object (argument `version`). `address` is Prometheus as
    the cluster reaches it (a setting); without it, the analysis' prometheus source's
    URL, else DEFAULT_PROMETHEUS. With `mesh`, error rate and latency read the mesh's
    request metrics (`releasectl.render.mesh`)."""
    prometheus = address or _source_url(spec) or DEFAULT_PROMETHEUS
    measurements = measurement_count(spec)
    limits = {
        "failureLimit": spec.failure_limit,
        # Argo passes a run whose measurements were all inconclusive when they stay
        # within the limit; watch never passes without a successful one. Keeping the
        # limit below the count makes an all-inconclusive run Inconclusive here too.
        "inconclusiveLimit": min(spec.inconclusive_limit, measurements - 1),
        "consecutiveErrorLimit": spec.consecutive_error_limit,
    }
    interval = format_duration(spec.interval)
    templated = _templated(spec, model, mesh)
    metrics = []
    for check in checks_for(spec):
        metrics.append(
            {
                "name": check.name,
                # watch's first read is a baseline: its first measurement is one interval in.
                "initialDelay": interval,
                "interval": interval,
                "count": measurements,
                **limits,
                "successCondition": success_condition(check),
                "failureCondition": failure_condition(check),
                "provider": {"prometheus": {"address": prometheus, "query": templated[check.name]}},
            }
        )
    return {
        "apiVersion": API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": model,
                "app.kubernetes.io/managed-by": "releasectl",
            },
        },
        "spec": {"args": [{"name": "version"}], "metrics": metrics},
    }


def queries(
    spec: AnalysisSpec, model: str, version: str, mesh: Mesh | None = None
) -> dict[str, str]:
    """Each metric's PromQL as an AnalysisRun for `version` runs it: the template's
    query with `{{args.version}}` replaced, as Argo does, by the text of the argument."""
    ModelVersion.parse(version)  # a SemVer string needs no escaping inside a PromQL string
    return {
        name: query.replace(VERSION_ARG, version)
        for name, query in _templated(spec, model, mesh).items()
    }


def measurement_count(spec: AnalysisSpec) -> int:
    """How many measurements watch takes in its bake: one per interval until the bake ends."""
    return max(1, math.ceil(spec.bake / spec.interval - 1e-9))


def _source_url(spec: AnalysisSpec) -> str | None:
    return spec.source.url if isinstance(spec.source, PrometheusSourceSpec) else None


def _templated(spec: AnalysisSpec, model: str, mesh: Mesh | None = None) -> dict[str, str]:
    """The source's queries with the version left as the template argument. Per-request
    metrics give no result while their range holds fewer than `min_requests` API
    requests: too little traffic is inconclusive, never judged."""
    scope = Scope(VERSION_ARG, None, VERSION_LABEL, model)
    window = query_range(spec)
    built = build_queries(spec, scope, window)
    if mesh is not None:
        built.update(mesh_queries(spec, mesh, VERSION_ARG, window))
    enough = f"({built['requests']} >= {max(1, spec.min_requests)})"

    def evidence(check: MetricCheck) -> str:
        # A gauge with `samples` gives no result until its counter grew by min_samples.
        grown = samples_query(check.samples or "", scope, window)
        return f"({built[check.name]}) and on() ({grown} >= {check.min_samples})"

    return {
        check.name: f"({built[check.name]}) and on() {enough}"
        if check.per_request
        else evidence(check)
        if check.min_samples
        else built[check.name]
        for check in checks_for(spec)
    }


# --- conditions (Argo evaluates them with expr over `result`, the vector's values) ---


def _number(value: float) -> str:
    """A literal expr reads exactly: no exponent, no trailing `.0` noise."""
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _within(check: MetricCheck) -> str:
    bounds = []
    if check.min is not None:
        bounds.append(f"# >= {_number(check.min)}")
    if check.max is not None:
        bounds.append(f"# <= {_number(check.max)}")
    return " && ".join(bounds)


def _outside(check: MetricCheck) -> str:
    bounds = []
    if check.min is not None:
        bounds.append(f"# < {_number(check.min)}")
    if check.max is not None:
        bounds.append(f"# > {_number(check.max)}")
    return " || ".join(bounds)


def success_condition(check: MetricCheck) -> str:
    """Some value that is a number, and every number within bounds. Several series are
    judged as watch judges them: by the one farthest out, NaN series left out."""
    return f"any(result, {{!isNaN(#)}}) && all(result, {{isNaN(#) || ({_within(check)})}})"


def failure_condition(check: MetricCheck) -> str:
    """Some value that is a number and out of bounds. An empty result or NaN alone
    meets neither condition: Argo calls that measurement Inconclusive."""
    return f"any(result, {{!isNaN(#) && ({_outside(check)})}})"
