"""Metric sources against real HTTP: a tiny exposition server on 127.0.0.1 and a real
Prometheus server (Debian's `prometheus` package; CI installs it)."""

from __future__ import annotations

import itertools
import math
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from releasectl.analysis.engine import (
    Cause,
    Judgement,
    Measurement,
    MetricsError,
    Status,
    Window,
    checks_for,
    run_analysis,
)
from releasectl.analysis.exposition import (
    Scope,
    Snapshot,
    accumulate,
    counter_increase,
    histogram_quantile,
    interval_increase,
    parse_exposition,
    window_values,
)
from releasectl.analysis.promql import build_queries, promql_duration, render_query
from releasectl.analysis.sources import EndpointMetrics, PrometheusSource, ScrapeSource, open_source
from releasectl.manifest.analysis import AnalysisSpec, PrometheusSourceSpec
from releasectl.serving.local.meter import Meter
from testing import paths

FIXTURES = paths.FIXTURES / "metrics"
INF = math.inf
BENTOML_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


# --- histogram_quantile, against values worked out by hand ---------------------------

BUCKETS = [(0.1, 10.0), (0.2, 30.0), (0.5, 40.0), (INF, 50.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.0, 0.0),  # rank 0 lands in the lowest bucket, which starts at 0
        (0.1, 0.05),  # rank 5 of 10 in [0, 0.1]
        (0.5, 0.175),  # rank 25: 15 of the 20 in (0.1, 0.2]
        (0.8, 0.5),  # rank 40: all 10 of (0.2, 0.5]
        (0.9, 0.5),  # rank 45 is in +Inf: the last finite bound
        (1.0, 0.5),
    ],
)
def test_histogram_quantile_by_hand(q: float, expected: float) -> None:
    assert histogram_quantile(q, BUCKETS) == pytest.approx(expected)


def test_histogram_quantile_edge_cases() -> None:
    assert math.isnan(histogram_quantile(0.5, [(0.1, 0.0), (INF, 0.0)]))  # no observations
    assert math.isnan(histogram_quantile(0.5, [(0.1, 1.0), (1.0, 2.0)]))  # no +Inf bucket
    assert math.isnan(histogram_quantile(0.5, [(INF, 5.0)]))  # fewer than two buckets
    assert math.isnan(histogram_quantile(0.5, []))
    assert math.isnan(histogram_quantile(math.nan, BUCKETS))
    assert histogram_quantile(-0.1, BUCKETS) == -INF
    assert histogram_quantile(1.1, BUCKETS) == INF
    # unsorted input and duplicate bounds are merged like PromQL does
    assert histogram_quantile(
        0.5, [(INF, 30.0), (0.2, 20.0), (0.1, 5.0), (0.1, 5.0)]
    ) == pytest.approx(0.15)
    # a decreasing count is lifted to the running maximum: 10, 10, 10
    assert histogram_quantile(0.5, [(0.1, 10.0), (0.2, 5.0), (INF, 10.0)]) == 0.05
    # a lowest bucket bound <= 0 is returned as is
    assert histogram_quantile(0.2, [(-1.0, 5.0), (1.0, 10.0), (INF, 10.0)]) == -1.0


def test_counter_increase_survives_a_reset() -> None:
    a, b, c = (("code", "200"),), (("code", "500"),), (("code", "503"),)
    increase = counter_increase({a: 100.0, b: 10.0}, {a: 7.0, b: 15.0, c: 2.0})
    assert increase == {a: 7.0, b: 5.0, c: 2.0}  # a restarted; c is new


# --- parsing real BentoML output -----------------------------------------------------


def test_parse_real_bentoml_exposition_skips_probes() -> None:
    # Captured from `bentoml serve` (1.4): 3 OK and 1 failed call to /echo, plus
    # /readyz and /livez probes; served from source, so the version is "not available".
    text = (FIXTURES / "bentoml-1.4-echo.txt").read_text()
    snapshot = parse_exposition(text, Scope("not available", "Echo"))

    codes = sorted(
        (dict(k)["endpoint"], dict(k)["http_response_code"], v)
        for k, v in snapshot.requests.items()
    )
    assert codes == [("/echo", "200", 3.0), ("/echo", "500", 1.0)]
    assert {dict(k)["endpoint"] for k in snapshot.buckets} == {"/echo"}
    assert parse_exposition(text, Scope("1.4.0")).requests == {}
    assert parse_exposition(text, Scope("not available", "Other")).requests == {}


