"""A canary's weighted split and a mirror's share in the endpoint, in this process
(docs/ARCHITECTURE.md, "Deployment strategies"): the agent's proxy in front of a stable
and a candidate ASGI app served by uvicorn on 127.0.0.1. No bentoml, no agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from releasectl.analysis.endpoint import CANDIDATE, MIRROR, STABLE
from releasectl.serving.local.meter import Counts, Meter
from releasectl.serving.local.proxy import Backend, Mirror, Proxy, Served, Upstream, listen
from releasectl.serving.local.traffic import WeightedSplit, bucket
from testing.asgi import asgi_request

IDS = [f"client-{n}".encode() for n in range(4000)]


def test_a_client_on_the_candidate_stays_there_as_the_weight_grows() -> None:
    salt = b"2.0.0\0"
    at = {w: {c for c in IDS if bucket(salt + c) < w} for w in (10, 30, 50)}
    assert at[10] <= at[30] <= at[50]
    for weight, chosen in at.items():
        assert abs(len(chosen) / len(IDS) - weight / 100) < 0.03, (weight, len(chosen))
    # Another candidate draws its own clients: not always the same unlucky ones.
    other = {c for c in IDS if bucket(b"3.0.0\0" + c) < 10}
    assert len(other & at[10]) < len(at[10]) / 2


def echo(version: str) -> Callable[[dict[str, Any], Any, Any], Awaitable[None]]:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        body = json.dumps({"version": version}).encode()
        headers = [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


Script = Callable[[Proxy, Meter, str, str], Awaitable[None]]


def run(script: Script) -> Meter:
    """The proxy pointed at stable (role stable), the candidate beside it; `script` runs."""
    meter = Meter()

    async def main() -> None:
        servers = [Served(echo(v), listen(0)) for v in ("1.0.0", "2.0.0")]
        client = Upstream()
        proxy = Proxy(client)
        try:
            for server in servers:
                await server.started()
            here, there = (f"http://127.0.0.1:{s.port}" for s in servers)
            proxy.target = Backend(here, meter.tally("echo", "1.0.0", STABLE))
            await script(proxy, meter, here, there)
        finally:
            if proxy.mirror is not None:
                await proxy.mirror.aclose()
            await client.aclose()
            for server in servers:
                await server.close()

    asyncio.run(main())
    return meter


async def version(proxy: Proxy, headers: dict[str, str] | None = None) -> str:
    sent = await asgi_request(proxy, "POST", "/version", b"{}", headers)
    assert sent[0]["status"] == 200
    return str(json.loads(b"".join(m.get("body", b"") for m in sent[1:]))["version"])


def test_a_weighted_split_answers_its_share_sticky_per_client() -> None:
    async def script(proxy: Proxy, meter: Meter, stable: str, cand: str) -> None:
        side = Backend(cand, meter.tally("echo", "2.0.0", CANDIDATE))
        proxy.split = WeightedSplit(side, 30, "X-Client-Id", "2.0.0")
        got = [await version(proxy) for _ in range(400)]
        assert 0.2 <= got.count("2.0.0") / 400 <= 0.4, got.count("2.0.0")
        sides = {}
        for n in range(30):
            seen = {await version(proxy, {"x-client-id": f"c{n}"}) for _ in range(4)}
            assert len(seen) == 1
            sides[n] = seen.pop()
        assert set(sides.values()) == {"1.0.0", "2.0.0"}
        # Weight 0 (an abort): every next request is stable's.
        proxy.split = WeightedSplit(side, 0, "X-Client-Id", "2.0.0")
        assert {await version(proxy, {"x-client-id": f"c{n}"}) for n in range(30)} == {"1.0.0"}

    meter = run(script)
    stable, cand = meter.tally("echo", "1.0.0", STABLE), meter.tally("echo", "2.0.0", CANDIDATE)
    assert sum(stable.outcomes.values()) + sum(cand.outcomes.values()) == 400 + 120 + 30


def test_a_mirror_copies_its_percent_of_requests() -> None:
    async def script(proxy: Proxy, meter: Meter, stable: str, cand: str) -> None:
        backend = Backend(cand, meter.tally("echo", "2.0.0", MIRROR))
        pairs = meter.mirror_pairs("echo", "2.0.0")
        proxy.mirror = Mirror(backend, ["/version"], pairs, proxy.client, percent=25)
        assert {await version(proxy) for _ in range(400)} == {"1.0.0"}
        await proxy.mirror.queue.join()

    copies = sum(run(script).tally("echo", "2.0.0", MIRROR).outcomes.values())
    assert 0.15 <= copies / 400 <= 0.35, copies


class Broken(Counts):
    def record(self, outcome: str, seconds: float) -> None:
        raise RuntimeError("a fault in the mirror's own code")


def test_a_copy_that_fails_unforeseen_is_counted_and_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    failed = []

    async def script(proxy: Proxy, meter: Meter, stable: str, cand: str) -> None:
        pairs = meter.mirror_pairs("echo", "2.0.0")
        mirror = Mirror(Backend(cand, Broken()), ["/version"], pairs, proxy.client)
        proxy.mirror = mirror
        assert [await version(proxy) for _ in range(3)] == ["1.0.0"] * 3
        await mirror.queue.join()
        failed.append(mirror.failed)

    run(script)
    assert failed == [3]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and "a fault in the mirror's own code" in lines[0], lines
