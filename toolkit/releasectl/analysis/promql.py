"""PromQL for the Prometheus source: builds the queries of a manifest's analysis
block, and substitutes `$version` into the user's own queries safely
(docs/ARCHITECTURE.md, "Analysis").

Every built query selects the version under watch (`service_version`, and
`service_name` when given) and leaves out the endpoints that are not the model's
API (see `releasectl.analysis.exposition`).
"""

from __future__ import annotations

import re

from releasectl.analysis.engine import MetricsError, checks_for
from releasectl.analysis.exposition import EXCLUDED_ENDPOINTS_RE, NAMESPACE, QUANTILES, Scope
from releasectl.manifest.analysis import (
    DEFAULT_SCRAPE_INTERVAL,
    AnalysisSpec,
    PrometheusSourceSpec,
)

# The label a cluster's Prometheus relabels from the pod label `app.kubernetes.io/name`
# (docs/ARCHITECTURE.md, "Analysis in the cluster").
MODEL_LABEL = "model"


def promql_string(value: str) -> str:
    """`value` as a double-quoted PromQL string literal."""
    return '"' + escape_promql(value) + '"'


def escape_promql(value: str, quote: str = '"') -> str:
    """Escape for the inside of a PromQL string quoted with `quote`. PromQL accepts only
    the opening quote as an escaped quote, so the escaping depends on it."""
    out = []
    for char in value:
        if char in ("\\", quote):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


_PLACEHOLDER = re.compile(r"\$\{version\}|\$version\b")


def render_query(template: str, version: str) -> str:
    """The user's PromQL with `$version` (or `${version}`) replaced by the version, escaped
    for the string it stands in; outside any string it becomes a double-quoted literal."""
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(template):
        char = template[i]
        match = _PLACEHOLDER.match(template, i)
        if match:
            out.append(_placeholder_value(version, quote))
            i = match.end()
            continue
        if quote in ('"', "'") and char == "\\":
            out.append(template[i : i + 2])
            i += 2
            continue
        if quote is None and char in "\"'`":
            quote = char
        elif char == quote:
            quote = None
        out.append(char)
        i += 1
    return "".join(out)


def _placeholder_value(version: str, quote: str | None) -> str:
    if quote is None:
        return promql_string(version)
    if quote == "`":
        if "`" in version:
            raise MetricsError(f"version {version!r} cannot go inside a `raw` PromQL string")
        return version
    return escape_promql(version, quote)


def _selector(scope: Scope, extra: str = "") -> str:
    matchers = [f"{scope.label}={promql_string(scope.version)}"]
    if scope.model is not None:
        matchers.append(f"{MODEL_LABEL}={promql_string(scope.model)}")
    if scope.service_name is not None:
        matchers.append(f"service_name={promql_string(scope.service_name)}")
    matchers.append(f"endpoint!~{promql_string(EXCLUDED_ENDPOINTS_RE)}")
    if extra:
        matchers.append(extra)
    return "{" + ",".join(matchers) + "}"


def samples_query(counter: str, scope: Scope, window_s: float | None = None) -> str:
    """A sampled gauge's counter for the version: its total now, or its increase
    over `window_s` (docs/ARCHITECTURE.md, "Analysis")."""
    matchers = [f"{scope.label}={promql_string(scope.version)}"]
    if scope.model is not None:
        matchers.append(f"{MODEL_LABEL}={promql_string(scope.model)}")
    selector = f"{counter}{{{','.join(matchers)}}}"
    if window_s is None:
        return f"sum({selector})"
    return f"sum(increase({selector}[{promql_duration(window_s)}]))"


def promql_duration(seconds: float) -> str:
    """`90s`, `2500ms`: a range PromQL accepts however long (`:g` would give `1e+06s`)."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def query_range(spec: AnalysisSpec, intervals: int = 1) -> float:
    """The range, in seconds, of every `increase`/`rate` query, the one rule for
    watch's Prometheus source and the AnalysisTemplate (docs/ARCHITECTURE.md,
    "Analysis in the cluster"): max(`window`, 4 x `scrape_interval`, `interval`),
    widened by the earlier intervals of an open window of `intervals` intervals."""
    source = spec.source
    scrape, window = DEFAULT_SCRAPE_INTERVAL, 0.0
    if isinstance(source, PrometheusSourceSpec):
        scrape, window = source.scrape_interval, source.window or 0.0
    base = max(window, 4 * scrape, spec.interval)
    return base + (max(1, intervals) - 1) * spec.interval


def gauge_query(metric: str, scope: Scope) -> str:
    """A custom metric's query from its gauge's name: the series of the version under
    watch, one per pod (judged, as watch judges them, by the one farthest out)."""
    matchers = [f"{scope.label}={promql_string(scope.version)}"]
    if scope.model is not None:
        matchers.append(f"{MODEL_LABEL}={promql_string(scope.model)}")
    if scope.service_name is not None:
        matchers.append(f"service_name={promql_string(scope.service_name)}")
    return metric + "{" + ",".join(matchers) + "}"


def build_queries(
    spec: AnalysisSpec, scope: Scope, window_s: float, namespace: str = NAMESPACE
) -> dict[str, str]:
    """PromQL for each check, plus `requests` (API requests in the window)."""
    window = f"[{promql_duration(window_s)}]"
    total = f"{namespace}_request_total"
    buckets = f"{namespace}_request_duration_seconds_bucket"
    every = _selector(scope)
    server_errors = _selector(scope, 'http_response_code=~"5.."')
    queries = {"requests": f"sum(increase({total}{every}{window}))"}
    # `or vector(0)`: with no 5xx series at all the numerator would be empty, not zero.
    queries["error_rate"] = (
        f"(sum(rate({total}{server_errors}{window})) or vector(0))"
        f" / sum(rate({total}{every}{window}))"
    )
    for name, q in QUANTILES.items():
        queries[f"latency_ms.{name}"] = (
            f"histogram_quantile({q}, sum by (le) (rate({buckets}{every}{window}))) * 1000"
        )
    for custom in spec.metrics.custom:
        if custom.query is not None:
            queries[custom.name] = render_query(custom.query, scope.version)
        elif custom.metric is not None:
            queries[custom.name] = gauge_query(custom.metric, scope)
    wanted = {c.name for c in checks_for(spec)} | {"requests"}
    return {k: v for k, v in queries.items() if k in wanted}
