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

This module never prints and never does I/O itself: metric sources (see
`releasectl.analysis.sources`) read the numbers; time comes from injectable `clock`/`sleep`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from releasectl.analysis.samples import SampleWindows, too_few_samples
from releasectl.errors import OperationFailed
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.manifest.durations import format_duration

# --- what gets checked ---------------------------------------------------------


@dataclass(frozen=True)
class MetricCheck:
    """One metric to measure each interval. `per_request` metrics need min_requests."""

    name: str
    min: float | None
    max: float | None
    per_request: bool
    unit: str = ""
    # A gauge's own evidence: the counter of the samples behind it, and how many must
    # arrive within its window before it is judged (docs/ARCHITECTURE.md, "Analysis").
    samples: str | None = None
    min_samples: int = 0


def checks_for(spec: AnalysisSpec) -> list[MetricCheck]:
    metrics = spec.metrics
    checks: list[MetricCheck] = []
    if metrics.error_rate is not None:
        checks.append(MetricCheck("error_rate", None, metrics.error_rate.max, per_request=True))
    for quantile, limit in metrics.latency_ms.limits().items():
        checks.append(
            MetricCheck(f"latency_ms.{quantile}", None, limit, per_request=True, unit=" ms")
        )
    for custom in metrics.custom:
        checks.append(
            MetricCheck(
                custom.name,
                custom.min,
                custom.max,
                per_request=False,
                samples=custom.samples,
                min_samples=custom.needed_samples,
            )
        )
    return checks


# --- the seam to metric sources --------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The accumulated window a read covers: `intervals` intervals, from interval
    `start` to the one that just ended. The window stays open (a later read has the
    same `start`) until a read holds `min_requests` API requests."""

    start: int
    intervals: int


@dataclass(frozen=True)
class Reading:
    """What a source read for one window. Per-request values (`error_rate`,
    `latency_ms.*`) and `requests` cover the whole window; custom gauges are read as
    of now. A name missing from `values` has no data; `errors` holds per-metric read
    errors. A `baseline` reading starts the watch and is not a measurement (the
    scrape source needs one snapshot to diff against)."""

    values: dict[str, float] = field(default_factory=dict)
    requests: float | None = None
    errors: dict[str, str] = field(default_factory=dict)
    baseline: bool = False
    # Per sampled gauge (by check name): its samples counter's total now, baseline too.
    samples: dict[str, float] = field(default_factory=dict)
    # The metrics read from the version's own counters, not measured by the endpoint.
    self_reported: frozenset[str] = frozenset()


class MetricSource(Protocol):
    def read(self, window: Window) -> Reading:
        """Read the metrics of `window`, whose last interval just ended; raise when
        nothing could be read."""
        ...


class MetricsError(OperationFailed):
    """A metric endpoint could not be read: unreachable, HTTP error, or not metrics."""


# --- events and verdict ----------------------------------------------------------


class Status(StrEnum):
    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    PENDING = "pending"  # the window holds too few requests yet; it stays open
    ERROR = "error"


class Threshold(BaseModel):
    model_config = ConfigDict(frozen=True)
    min: float | None = None
    max: float | None = None


class Measurement(BaseModel):
    """One metric, one interval. Printable by the CLI or dumped as one JSON line.
    A per-request metric covers `window_intervals` intervals (the accumulated window,
    ending with `interval`) and `requests` counts the API requests in all of them;
    a pending measurement's `value` is the window's value so far."""

    model_config = ConfigDict(frozen=True)
    version: str
    metric: str
    status: Status
    value: float | None  # None: no data, NaN, or error (see message)
    threshold: Threshold
    requests: float | None
    interval: int
    elapsed_s: float
    message: str
    window_intervals: int = 1
    # A gauge with `samples`: how many its window holds (absent for the others).
    samples: float | None = Field(default=None, exclude_if=lambda v: v is None)
    # Read from the version's own /metrics, which it could misreport (docs/ARCHITECTURE.md,
    # "Measured by the endpoint"); absent when measured by the endpoint or unknown.
    self_reported: bool = Field(default=False, exclude_if=lambda v: not v)


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


# --- judging one value ---------------------------------------------------------------


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def enough_requests(requests: float | None, min_requests: int) -> bool:
    """Whether a window holds enough API requests to judge per-request metrics: at
    least `min_requests`, and at least one (no request is never a measurement)."""
    return requests is not None and requests > 0 and requests >= min_requests


def window_text(intervals: int, requests: float | None) -> str:
    """`window 3 intervals, 14 requests`: what a per-request measurement covered."""
    plural = "" if intervals == 1 else "s"
    return f"window {intervals} interval{plural}, {_fmt(requests or 0)} requests"


def judge(
    check: MetricCheck,
    value: float | None,
    requests: float | None,
    min_requests: int,
    *,
    window: int = 1,
    bake_over: bool = False,
) -> tuple[Status, str]:
    """One metric's status over its window (per-request metrics) or now (gauges)."""
    if check.per_request and not enough_requests(requests, min_requests):
        if not requests:
            where = "the interval" if window == 1 else f"the window of {window} intervals"
            return Status.INCONCLUSIVE, (
                f"{check.name}: no requests in {where} (min_requests {min_requests})"
            )
        span = window_text(window, requests)
        if bake_over:
            return Status.INCONCLUSIVE, (
                f"{check.name}: {span}: fewer than min_requests {min_requests} when the bake ended"
            )
        so_far = (
            f" {_fmt(value)}{check.unit} so far,"
            if value is not None and not math.isnan(value)
            else ""
        )
        return Status.PENDING, (
            f"{check.name}{so_far} {span}: fewer than min_requests {min_requests}, "
            "the window stays open"
        )
    if value is None:
        return Status.INCONCLUSIVE, f"{check.name}: no data"
    if math.isnan(value):
        return Status.INCONCLUSIVE, f"{check.name}: NaN"
    shown = f"{check.name} {_fmt(value)}{check.unit}"
    # A window of one interval is the common case: its message stays short.
    span = f" ({window_text(window, requests)})" if check.per_request and window > 1 else ""
    if check.min is not None and value < check.min:
        return Status.FAILED, f"{shown} is below min {_fmt(check.min)}{check.unit}{span}"
    if check.max is not None and value > check.max:
        return Status.FAILED, f"{shown} is above max {_fmt(check.max)}{check.unit}{span}"
    return Status.SUCCESSFUL, f"{shown} within threshold{span}"


