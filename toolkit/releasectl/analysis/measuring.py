"""The measurements of one interval: what is checked (`MetricCheck`), the seam to metric
sources (`Window`, `Reading`, `MetricSource`), and how one value is judged (`judge`,
`measure`); the semantics are `releasectl.analysis.engine`'s docstring
(docs/ARCHITECTURE.md, "Analysis"). No I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from releasectl.analysis.samples import too_few_samples
from releasectl.analysis.steps import StepTag
from releasectl.errors import OperationFailed
from releasectl.manifest.analysis import AnalysisSpec

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
    # Per-request checks counted on their own requests (the `compare` checks: the
    # window's pairs), by check name; every other one is counted on `requests`.
    requests_of: dict[str, float] = field(default_factory=dict)

    def requests_for(self, name: str) -> float | None:
        return self.requests_of.get(name, self.requests)


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
    # The canary step the interval ran in (docs/ARCHITECTURE.md, "Steps and the bake");
    # absent without steps.
    step: StepTag | None = Field(default=None, exclude_if=lambda v: v is None)


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
    step: StepTag | None = None,
) -> list[Measurement]:
    """The measurements of one interval. `window`: how many intervals the reading's
    per-request values cover; `bake_over`: this is the last interval of the bake;
    `evidence`: per sampled gauge, the samples its window holds and its intervals;
    `step`: the canary step it ran in."""
    events = []
    evidence = evidence or {}
    for check in checks:
        value: float | None = None
        requests = None if isinstance(reading, Exception) else reading.requests_for(check.name)
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
                step=step,
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
