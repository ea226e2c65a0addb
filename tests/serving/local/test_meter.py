"""What the endpoint counts and the exposition the agent serves (docs/ARCHITECTURE.md,
"Measured by the endpoint"): the agent's proxy, in this process, in front of raw asyncio
upstreams that answer, fail, drop the connection or are not there. No bentoml, no agent."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from releasectl.analysis.endpoint import BUCKETS, LIVE
from releasectl.analysis.engine import checks_for
from releasectl.analysis.exposition import Increase, parse_endpoint, window_values
from releasectl.loopback import free_port
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.serving.local.meter import Meter
from releasectl.serving.local.proxy import Backend, Proxy, Upstream, unanswered
from testing.asgi import asgi_request

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answer(status: int) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                return
            length = next(
                (
                    int(h.split(b":")[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length")
                ),
                0,
            )
            await reader.readexactly(length)
            writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok".encode())
            await writer.drain()

    return handle


async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A worker that dies with the request: the connection closes, no answer."""
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def call(
    proxy: Proxy, method: str = "POST", body: bytes = b"{}", path: str = "/predict"
) -> int:
    """One request through the proxy's ASGI app; the status the caller got."""
    sent = await asgi_request(proxy, method, path, body)
    return int(sent[0]["status"])


def counted(meter: Meter, version: str) -> dict[str, float]:
    """The agent's exposition, parsed back: requests of `version` by outcome."""
    text = meter.exposition().decode()
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_requests_total") and sample.labels["version"] == version:
                assert sample.labels["model"] == "iris" and sample.labels["role"] == LIVE
                found[sample.labels["outcome"]] = sample.value
    return found


def run(
    handlers: dict[str, Handler | None],
    script: Callable[[Proxy, Meter, dict[str, str]], Awaitable[None]],
) -> Meter:
    """Start an upstream per handler (None: a port nobody listens on), then run `script`."""
    meter = Meter()

    async def main() -> None:
        servers, urls = [], {}
        for name, handler in handlers.items():
            if handler is None:
                urls[name] = f"http://127.0.0.1:{free_port()}"
                continue
            server = await asyncio.start_server(handler, "127.0.0.1", 0)
            servers.append(server)
            urls[name] = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        client = Upstream()
        try:
            await script(Proxy(client), meter, urls)
        finally:
            await client.aclose()
            for server in servers:
                server.close()

    asyncio.run(main())
    return meter


def test_every_request_is_counted_for_the_version_that_took_it() -> None:
    async def script(proxy: Proxy, meter: Meter, urls: dict[str, str]) -> None:
        proxy.target = Backend(urls["ok"], meter.tally("iris", "1.0.0", LIVE))
        assert [await call(proxy) for _ in range(3)] == [200] * 3
        proxy.target = Backend(urls["bad"], meter.tally("iris", "2.0.0", LIVE))
        assert [await call(proxy) for _ in range(2)] == [500] * 2
        proxy.target = Backend(urls["ok"], meter.tally("iris", "2.0.0", LIVE))
        assert await call(proxy, "GET", b"") == 200
        # Probes, metrics and docs pass through, uncounted, as in the server's own counts.
        for probe in ("/readyz", "/metrics", "/livez", "/static_content/x.js"):
            assert await call(proxy, "GET", b"", probe) == 200

    meter = run({"ok": answer(200), "bad": answer(500)}, script)
    assert counted(meter, "1.0.0") == {"2xx": 3}
    assert counted(meter, "2.0.0") == {"2xx": 1, "5xx": 2}


def test_a_request_the_version_never_answered_is_its_error() -> None:
    async def script(proxy: Proxy, meter: Meter, urls: dict[str, str]) -> None:
        proxy.target = Backend(urls["dies"], meter.tally("iris", "2.0.0", LIVE))
        # Dropped, replayed once on a new connection, dropped again: the caller gets
        # the endpoint's 502, the version two errors (two requests it never answered).
        assert await call(proxy) == 502
        proxy.target = Backend(urls["gone"], meter.tally("iris", "3.0.0", LIVE))
        assert await call(proxy) == 502

    meter = run({"dies": drop, "gone": None}, script)
    assert counted(meter, "2.0.0") == {"reset": 2}
    assert counted(meter, "3.0.0") == {"connect_error": 2}  # not listening: tried twice too


