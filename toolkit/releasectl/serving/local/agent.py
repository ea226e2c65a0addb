"""The long-running local agent: `python -m releasectl.serving.local.agent --home DIR`
(docs/ARCHITECTURE.md, "Deploy targets").

It serves a small JSON control API on 127.0.0.1 (port and token in `local/agent.json`), the
endpoints' counts on `/metrics` (Prometheus text, read without the token:
docs/ARCHITECTURE.md, "Measured by the endpoint") and, in the same event loop, one
forwarding endpoint per model. It never imports bentoml: servers are
child processes. SIGTERM/SIGINT stop the agent only (servers keep running and are adopted by the
next agent); `POST /v1/stop` stops the servers too.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import hmac
import os
import secrets
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from releasectl.errors import BadInput, ReleasectlError
from releasectl.serving.local import procs
from releasectl.serving.local.models import DeployRequest, TrafficRequest
from releasectl.serving.local.proxy import Served, listen
from releasectl.serving.local.state import (
    AgentInfo,
    Paths,
    load_agent_info,
    now,
    save_agent_info,
)
from releasectl.serving.local.supervisor import Supervisor

TOKEN_HEADER = "x-releasectl-token"


def error_response(exc: ReleasectlError) -> JSONResponse:
    body = {"error": {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}}
    return JSONResponse(body, status_code={1: 500, 2: 400, 3: 409}.get(exc.code, 500))


class Agent:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.token = secrets.token_urlsafe(24)
        self.supervisor = Supervisor(paths)
        self.exit = asyncio.Event()
        self.stop_servers = False

    def app(self) -> Starlette:
        routes = [
            Route("/v1/ping", self.ping, methods=["GET"]),
            Route("/v1/deploy", self.deploy, methods=["POST"]),
            Route("/v1/status", self.status, methods=["GET"]),
            Route("/v1/traffic", self.traffic, methods=["POST"]),
            Route("/v1/stop", self.stop, methods=["POST"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]
        return Starlette(routes=routes, exception_handlers={ReleasectlError: self._error})

    async def _error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ReleasectlError)
        return error_response(exc)

    def _check(self, request: Request) -> None:
        given = request.headers.get(TOKEN_HEADER, "")
        if not hmac.compare_digest(given, self.token):
            raise BadInput("bad or missing agent token")

    async def ping(self, request: Request) -> Response:
        self._check(request)
        rss = psutil.Process().memory_info().rss
        body: dict[str, Any] = {"pid": os.getpid(), "rss": rss}
        # Checked by the tests: the agent must stay small, so it never loads bentoml.
        body["bentoml_loaded"] = "bentoml" in sys.modules
        return JSONResponse(body)

    async def metrics(self, request: Request) -> Response:
        # No token: counts of requests, read-only, on 127.0.0.1, like a bento's own /metrics.
        return Response(self.supervisor.meter.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def deploy(self, request: Request) -> Response:
        self._check(request)
        try:
            req = DeployRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise BadInput(f"bad deploy request: {exc}") from None
        result = await self.supervisor.deploy(req)
        return Response(result.model_dump_json(), media_type="application/json")

    async def traffic(self, request: Request) -> Response:
        """A canary's `advance`, `promote` or `abort` (docs/ARCHITECTURE.md,
        "Deployment strategies")."""
        self._check(request)
        try:
            req = TrafficRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise BadInput(f"bad traffic request: {exc}") from None
        info = await self.supervisor.traffic(req)
        return Response(info.model_dump_json(), media_type="application/json")

    async def status(self, request: Request) -> Response:
        self._check(request)
        found = await self.supervisor.status(request.query_params.get("model"))
        body = "[" + ",".join(s.model_dump_json() for s in found) + "]"
        return Response(body, media_type="application/json")

    async def stop(self, request: Request) -> Response:
        self._check(request)
        pids = await self.supervisor.close(stop_servers=True)
        self.exit.set()
        return JSONResponse({"stopped": pids})

    async def run(self) -> None:
        await self.supervisor.start()
        control = Served(self.app(), listen(0))
        await control.started()
        info = AgentInfo(
            pid=os.getpid(),
            identity=procs.identity(os.getpid()),
            port=control.port,
            token=self.token,
            started=now(),
        )
        save_agent_info(self.paths, info)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.exit.set)
        await self.exit.wait()
        await control.close()
        if not self.supervisor.upstream.is_closed:
            await self.supervisor.close(stop_servers=False)
        # Only its own record: the lock is held until this process exits, so no other agent
        # has written one, but a record is never removed on a guess.
        record = load_agent_info(self.paths)
        if record is not None and record.pid == info.pid and record.token == info.token:
            self.paths.agent_file.unlink(missing_ok=True)


def _no_sniffio() -> None:
    """httpcore 1.0 runs `import sniffio` on every request; when sniffio is not installed the
    failed import searches sys.path each time (~0.3 ms per proxied request). A None entry in
    sys.modules makes that import fail at once; httpcore then assumes asyncio, which is right."""
    try:
        import sniffio  # noqa: F401
    except ImportError:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    _no_sniffio()
    parser = argparse.ArgumentParser(prog="releasectl-local-agent")
    parser.add_argument("--home", type=Path, required=True)
    args = parser.parse_args(argv)
    paths = Paths(args.home)
    paths.ensure()
    # Held for the agent's lifetime: a second agent on the same home exits at once.
    lock = paths.agent_lock.open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("another agent is running on this home", file=sys.stderr)
        return 0
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(Agent(paths).run())
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (it comes with `uvicorn[standard]`): the endpoints forward every
    request through this loop, and uvloop's is about twice as fast as asyncio's
    (docs/ARCHITECTURE.md, "Performance budgets")."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    sys.exit(main())
