"""The `analysis:` block of a release manifest: what to measure after a deploy and
the limits that decide the verdict (docs/ARCHITECTURE.md, "Analysis").

Data only: the engine that applies it is `releasectl.analysis.engine`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from releasectl.manifest.durations import Duration, format_duration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorRateSpec(_Strict):
    """Share of the interval's API requests answered with a 5xx status."""

    max: float = Field(default=0.05, ge=0, le=1)


class LatencySpec(_Strict):
    """Maximum latency quantiles, in milliseconds, over the interval's API requests."""

    p50: float | None = Field(default=None, gt=0)
    p90: float | None = Field(default=None, gt=0)
    p95: float | None = Field(default=None, gt=0)
    p99: float | None = Field(default=None, gt=0)

    def limits(self) -> dict[str, float]:
        return {q: v for q, v in self.model_dump().items() if v is not None}


_BUILTIN_NAMES = {"error_rate", "requests"} | {f"latency_ms.{q}" for q in LatencySpec.model_fields}


class CustomMetricSpec(_Strict):
    """A user metric, e.g. a model-quality gauge. `query` is PromQL (prometheus source,
    `$version` is replaced by the escaped version: write it inside quotes); `metric` is a
    gauge name on the server's /metrics (scrape source)."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_:-]*$", max_length=100)
    query: str | None = None
    metric: str | None = Field(default=None, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    min: float | None = None
    max: float | None = None
    samples: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        description=(
            "A counter of the samples behind the gauge (e.g. feedback labels), as named on "
            "/metrics (`..._total`): the gauge is judged only once it grew by min_samples "
            "within its window; until then the measurement is pending"
        ),
    )
    min_samples: int | None = Field(
        default=None, ge=1, description="Samples a measurement needs (default 1 with samples)"
    )

    @property
    def needed_samples(self) -> int:
        """How many samples a measurement needs: 0 without a samples counter."""
        return 0 if self.samples is None else (self.min_samples or 1)

    @model_validator(mode="after")
    def _check(self) -> CustomMetricSpec:
        if self.min is None and self.max is None:
            raise ValueError(f"custom metric {self.name!r} needs 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"custom metric {self.name!r}: min {self.min} > max {self.max}")
        if self.query is None and self.metric is None:
            raise ValueError(
                f"custom metric {self.name!r} needs 'query' (prometheus) or 'metric' (scrape)"
            )
        if self.min_samples is not None and self.samples is None:
            raise ValueError(
                f"custom metric {self.name!r}: min_samples needs 'samples', the counter "
                "of the samples behind it"
            )
        if self.name in _BUILTIN_NAMES:
            raise ValueError(f"custom metric name {self.name!r} is reserved")
        return self


class MetricsSpec(_Strict):
    error_rate: ErrorRateSpec | None = Field(default_factory=ErrorRateSpec)
    latency_ms: LatencySpec = Field(default_factory=LatencySpec)
    custom: list[CustomMetricSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> MetricsSpec:
        names = [c.name for c in self.custom]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"custom metric names must be unique: {', '.join(dupes)}")
        if self.error_rate is None and not self.latency_ms.limits() and not self.custom:
            raise ValueError("no metric to analyse: set error_rate, latency_ms or custom")
        return self


class ScrapeSourceSpec(_Strict):
    """Scrape the live server's own /metrics (text exposition); no Prometheus needed."""

    kind: Literal["scrape"] = "scrape"


class PrometheusSourceSpec(_Strict):
    """Query a Prometheus server's HTTP API. `window` is the rate() range; it defaults to
    the interval and should be at least 4x Prometheus' scrape interval."""

    kind: Literal["prometheus"] = "prometheus"
    url: str = Field(pattern=r"^https?://[^\s]+$")
    window: Duration | None = None


def _source_shorthand(value: Any) -> Any:
    if value == "scrape":
        return {"kind": "scrape"}
    if value == "prometheus":
        raise ValueError("source 'prometheus' needs a url: {kind: prometheus, url: http://...}")
    return value


SourceSpec = Annotated[
    ScrapeSourceSpec | PrometheusSourceSpec,
    Field(discriminator="kind"),
    BeforeValidator(_source_shorthand),
]


class AnalysisSpec(_Strict):
    """The analysis block of a release manifest."""

    interval: Duration = 10.0
    bake: Duration = 300.0
    min_requests: int = Field(
        default=10,
        ge=0,
        description="API requests a measurement needs; fewer extend its window by an interval",
    )
    failure_limit: int = Field(default=1, ge=0)
    inconclusive_limit: int = Field(default=3, ge=0)
    consecutive_error_limit: int = Field(default=4, ge=0)
    source: SourceSpec = Field(default_factory=ScrapeSourceSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    auto: bool = Field(
        default=False,
        description="Watch after every deploy without a terminal, and act on the verdict",
    )

    @model_validator(mode="after")
    def _check(self) -> AnalysisSpec:
        if self.bake < self.interval:
            raise ValueError(
                f"bake ({format_duration(self.bake)}) is shorter than one interval "
                f"({format_duration(self.interval)})"
            )
        field_name = "metric" if self.source.kind == "scrape" else "query"
        for custom in self.metrics.custom:
            if getattr(custom, field_name) is None:
                raise ValueError(
                    f"custom metric {custom.name!r} needs '{field_name}' "
                    f"for the {self.source.kind} source"
                )
        return self
