"""A mesh-style exposition for the Kubernetes canary's analysis tests: Istio's
standard request metrics, as a sidecar reporting for each destination pod would
expose them, for a few destinations (model, version, namespace) at fixed rates,
served on 127.0.0.1 by a small process of its own (stopped by PID).

Run as a script: `python mesh.py PORT`. The counters grow with wall time from the
process' start, so every scrape sees them rise at the rates below, the way a
proxy's counters rise under steady load. `watch` reads it through the kubernetes
target's own Prometheus source (`Kubernetes.metric_source`)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# (namespace, model, version) -> (requests per second, share answered 5xx, share slow)
DESTINATIONS: dict[tuple[str, str, str], tuple[float, float, float]] = {
    ("models", "iris", "1.0.0"): (20.0, 0.0, 0.0),  # healthy
    ("models", "iris", "2.0.0"): (20.0, 0.2, 0.3),  # failing: 20% 503, 30% slow
    # Failing strangers at the healthy version: a query scoped by version alone, or
    # not by namespace, would judge iris 1.0.0 on their series.
    ("models", "wine", "1.0.0"): (20.0, 0.5, 0.5),
    ("staging", "iris", "1.0.0"): (20.0, 0.5, 0.5),
}
# Istio's default buckets (ms); a fast request lands in 25, a slow one in 1000.
BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
FAST_MS, SLOW_MS = 20.0, 800.0


def exposition(elapsed: float) -> str:
    """The text exposition after `elapsed` seconds of steady load."""
    requests: list[str] = []
    buckets: list[str] = []
    for (namespace, model, version), (rate, errors, slow) in DESTINATIONS.items():
        base = (
            'reporter="destination",'
            f'destination_workload_namespace="{namespace}",'
            f'destination_workload="{model}",'
            f'destination_canonical_service="{model}",'
            f'destination_canonical_revision="{version}"'
        )
        total = rate * elapsed
        for code, share in (("200", 1 - errors), ("503", errors)):
            requests.append(
                f'istio_requests_total{{{base},response_code="{code}"}} {total * share}'
            )
        slow_count = total * slow
        for le in BUCKETS:
            count = (total - slow_count if le >= FAST_MS else 0) + (
                slow_count if le >= SLOW_MS else 0
            )
            buckets.append(
                f'istio_request_duration_milliseconds_bucket{{{base},le="{le:g}"}} {count}'
            )
        buckets.append(f'istio_request_duration_milliseconds_bucket{{{base},le="+Inf"}} {total}')
        buckets.append(f"istio_request_duration_milliseconds_count{{{base}}} {total}")
        buckets.append(
            f"istio_request_duration_milliseconds_sum{{{base}}} "
            f"{(total - slow_count) * FAST_MS + slow_count * SLOW_MS}"
        )
    return (
        "\n".join(
            [
                "# TYPE istio_requests_total counter",
                *requests,
                "# TYPE istio_request_duration_milliseconds histogram",
                *buckets,
            ]
        )
        + "\n"
    )


@contextmanager
def mesh_exposition(port: int) -> Iterator[str]:
    """This module served on 127.0.0.1:`port` by its own process; yields its base URL
    once it answers, and stops it (by PID) on exit."""
    from testing.processes import stop  # here: this file also runs as a script

    proc = subprocess.Popen([sys.executable, __file__, str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "the mesh exposition exited"
            try:
                if httpx.get(f"{url}/metrics", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the mesh exposition never answered"
                time.sleep(0.05)
        yield url
    finally:
        stop(proc)


class _Handler(BaseHTTPRequestHandler):
    started = time.monotonic()

    def do_GET(self) -> None:
        body = exposition(time.monotonic() - self.started).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Handler).serve_forever()
