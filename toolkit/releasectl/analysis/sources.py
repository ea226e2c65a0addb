"""Metric sources for the analysis: the one module that does HTTP to metric endpoints.

Two sources implement `releasectl.analysis.engine.MetricSource`:

- `ScrapeSource` scrapes a BentoML server's own `/metrics` each interval and computes
  the interval's values from counter deltas (no Prometheus needed);
- `PrometheusSource` asks a Prometheus server's `/api/v1/query` with PromQL built from
  the spec.

Both count only samples whose `service_version` label equals the version under watch
(BentoML sets it to the bento version, which releasectl sets to the release version),
and, when given, whose `service_name` equals the bento name. Requests to endpoints that
are not the model's API are left out of error rate, latency and request counts: BentoML
counts its probes and UI too. Left out: `/metrics`, `/readyz`, `/livez`, `/healthz`,
`/docs.json`, `/schema.json`, `/` and anything under `/static_content/` or `/assets/`.

Per-request values cover the analysis' accumulated window (`releasectl.analysis.engine.Window`,
docs/ARCHITECTURE.md, "Analysis"): the scrape source sums the counter increases of the
window's intervals, the Prometheus source widens the range of its queries to the window.

The scrape source never reports a negative increase: a counter lower than at the last
scrape was reset, and, since a restart resets all of a server's counters, any series
going down makes the whole interval count from zero (Prometheus can only do this per
series, so it undercounts series that climbed back above their old value). A restart
inside a window loses nothing of the window's earlier intervals: each interval is
diffed on its own, then summed.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import httpx
from prometheus_client.parser import text_string_to_metric_families

from releasectl.analysis.engine import (
    AnalysisSpec,
    Check,
    CustomMetricSpec,
    PrometheusSourceSpec,
    Reading,
    Window,
    checks_for,
)
from releasectl.errors import OperationFailed

NAMESPACE = "bentoml_service"
EXCLUDED_ENDPOINTS = frozenset(
    {"/metrics", "/readyz", "/livez", "/healthz", "/docs.json", "/schema.json", "/"}
)
EXCLUDED_PREFIXES = ("/static_content/", "/assets/")
# The same set as a PromQL regex (fully anchored by Prometheus).
EXCLUDED_ENDPOINTS_RE = (
    r"/metrics|/readyz|/livez|/healthz|/docs\.json|/schema\.json|/|/static_content/.*|/assets/.*"
)
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}


class MetricsError(OperationFailed):
    """A metric endpoint could not be read: unreachable, HTTP error, or not metrics."""


def is_api_endpoint(endpoint: str) -> bool:
    return endpoint not in EXCLUDED_ENDPOINTS and not endpoint.startswith(EXCLUDED_PREFIXES)


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


def parse_exposition(
    text: str, scope: Scope, *, gauges: Iterable[str] = (), namespace: str = NAMESPACE
) -> Snapshot:
    """Pick the samples that count for `scope` out of Prometheus text exposition."""
    wanted_gauges = set(gauges)
    total_name = f"{namespace}_request_total"
    bucket_name = f"{namespace}_request_duration_seconds_bucket"
    snapshot = Snapshot({}, {}, defaultdict(list))
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as error:
        raise MetricsError(f"not Prometheus text exposition: {_first_line(error)}") from error
    for family in families:
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


def _first_line(error: BaseException) -> str:
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
    increase: Increase, current: Snapshot, checks: list[Check], customs: list[CustomMetricSpec]
) -> Reading:
    """Error rate, latency quantiles and the request count over `increase`; custom
    gauges as of the `current` snapshot."""
    total = sum(increase.requests.values())
    errors = sum(
        v
        for k, v in increase.requests.items()
        if dict(k).get("http_response_code", "").startswith("5")
    )
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


# --- the scrape source -------------------------------------------------------------


class ScrapeSource:
    """Scrapes `{base_url}/metrics` each interval. The first successful scrape is the
    baseline; each later one yields the values of the window it is asked for: the
    increase since the previous scrape, added to the window's earlier increases while
    the window stays open (same `start`)."""

    def __init__(
        self,
        base_url: str,
        spec: AnalysisSpec,
        version: str,
        *,
        service_name: str | None = None,
        timeout: float = 5.0,
        namespace: str = NAMESPACE,
        transport: httpx.BaseTransport | None = None,
        fresh: bool = False,
    ) -> None:
        self.url = base_url.rstrip("/") + "/metrics"
        # A server started for this version counts from zero: the first scrape
        # then already measures everything since the deploy, which saves a
        # whole interval of detection time.
        self._fresh = fresh
        self._scope = Scope(version, service_name)
        self._checks = checks_for(spec)
        self._customs = spec.metrics.custom
        self._namespace = namespace
        self._client = httpx.Client(timeout=timeout, transport=transport, trust_env=False)
        self._previous: Snapshot | None = None
        self._window: tuple[int, Increase] | None = None  # the open window: start, increase

    def read(self, window: Window | None = None) -> Reading:
        """The values of `window` (None: of the interval since the last scrape alone)."""
        current = parse_exposition(
            self._fetch(),
            self._scope,
            gauges=[c.metric for c in self._customs if c.metric],
            namespace=self._namespace,
        )
        previous, self._previous = self._previous, current
        if previous is None and self._fresh:
            previous = Snapshot({}, {}, {})
        if previous is None:
            return Reading(baseline=True)
        # A failed scrape changes nothing here: the next diff covers its interval too.
        increase = interval_increase(previous, current)
        if window is not None and self._window is not None and self._window[0] == window.start:
            increase = accumulate(self._window[1], increase)
        self._window = (window.start, increase) if window is not None else None
        return window_values(increase, current, self._checks, self._customs)

    def _fetch(self) -> str:
        try:
            response = self._client.get(self.url)
        except httpx.HTTPError as error:
            raise MetricsError(f"cannot scrape {self.url}: {_first_line(error)}") from error
        if response.status_code != 200:
            raise MetricsError(f"cannot scrape {self.url}: HTTP {response.status_code}")
        return response.text

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ScrapeSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- the Prometheus source ------------------------------------------------------------


def promql_string(value: str) -> str:
    """`value` as a double-quoted PromQL string literal."""
    return '"' + escape_promql(value) + '"'


def escape_promql(value: str, quote: str = '"') -> str:
    """Escape for the inside of a PromQL string quoted with `quote`. PromQL accepts only
    the opening quote as an escaped quote, so the escaping depends on it."""
    out = []
    for char in value:
        if char in ("\\", quote):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


_PLACEHOLDER = re.compile(r"\$\{version\}|\$version\b")


def render_query(template: str, version: str) -> str:
    """The user's PromQL with `$version` (or `${version}`) replaced by the version, escaped
    for the string it stands in; outside any string it becomes a double-quoted literal."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(template):
        char = template[i]
        match = _PLACEHOLDER.match(template, i)
        if match:
            out.append(_placeholder_value(version, quote))
            i = match.end()
            continue
        if quote in ('"', "'") and char == "\\":
            out.append(template[i : i + 2])
            i += 2
            continue
        if quote is None and char in "\"'`":
            quote = char
        elif char == quote:
            quote = None
        out.append(char)
        i += 1
    return "".join(out)