@pytest.mark.parametrize("garbage", ["<html><body>hi</body></html>", "garbage", "{}"])
def test_garbage_text_is_a_metrics_error(garbage: str) -> None:
    with pytest.raises(MetricsError, match="not Prometheus text exposition"):
        parse_exposition(garbage, Scope("1.0.0"))


# --- a BentoML-shaped exporter and a server for it -------------------------------------


class FakeBento:
    """BentoML's metric families, names and labels, driven by the test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.registry = CollectorRegistry()
        labels = ["endpoint", "http_response_code", "service_name", "service_version"]
        self.total = Counter("bentoml_service_request", "requests", labels, registry=self.registry)
        self.duration = Histogram(
            "bentoml_service_request_duration_seconds",
            "duration",
            labels,
            buckets=BENTOML_BUCKETS,
            registry=self.registry,
        )
        self.accuracy = Gauge(
            "model_accuracy", "quality", ["service_version"], registry=self.registry
        )

    def serve(
        self, version: str, ok: int, errors: int = 0, seconds: float = 0.02, path: str = "/predict"
    ) -> None:
        with self.lock:
            for code, count in (("200", ok), ("500", errors)):
                for _ in range(count):
                    labels = (path, code, "iris", version)
                    self.total.labels(*labels).inc()
                    self.duration.labels(*labels).observe(seconds)

    def exposition(self) -> tuple[int, str]:
        with self.lock:
            return 200, generate_latest(self.registry).decode()


Responder = Callable[[], tuple[int, str]]


class ExpositionServer:
    """Serves whatever `responder` returns, on 127.0.0.1, until stopped."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                status, body = outer.responder()
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def serve() -> Iterator[Callable[[Responder], ExpositionServer]]:
    servers: list[ExpositionServer] = []

    def start(responder: Responder) -> ExpositionServer:
        servers.append(ExpositionServer(responder))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeClock:
    def __init__(self, on_sleep: Callable[[], None] = lambda: None) -> None:
        self.now = 0.0
        self.on_sleep = on_sleep

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.on_sleep()


def spec(**overrides: Any) -> AnalysisSpec:
    data: dict[str, Any] = {"interval": "2s", "bake": "10s", "failure_limit": 1}
    data.update(overrides)
    return AnalysisSpec.model_validate(data)


def scrape_watch(
    analysis: AnalysisSpec, url: str, version: str, traffic: Callable[[], None] = lambda: None
) -> Any:
    clock = FakeClock(traffic)  # each interval's traffic happens while the loop sleeps
    events: list[Any] = []
    with ScrapeSource(url, analysis, version, service_name="iris") as source:
        verdict = run_analysis(
            analysis, source, version, clock=clock, sleep=clock.sleep, on_measurement=events.append
        )
    return verdict, events, clock


# --- the scrape source over real HTTP ------------------------------------------------


def test_scrape_twenty_percent_errors_fail_within_two_intervals(serve: Any) -> None:
    bento = FakeBento()
    bento.serve("1.0.0", ok=500)  # the old version, before the watch: must not count
    server = serve(bento.exposition)

    verdict, events, clock = scrape_watch(
        spec(), server.url, "2.0.0", lambda: bento.serve("2.0.0", ok=40, errors=10)
    )

    assert verdict.outcome is Judgement.FAILED
    assert verdict.cause is Cause.FAILURE_LIMIT
    assert verdict.intervals == 2 and clock.now == 4.0
    assert verdict.metric == "error_rate" and verdict.value == pytest.approx(0.2)
    assert events[0].requests == 50
    assert server.hits == 3  # baseline + 2 intervals


def test_scrape_slow_p95_fails(serve: Any) -> None:
    bento = FakeBento()
    server = serve(bento.exposition)
    analysis = spec(metrics={"latency_ms": {"p95": 100}})

    verdict, _, _ = scrape_watch(
        analysis, server.url, "2.0.0", lambda: bento.serve("2.0.0", ok=50, seconds=0.3)
    )

    # all in (0.25, 0.5]: 0.25 + 0.25 * 0.95 s
    assert verdict.outcome is Judgement.FAILED
    assert verdict.metric == "latency_ms.p95"
    assert verdict.value == pytest.approx(487.5)
    assert "latency_ms.p95 487.5 ms is above max 100 ms" in verdict.message


