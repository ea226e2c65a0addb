"""Mirroring in the endpoint (docs/ARCHITECTURE.md, "Mirroring"): the agent's proxy, in this
process, in front of a stable and a candidate ASGI app served by uvicorn on 127.0.0.1. The
user always gets the stable answer; the candidate gets copies, counted in role `mirror`, and
its answers are compared with the stable ones. No bentoml, no agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from releasectl.analysis.compare import (
    PairTotals,
    checks_of,
    compare_reading,
    pairs_increase,
    parse_pairs,
)
from releasectl.analysis.endpoint import LIVE, MIRROR
from releasectl.analysis.engine import measure
from releasectl.manifest.analysis import CompareSpec
from releasectl.serving.local.meter import Meter, Pairs
from releasectl.serving.local.proxy import Backend, Mirror, Proxy, Served, Upstream, listen
from testing.asgi import asgi_request

LABELS = ("setosa", "versicolor", "virginica")
App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def model(version: str, label_of: Callable[[int], str], status_of: Callable[[int], int]) -> App:
    """An ASGI app answering `{"id", "label", "version"}` for the input `{"n": N}`."""
    served = iter(range(1_000_000))

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        n = json.loads(body or b"{}").get("n", 0)
        out = {"id": f"{version}-{next(served)}", "label": label_of(n), "version": version}
        await respond(send, status_of(n), json.dumps(out).encode())

    return app


async def respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def hanging(entered: list[int], release: asyncio.Event) -> App:
    """A candidate that takes every request and answers only once `release` is set."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = (await receive()).get("body", b"")
        entered.append(json.loads(body)["n"])
        await release.wait()
        out = {"id": "late", "label": LABELS[0], "version": "2.0.0"}
        await respond(send, 200, json.dumps(out).encode())

    return app


STABLE = model("1.0.0", lambda n: LABELS[n % 3], lambda n: 200)


async def call(
    proxy: Proxy, n: int, path: str = "/predict", chunks: list[bytes] | None = None
) -> tuple[int, dict[str, Any]]:
    """One user request through the proxy's ASGI app: the status and JSON the user got."""
    body = json.dumps({"n": n}).encode()
    sent = await asgi_request(proxy, "POST", path, body)
    if chunks is not None:
        chunks.extend(m.get("body", b"") for m in sent[1:])
    answer = b"".join(m.get("body", b"") for m in sent[1:])
    return int(sent[0]["status"]), json.loads(answer)


Script = Callable[[Proxy, Meter, str, str], Awaitable[None]]


def run(
    candidate: App, script: Script, *, stop: asyncio.Event | None = None, stable: App = STABLE
) -> Meter:
    """Serve the stable app and `candidate` on 127.0.0.1, point a proxy at the stable one,
    run `script(proxy, meter, stable_url, candidate_url)`, then stop everything."""
    meter = Meter()

    async def main() -> None:
        servers = [Served(app, listen(0)) for app in (stable, candidate)]
        client = Upstream()
        proxy = Proxy(client)
        try:
            for server in servers:
                await server.started()
            here, there = (f"http://127.0.0.1:{s.port}" for s in servers)
            proxy.target = Backend(here, meter.tally("iris", "1.0.0", LIVE))
            await script(proxy, meter, here, there)
        finally:
            if stop is not None:
                stop.set()
            if proxy.mirror is not None:
                await proxy.mirror.aclose()
            await client.aclose()
            for server in servers:
                await server.close()

    asyncio.run(main())
    return meter


def mirror_to(proxy: Proxy, meter: Meter, url: str, **options: Any) -> Mirror:
    backend = Backend(url, meter.tally("iris", "2.0.0", MIRROR))
    pairs = meter.mirror_pairs("iris", "2.0.0")
    mirror = Mirror(backend, ["/predict"], pairs, proxy.client, compare_field="label", **options)
    proxy.mirror = mirror
    return mirror


