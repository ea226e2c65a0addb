"""The stable per-model endpoint: an ASGI app (served by uvicorn) that forwards every path and
method to the live slot through one pooled `aiohttp.ClientSession`.

Switching is one assignment (`proxy.target = Backend(url, tally)`): each request reads the
target once when it arrives, so requests in flight finish on the slot that took them, and are
counted for the version that answered them.

Every call of a version's API (not its probes, `/metrics` or docs) is counted in that version's
`Counts` (`meter.py`): its status
class, or why the version never answered it (refused, dropped, timed out), and its latency
(docs/ARCHITECTURE.md, "Measured by the endpoint"). A request replayed after a dropped
connection is two requests to the version: the dropped one is its error.

Per request the proxy works on the ASGI scope directly (no starlette Request) and uses aiohttp's
client rather than httpx: with httptools and uvloop (`uvicorn[standard]`) that took the agent's
cost from ~1.2 ms of CPU per request to a fraction of it (the endpoint's budget: added
p50 <= 1 ms; docs/ARCHITECTURE.md, "Performance budgets").

An optional `Mirror` (`proxy.mirror = Mirror(...)`) copies the requests on its routes to a
candidate version: the user's request goes to the target exactly as without it, and only
once that exchange is over is a copy put on the mirror's bounded queue (dropped and counted
when full), from which a fixed number of tasks send copies to the candidate
(docs/ARCHITECTURE.md, "Mirroring").

An optional split (`proxy.split`, `traffic.WeightedSplit`) sends a share of the requests
to a canary's candidate instead of the target (the stable version) (docs/ARCHITECTURE.md,
"Deployment strategies").
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Protocol

import aiohttp
import uvicorn
from starlette.types import Receive, Scope, Send
from yarl import URL

from releasectl.analysis.endpoint import (
    CONNECT_ERROR,
    NEVER_MIRRORED,
    RESET,
    TIMEOUT,
    is_api_endpoint,
    status_class,
)
from releasectl.serving.local.meter import Counts, Pairs

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Bodies up to this size are buffered, so that a request can be replayed once when a pooled
# keep-alive connection turns out to have been closed by the server (a race, not a failure).
REPLAY_LIMIT = 1 << 20
# A pooled connection that the server closed, or a slot that is not listening (any more).
# Timeouts are not retried: the request may be running upstream.
RETRYABLE = (aiohttp.ClientConnectionError,)
NOT_RETRYABLE = (aiohttp.ServerTimeoutError, aiohttp.ConnectionTimeoutError)
# aiohttp adds these when the caller did not send them; a proxy must forward what it got.
NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")
# The largest answer kept to compare a mirrored request's stable and candidate answers.
COMPARE_LIMIT = 1 << 18


class Upstream:
    """The pooled client shared by every endpoint. The aiohttp session is made on first use,
    inside the running loop (aiohttp binds it to the loop it was made in)."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.is_closed = False

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self.is_closed:
                raise RuntimeError("the upstream client is closed")
            connector = aiohttp.TCPConnector(
                limit=0,
                # Below uvicorn's 5 s keep-alive in the slot servers, so we drop idle
                # connections first.
                keepalive_timeout=4,
                ttl_dns_cache=None,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # A proxy must not keep cookies: one caller's Set-Cookie would be sent for all.
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, connect=5.0),
                auto_decompress=False,
                skip_auto_headers=NO_AUTO_HEADERS,
                trust_env=False,
            )
            # aiohttp itself resends an idempotent request once when a reused connection was
            # closed; the proxy's own retry (below) is the one retry, for every method.
            self._session._retry_connection = False
        return self._session

    async def aclose(self) -> None:
        self.is_closed = True
        if self._session is not None:
            await self._session.close()


def upstream_client() -> Upstream:
    return Upstream()


@dataclass(frozen=True)
class Backend:
    """Where requests go (a slot's base URL) and the tally they are counted in: the
    version's, in the role it plays (docs/ARCHITECTURE.md, "Measured by the endpoint")."""

    url: str
    tally: Counts


def unanswered(exc: BaseException) -> str:
    """Why a version never answered a request: the endpoint's outcome for it."""
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorError):
        return CONNECT_ERROR
    return RESET


@dataclass(slots=True)
class Copy:
    """A mirrored request, and the stable version's answer to it (when compared)."""

    method: str
    target: str  # the raw path and query
    headers: list[tuple[str, str]]
    body: bytes | None = None  # None: not copied (streamed, or the caller went away)
    keep: bool = False  # keep the stable answer, to compare
    answer: bytes | None = None  # the stable version's 2xx JSON body, when kept
    seconds: float = 0.0
    parts: list[bytes] = field(default_factory=list)


