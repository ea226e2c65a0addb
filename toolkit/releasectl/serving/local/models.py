"""The shapes the client and the agent exchange (and the CLI prints as JSON)
(docs/ARCHITECTURE.md, "Deploy targets"). No I/O here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from releasectl.names import MODEL_PATTERN
from releasectl.serving.release_ref import CarriesRelease, ReleaseRef

Health = Literal["ready", "unready", "down", "none"]
SwitchKind = Literal["cold", "warm", "none"]
StepKind = Literal["mirror", "weight"]
# stepping: a step of the plan runs; full: the candidate answers every request (the plan
# ran out, or was promoted), the stable version kept warm as a blue-green standby is;
# aborted: the candidate answers nothing (weight 0, no mirror) until the revert lands.
TrafficState = Literal["stepping", "full", "aborted"]
TrafficAction = Literal["advance", "promote", "abort"]


class PlannedStep(BaseModel):
    """One step of a canary, as the manifest's `deploy.strategy.steps` wrote it."""

    model_config = ConfigDict(extra="forbid")

    kind: StepKind
    percent: int = Field(ge=1, le=100)
    seconds: float = Field(gt=0)


class TrafficPlan(BaseModel):
    """How a canary deploy shares live traffic: the steps in order, then 100%. Made by
    the local target from the verified manifest's `deploy.strategy` (kind canary) and
    `analysis.compare` (docs/ARCHITECTURE.md, "Deployment strategies")."""

    model_config = ConfigDict(extra="forbid")

    steps: list[PlannedStep] = Field(min_length=1)
    mirror_routes: list[str] = Field(default_factory=list)
    client_key: str | None = None  # an HTTP header: the same value, the same side
    compare_field: str | None = None  # the answers' JSON field compared during mirroring


class TrafficRequest(BaseModel):
    """A change of a running canary's traffic, asked of the agent. `version` is the
    candidate the caller means (refused when another is the candidate); `advance`
    moves from step `from_step` to the next (refused unless `from_step` is the current
    step: two watchers never advance twice), the step after the last being 100%;
    `promote` goes to 100% at once; `abort` sets the candidate's weight to 0 and stops
    mirroring, at once."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=MODEL_PATTERN)
    version: str
    action: TrafficAction
    from_step: int | None = Field(default=None, ge=0)


class RoleFigures(BaseModel):
    """What the endpoint counted for one version in one role since it took that role."""

    version: str
    role: str  # stable | candidate | mirror | live
    requests: int
    errors: int
    mean_ms: float | None


class TrafficInfo(BaseModel):
    """A canary's traffic now: which step, the weights, and per-role figures."""

    model: str
    stable: str  # the stable version (the warm standby slot while the steps run)
    candidate: str  # the version being rolled out (the live slot)
    steps: list[PlannedStep]
    step: int  # the current step's index; len(steps) once the candidate takes 100%
    state: TrafficState
    candidate_weight: int  # % of live requests the candidate answers
    mirror: int  # % of live requests on the mirror routes copied to the candidate
    since: datetime  # when the current step (or state) began
    promoted: bool = False  # reached 100% by `promote`, not by the steps
    roles: list[RoleFigures] = Field(default_factory=list)


class DeployRequest(CarriesRelease):
    """What to serve. The caller has already passed the deploy gate (serial, commit, digest)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=MODEL_PATTERN)
    release: ReleaseRef
    bento_dir: Path
    port: int = Field(ge=1, le=65535)
    standby_seconds: float = Field(default=600.0, ge=0)
    ready_timeout: float = Field(default=120.0, gt=0)
    # The interpreter of the bento's own environment (envs.py); `LocalTarget.deploy`
    # fills it in, and the agent serves nothing without it.
    python: Path | None = None
    # A canary: start its first step beside the live version. None: blue-green (and
    # always for a verified revert or a switch back: a way back never steps).
    traffic: TrafficPlan | None = None


class SlotInfo(CarriesRelease):
    slot: str
    release: ReleaseRef
    pid: int | None
    port: int
    since: datetime | None


class DeployOutcome(BaseModel):
    """How a model's last deploy attempt ended. It names the release without
    its commit, as `status --json` and `state.json` always have."""

    ok: bool
    version: str
    digest: str
    serial: int
    fast_track: bool
    at: datetime
    message: str

    @classmethod
    def of(cls, release: ReleaseRef, ok: bool, message: str) -> DeployOutcome:
        return cls(
            ok=ok,
            version=release.version,
            digest=release.digest,
            serial=release.serial,
            fast_track=release.fast_track,
            at=datetime.now(UTC),
            message=message,
        )


class DeployResult(CarriesRelease):
    model: str
    release: ReleaseRef
    endpoint: str
    slot: str
    # cold: a new server was started; warm: the standby took over; none: already live.
    switch: SwitchKind
    previous_version: str | None
    standby_until: datetime | None
    seconds: float
    # A canary deploy: its first step (left out otherwise: blue-green's JSON as it was).
    traffic: TrafficInfo | None = Field(default=None, exclude_if=lambda v: v is None)


class ModelStatus(BaseModel):
    model: str
    endpoint: str
    health: Health
    live: SlotInfo | None
    standby: SlotInfo | None
    standby_until: datetime | None
    deploying: SlotInfo | None
    last_deploy: DeployOutcome | None
    message: str | None
    traffic: TrafficInfo | None = None  # a canary in progress (or at 100%, stable warm)
