"""Post-deploy analysis: the thresholds, the measurement semantics and the watch loop.

Semantics follow Argo Rollouts' AnalysisRun. Every interval, each configured metric
yields one measurement that is `successful`, `failed`, `inconclusive` (NaN, no data,
no request at all), `pending` (too few requests yet: see below) or `error` (the metric
could not be read at all). Counts are kept per metric, over the whole run, and a limit
is breached when a count EXCEEDS it (Argo: `failed > failureLimit`):

- failed > failure_limit                     -> FAILED (names metric, value, threshold)
- consecutive errors > consecutive_error_limit -> FAILED: a release we cannot observe
  is never passed; like Argo (an Error run aborts the rollout) we roll back to the
  known-good stable release rather than leave an unverified version live.
- inconclusive > inconclusive_limit          -> INCONCLUSIVE ("needs a human")
- bake elapsed, no limit breached, every metric measured successfully at least
  once -> PASSED; bake elapsed but some metric never succeeded -> INCONCLUSIVE.

Per-request metrics (error rate, latency) are judged over an accumulated window, not
over one interval alone (docs/ARCHITECTURE.md, "Analysis"): the window opens after
each conclusive measurement and grows by one interval at a time until it holds
`min_requests` API requests; the source reads the whole window each time. A window
that holds no request at all is inconclusive for that interval; one that holds some
but too few is `pending`, which counts toward no limit; when the bake ends on a
pending window, that last measurement is inconclusive. Custom gauges are judged each
interval on their own.

Limits are checked after every interval, failures first, so with `failure_limit: 1`
a bad version fails at the second conclusive measurement.

With a canary's steps (a `Stepping` hook), the steps decide when the bake is over
and when a step advances (`releasectl.analysis.steps`;
docs/ARCHITECTURE.md, "Steps and the bake"); the `compare` checks are measured only
while a mirror step runs, and the window stays open until every active per-request
check holds `min_requests`.

This module never prints and never does I/O itself: metric sources (see
`releasectl.analysis.sources`) read the numbers; time comes from injectable `clock`/`sleep`.
The interval's measurements are `releasectl.analysis.measuring`'s, re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel

from releasectl.analysis.compare import checks_of
from releasectl.analysis.measuring import (
    Measurement,
    MetricCheck,
    MetricsError,
    MetricSource,
    Reading,
    Status,
    Threshold,
    Window,
    checks_for,
    enough_requests,
    judge,
    measure,
    window_text,
)
from releasectl.analysis.samples import SampleWindows
from releasectl.analysis.steps import StepLogic, Stepping
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.manifest.durations import format_duration

__all__ = [
    "AnalysisVerdict",
    "Cause",
    "Judgement",
    "Measurement",
    "MetricCheck",
    "MetricSource",
    "MetricsError",
    "Reading",
    "Status",
    "Tally",
    "Threshold",
    "Window",
    "checks_for",
    "decide",
    "enough_requests",
    "judge",
    "measure",
    "run_analysis",
    "window_text",
]


class Judgement(StrEnum):
    """What an analysis concluded: the outcome of its verdict."""

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


class Cause(StrEnum):
    BAKE_PASSED = "bake_passed"
    FAILURE_LIMIT = "failure_limit"
    ERROR_LIMIT = "consecutive_error_limit"
    INCONCLUSIVE_LIMIT = "inconclusive_limit"
    NO_SUCCESS = "no_successful_measurement"
    CANARY_ENDED = "canary_ended"  # aborted or replaced outside this watch


class Tally(BaseModel):
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    pending: int = 0  # intervals whose window held too few requests; counts toward no limit

    def add(self, status: Status) -> None:
        self.consecutive_errors = self.consecutive_errors + 1 if status is Status.ERROR else 0
        if status is Status.ERROR:
            self.errors += 1
        else:
            setattr(self, status.value, getattr(self, status.value) + 1)


class AnalysisVerdict(BaseModel):
    """How an analysis ended, why, and the counts that led there."""

    version: str
    outcome: Judgement
    cause: Cause
    message: str
    metric: str | None = None
    value: float | None = None
    threshold: Threshold | None = None
    intervals: int
    elapsed_s: float
    tallies: dict[str, Tally]

    @property
    def passed(self) -> bool:
        return self.outcome is Judgement.PASSED


# --- deciding ------------------------------------------------------------------------


def decide(
    spec: AnalysisSpec,
    tallies: dict[str, Tally],
    last: dict[str, Measurement],
    *,
    bake_over: bool,
    required: Iterable[str] | None = None,
) -> tuple[Judgement, Cause, str, Measurement | None] | None:
    """The verdict after an interval, or None to keep watching. Failures take precedence.
    `required`: the metrics a pass needs a successful measurement of (None: all)."""
    limits = (  # tally field, its limit, outcome, cause, message prefix, what is counted
        (
            "failed",
            spec.failure_limit,
            Judgement.FAILED,
            Cause.FAILURE_LIMIT,
            "",
            "failed measurements",
        ),
        (
            "consecutive_errors",
            spec.consecutive_error_limit,
            Judgement.FAILED,
            Cause.ERROR_LIMIT,
            "could not read metrics: ",
            "consecutive errors",
        ),
        (
            "inconclusive",
            spec.inconclusive_limit,
            Judgement.INCONCLUSIVE,
            Cause.INCONCLUSIVE_LIMIT,
            "needs a human: ",
            "inconclusive measurements",
        ),
    )
    for field_name, limit, outcome, cause, prefix, counted in limits:
        for name, tally in tallies.items():
            count = getattr(tally, field_name)
            if count > limit:
                event = last[name]
                message = f"{prefix}{event.message} ({count} {counted} > {cause.value} {limit})"
                return outcome, cause, message, event
    if not bake_over:
        return None
    needed = set(tallies if required is None else required)
    for name, tally in tallies.items():
        if name in needed and tally.successful == 0:
            return (
                Judgement.INCONCLUSIVE,
                Cause.NO_SUCCESS,
                f"needs a human: bake of {format_duration(spec.bake)} ended without a "
                f"successful measurement of {name}",
                last.get(name),
            )
    return (
        Judgement.PASSED,
        Cause.BAKE_PASSED,
        f"all metrics within thresholds for the {format_duration(spec.bake)} bake",
        None,
    )


# --- the watch loop -----------------------------------------------------------------


def run_analysis(
    spec: AnalysisSpec,
    source: MetricSource,
    version: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_measurement: Callable[[Measurement], None] | None = None,
    steps: Stepping | None = None,
    wall: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> AnalysisVerdict:
    """Watch `version` through `source` until a verdict. Never raises for metric trouble:
    a source that fails counts as errors, which end in a FAILED verdict, never a pass.
    `steps`: the canary's hook, when the target runs one (`wall`: the time its `since`
    is compared with)."""
    checks = checks_for(spec)
    compared = checks_of(spec.compare) if steps is not None else []
    tallies = {c.name: Tally() for c in [*checks, *compared]}
    last: dict[str, Measurement] = {}
    start = clock()
    logic = StepLogic(spec.bake, steps.first, start, wall()) if steps is not None else None
    tick = 0
    opened = 0  # the interval the open window started at
    # Each sampled gauge's own window: its counter's total when it opened, and where.
    sampled = SampleWindows([c.name for c in checks if c.min_samples])
    while True:
        window = Window(start=opened, intervals=tick - opened + 1)
        reading = _safe_read(source, window)
        now = clock()
        elapsed = now - start
        # The compare checks are measured only while a mirror step runs.
        active = [*checks, *compared] if logic and logic.traffic.mirroring else checks
        if isinstance(reading, Reading) and reading.baseline:
            opened = tick + 1
            sampled.open(reading.samples, tick + 1)
        else:
            # With steps the bake ends at 100% (StepLogic.over); a window still open
            # when the bake's planned length has passed is judged as at its end.
            over = logic.over(now) if logic else elapsed >= spec.bake
            events = measure(
                active,
                reading,
                version=version,
                min_requests=spec.min_requests,
                interval=tick,
                elapsed_s=elapsed,
                window=window.intervals,
                bake_over=over or elapsed >= spec.bake,
                evidence=sampled.evidence(
                    None if isinstance(reading, Exception) else reading.samples, tick
                ),
                step=logic.traffic.tag if logic else None,
            )
            for event in events:
                tallies[event.metric].add(event.status)
                last[event.metric] = event
                if logic is not None:
                    logic.note(event.metric, event.status)
                if on_measurement is not None:
                    on_measurement(event)
            if isinstance(reading, Reading) and _window_full(reading, active, spec.min_requests):
                opened = tick + 1  # judged: the next interval opens a new window
            if isinstance(reading, Reading):
                done = [n for n in sampled if last[n].status in (Status.SUCCESSFUL, Status.FAILED)]
                sampled.open(reading.samples, tick + 1, done)
            required = [c.name for c in checks]  # compare: only while mirroring
            decision = decide(spec, tallies, last, bake_over=over, required=required)
            if decision is not None:
                return _verdict(version, decision, tallies, tick, elapsed)
        if (
            logic is not None
            and steps is not None
            and _step(logic, steps, active, now, clock, wall)
        ):
            opened = tick + 1  # a new step: its measurements cover its own traffic
        if steps is not None and steps.ended is not None:
            # Someone else ended the canary (`abort`, a switch back): nothing left to judge.
            message = f"nothing more to judge: {steps.ended}"
            return _verdict(
                version,
                (Judgement.INCONCLUSIVE, Cause.CANARY_ENDED, message, None),
                tallies,
                tick,
                clock() - start,
            )
        tick += 1
        wait = start + tick * spec.interval - clock()
        if wait > 0:
            sleep(wait)


def _window_full(reading: Reading, active: list[MetricCheck], min_requests: int) -> bool:
    """Whether the window holds enough requests for every active per-request check."""
    own = [reading.requests_of[c.name] for c in active if c.name in reading.requests_of]
    return all(enough_requests(n, min_requests) for n in [reading.requests, *own])


def _step(
    logic: StepLogic,
    steps: Stepping,
    active: list[MetricCheck],
    now: float,
    clock: Callable[[], float],
    wall: Callable[[], datetime],
) -> bool:
    """Once an interval: advance when the step is done, else read the traffic (one
    call either way); True when the canary is in another step or state now."""
    running = logic.traffic
    ready = logic.ready([c.name for c in active], now)
    seen = steps.advance(running.step) if ready else steps.current()
    ours = ready and seen is not None and seen.step == running.step + 1 and not seen.promoted
    return logic.see(seen, clock(), wall(), ours=ours)


def _safe_read(source: MetricSource, window: Window) -> Reading | Exception:
    # A watch must end in a verdict: any exception from a source, even a bug, is a
    # metric error that counts toward consecutive_error_limit instead of a crash.
    # The window stays open across it: the next read covers this interval too.
    try:
        return source.read(window)
    except Exception as error:
        return error


def _verdict(
    version: str,
    decision: tuple[Judgement, Cause, str, Measurement | None],
    tallies: dict[str, Tally],
    tick: int,
    elapsed: float,
) -> AnalysisVerdict:
    outcome, cause, message, event = decision
    return AnalysisVerdict(
        version=version,
        outcome=outcome,
        cause=cause,
        message=message,
        metric=event.metric if event else None,
        value=event.value if event else None,
        threshold=event.threshold if event else None,
        intervals=tick,
        elapsed_s=round(elapsed, 3),
        tallies={k: v.model_copy() for k, v in tallies.items()},
    )