def test_users_get_the_stable_answers_while_the_candidate_fails_and_differs() -> None:
    # The candidate fails every third input and gives another label to every other one.
    candidate = model(
        "2.0.0", lambda n: LABELS[(n + n % 2) % 3], lambda n: 500 if n % 3 == 0 else 200
    )

    async def script(proxy: Proxy, meter: Meter, stable: str, cand: str) -> None:
        mirror = mirror_to(proxy, meter, cand)
        for n in range(12):
            status, body = await call(proxy, n)
            assert (status, body["label"], body["version"]) == (200, LABELS[n % 3], "1.0.0")
        await mirror.queue.join()

    meter = run(candidate, script)
    assert meter.tally("iris", "2.0.0", MIRROR).outcomes == {"5xx": 4, "2xx": 8}
    assert meter.tally("iris", "1.0.0", LIVE).outcomes == {"2xx": 12}
    pairs = meter.mirror_pairs("iris", "2.0.0")
    # Failed: 0, 3, 6, 9. Answered with the stable label: the other even inputs 2, 4, 8, 10.
    assert (pairs.same, pairs.different, pairs.dropped) == (4, 8, 0)
    assert pairs.stable_seconds > 0 and pairs.candidate_seconds > 0


def test_a_hanging_candidate_never_holds_a_user_and_a_full_queue_drops() -> None:
    entered: list[int] = []
    release = asyncio.Event()

    async def script(proxy: Proxy, meter: Meter, stable: str, cand: str) -> None:
        mirror = mirror_to(proxy, meter, cand, queue_size=3, concurrency=2, timeout=60)
        answers = [await call(proxy, n) for n in range(10)]
        # Every user was answered by the stable version while the candidate held its
        # two copies unanswered.
        assert [(s, b["label"]) for s, b in answers] == [(200, LABELS[n % 3]) for n in range(10)]
        assert len(entered) == 2 and not release.is_set()
        pairs = meter.mirror_pairs("iris", "2.0.0")
        assert pairs.dropped == 10 - 2 - mirror.queue.qsize() and pairs.dropped >= 5
        assert meter.tally("iris", "2.0.0", MIRROR).outcomes == {}
        release.set()
        await mirror.queue.join()
        assert meter.tally("iris", "2.0.0", MIRROR).outcomes == {"2xx": 10 - pairs.dropped}

    meter = run(hanging(entered, release), script, stop=release)
    dropped = meter.mirror_pairs("iris", "2.0.0").dropped
    assert parse_pairs(meter.exposition().decode(), "iris", "2.0.0").dropped == dropped


def test_a_streamed_stable_answer_reaches_the_user_unchanged_and_is_compared() -> None:
    pieces = [b'{"id": "s", ', b'"label": "setosa", ', b'"version": "1.0.0"}']

    async def streamed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-type", b"application/json")]  # no length: chunked
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def script(proxy: Proxy, meter: Meter, stable: str, cand: str) -> None:
        mirror = mirror_to(proxy, meter, cand)
        chunks: list[bytes] = []
        assert (await call(proxy, 0, chunks=chunks))[0] == 200
        # No length: the proxy streams the answer (the path that collects a copy of it).
        assert b"".join(chunks) == b"".join(pieces) and chunks[-1] == b""
        await mirror.queue.join()

    meter = run(model("2.0.0", lambda n: "setosa", lambda n: 200), script, stable=streamed)
    pairs = meter.mirror_pairs("iris", "2.0.0")
    assert (pairs.same, pairs.different) == (1, 0)


def test_a_copy_the_candidate_never_answers_times_out_as_its_error() -> None:
    never = asyncio.Event()

    async def script(proxy: Proxy, meter: Meter, stable: str, cand: str) -> None:
        mirror = mirror_to(proxy, meter, cand, timeout=0.2)
        assert (await call(proxy, 1))[0] == 200
        await mirror.queue.join()

    meter = run(hanging([], never), script, stop=never)
    assert meter.tally("iris", "2.0.0", MIRROR).outcomes == {"timeout": 1}
    pairs = meter.mirror_pairs("iris", "2.0.0")
    assert (pairs.same, pairs.different) == (0, 1) and pairs.candidate_seconds >= 0.2


