"""`watch`'s side of a canary the target steps from here (the local agent;
docs/ARCHITECTURE.md, "Steps and the bake"): the engine's `Stepping` hook over the
target's `Stepper`, which says each step change, remembers the steps the watch saw
for its outcome, and aborts the canary on a failed verdict.

An advance another watcher made first (the agent refuses an `advance` from a step
that is no longer current) is no error: the traffic is read again and the watch goes
on. A step that cannot be read is said, and the engine keeps what it knew.
"""

from __future__ import annotations

from collections.abc import Callable

from releasectl.analysis.steps import ABORTED, FULL, Step, StepState, StepTag
from releasectl.errors import BadInput, Refused, ReleasectlError
from releasectl.serving.local.models import TrafficInfo
from releasectl.serving.targets import Stepper

Say = Callable[[str], None]
OnStep = Callable[[StepTag, str], None]  # a step the watch saw, and its line


def traffic_of(info: TrafficInfo) -> StepState:
    steps = tuple(Step(s.kind, s.percent, s.seconds) for s in info.steps)
    return StepState(steps, info.step, info.state, info.since, info.promoted)


def where(tag: StepTag) -> str:
    """`step 1/3: mirror 10%`, `100%`, `aborted`: a step for the terminal."""
    if tag.kind == FULL:
        return "100%"
    if tag.kind == ABORTED:
        return "aborted (the candidate answers nothing)"
    return f"step {tag.index + 1}/{tag.count}: {tag.kind} {tag.percent}%"


class Driven:
    """The engine's `Stepping` hook (`releasectl.analysis.steps`) over `stepper`,
    starting from `info`, the canary as the watch found it."""

    def __init__(
        self, stepper: Stepper, info: TrafficInfo, say: Say, on_step: OnStep | None = None
    ) -> None:
        self._stepper, self._say = stepper, say
        self._tell: OnStep = on_step or (lambda _tag, text: say(text))
        self.first = traffic_of(info)
        self.steps: list[StepTag] = [self.first.tag]  # every step the watch saw, in order
        self.promoted = info.promoted
        self.abort_error: str | None = None
        self.ended: str | None = None  # the canary ended outside this watch: why
        self._aborting = False
        self._candidate = info.candidate
        if info.state == ABORTED:
            self.ended = f"the canary of {info.candidate} was aborted (`releasectl abort`)"
        self._tell(
            self.first.tag,
            f"{info.candidate} is at {where(self.first.tag)}; {info.stable} is the stable version",
        )

    def current(self) -> StepState | None:
        # Like a metric source's, no failure here ends the watch without a verdict.
        try:
            info = self._stepper.current()
        except Exception as exc:
            self._say(f"cannot read the canary's step: {_text(exc)}")
            return None
        if info is None and not self._aborting:
            # Read, and gone: a switch (a revert's deploy, another release) replaced it.
            self.ended = f"the canary of {self._candidate} no longer runs (switched or replaced)"
        return self._took(info)

    def advance(self, from_step: int) -> StepState | None:
        try:
            return self._took(self._stepper.change("advance", from_step=from_step))
        except (Refused, BadInput):
            # Another watcher (or a promote) moved it first, or it ended: read it again.
            return self.current()
        except Exception as exc:
            self._say(f"cannot advance the canary from step {from_step + 1}: {_text(exc)}")
            return None

    def abort(self) -> None:
        """Weight 0 and no mirror, at once (before any other act on a failed verdict).
        A failure is kept in `abort_error` for the outcome: the recovery runs anyway."""
        self._aborting = True
        try:
            self._took(self._stepper.change("abort"))
        except Exception as exc:  # whatever it was, the switch back must still run
            self.abort_error = f"aborting the canary failed: {_text(exc)}"
            self._say(self.abort_error)

    def _took(self, info: TrafficInfo | None) -> StepState | None:
        if info is None:
            return None
        traffic = traffic_of(info)
        self.promoted = self.promoted or info.promoted
        if traffic.state == ABORTED and not self._aborting:
            self.ended = f"the canary of {info.candidate} was aborted (`releasectl abort`)"
        if traffic.tag != self.steps[-1]:
            self.steps.append(traffic.tag)
            how = " (promoted)" if info.promoted and traffic.state == FULL else ""
            self._tell(traffic.tag, f"{info.candidate} is at {where(traffic.tag)}{how}")
        return traffic


def _text(exc: Exception) -> str:
    if isinstance(exc, ReleasectlError):
        return exc.line()
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
