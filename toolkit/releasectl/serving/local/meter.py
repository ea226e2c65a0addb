"""The endpoint's own counts: every request the agent proxies, per model, version and
role, by outcome, and its latency; served on the agent's `/metrics` in Prometheus' text
format (docs/ARCHITECTURE.md, "Measured by the endpoint"). The names and values are
`releasectl.analysis.endpoint`'s.

Counting is plain integers in the agent's one event loop (no lock, no label lookup per
request: the proxy holds its version's `Counts`); prometheus-client only renders them,
through a collector, when `/metrics` is read.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from releasectl.analysis.endpoint import (
    BUCKETS,
    DIFFERENT,
    DURATION,
    LABELS,
    MIRROR_DROPPED,
    MIRROR_LABELS,
    MIRROR_LATENCY,
    MIRROR_PAIRS,
    PAIR_CANDIDATE,
    PAIR_STABLE,
    REQUESTS,
    SAME,
)

_MISSING = object()


class Counts:
    """The counts of one (model, version, role): requests by outcome, and the latency
    histogram (a count per bucket, not cumulative; the last is +Inf)."""

    __slots__ = ("buckets", "outcomes", "sum")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def record(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        # `le` is inclusive: the first bound >= seconds.
        self.buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds


class Pairs:
    """The mirror's counts for one candidate (model, version): its answers compared with
    the stable answers to the same requests, their latencies, and the copies dropped
    (docs/ARCHITECTURE.md, "Mirroring")."""

    __slots__ = ("candidate_seconds", "different", "dropped", "same", "stable_seconds")

    def __init__(self) -> None:
        self.same = self.different = self.dropped = 0
        self.stable_seconds = self.candidate_seconds = 0.0

    def pair(
        self,
        field: str,
        stable: bytes,
        candidate: bytes | None,
        stable_seconds: float,
        candidate_seconds: float,
    ) -> None:
        """Count one mirrored request. `stable`: the stable version's 2xx body; without a
        JSON object holding `field` there is no reference answer and no pair. `candidate`:
        its 2xx body, None when it answered otherwise or not at all (a disagreement)."""
        expected = _field(stable, field)
        if expected is _MISSING:
            return
        got = _field(candidate, field) if candidate is not None else _MISSING
        # JSON equality, except that `true` is not `1`.
        same_kind = isinstance(got, bool) == isinstance(expected, bool)
        if got is not _MISSING and got == expected and same_kind:
            self.same += 1
        else:
            self.different += 1
        self.stable_seconds += stable_seconds
        self.candidate_seconds += candidate_seconds


def _field(body: bytes, field: str) -> Any:
    try:
        found = json.loads(body)
    except ValueError:
        return _MISSING
    return found.get(field, _MISSING) if isinstance(found, dict) else _MISSING


class Meter(Collector):
    """Every tally of the agent, keyed by (model, version, role)."""

    def __init__(self) -> None:
        self.tallies: dict[tuple[str, str, str], Counts] = {}
        self.pairs: dict[tuple[str, str], Pairs] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def tally(self, model: str, version: str, role: str) -> Counts:
        key = (model, version, role)
        found = self.tallies.get(key)
        if found is None:
            found = self.tallies[key] = Counts()
        return found

    def forget(self, model: str, version: str) -> None:
        """A version no slot serves any more: its series go (a later server of it
        counts from zero, as its own counters would)."""
        for key in [k for k in self.tallies if k[:2] == (model, version)]:
            del self.tallies[key]
        self.pairs.pop((model, version), None)

    def mirror_pairs(self, model: str, version: str) -> Pairs:
        """The mirror's counts of a candidate, made on first use."""
        found = self.pairs.get((model, version))
        if found is None:
            found = self.pairs[(model, version)] = Pairs()
        return found

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            REQUESTS, "Requests the endpoint sent to a version", labels=[*LABELS, "outcome"]
        )
        duration = HistogramMetricFamily(
            DURATION, "Latency of the endpoint's requests to a version", labels=list(LABELS)
        )
        for key, tally in sorted(self.tallies.items()):
            for outcome, count in sorted(tally.outcomes.items()):
                requests.add_metric([*key, outcome], count)
            cumulative, buckets = 0, []
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), tally.buckets, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            duration.add_metric(list(key), buckets, tally.sum)
        yield requests
        yield duration
        if self.pairs:
            yield from self._mirror()

    def _mirror(self) -> Iterator[Metric]:
        labels = list(MIRROR_LABELS)
        pairs = CounterMetricFamily(
            MIRROR_PAIRS, "Mirrored requests compared, by agreement", labels=[*labels, "agreement"]
        )
        dropped = CounterMetricFamily(
            MIRROR_DROPPED, "Copies dropped because the mirror's queue was full", labels=labels
        )
        latency = SummaryMetricFamily(
            MIRROR_LATENCY, "Latencies of the compared pairs", labels=[*labels, "role"]
        )
        for key, found in sorted(self.pairs.items()):
            pairs.add_metric([*key, SAME], found.same)
            pairs.add_metric([*key, DIFFERENT], found.different)
            dropped.add_metric(list(key), found.dropped)
            count = found.same + found.different
            latency.add_metric([*key, PAIR_STABLE], count, found.stable_seconds)
            latency.add_metric([*key, PAIR_CANDIDATE], count, found.candidate_seconds)
        yield pairs
        yield dropped
        yield latency

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
