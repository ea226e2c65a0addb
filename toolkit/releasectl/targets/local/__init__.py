"""The `local` target: one agent process per state home runs a `bentoml serve` child per
slot behind a stable per-model endpoint (DESIGN §5). The CLI talks to it via `LocalTarget`."""

from __future__ import annotations

from releasectl.targets.local.client import LocalTarget
from releasectl.targets.local.models import (
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
