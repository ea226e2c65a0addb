"""What the endpoint measures: the names, labels and values of the series the local
agent counts for every request it proxies and serves on its own `/metrics`
(docs/ARCHITECTURE.md, "Measured by the endpoint").

One home for them: the agent writes these series (`releasectl.serving.local.meter`)
and the scrape source reads them (`releasectl.analysis.exposition.parse_endpoint`).
No imports, no I/O: the agent imports this module and must stay small.

- `releasectl_endpoint_requests_total{model, version, role, outcome}`: one per
  request the endpoint sent to a version's API (`is_api_endpoint`: not its probes,
  `/metrics` or docs). `outcome` is the answer's status class
  (`1xx` .. `5xx`) or, for a request the version never answered, why: `connect_error`
  (refused, not listening), `reset` (the connection dropped: a worker that died, a
  reset) or `timeout`. Errors of the version are `5xx` and every unanswered outcome.
- `releasectl_endpoint_request_duration_seconds{model, version, role}`: a histogram
  of the same requests, answered or not, from the forward to the end of the answer.
- `role`: the part the version played for the request. Today only `live` (the slot
  that answers every user request). Traffic steps add `stable` and `candidate` (both
  answer users, by weight) and `mirror` (a copy; the user never sees its answer). A
  version is judged on all its roles; a role selects per-role figures.
"""

from __future__ import annotations

REQUESTS = "releasectl_endpoint_requests"  # a counter: `_total` on the wire
DURATION = "releasectl_endpoint_request_duration_seconds"
LABELS = ("model", "version", "role")

LIVE = "live"
ROLES = (LIVE,)  # `stable`, `candidate` and `mirror` come with traffic steps

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
CONNECT_ERROR, RESET, TIMEOUT = "connect_error", "reset", "timeout"
UNANSWERED = (CONNECT_ERROR, RESET, TIMEOUT)
ERROR_OUTCOMES = frozenset({"5xx", *UNANSWERED})

# Upper bounds in seconds (+Inf implied): fine below 0.5 s, where latency limits sit.
BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


# A server's probes, its metrics and its docs are not calls to the model: neither the
# endpoint's counts nor a BentoML server's (as the scrape source reads them) count them.
EXCLUDED_ENDPOINTS = frozenset(
    {"/metrics", "/readyz", "/livez", "/healthz", "/docs.json", "/schema.json", "/"}
)
EXCLUDED_PREFIXES = ("/static_content/", "/assets/")


def is_api_endpoint(path: str) -> bool:
    return path not in EXCLUDED_ENDPOINTS and not path.startswith(EXCLUDED_PREFIXES)


def status_class(status: int) -> str:
    """`2xx` for 200..299; a status outside 100..599 counts as `5xx` (not an answer)."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "5xx"