def measure(
    checks: list[MetricCheck],
    reading: Reading | Exception,
    *,
    version: str,
    min_requests: int,
    interval: int,
    elapsed_s: float,
    window: int = 1,
    bake_over: bool = False,
    evidence: dict[str, tuple[float, int]] | None = None,
) -> list[Measurement]:
    """The measurements of one interval. `window`: how many intervals the reading's
    per-request values cover; `bake_over`: this is the last interval of the bake;
    `evidence`: per sampled gauge, the samples its window holds and its intervals."""
    events = []
    evidence = evidence or {}
    for check in checks:
        value: float | None = None
        requests = None if isinstance(reading, Exception) else reading.requests
        grown, span = evidence.get(check.name, (None, 1))
        if isinstance(reading, Exception):
            status, message = Status.ERROR, f"{check.name}: {_describe(reading)}"
        elif check.name in reading.errors:
            status, message = Status.ERROR, f"{check.name}: {reading.errors[check.name]}"
        else:
            value = reading.values.get(check.name)
            status, message = _too_few(check, value, grown, span, bake_over) or judge(
                check,
                value,
                requests,
                min_requests,
                window=window if check.per_request else 1,
                bake_over=bake_over,
            )
        if value is not None and math.isnan(value):
            value = None
        mine = not isinstance(reading, Exception) and check.name in reading.self_reported
        events.append(
            Measurement(
                version=version,
                metric=check.name,
                status=status,
                value=value,
                threshold=Threshold(min=check.min, max=check.max),
                requests=requests,
                interval=interval,
                elapsed_s=round(elapsed_s, 3),
                message=f"{message} (self-reported)" if mine else message,
                window_intervals=window if check.per_request else span,
                samples=grown,
                self_reported=mine,
            )
        )
    return events


def _too_few(
    check: MetricCheck, value: float | None, grown: float | None, span: int, bake_over: bool
) -> tuple[Status, str] | None:
    found = too_few_samples(check.name, check.samples, check.min_samples, value, grown, span)
    if found is None:
        return None
    return (Status.INCONCLUSIVE, found[1]) if bake_over else (Status.PENDING, found[0])


def _describe(error: Exception) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text or type(error).__name__


# --- deciding ------------------------------------------------------------------------


def decide(
    spec: AnalysisSpec,
    tallies: dict[str, Tally],
    last: dict[str, Measurement],
    *,
    bake_over: bool,
) -> tuple[Judgement, Cause, str, Measurement | None] | None:
    """The verdict after an interval, or None to keep watching. Failures take precedence."""
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
    for name, tally in tallies.items():
        if tally.successful == 0:
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
) -> AnalysisVerdict:
    """Watch `version` through `source` until a verdict. Never raises for metric trouble:
    a source that fails counts as errors, which end in a FAILED verdict, never a pass."""
    checks = checks_for(spec)
    tallies = {c.name: Tally() for c in checks}
    last: dict[str, Measurement] = {}
    start = clock()
    tick = 0
    opened = 0  # the interval the open window started at
    # Each sampled gauge's own window: its counter's total when it opened, and where.
    sampled = SampleWindows([c.name for c in checks if c.min_samples])
    while True:
        window = Window(start=opened, intervals=tick - opened + 1)
        reading = _safe_read(source, window)
        elapsed = clock() - start
        if isinstance(reading, Reading) and reading.baseline:
            opened = tick + 1
            sampled.open(reading.samples, tick + 1)
        else:
            bake_over = elapsed >= spec.bake
            events = measure(
                checks,
                reading,
                version=version,
                min_requests=spec.min_requests,
                interval=tick,
                elapsed_s=elapsed,
                window=window.intervals,
                bake_over=bake_over,
                evidence=sampled.evidence(
                    None if isinstance(reading, Exception) else reading.samples, tick
                ),
            )
            for event in events:
                tallies[event.metric].add(event.status)
                last[event.metric] = event
                if on_measurement is not None:
                    on_measurement(event)
            if isinstance(reading, Reading) and enough_requests(
                reading.requests, spec.min_requests
            ):
                opened = tick + 1  # judged: the next interval opens a new window
            if isinstance(reading, Reading):
                done = [n for n in sampled if last[n].status in (Status.SUCCESSFUL, Status.FAILED)]
                sampled.open(reading.samples, tick + 1, done)
            decision = decide(spec, tallies, last, bake_over=bake_over)
            if decision is not None:
                return _verdict(version, decision, tallies, tick, elapsed)
        tick += 1
        wait = start + tick * spec.interval - clock()
        if wait > 0:
            sleep(wait)


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