def check_routes(routes: Iterable[str]) -> None:
    """ValueError naming a route that cannot be mirrored."""
    for route in routes:
        if route in NEVER_MIRRORED or not route.startswith("/") or not is_api_endpoint(route):
            raise ValueError(f"{route!r} cannot be mirrored: name an API route like /predict")


class Mirror:
    """Copies of `percent`% of the requests on `routes`, sent to `backend` (the candidate,
    its tally in role `mirror`) by `concurrency` tasks from a queue of `queue_size`; each
    copy times out after `timeout` seconds. With `compare_field`, the answers are compared
    in `pairs` (docs/ARCHITECTURE.md, "Mirroring"). A copy that fails in an unforeseen
    way is counted in `failed` and said on the agent's log."""

    def __init__(
        self,
        backend: Backend,
        routes: Iterable[str],
        pairs: Pairs,
        client: Upstream,
        *,
        queue_size: int = 100,
        concurrency: int = 4,
        compare_field: str | None = None,
        timeout: float = 10.0,
        percent: int = 100,
    ) -> None:
        self.routes = frozenset(routes)
        check_routes(self.routes)
        if not 1 <= percent <= 100:
            raise ValueError(f"a mirror copies 1 to 100% of requests, not {percent}")
        self.percent, self.failed = percent, 0
        if queue_size < 1 or concurrency < 1 or timeout <= 0:
            raise ValueError("a mirror needs a queue, at least one task and a timeout")
        self.backend, self.pairs, self.client = backend, pairs, client
        self.field, self.timeout = compare_field, aiohttp.ClientTimeout(total=timeout)
        self.concurrency = concurrency
        self.queue: asyncio.Queue[Copy] = asyncio.Queue(queue_size)
        self.tasks: list[asyncio.Task[None]] = []

    def offer(self, copy: Copy) -> None:
        """Queue a copy without waiting: a full queue drops it (counted)."""
        if not self.tasks:
            self.tasks = [asyncio.create_task(self._work()) for _ in range(self.concurrency)]
        try:
            self.queue.put_nowait(copy)
        except asyncio.QueueFull:
            self.pairs.dropped += 1

    async def aclose(self) -> None:
        """Stop sending: the tasks end, copies still queued are let go."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks = []

    async def _work(self) -> None:
        while True:
            copy = await self.queue.get()
            # A copy must never end the task that sends them.
            try:
                await self._send(copy)
            except Exception as exc:
                self.failed += 1
                print(f"mirror to {self.backend.url}: a copy failed: {exc!r}", file=sys.stderr)
            self.queue.task_done()

    def wants(self, path: str) -> bool:
        """Whether this request is copied: on a route, and within the percent."""
        chance = self.percent >= 100 or random.random() * 100 < self.percent
        return path in self.routes and chance

    async def _send(self, copy: Copy) -> None:
        url = URL(self.backend.url + copy.target, encoded=True)
        answer: bytes | None = None
        started = perf_counter()
        try:
            async with self.client.session.request(
                copy.method,
                url,
                headers=copy.headers,
                data=copy.body,
                allow_redirects=False,
                timeout=self.timeout,
            ) as response:
                parts, size = [], 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size <= COMPARE_LIMIT:
                        parts.append(chunk)
                outcome = status_class(response.status)
                if 200 <= response.status < 300 and size <= COMPARE_LIMIT:
                    answer = b"".join(parts)
        except (aiohttp.ClientError, TimeoutError) as exc:
            outcome = unanswered(exc)
        seconds = perf_counter() - started
        self.backend.tally.record(outcome, seconds)
        if self.field is not None and copy.answer is not None:
            self.pairs.pair(self.field, copy.answer, answer, copy.seconds, seconds)


class Split(Protocol):
    """A canary's weighted split (`traffic.WeightedSplit`): whether `candidate` takes a request."""

    candidate: Backend

    def takes(self, headers: Iterable[tuple[bytes, bytes]]) -> bool: ...


