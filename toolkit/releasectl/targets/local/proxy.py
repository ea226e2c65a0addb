"""The stable per-model endpoint: an ASGI app (starlette + uvicorn) that forwards every path and
method to the live slot through one pooled `httpx.AsyncClient`.

Switching is one assignment (`proxy.target = url`): each request reads the target once when it
arrives, so requests in flight finish on the slot that took them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
import uvicorn
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

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
RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def upstream_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        trust_env=False,
        # A proxy must not keep cookies: one caller's Set-Cookie would be sent for all others.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
        follow_redirects=False,
        timeout=httpx.Timeout(None, connect=5.0),
        # Below uvicorn's 5 s keep-alive in the slot servers, so we drop idle connections first.
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=4),
    )


class Proxy:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.target: str | None = None
        self.inflight: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        target = self.target
        if target is None:
            await _plain(send, 503, b"no live version\n")
            return
        self.inflight[target] += 1
        try:
            await self._forward(target, Request(scope, receive), send)
        finally:
            self.inflight[target] -= 1

    async def drained(self, target: str, timeout: float) -> None:
        """Wait until no request is in flight to `target` (or the timeout passes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.inflight[target] > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def _forward(self, target: str, request: Request, send: Send) -> None:
        scope = request.scope
        url = target + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode("latin-1")
        headers = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP and k != b"host"]
        content, replayable = await _body(request)
        response: httpx.Response | None = None
        for attempt in range(2):
            upstream = self.client.build_request(
                scope["method"], url, headers=headers, content=content
            )
            try:
                response = await self.client.send(upstream, stream=True)
                break
            except RETRYABLE as exc:
                if attempt or not replayable:
                    await _plain(send, 502, f"upstream failed: {exc!r}\n".encode())
                    return
            except httpx.HTTPError as exc:
                await _plain(send, 502, f"upstream failed: {exc!r}\n".encode())
                return
        assert response is not None
        try:
            start = {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [
                    (k.lower(), v) for k, v in response.headers.raw if k.lower() not in HOP_BY_HOP
                ],
            }
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) <= REPLAY_LIMIT:
                # Small bodies in one piece: one write fewer per request, which matters here.
                body = b"".join([chunk async for chunk in response.aiter_raw()])
                await send(start)
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(start)
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


async def _body(request: Request) -> tuple[bytes | AsyncIterator[bytes], bool]:
    length = request.headers.get("content-length")
    if length is None and "transfer-encoding" not in request.headers:
        return b"", True
    if length is not None and length.isdigit() and int(length) <= REPLAY_LIMIT:
        return await request.body(), True
    return request.stream(), False


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

    def __init__(self, port: int, client: httpx.AsyncClient) -> None:
        self.proxy = Proxy(client)
        self.served = Served(self.proxy, listen(port))

    @property
    def port(self) -> int:
        return self.served.port
