"""`RecordingStepper`: a TEST DOUBLE of the local agent's traffic API, the
`releasectl.serving.targets.Stepper` a canary is driven through
(docs/ARCHITECTURE.md, "Steps and the bake"). In-process, no agent, no HTTP: it
keeps a canary's step as the agent's `state.json` would, refuses a stale
`advance` as the agent answers 409, and records every call in order, so a test
sees what `watch` asked and when. The real agent path (`Local.stepper`) is tested
end to end against a running agent, not here.

`others` scripts another party (a second terminal's `promote`, a second
watcher's `advance`): before answering its n-th call (counting from 1), the
double first applies the action listed for n, as the agent would have."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from releasectl.errors import OperationFailed, Refused
from releasectl.serving.local.models import PlannedStep, TrafficInfo, TrafficState

Plan = list[tuple[str, int, float]]  # (mirror | weight, percent, seconds)


class RecordingStepper:
    def __init__(
        self,
        plan: Plan,
        wall: Callable[[], datetime],
        *,
        step: int = 0,
        since: datetime | None = None,
        others: dict[int, str] | None = None,
        journal: list[str] | None = None,
        abort_fails: bool = False,
        unanswered: frozenset[int] = frozenset(),
    ) -> None:
        self.steps = [PlannedStep(kind=k, percent=p, seconds=s) for k, p, s in plan]  # type: ignore[arg-type]
        self.wall = wall
        self.step = step
        self.state: TrafficState = "stepping" if step < len(self.steps) else "full"
        self.since = since or wall()
        self.promoted = False
        self.others = others or {}
        self.journal = journal if journal is not None else []  # may be shared with others
        self.asked: list[tuple[datetime, str]] = []  # each call, with the wall time it came at
        self.calls = 0
        self.abort_fails = abort_fails
        self.unanswered = unanswered  # the calls (numbered from 1) the agent does not answer

    # --- the Stepper protocol -------------------------------------------------

    def current(self) -> TrafficInfo | None:
        self._call("current")
        return self.info()

    def change(self, action: str, from_step: int | None = None) -> TrafficInfo:
        self._call(action if from_step is None else f"{action} {from_step}")
        if action == "abort" and self.abort_fails:
            raise OperationFailed("the agent did not answer")
        if action == "advance" and from_step != self.step:
            raise Refused(f"step {from_step} is not the current step ({self.step})")
        self.apply(action)
        return self.info()

    # --- as the agent keeps it ------------------------------------------------

    def apply(self, action: str) -> None:
        """The agent's change, made by whoever asked."""
        if action == "advance" and self.state == "stepping":
            self.step += 1
            self.state = "stepping" if self.step < len(self.steps) else "full"
        elif action == "promote":
            self.step, self.state, self.promoted = len(self.steps), "full", True
        elif action == "abort":
            self.state = "aborted"
        self.since = self.wall()

    def info(self) -> TrafficInfo:
        running = self.steps[self.step] if self.state == "stepping" else None
        weight = 100 if self.state == "full" else 0
        if running is not None and running.kind == "weight":
            weight = running.percent
        return TrafficInfo(
            model="iris",
            stable="1.0.0",
            candidate="1.1.0",
            steps=self.steps,
            step=self.step,
            state=self.state,
            candidate_weight=weight,
            mirror=running.percent if running is not None and running.kind == "mirror" else 0,
            since=self.since,
            promoted=self.promoted,
        )

    def _call(self, what: str) -> None:
        self.calls += 1
        other = self.others.get(self.calls)
        if other is not None:
            self.apply(other)
            self.journal.append(f"elsewhere: {other}")
        self.journal.append(what)
        self.asked.append((self.wall(), what))
        if self.calls in self.unanswered:
            raise OperationFailed("cannot reach the agent: connection refused")


class FakeTime:
    """A monotonic clock, its `sleep`, and a wall clock that moves with it: time for
    `run_analysis(clock=, sleep=, wall=)` and the stepper's `since`, with no waiting."""

    def __init__(self, wall: datetime) -> None:
        self.now = 0.0
        self.start = wall

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.now)
