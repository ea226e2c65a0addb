"""Prometheus text exposition and counter maths, as the scrape source needs them.

Parsing a server's `/metrics` text into the samples that count for the version
under watch, PromQL's `histogram_quantile` over classic buckets, counter
increases across restarts, and the values of an accumulated window
(docs/ARCHITECTURE.md, "Analysis"). No I/O: `releasectl.analysis.sources` fetches.

Only samples whose `service_version` label equals the version under watch count
(and, when given, whose `service_name` equals the bento name). Requests to
endpoints that are not the model's API are left out of error rate, latency and
request counts: BentoML counts its probes and UI too. Left out: `/metrics`,
`/readyz`, `/livez`, `/healthz`, `/docs.json`, `/schema.json`, `/` and anything
under `/static_content/` or `/assets/`.

A counter lower than at the last scrape was reset, and, since a restart resets all
of a server's counters, any series going down makes the whole interval count from
zero (Prometheus can only do this per series, so it undercounts series that climbed
back above their old value). A restart inside a window loses nothing of the
window's earlier intervals: each interval is diffed on its own, then summed.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from releasectl.analysis import endpoint
from releasectl.analysis.endpoint import is_api_endpoint
from releasectl.analysis.engine import MetricCheck, MetricsError, Reading
from releasectl.manifest.analysis import CustomMetricSpec

NAMESPACE = "bentoml_service"
# `endpoint.EXCLUDED_ENDPOINTS` and `EXCLUDED_PREFIXES` as a PromQL regex
# (fully anchored by Prometheus).
EXCLUDED_ENDPOINTS_RE = (
    r"/metrics|/readyz|/livez|/healthz|/docs\.json|/schema\.json|/|/static_content/.*|/assets/.*"
)
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


def is_error(labels: Mapping[str, str]) -> bool:
    """A request the version failed: a 5xx answer by its own count (`http_response_code`),
    or by the endpoint's (`outcome`: 5xx, or never answered)."""
    if "outcome" in labels:
        return labels["outcome"] in endpoint.ERROR_OUTCOMES
    return labels.get("http_response_code", "").startswith("5")


# --- histogram_quantile, as PromQL computes it over classic buckets ------------------


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """PromQL's `histogram_quantile` over (upper bound `le`, cumulative count) pairs.

    Linear interpolation inside the bucket, the lowest bucket starting at 0 (or returning
    its bound when that is <= 0), the +Inf bucket answering the last finite bound, NaN for
    no observations, fewer than two buckets or no +Inf bucket; buckets with equal bounds
    are merged and counts forced monotonic, as in promql/quantile.go."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return math.nan
    merged = _monotonic(_coalesce(ordered))
    if len(merged) < 2:
        return math.nan
    observations = merged[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    counts = [count for _, count in merged[:-1]]
    b = bisect.bisect_left(counts, rank)
    if b == len(merged) - 1:
        return merged[-2][0]
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0]
    start, end, count = 0.0, merged[b][0], merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * (rank / count)


def _coalesce(ordered: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for bound, count in ordered:
        if merged and merged[-1][0] == bound:
            merged[-1] = (bound, merged[-1][1] + count)
        else:
            merged.append((bound, count))
    return merged


def _monotonic(buckets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    fixed = [buckets[0]]
    prev = buckets[0][1]
    for bound, count in buckets[1:]:
        # Prometheus first ignores float noise (relative delta <= 1e-12), then takes the
        # running maximum so that the binary search sees non-decreasing counts.
        if count != prev and abs(count - prev) / count <= 1e-12:
            count = prev
        else:
            prev = count
        fixed.append((bound, max(count, fixed[-1][1])))
    return fixed


# --- counters --------------------------------------------------------------------


SeriesKey = tuple[tuple[str, str], ...]


def counter_increase(
    previous: Mapping[SeriesKey, float], current: Mapping[SeriesKey, float]
) -> dict[SeriesKey, float]:
    """Per-series increase between two scrapes. A value lower than before is a counter
    reset (a restart): like Prometheus, the new value is the increase since the reset.
    A series first seen now started from zero (prometheus_client creates it on first use)."""
    increase = {}
    for key, value in current.items():
        before = previous.get(key, 0.0)
        increase[key] = value if value < before else value - before
    return increase


def restarted(previous: Snapshot, current: Snapshot) -> bool:
    """A restart resets every counter of the server at once. Prometheus can only see
    the series that went down; one series going down (or vanishing) tells us the
    others restarted from zero too, even those that have already climbed back."""
    for before, now in ((previous.requests, current.requests), (previous.buckets, current.buckets)):
        if any(key not in now or now[key] < value for key, value in before.items()):
            return True
    return False


# --- parsing the exposition text ----------------------------------------------------


class Snapshot(NamedTuple):
    requests: dict[SeriesKey, float]  # request_total series of the API endpoints
    buckets: dict[SeriesKey, float]  # request_duration_seconds_bucket series (with `le`)
    gauges: dict[str, list[tuple[dict[str, str], float]]]  # custom gauges by sample name


class Scope(NamedTuple):
    version: str
    service_name: str | None = None
    # The label PromQL matches the version on: BentoML's own, or on Kubernetes the one
    # relabelled from the pod's (docs/ARCHITECTURE.md, "Analysis in the cluster").
    label: str = "service_version"
    # On Kubernetes, the `model` label relabelled from the pod's `app.kubernetes.io/name`:
    # two models at one version share the version label, never this one. PromQL only.
    model: str | None = None

    def admits(self, labels: Mapping[str, str], *, required: bool = True) -> bool:
        """Whether a sample belongs to the version under watch. For custom gauges
        (`required=False`) an unlabelled sample is the scraped server's own."""
        for label, wanted in (
            ("service_version", self.version),
            ("service_name", self.service_name),
        ):
            if wanted is None:
                continue
            if label not in labels:
                if required:
                    return False
                continue
            if labels[label] != wanted:
                return False
        return True


