"""A small HTTP load generator, run as its own process by the serving benchmarks so that the
client's CPU is not the benchmarking process's (2-core machines: threads in the same process
as the timing code distort both).

    python benchmarks/loadgen.py URL --connections 8 --duration 10 [--rate 200] [--trace FILE]

It POSTs the iris example's /predict over `--connections` pooled keep-alive connections
(aiohttp). Without `--rate` every connection sends its next request as soon as the previous one
answers (closed loop: the throughput the server can give). With `--rate` the connections
together send that many requests per second, evenly paced (latency under a fixed load).
`--duration 0` runs until SIGTERM/SIGINT. It prints one JSON summary on stdout; `--trace`
also writes one line per request: `sent answered status version`, in monotonic seconds
(CLOCK_MONOTONIC is system-wide on Linux: the parent compares them with its `time.monotonic()`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import time
from typing import Any

import aiohttp

BODY = json.dumps({"features": [5.1, 3.5, 1.4, 0.2]}).encode()
HEADERS = {"content-type": "application/json"}


def quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def worker(
    session: aiohttp.ClientSession,
    url: str,
    stop: asyncio.Event,
    period: float | None,
    offset: float,
    latencies: list[float],
    trace: list[tuple[float, float, int, str]] | None,
    errors: list[str],
) -> None:
    next_at = time.monotonic() + offset
    while not stop.is_set():
        if period is not None:
            delay = next_at - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            next_at += period
        t0 = time.monotonic()
        version = "-"
        try:
            async with session.post(url, data=BODY, headers=HEADERS) as r:
                body = await r.read()
                status = r.status
            if trace is not None and status == 200:
                version = json.loads(body).get("version", "-")
        except (aiohttp.ClientError, TimeoutError) as exc:
            status = 0
            version = type(exc).__name__
            errors.append(version)
        t1 = time.monotonic()
        latencies.append(t1 - t0)
        if status != 200 and status != 0:
            errors.append(str(status))
        if trace is not None:
            trace.append((t0, t1, status, version))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connector = aiohttp.TCPConnector(limit=args.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    latencies: list[float] = []
    errors: list[str] = []
    trace: list[tuple[float, float, int, str]] | None = [] if args.trace else None
    url = args.url.rstrip("/") + "/predict"
    period = args.connections / args.rate if args.rate else None
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Warm up: open every connection before the clock starts.
        await asyncio.gather(
            *(session.post(url, data=BODY, headers=HEADERS) for _ in range(args.connections)),
            return_exceptions=True,
        )
        started = time.monotonic()
        tasks = [
            asyncio.create_task(
                worker(
                    session,
                    url,
                    stop,
                    period,
                    (period or 0) * i / args.connections,
                    latencies,
                    trace,
                    errors,
                )
            )
            for i in range(args.connections)
        ]
        if args.duration > 0:
            try:
                await asyncio.wait_for(stop.wait(), args.duration)
            except TimeoutError:
                stop.set()
        else:
            await stop.wait()
        elapsed = time.monotonic() - started
        await asyncio.gather(*tasks)
    if trace is not None:
        with open(args.trace, "w") as handle:
            handle.writelines(f"{a:.6f} {b:.6f} {s} {v}\n" for a, b, s, v in trace)
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "seconds": round(elapsed, 3),
        "throughput": round(len(latencies) / elapsed, 1),
        "p50_ms": round(quantile(ordered, 0.50) * 1000, 3),
        "p95_ms": round(quantile(ordered, 0.95) * 1000, 3),
        "p99_ms": round(quantile(ordered, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 3) if ordered else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--trace", default=None)
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        summary = runner.run(run(args))
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
