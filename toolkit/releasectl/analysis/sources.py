"""Metric sources for the analysis: the one module that does HTTP to metric endpoints.

Three sources implement `releasectl.analysis.engine.MetricSource`:

- `ScrapeSource` scrapes `/metrics` each interval and computes the interval's values
  from counter deltas (no Prometheus needed; the parsing and the maths are
  `releasectl.analysis.exposition`): with `EndpointMetrics`, error rate and latency
  from the endpoint's own counts (the local agent's `/metrics`) and custom metrics from
  the server's, which are self-reported; without, everything from a BentoML server's
  own `/metrics`, all of it self-reported
  (docs/ARCHITECTURE.md, "Measured by the endpoint"); with `analysis.compare`, the
  mirror's pairs of the version too, out of the same scrape of the agent (the
  `compare` checks, counted on the window's pairs: `Reading.requests_of`);
- `PrometheusSource` asks a Prometheus server's `/api/v1/query` with PromQL built from
  the spec (`releasectl.analysis.promql`).

Both count only the version under watch and only the model's API endpoints.
Per-request values cover the analysis' accumulated window (`releasectl.analysis.engine.Window`,
docs/ARCHITECTURE.md, "Analysis"): the scrape source sums the counter increases of the
window's intervals, the Prometheus source widens the range of its queries to the window.
The scrape source never reports a negative increase (a restart counts from zero).
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx

from releasectl.analysis.compare import PairTotals, compare_reading, pairs_increase, parse_pairs
from releasectl.analysis.engine import MetricsError, Reading, Window, checks_for
from releasectl.analysis.exposition import (
    NAMESPACE,
    Increase,
    Scope,
    Snapshot,
    accumulate,
    first_line,
    interval_increase,
    parse_endpoint,
    parse_exposition,
    sample_totals,
    window_values,
    worst,
)
from releasectl.analysis.promql import build_queries, query_range, samples_query
from releasectl.errors import BadInput
from releasectl.manifest.analysis import AnalysisSpec, PrometheusSourceSpec

# --- the scrape source -------------------------------------------------------------


@dataclass(frozen=True)
class EndpointMetrics:
    """Where a scrape source reads the endpoint's counts of a model's version: `url()`
    gives the `/metrics` URL, asked at every scrape (the local agent's port changes
    when it restarts); `roles`: the roles counted, None for every role."""

    url: Callable[[], str]
    model: str
    roles: frozenset[str] | None = None


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
        endpoint: EndpointMetrics | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + "/metrics"
        self._endpoint = endpoint
        # A server started for this version counts from zero: the first scrape
        # then already measures everything since the deploy, which saves a
        # whole interval of detection time.
        self._fresh = fresh
        self._scope = Scope(version, service_name)
        self._checks = checks_for(spec)
        self._customs = spec.metrics.custom
        self._gauges = [n for c in self._customs for n in (c.metric, c.samples) if n]
        self._self_reported = frozenset(
            c.name for c in self._checks if endpoint is None or not c.per_request
        )
        self._namespace = namespace
        self._client = httpx.Client(timeout=timeout, transport=transport, trust_env=False)
        self._previous: Snapshot | None = None
        self._agent: bytes | None = None  # the agent's host and port at the last scrape
        self._window: tuple[int, Increase] | None = None  # the open window: start, increase
        # The mirror's pairs (analysis.compare), read from the same scrape of the agent:
        # the totals now and at the previous scrape, and the open window's increase.
        self._compare = endpoint is not None and spec.compare is not None
        self._pairs = PairTotals()
        self._pairs_before: PairTotals | None = None
        self._pairs_window: tuple[int, PairTotals] | None = None

    def read(self, window: Window | None = None) -> Reading:
        """The values of `window` (None: of the interval since the last scrape alone)."""
        current = self._snapshot()
        previous, self._previous = self._previous, current
        pairs, self._pairs_before = self._pairs_before, self._pairs
        if previous is None and self._fresh:
            previous, pairs = Snapshot({}, {}, {}), PairTotals()
        if previous is None:
            return Reading(baseline=True, samples=sample_totals(current, self._customs))
        # A failed scrape changes nothing here: the next diff covers its interval too.
        increase = interval_increase(previous, current)
        if window is not None and self._window is not None and self._window[0] == window.start:
            increase = accumulate(self._window[1], increase)
        self._window = (window.start, increase) if window is not None else None
        found = window_values(increase, current, self._checks, self._customs)
        samples = sample_totals(current, self._customs)
        found = replace(found, samples=samples, self_reported=self._self_reported)
        return self._compared(found, pairs or PairTotals(), window) if self._compare else found

    def _compared(self, found: Reading, before: PairTotals, window: Window | None) -> Reading:
        """`found` with the compare values of the window, counted on its pairs."""
        increase = pairs_increase(before, self._pairs)
        opened = self._pairs_window
        if window is not None and opened is not None and opened[0] == window.start:
            increase = opened[1] + increase
        self._pairs_window = (window.start, increase) if window is not None else None
        pairs = compare_reading(increase)
        values = {**found.values, **pairs.values}
        return replace(found, values=values, requests_of={**found.requests_of, **pairs.requests_of})

    def _snapshot(self) -> Snapshot:
        """The counters now: the endpoint's requests, when it measures, with the server's
        gauges (read only when there are some); else everything from the server."""
        if self._endpoint is None:
            text, gauges = self._fetch(self.url), self._gauges
            return parse_exposition(text, self._scope, gauges=gauges, namespace=self._namespace)
        at = self._endpoint
        url = at.url()
        agent = httpx.URL(url).netloc
        if agent != self._agent and self._previous is not None:
            # Another agent answers (a restart moves its port): its counts began at zero.
            self._previous, self._pairs_before = Snapshot({}, {}, {}), PairTotals()
        self._agent = agent
        text = self._fetch(url)
        counted = parse_endpoint(text, at.model, self._scope.version, at.roles)
        if self._compare:
            self._pairs = parse_pairs(text, at.model, self._scope.version)
        if not self._gauges:
            return counted
        own = parse_exposition(self._fetch(self.url), self._scope, gauges=self._gauges)
        return Snapshot(counted.requests, counted.buckets, own.gauges)

    def _fetch(self, url: str) -> str:
        return _get(self._client, url)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ScrapeSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _get(client: httpx.Client, url: str) -> str:
    """One scrape of `url`: its text, or MetricsError naming it."""
    try:
        response = client.get(url)
    except httpx.HTTPError as error:
        raise MetricsError(f"cannot scrape {url}: {first_line(error)}") from error
    if response.status_code != 200:
        raise MetricsError(f"cannot scrape {url}: HTTP {response.status_code}")
    return response.text


class PrometheusSource:
    """Asks a Prometheus server for each metric over `query_range` (max of `window`, four
    scrape intervals and the interval), widened by the earlier intervals of the analysis'
    open window: a window of k intervals is read over `range + (k - 1) * interval`.
    Custom queries are the user's: as written. `measured`, given a range in seconds,
    returns queries measured outside the version's process (a mesh's request metrics,
    `releasectl.render.mesh`) that replace the built ones of the same names;
    `self_reported` names the checks read from the version's own counters."""

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
        model: str | None = None,
        measured: Callable[[float], dict[str, str]] | None = None,
        self_reported: frozenset[str] = frozenset(),
    ) -> None:
        self.url = url.rstrip("/") + "/api/v1/query"
        self._spec = spec
        self._scope = Scope(version, service_name, version_label, model)
        self._namespace = namespace
        self._checks = checks_for(spec)
        self._measured = measured
        self.self_reported = self_reported
        self.queries = self._built(query_range(spec))
        headers, verify = _auth(spec.source)
        self._client = httpx.Client(
            timeout=timeout, transport=transport, trust_env=False, headers=headers, verify=verify
        )
        self._started = False

    def queries_for(self, window: Window | None) -> dict[str, str]:
        """The queries for `window` (None or one interval: `self.queries`)."""
        if window is None or window.intervals <= 1:
            return self.queries
        return self._built(query_range(self._spec, window.intervals))

    def _built(self, seconds: float) -> dict[str, str]:
        queries = build_queries(self._spec, self._scope, seconds, self._namespace)
        if self._measured is not None:
            queries.update(self._measured(seconds))
        return queries

    def read(self, window: Window | None = None) -> Reading:
        if not self._started:
            # The window before the watch started says nothing about this deploy.
            self._started = True
            return Reading(baseline=True, samples=self._samples({}))
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
        samples = self._samples(errors)
        return Reading(
            values=values,
            requests=requests,
            errors=errors,
            samples=samples,
            self_reported=self.self_reported,
        )

    def _samples(self, errors: dict[str, str]) -> dict[str, float]:
        """Each sampled gauge's counter total for this version; a counter that cannot
        be read is that gauge's error."""
        totals: dict[str, float] = {}
        for check in self._checks:
            if check.samples is None:
                continue
            try:
                found = self.query(samples_query(check.samples, self._scope))
            except _Unreachable:
                raise
            except MetricsError as error:
                errors.setdefault(check.name, error.message)
                continue
            totals[check.name] = sum(v for v in found if not math.isnan(v))
        return totals

    def query(self, promql: str) -> list[float]:
        """Values of an instant query: one per series (empty: no data)."""
        try:
            response = self._client.get(self.url, params={"query": promql})
        except httpx.TransportError as error:
            raise _Unreachable(f"cannot reach {self.url}: {first_line(error)}") from error
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


