"""The `local` target: one agent process per state home runs a `bentoml serve` child per
slot behind a stable per-model endpoint (docs/ARCHITECTURE.md, "Deploy targets").
The CLI talks to it via `LocalTarget`."""

from __future__ import annotations

from releasectl.serving.local.client import LocalTarget
from releasectl.serving.local.models import (
    DeployOutcome,
    DeployRequest,
    DeployResult,
    ModelStatus,
    SlotInfo,
)

__all__ = [
    "DeployOutcome",
    "DeployRequest",
    "DeployResult",
    "LocalTarget",
    "ModelStatus",
    "SlotInfo",
]