def test_unanswered_names_why() -> None:
    assert unanswered(aiohttp.ServerDisconnectedError()) == "reset"
    assert unanswered(aiohttp.ClientPayloadError("cut")) == "reset"
    assert unanswered(aiohttp.ServerTimeoutError("slow")) == "timeout"
    assert unanswered(aiohttp.ConnectionTimeoutError("slow")) == "timeout"
    assert unanswered(TimeoutError()) == "timeout"
    refused = aiohttp.ClientConnectorError(None, OSError(111, "refused"))  # type: ignore[arg-type]
    assert unanswered(refused) == "connect_error"


def test_the_exposition_is_prometheus_text_with_cumulative_buckets() -> None:
    meter = Meter()
    tally = meter.tally("iris", "2.0.0", LIVE)
    for outcome, seconds in (("2xx", 0.003), ("2xx", 0.001), ("5xx", 0.04), ("reset", 2.0)):
        tally.record(outcome, seconds)
    tally.record("2xx", 0.0025)  # on a bound: `le` is inclusive
    text = meter.exposition().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["releasectl_endpoint_requests"].type == "counter"
    duration = families["releasectl_endpoint_request_duration_seconds"]
    assert duration.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in duration.samples if s.name.endswith("_bucket")}
    assert [float(b) for b in buckets if b != "+Inf"] == list(BUCKETS)
    assert buckets["0.001"] == 1 and buckets["0.0025"] == 2 and buckets["0.005"] == 3
    assert buckets["0.05"] == 4 and buckets["1.0"] == 4 and buckets["+Inf"] == 5
    total = next(s.value for s in duration.samples if s.name.endswith("_sum"))
    assert math.isclose(total, 2.0465)

    # Read back as the scrape source reads it: unanswered requests are errors.
    snapshot = parse_endpoint(text, "iris", "2.0.0")
    spec = AnalysisSpec.model_validate({"metrics": {"error_rate": {}, "latency_ms": {"p50": 10}}})
    reading = window_values(
        Increase(snapshot.requests, snapshot.buckets), snapshot, checks_for(spec), []
    )
    assert reading.requests == 5 and reading.values["error_rate"] == pytest.approx(2 / 5)
    assert reading.values["latency_ms.p50"] <= 5


def test_other_models_versions_and_roles_are_not_counted() -> None:
    meter = Meter()
    meter.tally("iris", "2.0.0", LIVE).record("2xx", 0.01)
    meter.tally("iris", "2.0.0", "mirror").record("5xx", 0.01)
    meter.tally("iris", "1.0.0", LIVE).record("5xx", 0.01)
    meter.tally("wine", "2.0.0", LIVE).record("5xx", 0.01)
    text = meter.exposition().decode()
    every_role = parse_endpoint(text, "iris", "2.0.0")
    assert sorted(dict(k)["outcome"] for k in every_role.requests) == ["2xx", "5xx"]
    live = parse_endpoint(text, "iris", "2.0.0", frozenset({LIVE}))
    assert [dict(k)["outcome"] for k in live.requests] == ["2xx"]
    assert parse_endpoint(text, "iris", "3.0.0").requests == {}


def test_a_version_no_slot_serves_is_forgotten() -> None:
    meter = Meter()
    meter.tally("iris", "2.0.0", LIVE).record("2xx", 0.01)
    meter.tally("iris", "1.0.0", LIVE).record("2xx", 0.01)
    meter.forget("iris", "2.0.0")
    text = meter.exposition().decode()
    assert 'version="2.0.0"' not in text and 'version="1.0.0"' in text
    assert meter.tally("iris", "2.0.0", LIVE).outcomes == {}  # a new server counts from zero
