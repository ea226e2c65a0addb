"""A canary's steps as `watch` drives them (docs/ARCHITECTURE.md, "Steps and the bake").
Pure: no I/O, time is given. The engine (`releasectl.analysis.engine.run_analysis`) asks
its `Stepping` hook for the traffic once an interval and, when `StepLogic` says so,
to advance; the pipeline's hook asks the target's stepper.

A step advances when both hold, after an interval's measurements:
- its duration has passed, by the watch's own monotonic clock since it saw the step
  begin. A step the watch did not start itself (it found the canary mid-step, or
  another party moved it) is credited the time already spent by the target's
  `since`, never negative and never more than the step's duration, so a wall clock
  that jumps cannot skip a step's measurements;
- every metric active in the step has at least one successful measurement in this
  step, and its latest conclusive one (successful or failed) is successful.
A step whose measurements stay pending or inconclusive extends; the limits end the
watch as without steps. The bake is over only at 100% (`full`), once the bake's
remainder (`analysis.bake` minus the steps' total) has run at 100%.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict

FULL, ABORTED = "full", "aborted"  # the target's traffic states past the steps


class StepTag(BaseModel):
    """Where a canary's traffic was: the `step` of a measurement (`watch --json`) and
    the steps a watch saw (its outcome). `kind` is mirror or weight while a step runs,
    full (100%) or aborted after; `percent` is the step's share (100 at full, 0 aborted)."""

    model_config = ConfigDict(frozen=True)
    index: int
    count: int
    kind: str
    percent: int


@dataclass(frozen=True)
class Step:
    kind: str  # mirror | weight
    percent: int
    seconds: float


@dataclass(frozen=True)
class StepState:
    """A canary's traffic as the target said it: the steps, the current one's index
    (`len(steps)` at full), the state (stepping | full | aborted) and when it began."""

    steps: tuple[Step, ...]
    step: int
    state: str
    since: datetime
    promoted: bool = False

    @property
    def running(self) -> Step | None:
        """The step that runs now; None at full or aborted."""
        stepping = self.state not in (FULL, ABORTED) and self.step < len(self.steps)
        return self.steps[self.step] if stepping else None

    @property
    def mirroring(self) -> bool:
        return self.running is not None and self.running.kind == "mirror"

    @property
    def tag(self) -> StepTag:
        step, count = self.running, len(self.steps)
        if step is not None:
            return StepTag(index=self.step, count=count, kind=step.kind, percent=step.percent)
        full = self.state != ABORTED
        return StepTag(
            index=self.step, count=count, kind=FULL if full else ABORTED, percent=100 * full
        )

    @property
    def steps_seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


class Stepping(Protocol):
    """The engine's hook to a running canary. `first` is the traffic the watch found;
    `current()` and `advance(from_step)` return the traffic now, or None when it could
    not be read (the engine keeps what it knew and tries again next interval). An
    advance another party made first is no error: the hook returns the traffic now.
    `ended` says why the canary ended outside the watch (aborted by hand, replaced by a
    switch), None while it runs: the engine then stops with nothing more to judge."""

    first: StepState
    ended: str | None

    def current(self) -> StepState | None: ...

    def advance(self, from_step: int) -> StepState | None: ...


class StepLogic:
    """Which step the watch is in, since when, and what its measurements showed."""

    def __init__(self, bake: float, traffic: StepState, now: float, wall: datetime) -> None:
        self.remaining = max(bake - traffic.steps_seconds, 0.0)
        self.seen: list[StepTag] = []
        self._enter(traffic, now, wall, credit=True)

    def _enter(self, traffic: StepState, now: float, wall: datetime, *, credit: bool) -> None:
        self.traffic = traffic
        self.began = now - (self._spent(traffic, wall) if credit else 0.0)
        self._succeeded: set[str] = set()
        self._conclusive: dict[str, bool] = {}  # metric -> its latest conclusive succeeded
        self.seen.append(traffic.tag)

    def _length(self, traffic: StepState) -> float:
        """How long the watch stays in this state: a step's duration, the bake's
        remainder at full, for ever aborted."""
        step = traffic.running
        if step is not None:
            return step.seconds
        return self.remaining if traffic.state == FULL else math.inf

    def _spent(self, traffic: StepState, wall: datetime) -> float:
        spent = (wall - traffic.since).total_seconds()
        return min(max(spent, 0.0), self._length(traffic))

    def see(self, traffic: StepState | None, now: float, wall: datetime, *, ours: bool) -> bool:
        """Take the traffic read now; True when it is another step or state (`ours`:
        the watch's own advance made it, so the step began now)."""
        if traffic is None:
            return False
        if (traffic.step, traffic.state) == (self.traffic.step, self.traffic.state):
            self.traffic = replace(traffic, since=self.traffic.since)
            return False
        self._enter(traffic, now, wall, credit=not ours)
        return True

    def note(self, metric: str, status: str) -> None:
        """One measurement of this step (a `Status` value)."""
        if status == "successful":
            self._succeeded.add(metric)
            self._conclusive[metric] = True
        elif status == "failed":
            self._conclusive[metric] = False

    def ready(self, active: Iterable[str], now: float) -> bool:
        """Whether the running step may advance: its time passed, its metrics passed."""
        step = self.traffic.running
        if step is None or now - self.began < step.seconds:
            return False
        return all(m in self._succeeded and self._conclusive.get(m) for m in active)

    def over(self, now: float) -> bool:
        """Whether the bake is over: at 100%, for the bake's remainder."""
        return self.traffic.state == FULL and now - self.began >= self.remaining

    @property
    def promoted(self) -> bool:
        return self.traffic.promoted