def test_feedback_and_probes_are_never_mirrored_and_other_routes_not_copied() -> None:
    meter = Meter()
    backend = Backend("http://127.0.0.1:1", meter.tally("iris", "2.0.0", MIRROR))
    pairs = meter.mirror_pairs("iris", "2.0.0")
    for routes in (["/predict", "/feedback"], ["/readyz"], ["predict"]):
        with pytest.raises(ValueError, match="cannot be mirrored"):
            Mirror(backend, routes, pairs, Upstream())

    async def script(proxy: Proxy, meter: Meter, stable: str, cand: str) -> None:
        mirror = mirror_to(proxy, meter, cand)
        assert (await call(proxy, 1, "/explain"))[0] == 200
        assert mirror.tasks == [] and mirror.queue.empty()  # nothing was offered

    meter = run(model("2.0.0", lambda n: LABELS[0], lambda n: 200), script)
    assert meter.tally("iris", "2.0.0", MIRROR).outcomes == {}


def test_a_different_label_disagrees_and_different_ids_and_versions_do_not() -> None:
    """Acceptance: a candidate answering 200 with another label for 30% of inputs fails
    on max_disagreement from the mirror's counts, and no user got one of its answers."""
    candidate = model(
        "2.0.0", lambda n: LABELS[(n + 1) % 3 if n % 10 < 3 else n % 3], lambda n: 200
    )

    async def script(proxy: Proxy, meter: Meter, stable: str, cand: str) -> None:
        mirror = mirror_to(proxy, meter, cand, queue_size=20)
        baseline = parse_pairs(meter.exposition().decode(), "iris", "2.0.0")
        for n in range(20):
            status, body = await call(proxy, n)
            assert (status, body["label"], body["version"]) == (200, LABELS[n % 3], "1.0.0")
        await mirror.queue.join()
        after = parse_pairs(meter.exposition().decode(), "iris", "2.0.0")
        increase = pairs_increase(baseline, after)
        assert (increase.same, increase.different) == (14, 6)
        spec = CompareSpec(field="label", max_disagreement=0.1, max_latency_ratio=100.0)
        found = measure(
            checks_of(spec), compare_reading(increase), version="2.0.0", min_requests=10,
            interval=1, elapsed_s=2.0,
        )  # fmt: skip
        by = {m.metric: m for m in found}
        assert by["compare.disagreement"].status == "failed"
        assert by["compare.disagreement"].value == pytest.approx(0.3)
        assert by["compare.latency_ratio"].status == "successful"

    run(candidate, script)


def test_what_counts_as_a_pair_and_as_agreement() -> None:
    pairs = Pairs()
    ok = b'{"id": "a", "label": "setosa", "version": "1.0.0"}'
    pairs.pair("label", ok, b'{"id": "b", "label": "setosa", "version": "2.0.0"}', 0.1, 0.2)
    assert (pairs.same, pairs.different) == (1, 0)
    for candidate in (b'{"label": "virginica"}', b'{"id": "b"}', b"oops", b"[1]", None):
        pairs.pair("label", ok, candidate, 0.1, 0.2)
    assert (pairs.same, pairs.different) == (1, 5)
    pairs.pair("flag", b'{"flag": 1}', b'{"flag": true}', 0.1, 0.1)  # true is not 1
    assert pairs.different == 6
    # No reference answer: no pair, whatever the candidate said.
    for stable in (b"not json", b'{"id": "a"}', b'["setosa"]'):
        pairs.pair("label", stable, ok, 0.1, 0.2)
    assert (pairs.same, pairs.different) == (1, 6)
    assert pairs.stable_seconds == pytest.approx(0.7)  # seven pairs
    assert PairTotals(1, 2) + PairTotals(3, 4) == PairTotals(4, 6)