def test_scrape_healthy_version_passes_while_old_version_errors(serve: Any) -> None:
    bento = FakeBento()
    server = serve(bento.exposition)
    analysis = spec(
        metrics={
            "latency_ms": {"p95": 100},
            "custom": [{"name": "accuracy", "metric": "model_accuracy", "min": 0.9}],
        }
    )
    bento.accuracy.labels("2.0.0").set(0.95)
    bento.accuracy.labels("1.0.0").set(0.1)

    def traffic() -> None:
        bento.serve("2.0.0", ok=50, seconds=0.02)
        bento.serve("1.0.0", ok=0, errors=50, seconds=3.0)
        bento.serve("2.0.0", ok=0, errors=100, path="/readyz")  # probes are not the API

    verdict, events, _ = scrape_watch(analysis, server.url, "2.0.0", traffic)

    assert verdict.outcome is Judgement.PASSED, verdict.message
    p95 = [e.value for e in events if e.metric == "latency_ms.p95"]
    assert p95 == [pytest.approx(24.25)] * 5  # 0.01 + 0.015 * 0.95 s
    assert {e.value for e in events if e.metric == "accuracy"} == {0.95}


def test_scrape_accuracy_below_min_fails(serve: Any) -> None:
    bento = FakeBento()
    bento.accuracy.labels("2.0.0").set(0.62)
    server = serve(bento.exposition)
    analysis = spec(
        metrics={"custom": [{"name": "accuracy", "metric": "model_accuracy", "min": 0.9}]}
    )

    verdict, _, _ = scrape_watch(analysis, server.url, "2.0.0", lambda: bento.serve("2.0.0", 50))
    assert verdict.outcome is Judgement.FAILED
    assert "accuracy 0.62 is below min 0.9" in verdict.message


def test_scrape_restart_is_not_a_negative_rate(serve: Any) -> None:
    state = {"bento": FakeBento()}
    state["bento"].serve("2.0.0", ok=1000)
    server = serve(lambda: state["bento"].exposition())
    intervals = iter(range(100))

    def traffic() -> None:
        if next(intervals) == 1:
            state["bento"] = FakeBento()  # the server restarted: counters start again
        state["bento"].serve("2.0.0", ok=30, errors=1)

    verdict, events, _ = scrape_watch(spec(inconclusive_limit=0), server.url, "2.0.0", traffic)
    assert verdict.passed, verdict.message
    assert [e.requests for e in events] == [31.0] * 5
    assert all(0 <= (e.value or 0) < 0.05 for e in events)


def test_scrape_without_traffic_is_inconclusive(serve: Any) -> None:
    server = serve(FakeBento().exposition)
    verdict, events, _ = scrape_watch(spec(inconclusive_limit=1), server.url, "2.0.0")
    assert verdict.outcome is Judgement.INCONCLUSIVE
    assert verdict.intervals == 2
    assert "no requests" in events[0].message


def test_scrape_unreachable_never_passes() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    verdict, events, _ = scrape_watch(spec(consecutive_error_limit=2, bake="1m"), url, "2.0.0")

    assert verdict.outcome is Judgement.FAILED
    assert verdict.cause is Cause.ERROR_LIMIT
    assert "cannot scrape" in verdict.message
    assert all(e.status is Status.ERROR for e in events)


@pytest.mark.parametrize(
    "response",
    [(200, "<html><body>Welcome to nginx</body></html>"), (500, "oops"), (404, "not found")],
)
def test_scrape_garbage_or_http_errors_never_pass(serve: Any, response: tuple[int, str]) -> None:
    server = serve(lambda: response)
    verdict, _, _ = scrape_watch(spec(consecutive_error_limit=1, bake="1m"), server.url, "2.0.0")
    assert verdict.outcome is Judgement.FAILED
    assert verdict.cause is Cause.ERROR_LIMIT


def test_scrape_recovers_from_a_garbage_snapshot(serve: Any) -> None:
    bento = FakeBento()
    calls = iter(range(100))

    def responder() -> tuple[int, str]:
        return (200, "garbage") if next(calls) == 2 else bento.exposition()

    server = serve(responder)
    verdict, events, _ = scrape_watch(spec(), server.url, "2.0.0", lambda: bento.serve("2.0.0", 20))
    assert verdict.passed
    assert [e.status for e in events].count(Status.ERROR) == 1


