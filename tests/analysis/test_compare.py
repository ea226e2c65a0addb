"""The compare measurements (docs/ARCHITECTURE.md, "Mirroring"): the mirror's pairs as the
agent counts them (`Meter`), served as the agent serves its `/metrics` on 127.0.0.1, read by
the local target's scrape source from the same scrape as the endpoint's counts, and judged
by the engine's rules."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from releasectl.analysis.compare import checks_of
from releasectl.analysis.engine import Measurement, Window, measure
from releasectl.analysis.sources import EndpointMetrics, ScrapeSource
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.serving.local.meter import Meter

SPEC = AnalysisSpec.model_validate(
    {
        "interval": "1s",
        "bake": "1m",
        "min_requests": 10,
        "metrics": {"error_rate": {"max": 0.05}},
        "compare": {"field": "label", "max_disagreement": 0.1, "max_latency_ratio": 2.0},
    }
)
STABLE = b'{"id": "1", "label": "setosa", "version": "1.0.0"}'
SAME = b'{"id": "2", "label": "setosa", "version": "2.0.0"}'
OTHER = b'{"id": "3", "label": "virginica", "version": "2.0.0"}'


@pytest.fixture
def agent() -> Iterator[tuple[Meter, str]]:
    """A Meter's exposition on a real HTTP server on 127.0.0.1, as the agent's /metrics."""
    meter = Meter()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = meter.exposition()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield meter, f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def traffic(meter: Meter, same: int, different: int, ratio: float = 1.0) -> None:
    pairs = meter.mirror_pairs("iris", "2.0.0")
    for body in [SAME] * same + [OTHER] * different:
        pairs.pair("label", STABLE, body, 0.01, 0.01 * ratio)
    meter.mirror_pairs("iris", "1.5.0").pair("label", STABLE, OTHER, 1, 9)  # another version


def source_of(url: str) -> ScrapeSource:
    """The local target's scrape source of 2.0.0, reading the agent at `url`."""
    return ScrapeSource(url, SPEC, "2.0.0", endpoint=EndpointMetrics(lambda: url, "iris"))


def judged(
    source: ScrapeSource, window: Window, *, bake_over: bool = False
) -> dict[str, Measurement]:
    found = measure(
        checks_of(SPEC.compare),
        source.read(window),
        version="2.0.0",
        min_requests=10,
        interval=window.start + window.intervals - 1,
        elapsed_s=1.0,
        window=window.intervals,
        bake_over=bake_over,
    )
    return {m.metric.removeprefix("compare."): m for m in found}


def test_the_compare_measurements_pass_fail_and_wait_for_pairs(agent: tuple[Meter, str]) -> None:
    meter, url = agent
    traffic(meter, same=50, different=50, ratio=9)  # before the baseline: not counted
    with source_of(url) as source:
        assert source.read(Window(0, 1)).baseline
        traffic(meter, same=19, different=1, ratio=1.5)
        ok = judged(source, Window(1, 1))
        assert ok["disagreement"].status == "successful" and ok["disagreement"].requests == 20
        assert ok["disagreement"].value == pytest.approx(0.05)
        assert ok["latency_ratio"].status == "successful"
        assert ok["latency_ratio"].value == pytest.approx(1.5)

        traffic(meter, same=14, different=6, ratio=3)
        bad = judged(source, Window(2, 1))
        assert bad["disagreement"].status == "failed" and bad["disagreement"].value == 0.3
        assert "above max 0.1" in bad["disagreement"].message
        assert bad["latency_ratio"].status == "failed"

        # No pair at all: inconclusive. Too few: pending while the window is open, the
        # next interval's pairs added to it, inconclusive when the bake ends on it.
        assert {m.status for m in judged(source, Window(3, 1)).values()} == {"inconclusive"}
        traffic(meter, same=4, different=0)
        assert {m.status for m in judged(source, Window(4, 1)).values()} == {"pending"}
        traffic(meter, same=3, different=1)
        last = judged(source, Window(4, 2), bake_over=True)
        assert {m.status for m in last.values()} == {"inconclusive"}
        assert last["disagreement"].requests == 8 and "fewer than min_requests" in (
            last["disagreement"].message
        )


def test_a_restarted_agent_counts_from_zero(agent: tuple[Meter, str]) -> None:
    meter, url = agent
    traffic(meter, same=30, different=0)
    with source_of(url) as source:
        source.read(Window(0, 1))
        meter.forget("iris", "2.0.0")  # as a new agent: every count from zero
        traffic(meter, same=8, different=4)
        after = judged(source, Window(1, 1))
    assert after["disagreement"].requests == 12
    assert after["disagreement"].value == pytest.approx(4 / 12)
