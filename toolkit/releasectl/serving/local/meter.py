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
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from releasectl.analysis.endpoint import BUCKETS, DURATION, LABELS, REQUESTS


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


class Meter(Collector):
    """Every tally of the agent, keyed by (model, version, role)."""

    def __init__(self) -> None:
        self.tallies: dict[tuple[str, str, str], Counts] = {}
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

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
