"""Text from outside (a tool's message, a metric's name, a YAML error) made
into one line: the one home of that rule
(docs/ARCHITECTURE.md, "Crafted input"). Line breaks and control characters
become spaces, runs of spaces one, and a `limit` cuts the end with "…". For a
terminal, `cli.output.shown` escapes instead, so that what was hidden can be
seen."""

from __future__ import annotations


def one_line(text: str, limit: int | None = None) -> str:
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if limit is None or len(flat) <= limit:
        return flat
    return flat[: limit - 1] + "…"