def _auth(source: object) -> tuple[dict[str, str], bool | ssl.SSLContext]:
    """The headers and TLS verification a Prometheus source asks for: a bearer token
    read from the environment variable it names, a CA file; both optional."""
    if not isinstance(source, PrometheusSourceSpec):
        return {}, True
    headers = {}
    if source.bearer_token_env is not None:
        token = os.environ.get(source.bearer_token_env, "").strip()
        if not token:
            raise BadInput(
                f"analysis.source.bearer_token_env names {source.bearer_token_env}, "
                "which is not set",
                f"export {source.bearer_token_env} with the token Prometheus expects",
            )
        headers["Authorization"] = f"Bearer {token}"
    if source.ca_file is not None and not os.path.isfile(source.ca_file):
        raise BadInput(
            f"analysis.source.ca_file {source.ca_file} is not a file",
            "point it at the PEM bundle that signed Prometheus' certificate",
        )
    if source.ca_file is None:
        return headers, True
    return headers, ssl.create_default_context(cafile=source.ca_file)


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
        raise MetricsError(f"unexpected prometheus answer: {first_line(error)}") from error
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
    endpoint: EndpointMetrics | None = None,
) -> ScrapeSource | PrometheusSource:
    """The source the spec asks for. `base_url` is the deployed server (scrape
    source); `fresh`: that server and the endpoint's counts of it started for this
    version; `version_label`: the label the Prometheus source's queries match the
    version on; `endpoint`: where the scrape source reads error rate and latency."""
    if isinstance(spec.source, PrometheusSourceSpec):
        return PrometheusSource(
            spec.source.url, spec, version, service_name=service_name, version_label=version_label
        )
    if base_url is None:
        raise MetricsError("the scrape source needs the deployed server's base URL")
    return ScrapeSource(
        base_url, spec, version, service_name=service_name, fresh=fresh, endpoint=endpoint
    )
