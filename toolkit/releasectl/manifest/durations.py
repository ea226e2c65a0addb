"""Parses and writes durations as a manifest writes them: `10s`, `500ms`, `1m30s`,
`1h` (docs/ARCHITECTURE.md, "The registry").

`Duration` is the pydantic type of every duration field (the analysis block's
interval and bake, deploy.standby), parsed from text and written back as text.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_PATTERN = r"^(\d+(\.\d+)?(ms|s|m|h))+$"


def parse_duration(text: object) -> float:
    """`2s`, `500ms`, `1m30s`, `1h` -> seconds. A bare number is refused: its unit is a guess."""
    if not isinstance(text, str):
        raise ValueError(f"a duration is written with a unit, like '10s' or '5m', not {text!r}")
    compact = text.strip()
    parts = _DURATION_PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(
            f"invalid duration {text!r}: "
            "write a number and a unit (ms, s, m, h), like '10s' or '5m'"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than zero")
    return seconds


def format_duration(seconds: float) -> str:
    if seconds < 1 or seconds != int(seconds):
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    text = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            text += f"{count}{unit}"
    return text


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["10s", "5m"]}),
]
