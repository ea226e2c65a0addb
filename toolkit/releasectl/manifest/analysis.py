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
    """A user metric, e.g. a model-quality gauge. `metric` is a gauge's name on the
    server's /metrics: the scrape source reads it, and the prometheus source (and the
    AnalysisTemplate) select it by the version's labels. `query` is the team's own
    PromQL (prometheus source only), with `$version` replaced by the escaped version
    (write it inside quotes: `{model="iris",version="$version"}`)."""

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
                f"custom metric {self.name!r} needs 'query' (PromQL, prometheus source) "
                "or 'metric' (a gauge's name)"
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


# kube-prometheus-stack's default scrape interval (docs/ARCHITECTURE.md, "Analysis in the cluster").
DEFAULT_SCRAPE_INTERVAL = 30.0


class PrometheusSourceSpec(_Strict):
    """Query a Prometheus server's HTTP API. Every range the queries read is
    max(`window`, 4 x `scrape_interval`, the analysis interval): `rate` needs two
    samples inside its range, and four scrapes leave room for a missed one."""

    kind: Literal["prometheus"] = "prometheus"
    url: str = Field(pattern=r"^https?://[^\s]+$")
    window: Duration | None = None
    scrape_interval: Duration = Field(
        default=DEFAULT_SCRAPE_INTERVAL,
        description="How often Prometheus scrapes the model's pods (30s: the "
        "kube-prometheus-stack default); the query ranges are at least four of them",
    )
    bearer_token_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The environment variable holding a bearer token for Prometheus",
    )
    ca_file: str | None = Field(
        default=None,
        min_length=1,
        description="A CA bundle (PEM) to verify Prometheus' TLS certificate with",
    )


# A JSON field of an answer, a dotted path into nested objects: `label`, `result.label`.
JSON_FIELD = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"


class SmokeExpect(_Strict):
    """The answer's JSON field (a dotted path) and the value it must equal."""

    field: str = Field(pattern=JSON_FIELD)
    equals: str | int | float | bool


class SmokeSpec(_Strict):
    """One request that needs no client traffic: POST `json` to `path`, expect a
    field of the answer. Argo Rollouts runs these before promotion (docs/ARCHITECTURE.md,
    "Analysis in the cluster")."""

    path: str = Field(pattern=r"^/[A-Za-z0-9._~/-]*$", max_length=200)
    json_body: Any = Field(alias="json")
    expect: SmokeExpect

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class CompareSpec(_Strict):
    """The candidate against the stable version on the same mirrored requests: the
    share whose `field` differs, and the candidate's latency over stable's. Needs a
    mirror step, and the local target (docs/ARCHITECTURE.md, "Deployment strategies")."""

    field: str = Field(
        pattern=JSON_FIELD,
        description="The answer's JSON field compared (a dotted path): ids and versions "
        "always differ, so the whole answer is never compared",
    )
    max_disagreement: float | None = Field(
        default=None, ge=0, le=1, description="The largest share of pairs whose field differs"
    )
    max_latency_ratio: float | None = Field(
        default=None, gt=0, description="The largest candidate/stable latency ratio"
    )

    @model_validator(mode="after")
    def _check(self) -> CompareSpec:
        if self.max_disagreement is None and self.max_latency_ratio is None:
            raise ValueError("compare needs max_disagreement, max_latency_ratio or both")
        return self


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
    smoke: list[SmokeSpec] = Field(
        default_factory=list,
        description="Requests a new version must answer right before it is promoted "
        "(kubernetes: Argo Rollouts' pre-promotion analysis)",
    )
    auto: bool = Field(
        default=False,
        description="Watch after every deploy without a terminal, and act on the verdict",
    )
    compare: CompareSpec | None = Field(
        default=None,
        description="The candidate's answers against stable's on mirrored requests "
        "(needs a mirror step in deploy.strategy.steps; local target only)",
    )

    @model_validator(mode="after")
    def _check(self) -> AnalysisSpec:
        if self.bake < self.interval:
            raise ValueError(
                f"bake ({format_duration(self.bake)}) is shorter than one interval "
                f"({format_duration(self.interval)})"
            )
        # Prometheus builds a gauge's query from `metric` when there is no `query`;
        # a scrape reads only a gauge (docs/ARCHITECTURE.md, "Analysis in the cluster").
        if self.source.kind == "scrape":
            for custom in self.metrics.custom:
                if custom.metric is None:
                    raise ValueError(
                        f"custom metric {custom.name!r} needs 'metric' for the scrape source"
                    )
        return self