def _families(text: str) -> list[Metric]:
    try:
        return list(text_string_to_metric_families(text))
    except Exception as error:
        raise MetricsError(f"not Prometheus text exposition: {first_line(error)}") from error


def parse_exposition(
    text: str, scope: Scope, *, gauges: Iterable[str] = (), namespace: str = NAMESPACE
) -> Snapshot:
    """Pick the samples that count for `scope` out of Prometheus text exposition."""
    wanted_gauges = set(gauges)
    total_name = f"{namespace}_request_total"
    bucket_name = f"{namespace}_request_duration_seconds_bucket"
    snapshot = Snapshot({}, {}, defaultdict(list))
    for family in _families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if sample.name in (total_name, bucket_name):
                if not scope.admits(labels) or not is_api_endpoint(labels.get("endpoint", "")):
                    continue
                target = snapshot.requests if sample.name == total_name else snapshot.buckets
                target[tuple(sorted(labels.items()))] = float(sample.value)
            elif sample.name in wanted_gauges and scope.admits(labels, required=False):
                snapshot.gauges[sample.name].append((labels, float(sample.value)))
    return Snapshot(snapshot.requests, snapshot.buckets, dict(snapshot.gauges))


def parse_endpoint(
    text: str, model: str, version: str, roles: frozenset[str] | None = None
) -> Snapshot:
    """The endpoint's counts of one model's version (`releasectl.analysis.endpoint`) out
    of the agent's exposition: every request it sent to that version, in any of `roles`
    (None: every role it played). Every path counts: the endpoint forwards the callers'
    requests, not a server's own probes."""
    wanted = {"model": model, "version": version}
    snapshot = Snapshot({}, {}, {})
    names = {
        f"{endpoint.REQUESTS}_total": snapshot.requests,
        f"{endpoint.DURATION}_bucket": snapshot.buckets,
    }
    for family in _families(text):
        for sample in family.samples:
            target = names.get(sample.name)
            labels = dict(sample.labels)
            if target is None or any(labels.get(k) != v for k, v in wanted.items()):
                continue
            if roles is None or labels.get("role") in roles:
                target[tuple(sorted(labels.items()))] = float(sample.value)
    return snapshot


def first_line(error: BaseException) -> str:
    """An error as one short line, for a metric error's message."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


# --- computing a window from snapshots ------------------------------------------------


class Increase(NamedTuple):
    """How much each API series' counters grew over some span: one interval or a window."""

    requests: dict[SeriesKey, float]
    buckets: dict[SeriesKey, float]


def interval_increase(previous: Snapshot, current: Snapshot) -> Increase:
    if restarted(previous, current):
        previous = Snapshot({}, {}, {})
    return Increase(
        counter_increase(previous.requests, current.requests),
        counter_increase(previous.buckets, current.buckets),
    )


def accumulate(window: Increase, interval: Increase) -> Increase:
    """The window's increases extended by one more interval's: summed per series."""

    def add(a: dict[SeriesKey, float], b: dict[SeriesKey, float]) -> dict[SeriesKey, float]:
        total = dict(a)
        for key, value in b.items():
            total[key] = total.get(key, 0.0) + value
        return total

    return Increase(add(window.requests, interval.requests), add(window.buckets, interval.buckets))


def window_values(
    increase: Increase,
    current: Snapshot,
    checks: list[MetricCheck],
    customs: list[CustomMetricSpec],
) -> Reading:
    """Error rate, latency quantiles and the request count over `increase`; custom
    gauges as of the `current` snapshot."""
    total = sum(increase.requests.values())
    errors = sum(v for k, v in increase.requests.items() if is_error(dict(k)))
    by_le: dict[float, float] = defaultdict(float)
    for key, value in increase.buckets.items():
        by_le[float(dict(key)["le"])] += value
    values: dict[str, float] = {"error_rate": errors / total if total else math.nan}
    for name, q in QUANTILES.items():
        values[f"latency_ms.{name}"] = histogram_quantile(q, by_le.items()) * 1000
    metric_of = {c.name: c.metric for c in customs}
    for check in checks:
        samples = current.gauges.get(metric_of.get(check.name) or "", [])
        if check.name in metric_of and samples:
            values[check.name] = worst([v for _, v in samples], check.min, check.max)
    wanted = {c.name for c in checks}
    return Reading(values={k: v for k, v in values.items() if k in wanted}, requests=total)


def sample_totals(current: Snapshot, customs: list[CustomMetricSpec]) -> dict[str, float]:
    """Each sampled gauge's counter total now, over its series for this version."""
    return {
        c.name: sum(v for _, v in current.gauges.get(c.samples, []) if not math.isnan(v))
        for c in customs
        if c.samples is not None
    }


def worst(values: list[float], low: float | None, high: float | None) -> float:
    """Several series for one custom metric: judge by the one farthest from its bounds."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan

    def badness(v: float) -> float:
        return max(
            low - v if low is not None else -math.inf, v - high if high is not None else -math.inf
        )

    return max(finite, key=badness)