def _placeholder_value(version: str, quote: str | None) -> str:
    if quote is None:
        return promql_string(version)
    if quote == "`":
        if "`" in version:
            raise MetricsError(f"version {version!r} cannot go inside a `raw` PromQL string")
        return version
    return escape_promql(version, quote)


def _selector(scope: Scope, extra: str = "") -> str:
    matchers = [f"{scope.label}={promql_string(scope.version)}"]
    if scope.service_name is not None:
        matchers.append(f"service_name={promql_string(scope.service_name)}")
    matchers.append(f"endpoint!~{promql_string(EXCLUDED_ENDPOINTS_RE)}")
    if extra:
        matchers.append(extra)
    return "{" + ",".join(matchers) + "}"


def promql_duration(seconds: float) -> str:
    """`90s`, `2500ms`: a range PromQL accepts however long (`:g` would give `1e+06s`)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def build_queries(
    spec: AnalysisSpec, scope: Scope, window_s: float, namespace: str = NAMESPACE
) -> dict[str, str]:
    """PromQL for each check, plus `requests` (API requests in the window)."""
    window = f"[{promql_duration(window_s)}]"
    total = f"{namespace}_request_total"
    buckets = f"{namespace}_request_duration_seconds_bucket"
    every = _selector(scope)
    server_errors = _selector(scope, 'http_response_code=~"5.."')
    queries = {"requests": f"sum(increase({total}{every}{window}))"}
    # `or vector(0)`: with no 5xx series at all the numerator would be empty, not zero.
    queries["error_rate"] = (
        f"(sum(rate({total}{server_errors}{window})) or vector(0))"
        f" / sum(rate({total}{every}{window}))"
    )
    for name, q in QUANTILES.items():
        queries[f"latency_ms.{name}"] = (
            f"histogram_quantile({q}, sum by (le) (rate({buckets}{every}{window}))) * 1000"
        )
    for custom in spec.metrics.custom:
        if custom.query is not None:
            queries[custom.name] = render_query(custom.query, scope.version)
    wanted = {c.name for c in checks_for(spec)} | {"requests"}
    return {k: v for k, v in queries.items() if k in wanted}


class PrometheusSource:
    """Asks a Prometheus server for each metric over the last `window` (default: interval),
    widened by the earlier intervals of the analysis' open window: a window of k intervals
    is read over `window + (k - 1) * interval`. Custom queries are the user's: as written."""

    def __init__(
        self,
        url: str,
        spec: AnalysisSpec,
        version: str,
        *,
        service_name: str | None = None,
        timeout: float = 5.0,
        namespace: str = NAMESPACE,
        transport: httpx.BaseTransport | None = None,
        version_label: str = "service_version",
    ) -> None:
        source = spec.source
        window = source.window if isinstance(source, PrometheusSourceSpec) else None
        self.url = url.rstrip("/") + "/api/v1/query"
        self._spec = spec
        self._scope = Scope(version, service_name, version_label)
        self._namespace = namespace
        self._checks = checks_for(spec)
        self._window_s = window or spec.interval
        self.queries = build_queries(spec, self._scope, self._window_s, namespace)
        self._client = httpx.Client(timeout=timeout, transport=transport, trust_env=False)
        self._started = False

    def queries_for(self, window: Window | None) -> dict[str, str]:
        """The queries for `window` (None or one interval: `self.queries`)."""
        if window is None or window.intervals <= 1:
            return self.queries
        seconds = self._window_s + (window.intervals - 1) * self._spec.interval
        return build_queries(self._spec, self._scope, seconds, self._namespace)

    def read(self, window: Window | None = None) -> Reading:
        if not self._started:
            # The window before the watch started says nothing about this deploy.
            self._started = True
            return Reading(baseline=True)
        values: dict[str, float] = {}
        errors: dict[str, str] = {}
        requests: float | None = None
        bounds = {c.name: (c.min, c.max) for c in self._checks}
        for name, query in self.queries_for(window).items():
            try:
                result = self.query(query)
            except _Unreachable:
                raise
            except MetricsError as error:
                errors[name] = error.message
                continue
            value = _reduce(result, *bounds.get(name, (None, None)))
            if name == "requests":
                requests = value
            elif value is not None:
                values[name] = value
        if "requests" in errors:
            for check in self._checks:
                if check.per_request:
                    errors.setdefault(check.name, errors["requests"])
        return Reading(values=values, requests=requests, errors=errors)

    def query(self, promql: str) -> list[float]:
        """Values of an instant query: one per series (empty: no data)."""
        try:
            response = self._client.get(self.url, params={"query": promql})
        except httpx.TransportError as error:
            raise _Unreachable(f"cannot reach {self.url}: {_first_line(error)}") from error
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") != "success":
            detail = body.get("error") if isinstance(body, dict) else None
            raise MetricsError(
                f"prometheus HTTP {response.status_code}: {detail or 'no JSON answer'}"
            )
        return _values(body.get("data"))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Unreachable(MetricsError):
    """Raised through read(): when the server is down, no query can succeed."""


