"""Deploy targets. `local` runs releases as `bentoml serve` processes on this machine."""

from __future__ import annotations

from releasectl.targets.local import (
    DeployOutcome,
    DeployRequest,
    DeployResult,
    LocalTarget,
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
