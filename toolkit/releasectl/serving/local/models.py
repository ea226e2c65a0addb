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