def test_open_source_picks_the_spec_source() -> None:
    with open_source(spec(), "1.0.0", base_url="http://127.0.0.1:1") as source:
        assert isinstance(source, ScrapeSource)
    with pytest.raises(MetricsError, match="base URL"):
        open_source(spec(), "1.0.0")
    prom = spec(source={"kind": "prometheus", "url": "http://127.0.0.1:1"})
    with open_source(prom, "1.0.0") as source:
        assert isinstance(source, PrometheusSource)


# --- measured by the endpoint (docs/ARCHITECTURE.md, "Measured by the endpoint") ---------


def test_the_endpoint_measures_error_rate_and_the_bento_reports_only_its_gauges() -> None:
    """The bento's own counters see every request it finished answer 200; the endpoint
    saw a fifth of them dropped. Error rate is the endpoint's; the gauge, self-reported."""
    bento, meter = FakeBento(), Meter()
    bento.accuracy.labels("2.0.0").set(0.97)
    meter.tally("iris", "1.0.0", "live").record("5xx", 0.01)  # the old version: not counted
    agents = itertools.count()
    reads: list[str] = []

    def traffic() -> None:
        bento.serve("2.0.0", ok=8)
        tally = meter.tally("iris", "2.0.0", "live")
        for outcome in ["2xx"] * 8 + ["reset", "timeout"]:
            tally.record(outcome, 0.02)

    def route(request: httpx.Request) -> httpx.Response:
        reads.append(request.url.host)
        if request.url.host == "agent":
            return httpx.Response(200, text=meter.exposition().decode())
        return httpx.Response(200, text=bento.exposition()[1])

    def agent_url() -> str:
        return f"http://agent/metrics?n={next(agents)}"  # asked at every scrape

    analysis = spec(
        metrics={"custom": [{"name": "accuracy", "metric": "model_accuracy", "min": 0.9}]}
    )
    clock, events = FakeClock(traffic), list[Measurement]()
    endpoint = EndpointMetrics(agent_url, "iris")
    transport = httpx.MockTransport(route)
    with ScrapeSource(
        "http://bento", analysis, "2.0.0", fresh=True, endpoint=endpoint, transport=transport
    ) as source:
        verdict = run_analysis(
            analysis, source, "2.0.0", clock=clock, sleep=clock.sleep, on_measurement=events.append
        )
    assert verdict.outcome is Judgement.FAILED and verdict.metric == "error_rate"
    assert verdict.value == pytest.approx(0.2) and next(agents) == len(reads) // 2
    by_metric = {e.metric: e for e in events}
    assert not by_metric["error_rate"].self_reported
    assert by_metric["accuracy"].self_reported and by_metric["accuracy"].status == "successful"
    assert by_metric["accuracy"].message.endswith("(self-reported)")
    # Without custom metrics, the bento is not asked at all.
    with ScrapeSource(
        "http://bento", spec(), "2.0.0", endpoint=endpoint, transport=transport
    ) as source:
        reads.clear()
        source.read()
    assert reads == ["agent"]


def test_an_agent_restarted_between_scrapes_counts_from_zero_even_past_its_old_totals() -> None:
    """A restart moves the agent's port and starts its counts at zero; counts that
    climbed past the old totals before the next scrape still measure only the new."""
    before, after = Meter(), Meter()
    for outcome in ["2xx"] * 8 + ["5xx"] * 2:
        before.tally("iris", "2.0.0", "live").record(outcome, 0.02)
    for outcome in ["2xx"] * 20 + ["5xx"] * 3:  # every series past its old total
        after.tally("iris", "2.0.0", "live").record(outcome, 0.02)
    agents = {"agent-a:1": before, "agent-b:2": after}
    current = ["agent-a:1"]

    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=agents[request.url.netloc.decode()].exposition().decode())

    endpoint = EndpointMetrics(lambda: f"http://{current[0]}/metrics", "iris")
    transport = httpx.MockTransport(route)
    with ScrapeSource(
        "http://bento", spec(), "2.0.0", fresh=True, endpoint=endpoint, transport=transport
    ) as source:
        first = source.read()
        current[0] = "agent-b:2"
        second = source.read()
    assert first.values["error_rate"] == pytest.approx(0.2) and first.requests == 10
    assert second.requests == 23 and second.values["error_rate"] == pytest.approx(3 / 23)


