"""The two processes of the serving benchmark's mirror scenario (benchmarks/README.md):

    python benchmarks/mirror_endpoint.py candidate --port P [--sleep 2]
    python benchmarks/mirror_endpoint.py endpoint --port P --target URL [--mirror URL]

`candidate` is a trivial ASGI app (uvicorn, 127.0.0.1) that answers every request after
sleeping `--sleep` seconds. `endpoint` is the agent's endpoint (`releasectl.serving.local.proxy`:
the same Proxy, Upstream and uvicorn server, on uvloop) in a process of its own, forwarding to
`--target` and, with `--mirror`, copying /predict to that URL through a `Mirror`, compared on
`label`. On SIGTERM the endpoint prints its counts as one JSON line and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import Any

import uvicorn
import uvloop

from releasectl.analysis.endpoint import LIVE, MIRROR
from releasectl.serving.local.meter import Meter
from releasectl.serving.local.proxy import Backend, Endpoint, Mirror, Upstream


def candidate(seconds: float) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/predict":  # its probes answer at once
            await asyncio.sleep(seconds)
        body = json.dumps({"id": "x", "label": "setosa", "version": "sleepy"}).encode()
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def endpoint(args: argparse.Namespace) -> None:
    meter, client = Meter(), Upstream()
    served = Endpoint(args.port, client)
    served.proxy.target = Backend(args.target, meter.tally("iris", "1.0.0", LIVE))
    mirror = None
    if args.mirror:
        backend = Backend(args.mirror, meter.tally("iris", "2.0.0", MIRROR))
        pairs = meter.mirror_pairs("iris", "2.0.0")
        mirror = Mirror(
            backend,
            ["/predict"],
            pairs,
            client,
            queue_size=args.queue,
            concurrency=args.concurrency,
            compare_field="label",
            timeout=10.0,
        )
        served.proxy.mirror = mirror
    await served.served.started()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    pairs = meter.mirror_pairs("iris", "2.0.0")
    counts = {
        "live": meter.tally("iris", "1.0.0", LIVE).outcomes,
        "mirrored": meter.tally("iris", "2.0.0", MIRROR).outcomes,
        "dropped": pairs.dropped,
        "pairs": {"same": pairs.same, "different": pairs.different},
    }
    print(json.dumps(counts), flush=True)
    if mirror is not None:
        await mirror.aclose()
    await served.served.close()
    await client.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["candidate", "endpoint"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sleep", type=float, default=2.0)
    parser.add_argument("--target")
    parser.add_argument("--mirror")
    parser.add_argument("--queue", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if args.role == "candidate":
        app = candidate(args.sleep)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
        return 0
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(endpoint(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
