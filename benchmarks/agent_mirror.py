"""Mirroring's cost on the real agent's endpoint (docs/ARCHITECTURE.md, "Mirroring",
"Performance budgets"), a scenario of benchmarks/serving_bench.py.

In one run, A-B-A, the same loads at the endpoint (`w.url`) in three phases:

- A1: plain, the stable 1.0.0 alone;
- B: a real canary's mirror step (`deploy.strategy: {kind: canary, mirror_routes: [/predict],
  steps: [{mirror: 100, for: 10m}, ...]}`, `releasectl deploy iris --no-watch`, no watch, so
  the step stays) against a 2.0.0 candidate that sleeps 2 s per request
  (`faults.yaml: added_latency_ms: 2000`);
- A2: plain again, after `releasectl abort iris` (the candidate's weight 0, stable alone).

Each phase runs the fixed-rate load (p50) and the closed-loop load (throughput) `rounds` times,
alternating which comes first. Every load keeps a trace, so the answering version is known.
The mirror's copies and drops come from the agent's own `/metrics`, read before and after B.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from servinglib import World, finish_loadgen, loadgen, median, read_trace

STABLE = "1.0.0"
CANDIDATE = "2.0.0"
PHASES = ("plain_before", "mirror", "plain_after")
MODES = ("fixed_rate", "closed_loop")
REQUESTS = "releasectl_endpoint_requests_total"
DROPPED = "releasectl_endpoint_mirror_dropped_total"


def canary_manifest(sleep: float) -> tuple[str, dict[str, Any]]:
    """faults.yaml for a candidate sleeping `sleep` s per request, and the release.yaml changes:
    a mirror step far longer than the run (no watch advances it), inside a longer bake."""
    faults = f"added_latency_ms: {round(sleep * 1000)}\n"
    analysis = {
        "interval": "2s",
        "bake": "15m",
        "min_requests": 5,
        "failure_limit": 1,
        "inconclusive_limit": 2,
        "consecutive_error_limit": 2,
        "metrics": {"error_rate": {"max": 0.05}},
        "compare": {"field": "label", "max_disagreement": 0.1, "max_latency_ratio": 2.0},
    }
    strategy = {
        "kind": "canary",
        "mirror_routes": ["/predict"],
        "steps": [{"mirror": 100, "for": "10m"}, {"weight": 10, "for": "1m"}],
    }
    return faults, {"analysis": analysis, "deploy": {"strategy": strategy}}


def agent_counts(w: World) -> dict[str, float]:
    """The agent's own /metrics: copies sent to the candidate (role mirror, every outcome) and
    copies dropped because the mirror's queue was full."""
    port = json.loads((w.home / "local" / "agent.json").read_text())["port"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5.0, trust_env=False).text
    mirrored = dropped = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == REQUESTS and s.labels.get("role") == "mirror":
                mirrored += s.value
            elif s.name == DROPPED:
                dropped += s.value
    return {"mirrored": mirrored, "dropped": dropped}


def cpu_seconds(w: World) -> dict[str, dict[int, float]]:
    """CPU seconds (user + system) so far of the agent and of every bentoml process under this
    RELEASECTL_HOME (their workers included), by PID: where a phase's CPU went."""
    from testing.processes import bentoml_processes

    found: dict[str, dict[int, float]] = {"agent": {}, "bentoml": {}}
    procs = {"agent": [psutil.Process(w.agent_pid())], "bentoml": bentoml_processes(w.home)}
    for kind, roots in procs.items():
        for root in roots:
            try:
                for p in [root, *root.children(recursive=True)]:
                    t = p.cpu_times()
                    found[kind][p.pid] = t.user + t.system
            except psutil.Error:
                continue
    return found


