"""The `local` target: one agent process per state home runs a `bentoml serve` child per
slot behind a stable per-model endpoint (docs/ARCHITECTURE.md, "Deploy targets").
The CLI talks to it via `LocalTarget`.

The names below are loaded on first use, not when the package is imported: a read
command that only peeks at the target's state file (`peek`) must not pay for httpx
and the models (about 0.3 s, more than the read budget allows)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from releasectl.serving.local.client import LocalTarget
    from releasectl.serving.local.models import (
        DeployOutcome,
        DeployRequest,
        DeployResult,
        ModelStatus,
        SlotInfo,
        TrafficInfo,
        TrafficPlan,
        TrafficRequest,
    )

_HOMES = {
    "LocalTarget": "releasectl.serving.local.client",
    "DeployOutcome": "releasectl.serving.local.models",
    "DeployRequest": "releasectl.serving.local.models",
    "DeployResult": "releasectl.serving.local.models",
    "ModelStatus": "releasectl.serving.local.models",
    "SlotInfo": "releasectl.serving.local.models",
    "TrafficInfo": "releasectl.serving.local.models",
    "TrafficPlan": "releasectl.serving.local.models",
    "TrafficRequest": "releasectl.serving.local.models",
}

__all__ = [
    "DeployOutcome",
    "DeployRequest",
    "DeployResult",
    "LocalTarget",
    "ModelStatus",
    "SlotInfo",
    "TrafficInfo",
    "TrafficPlan",
    "TrafficRequest",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
