"""On-disk state of the local target, under `$RELEASECTL_HOME/local/` (outside any repository)
(docs/ARCHITECTURE.md, "Deploy targets").

The agent is the only writer of `state.json`; every write is atomic (temp file + fsync + rename
+ fsync of the folder), so a `kill -9` or a crash at any moment leaves either the old or the new
state, never a torn file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from releasectl import loopback
from releasectl.files import write_atomic
from releasectl.serving.local.models import (
    DeployOutcome,
    RoleFigures,
    SlotInfo,
    TrafficInfo,
    TrafficPlan,
    TrafficState,
)
from releasectl.serving.release_ref import CarriesRelease, ReleaseRef

_MARKERS = re.compile(r"^\s*[\^~]+\s*$")
_ERROR = re.compile(r"^(?:[A-Za-z_]\w*\.)*\w*(?:Error|Exception): [^\n]*$", re.MULTILINE)


def now() -> datetime:
    return datetime.now(UTC)


class Slot(CarriesRelease):
    """One `bentoml serve` process and the release it serves."""

    id: str
    model: str
    release: ReleaseRef
    bento_dir: str
    port: int
    python: str | None = None  # the interpreter of the bento's own environment
    # pid + identity (boot id, start ticks: `procs.identity`) tell our server from an
    # unrelated process that reused the pid. `create_time` is what earlier versions wrote
    # (wall-clock based): kept as read, never trusted.
    pid: int | None = None
    create_time: float | None = Field(default=None, exclude_if=lambda v: v is None)
    identity: str | None = Field(default=None, exclude_if=lambda v: v is None)
    started: datetime
    since: datetime | None = None

    def info(self) -> SlotInfo:
        return SlotInfo(
            slot=self.id,
            release=self.release,
            pid=self.pid,
            port=self.port,
            since=self.since,
        )


class HighWater(BaseModel):
    """The highest state this target has served for a model: the deploy gate's
    memory (docs/ARCHITECTURE.md, "The deploy gate"). It is raised in the same
    atomic write that makes a slot live and never cleared, so it survives
    `agent stop`, restarts and crashes."""

    serial: int
    commit: str
    version: str
    at: datetime


class TrafficRecord(BaseModel):
    """A canary's traffic, persisted so that a restarted agent serves the same step
    (docs/ARCHITECTURE.md, "Deployment strategies"). While it steps (or is aborted) the
    model's `live` slot is the candidate and its `standby` the stable version, kept
    without expiry; at `full` the standby gets the deploy's standby window."""

    plan: TrafficPlan
    stable: str  # the stable version (named even once its standby has expired at full)
    step: int = 0
    state: TrafficState = "stepping"
    since: datetime
    promoted: bool = False
    standby_seconds: float = 0.0

    @property
    def weight(self) -> int:
        """% of live requests the candidate answers."""
        if self.state == "full":
            return 100
        if self.state == "aborted":
            return 0
        step = self.plan.steps[self.step]
        return step.percent if step.kind == "weight" else 0

    @property
    def mirror(self) -> int:
        """% of the requests on the mirror routes copied to the candidate."""
        if self.state != "stepping":
            return 0
        step = self.plan.steps[self.step]
        return step.percent if step.kind == "mirror" else 0


class ModelState(BaseModel):
    model: str
    port: int
    high_water: HighWater | None = None
    live: Slot | None = None
    standby: Slot | None = None
    standby_until: datetime | None = None
    # A slot being started by a deploy; still set at agent start means the deploy was cut off.
    pending: Slot | None = None
    last_deploy: DeployOutcome | None = None
    message: str | None = None
    # A canary: live is the candidate, standby stable (left out otherwise).
    traffic: TrafficRecord | None = Field(default=None, exclude_if=lambda v: v is None)

    def traffic_info(self, roles: list[RoleFigures] | None = None) -> TrafficInfo | None:
        """The canary as `status` shows it; `roles`: what the endpoint counted."""
        t = self.traffic
        if t is None or self.live is None:
            return None
        return TrafficInfo(
            model=self.model,
            stable=t.stable,
            candidate=self.live.version,
            steps=t.plan.steps,
            step=len(t.plan.steps) if t.state == "full" else t.step,
            state=t.state,
            candidate_weight=t.weight,
            mirror=t.mirror,
            since=t.since,
            promoted=t.promoted,
            roles=roles or [],
        )

    def slots(self) -> list[Slot]:
        return [s for s in (self.live, self.standby, self.pending) if s is not None]

    def raise_high_water(self, slot: Slot) -> None:
        if self.high_water is None or slot.serial > self.high_water.serial:
            self.high_water = HighWater(
                serial=slot.serial, commit=slot.commit, version=slot.version, at=now()
            )


class TargetState(BaseModel):
    models: dict[str, ModelState] = Field(default_factory=dict)


class AgentInfo(BaseModel):
    """`agent.json`: the running agent, as it wrote itself down once it answered."""

    pid: int
    identity: str | None = None  # `procs.identity`; an earlier version's record has none
    port: int
    token: str
    started: datetime

    @property
    def url(self) -> str:
        return loopback.url(self.port)


@dataclass(frozen=True)
class Paths:
    home: Path

    @property
    def root(self) -> Path:
        return self.home / "local"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def agent_file(self) -> Path:
        return self.root / "agent.json"

    @property
    def agent_lock(self) -> Path:
        return self.root / "agent.lock"

    @property
    def spawn_lock(self) -> Path:
        return self.root / "spawn.lock"

    @property
    def agent_log(self) -> Path:
        return self.root / "agent.log"

    def slot_dir(self, model: str, slot_id: str) -> Path:
        return self.root / model / "slots" / slot_id

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)


def load_state(paths: Paths) -> TargetState:
    try:
        return TargetState.model_validate_json(paths.state_file.read_text())
    except FileNotFoundError:
        return TargetState()


def high_water(paths: Paths, model: str) -> HighWater | None:
    """The highest state deployed of `model` on this target, from disk."""
    found = load_state(paths).models.get(model)
    return found.high_water if found is not None else None


def save_state(paths: Paths, state: TargetState) -> None:
    write_atomic(paths.state_file, state.model_dump_json(indent=2))


def load_agent_info(paths: Paths) -> AgentInfo | None:
    try:
        return AgentInfo.model_validate_json(paths.agent_file.read_text())
    except (FileNotFoundError, ValueError):
        return None


def save_agent_info(paths: Paths, info: AgentInfo) -> None:
    # The file holds the control token: only this user may read it.
    write_atomic(paths.agent_file, info.model_dump_json())
    paths.agent_file.chmod(0o600)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log, readable: a line repeated at once (bentoml logs some
    twice) is shown once, and the `^^^^` markers under traceback lines are left out."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return "(no log)"
    kept: list[str] = []
    for line in text.splitlines():
        if _MARKERS.match(line) or (kept and kept[-1] == line):
            continue
        kept.append(line)
    return "\n".join(kept[-lines:])


def last_error(text: str) -> str | None:
    """The last `SomethingError: why` line of a log (a traceback's conclusion), if any."""
    found = [m.group(0).strip() for m in _ERROR.finditer(text)]
    return found[-1][:300] if found else None
