"""A gauge's own evidence (docs/ARCHITECTURE.md, "Analysis"): a custom
metric may name a counter of the samples behind it (`samples`, e.g. the feedback
labels an accuracy gauge is computed from) and `min_samples`. Until the counter grew
by that many within the gauge's window, the gauge is not judged: the measurement is
pending, as for too few requests, and inconclusive when the bake ends on it.

Each sampled gauge has a window of its own: it opens at the baseline (at zero
without one: a new version's counter starts there) and again after each interval
that judged the gauge. Pure bookkeeping; the engine decides the statuses."""

from __future__ import annotations

import math
from collections.abc import Iterator


class SampleWindows:
    """Per sampled gauge (by metric name): its counter's total when its window opened,
    and the interval it opened at."""

    def __init__(self, names: list[str]) -> None:
        self.base = dict.fromkeys(names, 0.0)
        self.opened = dict.fromkeys(names, 0)

    def __iter__(self) -> Iterator[str]:
        return iter(self.base)

    def open(self, totals: dict[str, float], tick: int, names: list[str] | None = None) -> None:
        """Open the windows of `names` (all: None) at interval `tick`, from `totals`."""
        for name in self.base if names is None else names:
            self.base[name] = totals.get(name, 0.0)
            self.opened[name] = tick

    def evidence(self, totals: dict[str, float] | None, tick: int) -> dict[str, tuple[float, int]]:
        """Per gauge: the samples its window holds with interval `tick`, and how many
        intervals it spans. None (the read failed): nothing; the windows stay open."""
        if totals is None:
            return {}
        found = {}
        for name, base in self.base.items():
            total = totals.get(name, 0.0)
            if total < base:  # the counter restarted with its server: count from zero
                self.base[name] = base = 0.0
            found[name] = (total - base, tick - self.opened[name] + 1)
        return found


def too_few_samples(
    name: str,
    counter: str | None,
    needed: int,
    value: float | None,
    grown: float | None,
    span: int,
) -> tuple[str, str] | None:
    """None when the window holds `needed` samples (or the gauge needs none); else the
    pending message and the one for a bake that ends on it."""
    if not needed or grown is None or grown >= needed:
        return None
    plural = "" if span == 1 else "s"
    where = f"window {span} interval{plural}, {grown:.6g} samples of {counter}"
    too_few = f"fewer than min_samples {needed}"
    so_far = f" {value:.6g} so far," if value is not None and not math.isnan(value) else ""
    return (
        f"{name}{so_far} {where}: {too_few}, the window stays open",
        f"{name}: {where}: {too_few} when the bake ended",
    )