def test_a_bento_judged_by_its_own_metrics_alone_is_self_reported(serve: Any) -> None:
    bento = FakeBento()
    server = serve(bento.exposition)
    verdict, events, _ = scrape_watch(
        spec(), server.url, "2.0.0", lambda: bento.serve("2.0.0", ok=20)
    )
    assert verdict.outcome is Judgement.PASSED
    assert all(e.self_reported and e.message.endswith("(self-reported)") for e in events)


# --- accumulated windows (docs/ARCHITECTURE.md, "Analysis") ------------------------------

SLOW_P95 = {"latency_ms": {"p95": 100}}
P95_OF_2S = 2425.0  # all in (1, 2.5]: 1 + 1.5 * 0.95 s


def snapshot(bento: FakeBento) -> Snapshot:
    return parse_exposition(bento.exposition()[1], Scope("2.0.0", "iris"))


def test_a_window_sums_its_intervals_and_a_restart_inside_it_loses_nothing() -> None:
    first = FakeBento()
    scrapes = [snapshot(first)]
    first.serve("2.0.0", ok=3, seconds=2.0)
    scrapes.append(snapshot(first))
    first.serve("2.0.0", ok=1, errors=1, seconds=2.0)
    scrapes.append(snapshot(first))
    restarted = FakeBento()  # the server restarted: its counters start from zero
    restarted.serve("2.0.0", ok=2, seconds=2.0)
    scrapes.append(snapshot(restarted))

    window = interval_increase(scrapes[0], scrapes[1])
    for before, after in itertools.pairwise(scrapes[1:]):
        window = accumulate(window, interval_increase(before, after))
    checks = checks_for(spec(metrics={"latency_ms": {"p95": 100}}))
    reading = window_values(window, scrapes[-1], checks, [])

    assert reading.requests == 7
    assert reading.values["error_rate"] == pytest.approx(1 / 7)
    assert reading.values["latency_ms.p95"] == pytest.approx(P95_OF_2S)


def test_scrape_trickle_of_slow_requests_fails_over_accumulated_windows(serve: Any) -> None:
    # A one-worker service slowed to 2 requests an interval: before accumulated windows
    # every interval was inconclusive on its own and the release was left live.
    bento = FakeBento()
    server = serve(bento.exposition)
    analysis = spec(min_requests=5, bake="1m", inconclusive_limit=0, metrics=SLOW_P95)

    verdict, events, clock = scrape_watch(
        analysis, server.url, "2.0.0", lambda: bento.serve("2.0.0", ok=2, seconds=2.0)
    )

    assert verdict.outcome is Judgement.FAILED and verdict.cause is Cause.FAILURE_LIMIT
    assert verdict.metric == "latency_ms.p95" and verdict.value == pytest.approx(P95_OF_2S)
    assert verdict.intervals == 6 and clock.now == 12.0
    p95 = [e for e in events if e.metric == "latency_ms.p95"]
    assert [e.status for e in p95] == [Status.PENDING, Status.PENDING, Status.FAILED] * 2
    assert [e.requests for e in p95] == [2, 4, 6] * 2
    assert "window 3 intervals, 6 requests" in verdict.message


def test_scrape_restart_inside_a_window_keeps_the_window(serve: Any) -> None:
    state = {"bento": FakeBento()}
    server = serve(lambda: state["bento"].exposition())
    intervals = iter(range(100))

    def traffic() -> None:
        if next(intervals) == 1:
            state["bento"] = FakeBento()  # restarted in the middle of the first window
            state["bento"].serve("2.0.0", ok=1, seconds=2.0)
        else:
            state["bento"].serve("2.0.0", ok=2, seconds=2.0)

    analysis = spec(min_requests=5, bake="1m", metrics=SLOW_P95)
    verdict, events, _ = scrape_watch(analysis, server.url, "2.0.0", traffic)
    assert verdict.outcome is Judgement.FAILED
    # 2 before the restart + 1 after it + 2: diffing against the window's first scrape
    # would have seen 3 (the server's counters since the restart)
    assert [e.requests for e in events if e.metric == "latency_ms.p95"] == [2, 3, 5, 2, 4, 6]