def cpu_per_request(
    start: dict[str, dict[int, float]], end: dict[str, dict[int, float]], requests: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind, by in end.items():
        spent = sum(s - start[kind].get(pid, 0.0) for pid, s in by.items())
        out[f"{kind}_cpu_s"] = round(spent, 2)
        out[f"{kind}_us_per_request"] = round(1e6 * spent / max(1, requests), 1)
    return out


def phase(w: World, name: str, args: Any) -> dict[str, Any]:
    runs: dict[str, Any] = {mode: [] for mode in MODES}
    start = cpu_seconds(w)
    for i in range(args.rounds):
        # Turn about within the phase, as mirror_cost does.
        for mode in MODES[:: 1 if i % 2 == 0 else -1]:
            trace = w.root / f"agent-mirror-{name}-{mode}-{i}.txt"
            proc = loadgen(
                w,
                w.url,
                connections=args.connections if mode == "closed_loop" else 4,
                duration=args.seconds,
                rate=args.rate if mode == "fixed_rate" else None,
                trace=trace,
            )
            summary = finish_loadgen(proc)
            versions: dict[str, int] = {}
            for row in read_trace(trace):
                versions[row[3]] = versions.get(row[3], 0) + 1
            summary["versions"] = versions
            runs[mode].append(summary)
    requests = sum(r["requests"] for mode in MODES for r in runs[mode])
    runs["cpu"] = cpu_per_request(start, cpu_seconds(w), requests)
    return runs


def agent_mirror_cost(w: World, args: Any) -> dict[str, Any]:
    """A1 plain, B with a real mirror step to a `args.mirror_sleep` s candidate, A2 plain after
    `releasectl abort`; the endpoint is the agent's (`w.url`) throughout."""
    runs: dict[str, dict[str, Any]] = {}
    print("  agent mirror cost: A1 plain ...", file=sys.stderr)
    runs["plain_before"] = phase(w, "plain_before", args)

    faults, changes = canary_manifest(args.mirror_sleep)
    w.repo.write("model-releases/iris/faults.yaml", faults)
    from releasectl.manifest.edits import edit

    path = w.repo.path / "model-releases/iris/release.yaml"
    path.write_text(edit(path.read_text(), "release.yaml", changes))
    w.repo.commit(f"iris: {CANDIDATE}, sleeping {args.mirror_sleep:g} s, as a mirrored canary")
    w.repo.ok("release", "iris", CANDIDATE)
    w.repo.ok("deploy", "iris", "--no-watch")
    traffic = w.status()["traffic"]
    if not traffic or traffic.get("state") != "stepping" or traffic.get("mirror") != 100:
        raise RuntimeError(f"the mirror step is not running: {traffic}")
    print("  agent mirror cost: B with a mirror step ...", file=sys.stderr)
    before = agent_counts(w)
    runs["mirror"] = phase(w, "mirror", args)
    after = agent_counts(w)
    traffic_during = w.status()["traffic"]

    w.repo.ok("abort", "iris", "--reason", "benchmark: end of the mirror phase")
    status = w.status()
    if status["traffic"] is not None or status["live"]["version"] != STABLE:
        raise RuntimeError(f"abort left {status['live']['version']} with {status['traffic']}")
    print("  agent mirror cost: A2 plain ...", file=sys.stderr)
    runs["plain_after"] = phase(w, "plain_after", args)
    return summarise(runs, args, before, after, traffic_during)


def summarise(
    runs: dict[str, dict[str, Any]],
    args: Any,
    before: dict[str, float],
    after: dict[str, float],
    traffic: dict[str, Any] | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "sleep_s": args.mirror_sleep,
        "rate": args.rate,
        "connections": args.connections,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "runs": runs,
        "traffic_during_mirror": traffic,
    }
    for name, by in runs.items():
        out[f"{name}_cpu"] = by["cpu"]
        for mode in MODES:
            rs = by[mode]
            for key in ("p50_ms", "p95_ms", "throughput"):
                out[f"{mode}_{name}_{key}"] = round(median([r[key] for r in rs]), 3)
            out[f"{mode}_{name}_errors"] = sum(r["errors"] for r in rs)
        versions: dict[str, int] = {}
        for mode in MODES:
            for r in by[mode]:
                for v, n in r["versions"].items():
                    versions[v] = versions.get(v, 0) + n
        out[f"{name}_versions"] = versions
    for key in ("fixed_rate_{}_p50_ms", "closed_loop_{}_throughput"):
        a1, a2 = (out[key.format(p)] for p in ("plain_before", "plain_after"))
        out[key.format("plain")] = round(median([a1, a2]), 3)
    out["added_p50_ms"] = round(out["fixed_rate_mirror_p50_ms"] - out["fixed_rate_plain_p50_ms"], 3)
    out["throughput_ratio"] = round(
        out["closed_loop_mirror_throughput"] / out["closed_loop_plain_throughput"], 3
    )
    out["mirror_failed"] = out["fixed_rate_mirror_errors"] + out["closed_loop_mirror_errors"]
    out["plain_failed"] = sum(
        out[f"{m}_{p}_errors"] for m in MODES for p in ("plain_before", "plain_after")
    )
    out["copies_mirrored"] = int(after["mirrored"] - before["mirrored"])
    out["copies_dropped"] = int(after["dropped"] - before["dropped"])
    return out


def agent_mirror_rows(m: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """The same budgets as the stand-in mirror scenario (serving_bench.mirror_rows)."""
    answered = m["mirror_versions"]
    others = {v: n for v, n in answered.items() if v != STABLE}
    plain = (
        f"A1 {m['fixed_rate_plain_before_p50_ms']:.2f}, A2 {m['fixed_rate_plain_after_p50_ms']:.2f}"
    )
    plain_tp = (
        f"A1 {m['closed_loop_plain_before_throughput']:.0f}, "
        f"A2 {m['closed_loop_plain_after_throughput']:.0f}"
    )
    return [
        (
            f"agent, real mirror step to a {m['sleep_s']:g} s candidate: added p50, fixed "
            f"{m['rate']:g} req/s ({plain} → B {m['fixed_rate_mirror_p50_ms']:.2f} ms)",
            f"{m['added_p50_ms']:+.3f} ms",
            "≤ 1 ms",
            m["added_p50_ms"] <= 1.0,
        ),
        (
            f"agent mirror step: throughput, {m['connections']} connections closed loop "
            f"({plain_tp} → B {m['closed_loop_mirror_throughput']:.0f} req/s)",
            f"{m['throughput_ratio']:.1%} of no mirror",
            "≥ 90%",
            m["throughput_ratio"] >= 0.9,
        ),
        (
            "  copies sent to the candidate / dropped (queue full), agent /metrics during B",
            f"{m['copies_mirrored']} / {m['copies_dropped']}",
            "",
            None,
        ),
        (
            "  CPU per user request, agent / all bentoml processes: A1 → B → A2",
            " → ".join(
                f"{m[p + '_cpu']['agent_us_per_request']:.0f} / "
                f"{m[p + '_cpu']['bentoml_us_per_request']:.0f} µs"
                for p in PHASES
            ),
            "",
            None,
        ),
        (
            "agent mirror step: failed user requests in B (in A1 + A2)",
            f"{m['mirror_failed']} ({m['plain_failed']})",
            "0",
            m["mirror_failed"] == 0,
        ),
        (
            f"agent mirror step: answers in B from {STABLE} / from another version",
            f"{answered.get(STABLE, 0)} / {sum(others.values())}",
            "all / 0",
            not others and answered.get(STABLE, 0) > 0,
        ),
    ]
