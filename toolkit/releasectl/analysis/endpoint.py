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
- `role`: the part the version played for the request: `live` (the slot that answers
  every user request), during a canary's steps `stable` and `candidate` (both answer
  users, by weight), and `mirror` (a copy; the user never sees its answer). A version
  is judged on all its roles; a role selects per-role figures.

Mirroring (docs/ARCHITECTURE.md, "Mirroring") adds, per candidate (model, version):

- `releasectl_endpoint_mirror_pairs_total{model, version, agreement}`: mirrored requests
  whose stable answer was a 2xx JSON object holding the compared field, by whether the
  candidate's answer had the same value there (`same`) or not (`different`: another
  value, no such field, not JSON, not 2xx, or no answer at all);
- `releasectl_endpoint_mirror_latency_seconds{model, version, role}`: a summary (`_sum`,
  `_count`) of the same pairs' latencies, `role` `stable` or `candidate`, so that a window's
  candidate-over-stable latency ratio is the ratio of the two `_sum` increases;
- `releasectl_endpoint_mirror_dropped_total{model, version}`: copies not sent because the
  mirror's queue was full (the user's request was answered as always).

The mirrored calls themselves are counted in the requests and duration series above,
with role `mirror`.
"""

from __future__ import annotations

REQUESTS = "releasectl_endpoint_requests"  # a counter: `_total` on the wire
DURATION = "releasectl_endpoint_request_duration_seconds"
LABELS = ("model", "version", "role")

LIVE = "live"
STABLE, CANDIDATE = "stable", "candidate"  # a canary's two sides of a weighted split
MIRROR = "mirror"  # a copy of a user's request; no user sees its answer
ROLES = (LIVE, STABLE, CANDIDATE, MIRROR)
MIRROR_PAIRS = "releasectl_endpoint_mirror_pairs"  # a counter: `_total` on the wire
MIRROR_DROPPED = "releasectl_endpoint_mirror_dropped"  # a counter: `_total` on the wire
MIRROR_LATENCY = "releasectl_endpoint_mirror_latency_seconds"  # a summary: `_sum`, `_count`
MIRROR_LABELS = ("model", "version")  # the candidate's
SAME, DIFFERENT = "same", "different"  # `agreement`
PAIR_STABLE, PAIR_CANDIDATE = "stable", "candidate"  # `role` of the pair latencies
# Routes never copied: a candidate must not learn from (or double-count) users' labels.
NEVER_MIRRORED = ("/feedback",)

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
