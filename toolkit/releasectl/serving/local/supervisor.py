"""The agent's core: slots, deploys, standby expiry, and reconciling state with
reality (docs/ARCHITECTURE.md, "Deploy targets").
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import subprocess
import time
import traceback
from collections.abc import Coroutine
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

from releasectl import loopback
from releasectl.analysis.endpoint import LIVE
from releasectl.errors import BadInput, OperationFailed
from releasectl.serving.local import procs, traffic
from releasectl.serving.local.meter import Meter
from releasectl.serving.local.models import (
    DeployOutcome,
    DeployRequest,
    DeployResult,
    Health,
    ModelStatus,
    TrafficInfo,
    TrafficRequest,
)
from releasectl.serving.local.proxy import Backend, Endpoint, upstream_client
from releasectl.serving.local.state import (
    ModelState,
    Paths,
    Slot,
    last_error,
    load_state,
    log_tail,
    now,
    save_state,
)

POLL = 0.1
# A starting server's socket accepts connections before a worker answers them; a short
# probe keeps the loop (and so the exit checks above) turning.
PROBE_TIMEOUT = 1.0
FAILED_GRACE = 0.5
# A server is given free ports (its own, and the ones bentoml picks for its process
# manager), but another process can bind one between the pick and the bind. That
# start is tried again on new ports; any other failure at start-up is final.
START_ATTEMPTS = 3


def _lost_a_port(log_tail: str) -> bool:
    return "address already in use" in log_tail.lower()


ADOPT_TIMEOUT = 15.0
DRAIN_TIMEOUT = 30.0


def slot_url(slot: Slot) -> str:
    return loopback.url(slot.port)


def same_release(slot: Slot | None, req: DeployRequest) -> bool:
    """The slot serves the request's content (its state may be older)."""
    if slot is None:
        return False
    return (slot.release.version, slot.release.digest) == (req.release.version, req.release.digest)