def test_scrape_healthy_trickle_passes(serve: Any) -> None:
    bento = FakeBento()
    server = serve(bento.exposition)
    analysis = spec(min_requests=5, metrics=SLOW_P95)

    verdict, events, _ = scrape_watch(
        analysis, server.url, "2.0.0", lambda: bento.serve("2.0.0", ok=2, seconds=0.02)
    )

    assert verdict.passed, verdict.message
    p95 = [e for e in events if e.metric == "latency_ms.p95"]
    assert [e.status for e in p95] == [
        Status.PENDING,
        Status.PENDING,
        Status.SUCCESSFUL,
        Status.PENDING,
        Status.INCONCLUSIVE,  # the bake ended on 4 requests
    ]


def test_prometheus_range_widens_with_the_window() -> None:
    analysis = spec(
        source={
            "kind": "prometheus",
            "url": "http://127.0.0.1:9",
            "window": "5s",
            "scrape_interval": "1s",
        }
    )
    with PrometheusSource("http://127.0.0.1:9", analysis, "2.0.0") as source:
        assert source.queries_for(Window(1, 1)) == source.queries
        assert "[5s]" in source.queries["requests"]
        widened = source.queries_for(Window(4, 3))  # 5s + 2 earlier intervals of 2s
        assert "[9s]" in widened["requests"] and "[9s]" in widened["error_rate"]
    assert promql_duration(2.5) == "2500ms"
    assert promql_duration(1_000_000) == "1000000s"


# --- PromQL building -------------------------------------------------------------------


def test_version_is_escaped_in_built_queries() -> None:
    queries = build_queries(spec(), Scope('1.0"} or vector(1) #\\', "iris"), 5)
    assert 'service_version="1.0\\"} or vector(1) #\\\\"' in queries["error_rate"]
    assert 'service_name="iris"' in queries["requests"]
    assert "[5s]" in queries["requests"]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ('acc{v="$version"}', 'acc{v="a\\"b\'c\\\\d"}'),
        ("acc{v='$version'}", "acc{v='a\"b\\'c\\\\d'}"),
        ('acc{v="${version}"}', 'acc{v="a\\"b\'c\\\\d"}'),
        ('label_join(acc, "x", "", $version)', 'label_join(acc, "x", "", "a\\"b\'c\\\\d")'),
        ('acc{v="\\"$version"}', 'acc{v="\\"a\\"b\'c\\\\d"}'),
        ('acc{v="$versions"}', 'acc{v="$versions"}'),
    ],
)
def test_version_substitution_is_escaped_for_its_quotes(template: str, expected: str) -> None:
    assert render_query(template, "a\"b'c\\d") == expected


def test_backtick_version_in_raw_string_is_refused() -> None:
    assert render_query("acc{v=`$version`}", "1.0") == "acc{v=`1.0`}"
    with pytest.raises(MetricsError, match="raw"):
        render_query("acc{v=`$version`}", "1`0")


# --- a real Prometheus -------------------------------------------------------------------

WEIRD = 'we"ird\\1'  # a label value that breaks any unescaped query
TRICKLE = "3.0.0"  # about one slow request a second


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, FakeBento]]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not on PATH: install it (Debian: apt-get install -y prometheus)")
    bento = FakeBento()
    exporter = ExpositionServer(bento.exposition)
    stop = threading.Event()

    def traffic() -> None:
        bento.accuracy.labels("2.0.0").set(0.95)
        bento.accuracy.labels(WEIRD).set(0.5)
        beat = 0
        while not stop.is_set():
            bento.serve("2.0.0", ok=20, seconds=0.02)
            bento.serve(WEIRD, ok=16, errors=4, seconds=0.3)
            if beat % 20 == 0:
                bento.serve(TRICKLE, ok=1, seconds=0.3)
            beat += 1
            stop.wait(0.05)

    generator = threading.Thread(target=traffic, daemon=True)
    generator.start()
    home = tmp_path_factory.mktemp("prometheus")
    config = home / "prometheus.yml"
    target = exporter.url.removeprefix("http://")
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: bento, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = closed_port()
    log = (home / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, home / "prometheus.log")
        _wait_for_data(url)
        yield url, bento
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        stop.set()
        generator.join(5)
        exporter.stop()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"prometheus not ready within 30s:\n{log.read_text()[-2000:]}")