def _values(data: Any) -> list[float]:
    try:
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return [float(result[1])]
        if kind == "vector":
            return [float(item["value"][1]) for item in result]
    except (KeyError, TypeError, IndexError, ValueError) as error:
        raise MetricsError(f"unexpected prometheus answer: {_first_line(error)}") from error
    raise MetricsError(f"unexpected prometheus result type {kind!r}")


def _reduce(values: list[float], low: float | None, high: float | None) -> float | None:
    if not values:
        return None
    return values[0] if len(values) == 1 else worst(values, low, high)


def open_source(
    spec: AnalysisSpec,
    version: str,
    *,
    base_url: str | None = None,
    service_name: str | None = None,
    fresh: bool = False,
    version_label: str = "service_version",
) -> ScrapeSource | PrometheusSource:
    """The source the spec asks for. `base_url` is the deployed server (scrape
    source); `fresh`: that server was started for this version; `version_label`:
    the label the Prometheus source's queries match the version on."""
    if isinstance(spec.source, PrometheusSourceSpec):
        return PrometheusSource(
            spec.source.url, spec, version, service_name=service_name, version_label=version_label
        )
    if base_url is None:
        raise MetricsError("the scrape source needs the deployed server's base URL")
    return ScrapeSource(base_url, spec, version, service_name=service_name, fresh=fresh)
