"""Candidate against stable on the same mirrored requests: the `compare` measurements
(docs/ARCHITECTURE.md, "Mirroring").

The local agent counts, per candidate, the mirrored requests whose answers it compared
(`releasectl.analysis.endpoint`: pairs by agreement, and both sides' latency sums). Over a
window, the increases of those counters give

- `compare.disagreement`: different pairs / all pairs, judged against `max_disagreement`;
- `compare.latency_ratio`: the candidate's latency sum / the stable version's, over the
  same pairs, judged against `max_latency_ratio`.

Both are per-request measurements whose requests are the window's pairs: judged by the
engine's rules (`releasectl.analysis.engine.measure`), so a window with no pair is
inconclusive, one with fewer pairs than `min_requests` is pending while it stays open and
inconclusive when the bake ends on it. No I/O: the local target's scrape source
(`releasectl.analysis.sources.ScrapeSource`) reads the pairs from the agent's `/metrics`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from releasectl.analysis import endpoint
from releasectl.analysis.measuring import MetricCheck, MetricsError, Reading
from releasectl.manifest.analysis import CompareSpec

DISAGREEMENT = "compare.disagreement"
LATENCY_RATIO = "compare.latency_ratio"


def checks_of(spec: CompareSpec | None) -> list[MetricCheck]:
    """The manifest's `analysis.compare` checks: each limit it sets, none without it."""
    if spec is None:
        return []
    limits = ((DISAGREEMENT, spec.max_disagreement), (LATENCY_RATIO, spec.max_latency_ratio))
    return [
        MetricCheck(name, None, top, per_request=True) for name, top in limits if top is not None
    ]


class PairTotals(NamedTuple):
    """The mirror's counters of one candidate, or their increase over a span."""

    same: float = 0.0
    different: float = 0.0
    stable_seconds: float = 0.0
    candidate_seconds: float = 0.0
    dropped: float = 0.0

    @property
    def pairs(self) -> float:
        return self.same + self.different

    def __add__(self, other: object) -> PairTotals:
        assert isinstance(other, PairTotals)
        return PairTotals(*(a + b for a, b in zip(self, other, strict=True)))


def parse_pairs(text: str, model: str, version: str) -> PairTotals:
    """The mirror's counters of `version` of `model` out of the agent's exposition."""
    found = dict.fromkeys(PairTotals._fields, 0.0)
    where = {
        (f"{endpoint.MIRROR_PAIRS}_total", endpoint.SAME): "same",
        (f"{endpoint.MIRROR_PAIRS}_total", endpoint.DIFFERENT): "different",
        (f"{endpoint.MIRROR_LATENCY}_sum", endpoint.PAIR_STABLE): "stable_seconds",
        (f"{endpoint.MIRROR_LATENCY}_sum", endpoint.PAIR_CANDIDATE): "candidate_seconds",
        (f"{endpoint.MIRROR_DROPPED}_total", ""): "dropped",
    }
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as error:
        raise MetricsError(f"not Prometheus text exposition: {error}") from error
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            if labels.get("model") != model or labels.get("version") != version:
                continue
            kind = labels.get("agreement") or labels.get("role") or ""
            name = where.get((sample.name, kind))
            if name is not None:
                found[name] += float(sample.value)
    return PairTotals(**found)


def pairs_increase(before: PairTotals, after: PairTotals) -> PairTotals:
    """The increase between two scrapes. Any counter lower than before: the agent
    restarted and counts from zero, so all of `after` is new."""
    if any(b > a for a, b in zip(after, before, strict=True)):
        return after
    return PairTotals(*(a - b for a, b in zip(after, before, strict=True)))


def compare_reading(increase: PairTotals) -> Reading:
    """The window's values; its `requests` are its pairs, and so are both checks'."""
    pairs = increase.pairs
    values = {
        DISAGREEMENT: increase.different / pairs if pairs else math.nan,
        LATENCY_RATIO: (
            increase.candidate_seconds / increase.stable_seconds
            if pairs and increase.stable_seconds > 0
            else math.nan
        ),
    }
    return Reading(values=values, requests=pairs, requests_of=dict.fromkeys(values, pairs))