def _wait_for_data(url: str) -> None:
    # rate() over a 5s window needs a few scrapes of both versions
    query = (
        'count(count_over_time(bentoml_service_request_total{service_version="2.0.0"}[5s]) >= 4)'
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=2).json()
        if answer["data"]["result"]:
            return
        time.sleep(0.2)
    pytest.fail("prometheus scraped no data from the exporter within 60s")


def prom_spec(url: str, **overrides: Any) -> AnalysisSpec:
    return spec(
        source={"kind": "prometheus", "url": url, "window": "5s", "scrape_interval": "1s"},
        **overrides,
    )


def prom_watch(analysis: AnalysisSpec, version: str) -> Any:
    clock = FakeClock()
    events: list[Any] = []
    assert isinstance(analysis.source, PrometheusSourceSpec)
    with PrometheusSource(analysis.source.url, analysis, version) as source:
        verdict = run_analysis(
            analysis, source, version, clock=clock, sleep=clock.sleep, on_measurement=events.append
        )
    return verdict, events


ACCURACY = {"name": "accuracy", "query": 'min(model_accuracy{service_version="$version"})'}


@pytest.mark.slow
def test_prometheus_healthy_version_passes(prometheus: tuple[str, FakeBento]) -> None:
    url, _ = prometheus
    analysis = prom_spec(
        url, metrics={"latency_ms": {"p95": 100}, "custom": [{**ACCURACY, "min": 0.9}]}
    )
    verdict, events = prom_watch(analysis, "2.0.0")

    assert verdict.outcome is Judgement.PASSED, verdict.message
    by_metric = {e.metric: e for e in events}
    assert by_metric["error_rate"].value == 0
    assert by_metric["latency_ms.p95"].value == pytest.approx(24.25)
    assert by_metric["accuracy"].value == 0.95
    assert by_metric["error_rate"].requests > 20


@pytest.mark.slow
def test_prometheus_reads_the_samples_behind_a_gauge(prometheus: tuple[str, FakeBento]) -> None:
    """`samples` through PromQL: the version's counter total, at the baseline and each
    read; a window that never grows by min_samples keeps the gauge pending."""
    url, _ = prometheus
    evidence = {"samples": "bentoml_service_request_total", "min_samples": 10**9}
    analysis = prom_spec(url, metrics={"custom": [{**ACCURACY, "min": 0.9, **evidence}]})
    with PrometheusSource(url, analysis, "2.0.0") as source:
        baseline = source.read()
    assert baseline.baseline and baseline.samples["accuracy"] > 0
    verdict, events = prom_watch(analysis, "2.0.0")
    accuracy = [e for e in events if e.metric == "accuracy"]
    assert {e.status for e in accuracy[:-1]} == {Status.PENDING}, accuracy[0].message
    assert accuracy[-1].status is Status.INCONCLUSIVE
    assert verdict.outcome is Judgement.INCONCLUSIVE


@pytest.mark.slow
def test_prometheus_failing_version_with_a_weird_label_fails(
    prometheus: tuple[str, FakeBento],
) -> None:
    url, _ = prometheus
    analysis = prom_spec(url, metrics={"custom": [{**ACCURACY, "min": 0.9}]})
    verdict, events = prom_watch(analysis, WEIRD)

    assert verdict.outcome is Judgement.FAILED
    assert verdict.intervals == 2
    first = {e.metric: e for e in events if e.interval == 1}
    assert first["error_rate"].value == pytest.approx(0.2, rel=0.05)
    assert first["accuracy"].value == 0.5


@pytest.mark.slow
def test_prometheus_quantile_matches_ours(prometheus: tuple[str, FakeBento]) -> None:
    url, bento = prometheus
    with bento.lock:
        buckets = [
            (float(s.labels["le"]), s.value)
            for family in bento.registry.collect()
            for s in family.samples
            if s.name.endswith("_bucket")
            and s.labels["service_version"] == WEIRD
            and s.labels["http_response_code"] == "200"
        ]
    assert len(buckets) == len(BENTOML_BUCKETS) + 1
    with PrometheusSource(url, prom_spec(url), "2.0.0") as source:
        for q in (0.5, 0.9, 0.99):
            # the same static buckets through PromQL: vector literals via label_replace
            promql = " or ".join(
                f'label_replace(vector({count}), "le", "{le}", "", "")' for le, count in buckets
            )
            theirs = source.query(f"histogram_quantile({q}, {promql})")
            assert theirs == [pytest.approx(histogram_quantile(q, buckets))]


