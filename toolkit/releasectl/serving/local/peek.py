"""Reads what the local target last knew straight from its state file: for
read commands, which must neither start the agent nor pay for pydantic
(docs/ARCHITECTURE.md, "The command line").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def live(home: Path, model: str) -> dict[str, Any] | None:
    """The live slot of `model` (version, serial, commit, since) as the state
    file records it, or None when the target has nothing live for it."""
    try:
        doc = json.loads((home / "local" / "state.json").read_text())
    except (OSError, ValueError):
        return None
    slot = (
        ((doc.get("models") or {}).get(model) or {}).get("live") if isinstance(doc, dict) else None
    )
    if not isinstance(slot, dict):
        return None
    return {key: slot.get(key) for key in ("version", "serial", "commit", "since")}
