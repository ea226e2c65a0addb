"""What the CLI calls: `LocalTarget` starts the agent on demand and talks to it
over HTTP (docs/ARCHITECTURE.md, "Deploy targets").
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from releasectl import config, loopback
from releasectl.errors import BadInput, OperationFailed, Refused, ReleasectlError
from releasectl.progress import Progress, step
from releasectl.serving.local import envs, procs
from releasectl.serving.local.models import (
    DeployRequest,
    DeployResult,
    ModelStatus,
    TrafficAction,
    TrafficInfo,
    TrafficRequest,
)
from releasectl.serving.local.state import (
    AgentInfo,
    Paths,
    TargetState,
    load_agent_info,
    load_state,
    log_tail,
)

AGENT_START_TIMEOUT = 30.0
AGENT_STOP_TIMEOUT = 60.0
TOKEN_HEADER = "x-releasectl-token"
AGENT_MODULE = "releasectl.serving.local.agent"
ERRORS: dict[str, type[ReleasectlError]] = {
    "OperationFailed": OperationFailed,
    "BadInput": BadInput,
    "Refused": Refused,
}
# Agents this process started; polled so that they do not linger as zombies once they exit.
_spawned: list[subprocess.Popen[bytes]] = []


class LocalTarget:
    def __init__(self, home: Path | None = None) -> None:
        self.paths = Paths((Path(home) if home is not None else config.home()).resolve())
        self.env_cache = envs.cache_root(self.paths.home)

    # -- public API ----------------------------------------------------------------------------

    def deploy(self, request: DeployRequest, progress: Progress | None = None) -> DeployResult:
        """Serve the request's bento, in an environment made from its own pins (made here,
        by the caller's process, so that uv sees the caller's UV_* settings), behind the
        model's endpoint; return once it is live or raise why it is not."""
        if not (request.bento_dir / "bento.yaml").is_file():
            raise BadInput(f"{request.bento_dir} is not a bento folder (no bento.yaml)")
        what = f"{request.model} {request.version}"
        env = envs.ensure(request.bento_dir.resolve(), self.env_cache, what=what, progress=progress)
        request = request.model_copy(
            update={"bento_dir": request.bento_dir.resolve(), "python": env.python}
        )
        agent = self._ensure_agent()
        with step(progress, f"waiting for {what} to go live"):
            body = self._call(
                agent,
                "POST",
                "/v1/deploy",
                content=request.model_dump_json(),
                timeout=request.ready_timeout + 120,
                during="deploy",
            )
        return DeployResult.model_validate(body)

    def traffic(self, request: TrafficRequest) -> TrafficInfo:
        """Advance, promote or abort the model's canary (the agent started if need be);
        its traffic once changed (docs/ARCHITECTURE.md, "Deployment strategies")."""
        agent = self._ensure_agent()
        body = self._call(
            agent,
            "POST",
            "/v1/traffic",
            content=request.model_dump_json(),
            timeout=60,
            during="traffic",
        )
        return TrafficInfo.model_validate(body)

    def status(self, model: str | None = None, *, start: bool = True) -> list[ModelStatus]:
        """What the target serves. With `start=False` (read commands, dry runs) an
        agent that is not running stays so: the state file's record is returned,
        every endpoint down, since the agent is what serves them."""
        agent = self._ensure_agent() if start else self._live_agent()
        if agent is None:
            return _recorded(load_state(self.paths), model)
        params = {"model": model} if model is not None else {}
        body = self._call(agent, "GET", "/v1/status", params=params, timeout=60, during="status")
        return [ModelStatus.model_validate(item) for item in body]

    def running(self) -> bool:
        return self._live_agent() is not None

    def agent(self) -> AgentInfo | None:
        """The running agent, or None; never starts one."""
        return self._live_agent()

    def metrics_url(self) -> str:
        """The running agent's `/metrics` (what its endpoints measured), from its record:
        no call, so that a scrape can ask at every read (docs/ARCHITECTURE.md,
        "Measured by the endpoint")."""
        info = load_agent_info(self.paths)
        if info is None:
            raise OperationFailed("the local agent is not running: no endpoint counts to read")
        return info.url + "/metrics"

    def start(self) -> tuple[AgentInfo, bool]:
        """The agent, started unless it runs; and whether this call started it."""
        before = self._live_agent()
        agent = self._ensure_agent()
        return agent, before is None or before.pid != agent.pid

    def unreachable(self) -> int | None:
        """The pid of this home's agent when its record does not lead to it (the record is
        missing, names another process, or is from an earlier version), found by the home's
        agent lock or a model's port; None when the record's agent answers or none runs."""
        if self._live_agent() is not None:
            return None
        return self._holder()

    def stop(self) -> Stopped:
        """Stop the agent and every server it started; return once they are all
        gone, with what was running."""
        state = load_state(self.paths)
        agent = self._live_agent()
        stale = self._holder() if agent is None else None
        servers = [
            (ms.model, role, slot.version, slot.pid)
            for ms in state.models.values()
            for role, slot in (("live", ms.live), ("standby", ms.standby), ("pending", ms.pending))
            if slot is not None and slot.pid is not None and procs.alive(slot.pid, slot.identity)
        ]
        if stale is not None:
            # It cannot be asked (no token leads to it): stopped by PID, then its servers.
            procs.end(stale)
            recorded = {pid for *_, pid in servers}
            strays = [p for p in self._kill_slot_processes() if p not in recorded]
            _reap()
            return Stopped(stale, servers, strays)
        if agent is None and not servers:
            # Nothing runs that the state records: no agent is started just to stop it.
            return Stopped(None, [], self._kill_slot_processes())
        agent = agent or self._ensure_agent()
        proc = procs.find(agent.pid, agent.identity)
        # If the agent fails to answer, whatever still runs is stopped by PID below.
        with contextlib.suppress(OperationFailed):
            self._call(agent, "POST", "/v1/stop", timeout=AGENT_STOP_TIMEOUT, during="stop")
        if proc is not None:
            _, alive = psutil.wait_procs([proc], timeout=AGENT_STOP_TIMEOUT)
            if alive:
                procs.terminate(alive)
        strays = self._kill_slot_processes()
        _reap()
        return Stopped(agent.pid, servers, strays)

    # -- agent process -------------------------------------------------------------------------

    def _live_agent(self) -> AgentInfo | None:
        _reap()
        info = load_agent_info(self.paths)
        if info is None or not procs.alive(info.pid, info.identity):
            return None
        return info if self._answers(info) else None

    def _answers(self, info: AgentInfo) -> bool:
        try:
            self._call(info, "GET", "/v1/ping", timeout=5, during="ping")
        except ReleasectlError:
            return False
        return True

    def _holder(self) -> int | None:
        """This home's agent process, found without its record: the holder of the home's
        agent lock, else a process serving one of the home's model ports; either must be
        `python -m releasectl.serving.local.agent --home <this home>`."""
        found = procs.lock_holders(self.paths.agent_lock)
        if not found:
            found = procs.listeners(ms.port for ms in load_state(self.paths).models.values())
        home = ["--home", str(self.paths.home)]
        for pid in found:
            try:
                cmd = psutil.Process(pid).cmdline()
            except psutil.Error:
                continue
            if AGENT_MODULE in cmd and cmd[-2:] == home:
                return pid
        return None

    def _ensure_agent(self) -> AgentInfo:
        self.paths.ensure()
        with self.paths.spawn_lock.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            info = self._live_agent()
            if info is not None:
                return info
            holder = self._holder()
            record = load_agent_info(self.paths)
            if holder is not None:
                if (
                    record is not None
                    and record.pid == holder
                    and procs.alive(holder, record.identity)
                ):
                    raise OperationFailed(
                        f"the local agent (pid {holder}) runs but does not answer",
                        hint="`releasectl agent stop` stops it and its servers",
                    )
                # No record leads to it, so nothing can ask it anything: it is stopped by
                # PID (its servers keep serving) and the new agent adopts its servers.
                procs.end(holder)
            return self._spawn_agent()

    def _spawn_agent(self) -> AgentInfo:
        """Start an agent and return its record once it answers. The old record is left
        alone: the new agent replaces it only once it holds the home's lock and listens,
        so a start that fails forgets no live agent
        (docs/ARCHITECTURE.md, "Deploy targets")."""
        cmd = [sys.executable, "-m", AGENT_MODULE, "--home", str(self.paths.home)]
        with self.paths.agent_log.open("ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: the agent outlives the CLI and its terminal.
                start_new_session=True,
                cwd=self.paths.root,
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        _spawned.append(proc)
        deadline = time.monotonic() + AGENT_START_TIMEOUT
        while time.monotonic() < deadline:
            info = load_agent_info(self.paths)
            if info is not None and info.pid == proc.pid:
                if procs.alive(info.pid, info.identity) and self._answers(info):
                    return info
                break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            procs.end(proc.pid)
        raise OperationFailed(
            f"the local agent did not start\n--- {self.paths.agent_log} ---\n"
            + log_tail(self.paths.agent_log),
            hint="run the command again: a new agent is started",
        )

    def _kill_slot_processes(self) -> list[int]:
        left = [p for ps in procs.slot_processes(self.paths.root).values() for p in ps]
        if left:
            procs.terminate(left)
        return [p.pid for p in left]

    # -- HTTP ----------------------------------------------------------------------------------

    def _call(
        self, agent: AgentInfo, method: str, path: str, *, timeout: float, during: str, **kw: Any
    ) -> Any:
        headers = {TOKEN_HEADER: agent.token, "content-type": "application/json"}
        try:
            with httpx.Client(base_url=agent.url, trust_env=False, timeout=timeout) as http:
                r = http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise OperationFailed(
                f"lost the local agent during {during}: {exc!r}",
                hint="`releasectl status` shows what is really running",
            ) from None
        if r.is_success:
            return r.json()
        try:
            err = r.json()["error"]
            cls = ERRORS.get(err["type"], OperationFailed)
            raise cls(err["message"], err.get("hint"))
        except (ValueError, KeyError, TypeError):
            raise OperationFailed(f"agent answered {r.status_code}: {r.text[:500]}") from None


@dataclass(frozen=True)
class Stopped:
    """What `stop` found running: the agent's pid, each recorded server as
    (model, live/standby/pending, version, pid), and the pids of server
    processes no record named."""

    agent: int | None
    servers: list[tuple[str, str, str, int]]
    strays: list[int]

    @property
    def nothing(self) -> bool:
        return self.agent is None and not self.servers and not self.strays


def _recorded(state: TargetState, model: str | None) -> list[ModelStatus]:
    """The state file's record, as the agent would report it, with every endpoint
    down: it is the agent that serves them (docs/ARCHITECTURE.md, "Deploy targets")."""
    if model is not None and model not in state.models:
        raise BadInput(f"model {model} has never been deployed to this machine")
    names = [model] if model is not None else sorted(state.models)
    return [
        ModelStatus(
            model=name,
            endpoint=loopback.url(ms.port),
            health="down" if ms.live else "none",
            live=ms.live.info() if ms.live else None,
            standby=ms.standby.info() if ms.standby else None,
            standby_until=ms.standby_until,
            deploying=ms.pending.info() if ms.pending else None,
            last_deploy=ms.last_deploy,
            message=ms.message,
            traffic=ms.traffic_info(),  # no figures: the agent counts them
        )
        for name, ms in ((n, state.models[n]) for n in names)
    ]


def _reap() -> None:
    for proc in list(_spawned):
        if proc.poll() is not None:
            _spawned.remove(proc)


class AgentStepper:
    """The `Stepper` of a canary the local agent runs for `model`'s candidate `version`
    (docs/ARCHITECTURE.md, "Deployment strategies"): every call is one call to the agent."""

    def __init__(self, target: LocalTarget, model: str, version: str) -> None:
        self.target, self.model, self.version = target, model, version

    def current(self) -> TrafficInfo | None:
        """The canary now, with the endpoint's figures; None when `version` is not the
        candidate of one."""
        found = self.target.status(self.model)
        traffic = found[0].traffic if found else None
        return traffic if traffic is not None and traffic.candidate == self.version else None

    def change(self, action: TrafficAction, from_step: int | None = None) -> TrafficInfo:
        request = TrafficRequest(
            model=self.model, version=self.version, action=action, from_step=from_step
        )
        return self.target.traffic(request)