class Supervisor:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.state = load_state(paths)
        self.upstream = upstream_client()
        # What the endpoints measure, served on the agent's /metrics
        # (docs/ARCHITECTURE.md, "Measured by the endpoint").
        self.meter = Meter()
        self.probe = httpx.AsyncClient(trust_env=False, timeout=2.0)
        self.endpoints: dict[str, Endpoint] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.background: set[asyncio.Task[None]] = set()
        self.expiry: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self.reconcile()
        for ms in self.state.models.values():
            if ms.live is not None:
                try:
                    # A canary's step and weights as they were (docs/ARCHITECTURE.md,
                    # "Deployment strategies").
                    self._apply(ms, await self.endpoint(ms.model, ms.port))
                except OperationFailed as exc:
                    ms.message = exc.message
        self.save()
        self.expiry = asyncio.create_task(self._expire_loop())

    async def close(self, stop_servers: bool) -> list[int]:
        if self.expiry is not None:
            self.expiry.cancel()
        stopped: list[int] = []
        if stop_servers:
            for ms in self.state.models.values():
                async with self.lock(ms.model):
                    slots = ms.slots()
                    stopped += [s.pid for s in slots if s.pid is not None]
                    ms.live = ms.standby = ms.pending = ms.traffic = None
                    ms.standby_until = None
                    ms.message = f"stopped with the agent at {now().isoformat()}"
                    self.save()
                    await asyncio.to_thread(self._stop_now, slots)
            # Anything else under our root (a slot being stopped in the background, say).
            await asyncio.to_thread(self._kill_unreferenced)
        for task in list(self.background):
            task.cancel()
        for ep in self.endpoints.values():
            await ep.served.close()
        await self.upstream.aclose()
        await self.probe.aclose()
        return stopped

    def backend(self, slot: Slot) -> Backend:
        """Where the endpoint sends a live slot's requests, and where it counts them."""
        return Backend(slot_url(slot), self.meter.tally(slot.model, slot.version, LIVE))

    def _apply(self, ms: ModelState, ep: Endpoint) -> None:
        """Point the endpoint at what the state says (saved before: docs/ARCHITECTURE.md,
        "Deployment strategies"): the live slot, or a canary's sides."""
        live = self.backend(ms.live) if ms.live is not None else None
        unused = traffic.apply(ep.proxy, ms, self.meter, live)
        if unused is not None:
            self._later(unused.aclose())

    def lock(self, model: str) -> asyncio.Lock:
        return self.locks.setdefault(model, asyncio.Lock())

    def save(self) -> None:
        save_state(self.paths, self.state)

    # -- reconcile ---------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """Make state tell the truth after the agent was restarted (or killed)."""
        for ms in self.state.models.values():
            if ms.pending is not None:
                p = ms.pending
                ms.last_deploy = DeployOutcome.of(
                    p.release,
                    False,
                    f"interrupted: the agent stopped while {p.version} was starting",
                )
                ms.pending = None
            live_ok = ms.live is not None and await self._adoptable(ms.live)
            standby_ok = (
                ms.standby is not None
                and (ms.standby_until is None or ms.standby_until > now())
                and await self._adoptable(ms.standby)
            )
            if ms.traffic is not None:
                traffic.reconcile(ms, live_ok, standby_ok)
                continue
            if ms.live is not None and not live_ok:
                ms.message = f"live {ms.live.version} (slot {ms.live.id}) was not running"
                ms.live = None
            if not standby_ok:
                ms.standby = ms.standby_until = None
        self.save()
        await asyncio.to_thread(self._kill_unreferenced)

    async def _adoptable(self, slot: Slot) -> bool:
        if not procs.alive(slot.pid, slot.identity):
            return False
        return await self._wait_ready(slot, None, ADOPT_TIMEOUT) is None

    def _kill_unreferenced(self) -> None:
        referenced = {
            str(self.paths.slot_dir(ms.model, s.id))
            for ms in self.state.models.values()
            for s in ms.slots()
        }
        orphans = procs.slot_processes(self.paths.root)
        kill = [p for slot, ps in orphans.items() if slot not in referenced for p in ps]
        if kill:
            procs.terminate(kill)

    # -- endpoints -----------------------------------------------------------------------------

    async def endpoint(self, model: str, port: int) -> Endpoint:
        for other, ep in self.endpoints.items():
            if other != model and ep.port == port:
                raise BadInput(f"port {port} is the endpoint of model {other}")
        current = self.endpoints.get(model)
        if current is not None and current.port == port:
            return current
        try:
            new = Endpoint(port, self.upstream)
            await new.served.started()
        except (OSError, RuntimeError, SystemExit) as exc:
            raise OperationFailed(f"cannot listen on {loopback.HOST}:{port}: {exc}") from None
        if current is not None:
            # The model moves to another port: carry the target over, close the old address.
            new.proxy.target = current.proxy.target
            new.proxy.split, new.proxy.mirror = current.proxy.split, current.proxy.mirror
            self._later(current.served.close())
        self.endpoints[model] = new
        return new

    # -- deploy ------------------------------------------------------------------------------

    async def deploy(self, req: DeployRequest) -> DeployResult:
        if not (req.bento_dir / "bento.yaml").is_file():
            raise BadInput(f"{req.bento_dir} is not a bento folder (no bento.yaml)")
        if req.python is None or not req.python.is_file():
            # Never releasectl's own interpreter: the bento's environment serves it.
            raise BadInput(f"no environment for {req.model} {req.version}: python={req.python}")
        if req.traffic is not None:
            traffic.check(req.model, req.traffic)
        async with self.lock(req.model):
            started = time.monotonic()
            ms = self.state.models.get(req.model)
            if ms is None:
                ms = ModelState(model=req.model, port=req.port)
            ep = await self.endpoint(req.model, req.port)
            ms.port = req.port
            self.state.models[req.model] = ms
            previous = ms.live.version if ms.live else None

            if same_release(ms.live, req) and await self._ready(ms.live):
                assert ms.live is not None
                ms.live.release = req.release  # the same content, maybe a newer state
                ms.raise_high_water(ms.live)
                self._apply(ms, ep)  # a canary's traffic as it is
                self._outcome(ms, req, True, f"{req.version} was already live")
                self.save()
                return self._result(ms, req, "none", previous, started)

            stable = traffic.stable_of(ms)
            if req.traffic and not same_release(stable, req) and await self._ready(stable):
                assert stable is not None
                return await self._canary(ms, ep, req, stable, started)

            if same_release(ms.standby, req) and await self._ready(ms.standby):
                assert ms.standby is not None
                warm = ms.standby
                warm.release = req.release
                self._switch(ms, ep, warm, req.standby_seconds)
                self._outcome(ms, req, True, f"switched to warm standby {req.version}")
                self.save()
                return self._result(ms, req, "warm", previous, started)

            slot = await self._start_ready(ms, req, previous)
            self._switch(ms, ep, slot, req.standby_seconds)
            self._outcome(ms, req, True, f"{req.version} is live")
            self.save()
            return self._result(ms, req, "cold", previous, started)

    async def _canary(
        self, ms: ModelState, ep: Endpoint, req: DeployRequest, stable: Slot, started: float
    ) -> DeployResult:
        """Start a canary's candidate beside `stable`: warm when the standby holds it, else
        a new server; once ready, one state write makes it live at step 0 with stable its
        standby, then the proxy (docs/ARCHITECTURE.md, "Deployment strategies")."""
        previous, warm = stable.version, ms.standby
        if warm is stable or not same_release(warm, req) or not await self._ready(warm):
            warm = None
        slot = warm or await self._start_ready(ms, req, previous)
        slot.release = req.release
        retire = traffic.begin(ms, slot, stable, req)
        self.save()
        self.meter.forget(ms.model, slot.version)
        self._apply(ms, ep)
        for old in retire:
            self._later(self._retire(ms.model, old))
        what = f"{req.version} is the canary beside stable {stable.version}"
        self._outcome(ms, req, True, what)
        self.save()
        return self._result(ms, req, "warm" if warm else "cold", previous, started)

    async def _start_ready(self, ms: ModelState, req: DeployRequest, previous: str | None) -> Slot:
        """A new server of the release, ready; or OperationFailed, what serves left alone."""
        for attempt in range(1, START_ATTEMPTS + 1):
            slot = await self._start_slot(ms, req)
            failure = await self._wait_ready(slot, self.children.get(slot.id), req.ready_timeout)
            if failure is None:
                return slot
            log = self.paths.slot_dir(req.model, slot.id) / "server.log"
            # It never served a request: nothing to drain, no grace to wait out.
            await asyncio.to_thread(self._stop_now, [slot], FAILED_GRACE)
            ms.pending = None
            tail = log_tail(log)
            cause = last_error(tail)
            if attempt < START_ATTEMPTS and _lost_a_port(tail):
                continue  # a port it was given was taken before it bound it: new ports
            message = f"{req.model} {req.version} did not become ready: {failure}"
            message += f" ({cause})" if cause else ""
            self._outcome(ms, req, False, message)
            self.save()
            raise OperationFailed(
                f"{message}; {previous or 'nothing'} stays live\n"
                f"--- last lines of {log} ---\n{tail}"
            )
        raise AssertionError("unreachable")

    async def traffic(self, req: TrafficRequest) -> TrafficInfo:
        """`advance`, `promote` or `abort` a canary: the state saved first, then the
        endpoint changed (docs/ARCHITECTURE.md, "Deployment strategies")."""
        async with self.lock(req.model):
            ms = self.state.models.get(req.model)
            retire = traffic.change(ms, req)
            assert ms is not None  # change() refused a model never deployed
            self.save()
            ep = self.endpoints.get(ms.model)
            if ep is not None:
                self._apply(ms, ep)
            for slot in retire:
                self._later(self._retire(ms.model, slot))
            info = traffic.figures(self.meter, ms)
            assert info is not None
            return info

    async def _start_slot(self, ms: ModelState, req: DeployRequest) -> Slot:
        slot = Slot(
            id=f"{req.version}-{secrets.token_hex(3)}",
            model=req.model,
            release=req.release,
            bento_dir=str(req.bento_dir.resolve()),
            port=loopback.free_port(),
            python=str(req.python),
            started=now(),
        )
        slot_dir = self.paths.slot_dir(req.model, slot.id)
        slot_dir.mkdir(parents=True)
        # Written down before the process exists: if the agent dies from here on, the next
        # agent knows this deploy was cut off and finds the server by its slot folder.
        ms.pending = slot
        self.save()
        assert req.python is not None  # checked by deploy()
        child = procs.spawn_server(slot_dir, Path(slot.bento_dir), slot.port, req.python)
        self.children[slot.id] = child
        slot.pid, slot.identity = child.pid, procs.identity(child.pid)
        self.save()
        return slot

    async def _wait_ready(
        self, slot: Slot, child: subprocess.Popen[bytes] | None, timeout: float
    ) -> str | None:
        """None once `/readyz` answers 200; otherwise why it never will. A server we
        started (`child`) that exits, or whose worker exits, fails at once: waiting
        for the deadline would only delay the same answer."""
        deadline = time.monotonic() + timeout
        url = slot_url(slot) + "/readyz"
        workers = None
        if child is not None:
            workers = procs.Workers(procs.find(slot.pid, slot.identity))
        while True:
            code = child.poll() if child is not None else None
            if code is not None:
                return f"the server exited with code {code}"
            if child is None and not procs.alive(slot.pid, slot.identity):
                return "the server is not running"
            if workers is not None and (pid := await asyncio.to_thread(workers.died)):
                return f"its worker process (pid {pid}) exited while starting"
            with contextlib.suppress(httpx.HTTPError):
                if (await self.probe.get(url, timeout=PROBE_TIMEOUT)).status_code == 200:
                    return None
            if time.monotonic() >= deadline:
                return f"not ready after {timeout:g} s"
            await asyncio.sleep(POLL)

    async def _ready(self, slot: Slot | None) -> bool:
        return slot is not None and await self._health(slot) == "ready"

    async def _health(self, slot: Slot) -> Health:
        if not procs.alive(slot.pid, slot.identity):
            return "down"
        try:
            r = await self.probe.get(slot_url(slot) + "/readyz")
        except httpx.HTTPError:
            return "down"
        return "ready" if r.status_code == 200 else "unready"

    def _switch(self, ms: ModelState, ep: Endpoint, new: Slot, standby_seconds: float) -> None:
        old_live, old_standby = ms.live, ms.standby
        if ms.traffic is not None:
            # A switch ends a canary: stable is what may stay warm, the candidate never
            # does (docs/ARCHITECTURE.md, "Deployment strategies").
            old_live, old_standby, ms.traffic = ms.standby, ms.live, None
        new.since = now()
        ms.live, ms.pending, ms.standby, ms.standby_until = new, None, None, None
        ms.raise_high_water(new)
        retire = [s for s in (old_standby,) if s is not None and s.id != new.id]
        if old_live is not None and old_live.id != new.id:
            if standby_seconds > 0:
                ms.standby = old_live
                ms.standby_until = now() + timedelta(seconds=standby_seconds)
            else:
                retire.append(old_live)
        ms.message = None
        # State first: an agent killed right here restarts into the new truth.
        self.save()
        # A version going live counts from zero, as a new server's own counters do: a
        # warm standby's earlier live period is not this one (a `fresh` watch reads it).
        self.meter.forget(ms.model, new.version)
        self._apply(ms, ep)
        for slot in retire:
            self._later(self._retire(ms.model, slot))

    async def _retire(self, model: str, slot: Slot) -> None:
        ep = self.endpoints.get(model)
        if ep is not None:
            await ep.proxy.drained(slot_url(slot), DRAIN_TIMEOUT)
        await asyncio.to_thread(self._stop_now, [slot])
        ms = self.state.models.get(model)
        if ms is None or slot.version not in {s.version for s in ms.slots()}:
            self.meter.forget(model, slot.version)

    def _stop_now(self, slots: list[Slot], grace: float = procs.STOP_GRACE) -> None:
        by_dir = procs.slot_processes(self.paths.root)
        found: dict[int, psutil.Process] = {}
        for s in slots:
            if (p := procs.find(s.pid, s.identity)) is not None:
                found[p.pid] = p
            # Also what the slot folder finds: workers, or a server whose pid never got written.
            for p in by_dir.get(str(self.paths.slot_dir(s.model, s.id)), []):
                found.setdefault(p.pid, p)
        procs.terminate(found.values(), grace)
        for s in slots:
            child = self.children.pop(s.id, None)
            if child is not None:
                child.poll()
            shutil.rmtree(self.paths.slot_dir(s.model, s.id) / "home", ignore_errors=True)

    def _later(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(_log_failure)
        task.add_done_callback(self.background.discard)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            try:
                await self._expire()
            except Exception:
                # Keep expiring later ones; the agent log (its stderr) gets the traceback.
                traceback.print_exc()

    async def _expire(self) -> None:
        for ms in list(self.state.models.values()):
            lock = self.lock(ms.model)
            if ms.standby is None or ms.standby_until is None or lock.locked():
                continue
            if ms.standby_until > now():
                continue
            async with lock:
                slot, ms.standby, ms.standby_until = ms.standby, None, None
                self.save()
                if slot is not None:
                    await self._retire(ms.model, slot)

    def _outcome(self, ms: ModelState, req: DeployRequest, ok: bool, message: str) -> None:
        ms.last_deploy = DeployOutcome.of(req.release, ok, message)

    def _result(
        self, ms: ModelState, req: DeployRequest, switch: str, previous: str | None, t0: float
    ) -> DeployResult:
        assert ms.live is not None
        return DeployResult(
            model=req.model,
            release=ms.live.release,
            endpoint=loopback.url(ms.port),
            slot=ms.live.id,
            switch=switch,  # type: ignore[arg-type]
            previous_version=previous,
            standby_until=ms.standby_until,
            seconds=round(time.monotonic() - t0, 3),
            traffic=traffic.figures(self.meter, ms),
        )

    # -- status ------------------------------------------------------------------------------

    async def status(self, model: str | None) -> list[ModelStatus]:
        if model is not None and model not in self.state.models:
            raise BadInput(f"model {model} has never been deployed to this machine")
        names = [model] if model is not None else sorted(self.state.models)
        out = []
        for name in names:
            ms = self.state.models[name]
            out.append(
                ModelStatus(
                    model=name,
                    endpoint=loopback.url(ms.port),
                    health=await self._health(ms.live) if ms.live else "none",
                    live=ms.live.info() if ms.live else None,
                    standby=ms.standby.info() if ms.standby else None,
                    standby_until=ms.standby_until,
                    deploying=ms.pending.info() if ms.pending else None,
                    last_deploy=ms.last_deploy,
                    message=ms.message,
                    traffic=traffic.figures(self.meter, ms),
                )
            )
        return out


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        traceback.print_exception(task.exception())