class Proxy:
    def __init__(self, client: Upstream) -> None:
        self.client = client
        self.target: Backend | None = None
        self.split: Split | None = None
        self.mirror: Mirror | None = None
        self.inflight: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        target, split = self.target, self.split
        if target is None:
            await _plain(send, 503, b"no live version\n")
            return
        if split is not None and split.takes(scope["headers"]):
            target = split.candidate
        self.inflight[target.url] += 1
        # A call to the model's API, not a probe of its server: counted.
        tally = target.tally if is_api_endpoint(scope["path"]) else None
        mirror = self.mirror
        copy = None
        if mirror is not None and mirror.wants(scope["path"]):
            copy = Copy(scope["method"], "", [], keep=mirror.field is not None)
        try:
            await self._forward(target.url, tally, scope, receive, send, copy)
        finally:
            self.inflight[target.url] -= 1
        if copy is not None and copy.body is not None:
            # After the user's exchange, never before or during it.
            assert mirror is not None
            mirror.offer(copy)

    async def drained(self, target: str, timeout: float) -> None:
        """Wait until no request is in flight to `target` (or the timeout passes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.inflight[target] > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def _forward(
        self,
        target: str,
        tally: Counts | None,
        scope: Scope,
        receive: Receive,
        send: Send,
        copy: Copy | None = None,
    ) -> None:
        raw = scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            raw += "?" + scope["query_string"].decode("latin-1")
        url = URL(target + raw, encoded=True)
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in HOP_BY_HOP and k != b"host"
        ]
        body = await _body(scope, receive)
        if body is None:
            return  # the caller went away before it finished sending its request
        content, replayable = body
        if copy is not None and isinstance(content, bytes):
            copy.target, copy.headers, copy.body = raw, headers, content
        session = self.client.session
        response: aiohttp.ClientResponse | None = None
        for attempt in range(2):
            started = perf_counter()
            try:
                response = await session.request(
                    scope["method"], url, headers=headers, data=content, allow_redirects=False
                )
                break
            except aiohttp.ClientError as exc:
                if tally is not None:
                    tally.record(unanswered(exc), perf_counter() - started)
                retry = isinstance(exc, RETRYABLE) and not isinstance(exc, NOT_RETRYABLE)
                if attempt or not replayable or not retry:
                    await _plain(send, 502, f"upstream failed: {exc!r}\n".encode())
                    return
        assert response is not None
        outcome = status_class(response.status)
        keep = copy is not None and copy.keep and copy.body is not None
        if keep and not (200 <= response.status < 300 and "json" in response.content_type):
            keep = False
        try:
            start = {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (k.lower(), v) for k, v in response.raw_headers if k.lower() not in HOP_BY_HOP
                ],
            }
            length = response.content_length
            if length is not None and length <= REPLAY_LIMIT:
                # Small bodies in one piece: one write fewer per request, which matters here.
                data = await response.read()
                await send(start)
                await send({"type": "http.response.body", "body": data, "more_body": False})
                if keep and copy is not None and len(data) <= COMPARE_LIMIT:
                    copy.answer = data
                return
            await send(start)
            size = 0
            async for chunk in response.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if keep and copy is not None:
                    size += len(chunk)
                    keep = size <= COMPARE_LIMIT
                    if keep:
                        copy.parts.append(chunk)
                    else:
                        copy.parts.clear()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            if keep and copy is not None:
                copy.answer = b"".join(copy.parts)
                copy.parts.clear()
        except aiohttp.ClientError as exc:
            outcome = unanswered(exc)  # the version dropped its answer half-way
            raise
        finally:
            response.release()
            seconds = perf_counter() - started
            if tally is not None:
                tally.record(outcome, seconds)
            if copy is not None:
                copy.seconds = seconds


async def _body(scope: Scope, receive: Receive) -> tuple[bytes | AsyncIterator[bytes], bool] | None:
    length: bytes | None = None
    chunked = False
    for k, v in scope["headers"]:
        if k == b"content-length":
            length = v
        elif k == b"transfer-encoding":
            chunked = True
    if length is None and not chunked:
        return b"", True
    if length is not None and length.isdigit() and int(length) <= REPLAY_LIMIT:
        parts = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        return b"".join(parts), True
    return _stream(receive), False


async def _stream(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return


async def _plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class QuietServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the agent (it runs several servers)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen(port: int) -> socket.socket:
    # proto must say TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # IPPROTO_TCP, and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Served:
    """An ASGI app served by uvicorn on a socket, as a task of the running loop."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=False,
            server_header=False,
            date_header=False,
            timeout_graceful_shutdown=30,
        )
        self.sock = sock
        self.port: int = sock.getsockname()[1]
        self.server = QuietServer(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))

    async def started(self) -> None:
        while not self.server.started:
            if self.task.done():
                self.task.result()
                raise RuntimeError("server exited at start")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await self.task
        self.sock.close()


class Endpoint:
    """The stable address of one model."""

    def __init__(self, port: int, client: Upstream) -> None:
        self.proxy = Proxy(client)
        self.served = Served(self.proxy, listen(port))

    @property
    def port(self) -> int:
        return self.served.port