@pytest.mark.slow
def test_prometheus_unknown_version_is_inconclusive(prometheus: tuple[str, FakeBento]) -> None:
    url, _ = prometheus
    verdict, events = prom_watch(prom_spec(url, inconclusive_limit=0), "9.9.9")
    assert verdict.outcome is Judgement.INCONCLUSIVE
    assert "no requests" in events[0].message


@pytest.mark.slow
def test_prometheus_bad_query_is_an_error_of_that_metric(
    prometheus: tuple[str, FakeBento],
) -> None:
    url, _ = prometheus
    broken = {"name": "accuracy", "query": "min(model_accuracy{", "min": 0.9}
    analysis = prom_spec(url, consecutive_error_limit=1, metrics={"custom": [broken]})
    verdict, events = prom_watch(analysis, "2.0.0")

    assert verdict.cause is Cause.ERROR_LIMIT and verdict.metric == "accuracy"
    assert "prometheus HTTP 400" in verdict.message
    assert {e.status for e in events if e.metric == "error_rate"} == {Status.SUCCESSFUL}


def test_prometheus_unreachable_never_passes() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    verdict, events = prom_watch(prom_spec(url, consecutive_error_limit=2, bake="1m"), "2.0.0")
    assert verdict.outcome is Judgement.FAILED
    assert verdict.cause is Cause.ERROR_LIMIT
    assert "cannot reach" in verdict.message
    assert len(events) == 3


def _wait_for_history(url: str, version: str, seconds: int) -> None:
    # the widest range the test reads must hold scrapes all through
    query = (
        f'count_over_time(bentoml_service_request_total{{service_version="{version}"}}'
        f"[{seconds}s]) >= {seconds - 1}"
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=2).json()
        if answer["data"]["result"]:
            return
        time.sleep(0.2)
    pytest.fail(f"prometheus has no {seconds}s of {version} within 60s")


@pytest.mark.slow
def test_prometheus_trickle_fails_over_a_widened_range(prometheus: tuple[str, FakeBento]) -> None:
    # About one request a second, every one slow: no 3s range holds min_requests 5, so
    # the release is judged on ranges widened by 2s per interval of the open window.
    url, _ = prometheus
    _wait_for_history(url, TRICKLE, 12)
    analysis = spec(
        source={"kind": "prometheus", "url": url, "window": "3s", "scrape_interval": "1s"},
        min_requests=5,
        bake="1m",
        inconclusive_limit=3,  # tolerates a range that catches a single scrape
        metrics=SLOW_P95,
    )
    verdict, events = prom_watch(analysis, TRICKLE)

    assert verdict.outcome is Judgement.FAILED, verdict.message
    assert verdict.metric == "latency_ms.p95"
    assert verdict.value == pytest.approx(487.5)  # all in (0.25, 0.5]: 0.25 + 0.25 * 0.95 s
    p95 = [e for e in events if e.metric == "latency_ms.p95"]
    judged = [e for e in p95 if e.status is Status.FAILED]
    assert len(judged) == 2
    assert all(e.window_intervals >= 2 and (e.requests or 0) >= 5 for e in judged)
    assert p95[0].status is not Status.FAILED  # one 3s range alone is too little


def test_the_promql_exclusions_are_the_scrape_sources() -> None:
    """The rendered PromQL excludes exactly the paths the scrape source and the endpoint
    leave out (one list, `analysis.endpoint`): the regex, anchored as Prometheus anchors
    it, matches the probes and docs and no API path."""
    from releasectl.analysis.endpoint import EXCLUDED_ENDPOINTS, EXCLUDED_PREFIXES
    from releasectl.analysis.exposition import EXCLUDED_ENDPOINTS_RE

    alternatives = set(EXCLUDED_ENDPOINTS_RE.split("|"))
    assert alternatives == {re.escape(p) for p in EXCLUDED_ENDPOINTS} | {
        f"{re.escape(p)}.*" for p in EXCLUDED_PREFIXES
    }
    for path in [*EXCLUDED_ENDPOINTS, *(f"{p}app.js" for p in EXCLUDED_PREFIXES)]:
        assert re.fullmatch(EXCLUDED_ENDPOINTS_RE, path), path
    for path in ("/predict", "/feedback", "/metricsx", "/docs"):
        assert not re.fullmatch(EXCLUDED_ENDPOINTS_RE, path), path
