"""The local target's serving benchmark (docs/ARCHITECTURE.md, "Performance budgets"), on the
real iris model and real bentoml servers on 127.0.0.1, in a throwaway RELEASECTL_HOME. Every
target is a ratio or a difference against a baseline measured in the same run:

1. rollback time: from the start of `releasectl revert iris --deploy` to the first answer from
   the stable version on the endpoint (seen by a load generator in another process), warm
   (standby still up) and cold (standby expired), medians of --runs; the cold baseline is a
   plain `bentoml serve` of the same bento until /readyz, also a median of --runs;
2. the endpoint's cost: the same load through the endpoint and straight at the live slot's port
   (alternating, --rounds each), latency at a fixed rate and throughput with closed-loop
   connections;
3. the agent's memory (RSS and USS of the agent process; bento servers are other processes);
4. mirroring's cost: the endpoint in a process of its own (benchmarks/mirror_endpoint.py) with
   and without a mirror to a candidate that sleeps 2 s per request, alternating, --rounds each:
   p50 at a fixed rate and closed-loop throughput with the mirror against without it;
5. the same on the real agent's endpoint (benchmarks/agent_mirror.py): A-B-A in one run, plain,
   then a real canary mirror step to a 2.0.0 that sleeps 2 s per request, then plain again
   after `releasectl abort`.

    python benchmarks/serving_bench.py [--runs 5] [--rounds 3] [--seconds 5]
                                       [--mirror-only | --agent-mirror-only]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
from agent_mirror import agent_mirror_cost, agent_mirror_rows
from servinglib import (
    World,
    finish,
    finish_loadgen,
    loadgen,
    machine,
    median,
    read_trace,
    stop,
    table,
    wait_until,
    world,
)

SETOSA = {"features": [5.1, 3.5, 1.4, 0.2]}
MIRROR_ENDPOINT = str(Path(__file__).with_name("mirror_endpoint.py"))


# -- 1. rollback time -------------------------------------------------------------------------


def timed_revert(w: World, stable: str, probe_rate: float) -> dict[str, Any]:
    """Runs `revert --deploy` under a probing load; seconds until the first answer from
    `stable` (by the probe's clock), failed requests, the deploy's own report."""
    trace = w.root / f"trace-{time.monotonic_ns()}.txt"
    probe = loadgen(w, w.url, connections=4, duration=0, rate=probe_rate, trace=trace)
    time.sleep(1.0)  # the probe is up and its connections open
    t0 = time.monotonic()
    proc = w.repo.cli("revert", "iris", "--deploy", "--reason", "bench", "--json")
    cli_s = time.monotonic() - t0
    if proc.returncode != 0:
        finish_loadgen(probe, interrupt=True)
        raise RuntimeError(f"revert --deploy failed: {proc.stderr}")
    out = json.loads(proc.stdout)
    time.sleep(0.5)
    summary = finish_loadgen(probe, interrupt=True)
    rows = read_trace(trace)
    first = next((r[1] for r in rows if r[0] >= t0 and r[3] == stable), None)
    if first is None:
        first = next((r[1] for r in rows if r[1] >= t0 and r[3] == stable), None)
    assert first is not None, "the stable version never answered"
    return {
        "seconds": round(first - t0, 3),
        "cli_seconds": round(cli_s, 3),
        "switch": out["deploy"]["switch"],
        "deploy_seconds": out["deploy"].get("seconds"),
        "failed_requests": sum(1 for r in rows if r[1] >= t0 and r[2] != 200),
        "probe": summary,
    }


def server_start(w: World, bento_dir: str, probe_rate: float) -> float:
    """A plain `bentoml serve` of the bento the agent serves, until /readyz: the cold baseline.
    Under the same probe load on the endpoint as the timed reverts, so both see the same CPU."""
    from releasectl.loopback import free_port

    probe = loadgen(w, w.url, connections=4, duration=0, rate=probe_rate)
    time.sleep(1.0)
    try:
        return _server_start(w, bento_dir, free_port())
    finally:
        finish_loadgen(probe, interrupt=True)


def _server_start(w: World, bento_dir: str, port: int) -> float:
    base = w.root / f"baseline-{port}"
    (base / "home").mkdir(parents=True)
    env = dict(os.environ, BENTOML_HOME=str(base / "home"), BENTOML_DO_NOT_TRACK="true")
    cmd = [sys.executable, "-m", "bentoml", "serve", bento_dir]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    with (base / "server.log").open("wb") as log:
        t0 = time.monotonic()
        proc = w.spawn(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    try:
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"baseline server exited: {base / 'server.log'}")
                try:
                    if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        return time.monotonic() - t0
                except httpx.HTTPError:
                    pass
                if time.monotonic() - t0 > 120:
                    raise RuntimeError("baseline server never became ready")
                time.sleep(0.02)
    finally:
        stop(proc)


def rollback(w: World, runs: int, next_major: int) -> tuple[dict[str, Any], int]:
    warm: list[dict[str, Any]] = []
    cold: list[dict[str, Any]] = []
    baseline: list[float] = []
    bento_dir = None
    for i in range(runs):
        # warm: a new release goes live, 1.0.0 waits as standby (10 minutes), revert.
        version = f"{next_major}.0.0"
        next_major += 1
        w.edit_manifest("deploy", {"target": "local", "port": w.port, "standby": "10m"})
        w.release(version, "bench (warm)")
        w.repo.ok("deploy", "iris", "--no-watch")
        warm.append(timed_revert(w, "1.0.0", probe_rate=200))
        print(f"  warm revert {i + 1}/{runs}: {warm[-1]['seconds']:.3f} s", file=sys.stderr)

        # cold: the same with a 1 s standby, expired before the revert.
        version = f"{next_major}.0.0"
        next_major += 1
        w.edit_manifest("deploy", {"target": "local", "port": w.port, "standby": "1s"})
        w.release(version, "bench (cold)")
        w.repo.ok("deploy", "iris", "--no-watch")
        wait_until(lambda: w.status()["standby"] is None, 60, "the standby to expire", 0.25)
        cold.append(timed_revert(w, "1.0.0", probe_rate=200))
        print(f"  cold revert {i + 1}/{runs}: {cold[-1]['seconds']:.3f} s", file=sys.stderr)

        # the baseline, interleaved so that both see the same machine
        if bento_dir is None:
            bento_dir = w.state()["models"]["iris"]["live"]["bento_dir"]
        baseline.append(server_start(w, bento_dir, probe_rate=200))
        print(f"  plain bentoml serve {i + 1}/{runs}: {baseline[-1]:.3f} s", file=sys.stderr)
    return {
        "warm": warm,
        "cold": cold,
        "server_start": [round(x, 3) for x in baseline],
        "warm_median": round(median([r["seconds"] for r in warm]), 3),
        "cold_median": round(median([r["seconds"] for r in cold]), 3),
        "server_start_median": round(median(baseline), 3),
        "failed_requests": sum(r["failed_requests"] for r in warm + cold),
    }, next_major


# -- 2. the endpoint's cost -----------------------------------------------------------------


def proxy_cost(w: World, rounds: int, seconds: float, rate: float, conns: int) -> dict[str, Any]:
    live_port = w.status()["live"]["port"]
    urls = {"direct": f"http://127.0.0.1:{live_port}", "endpoint": w.url}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        mode: {k: [] for k in urls} for mode in ("fixed_rate", "closed_loop")
    }
    for _ in range(rounds):
        for mode in runs:
            for name, url in urls.items():
                proc = loadgen(
                    w,
                    url,
                    connections=conns if mode == "closed_loop" else 4,
                    duration=seconds,
                    rate=rate if mode == "fixed_rate" else None,
                )
                runs[mode][name].append(finish_loadgen(proc))
    out: dict[str, Any] = {"rate": rate, "connections": conns, "seconds": seconds, "runs": runs}
    for mode, by in runs.items():
        for name, rs in by.items():
            for key in ("p50_ms", "p95_ms", "throughput"):
                out[f"{mode}_{name}_{key}"] = round(median([r[key] for r in rs]), 3)
        out[f"{mode}_errors"] = sum(r["errors"] for rs in by.values() for r in rs)
    for mode in runs:
        out[f"{mode}_added_p50_ms"] = round(
            out[f"{mode}_endpoint_p50_ms"] - out[f"{mode}_direct_p50_ms"], 3
        )
        out[f"{mode}_added_p95_ms"] = round(
            out[f"{mode}_endpoint_p95_ms"] - out[f"{mode}_direct_p95_ms"], 3
        )
    out["throughput_ratio"] = round(
        out["closed_loop_endpoint_throughput"] / out["closed_loop_direct_throughput"], 3
    )
    return out


def mirror_cost(
    w: World, rounds: int, seconds: float, rate: float, conns: int, sleep: float
) -> dict[str, Any]:
    """The same load at two endpoint processes in front of the live slot, one mirroring
    /predict to a candidate that sleeps `sleep` s per request (alternating, `rounds` each)."""
    from releasectl.loopback import free_port

    live = f"http://127.0.0.1:{w.status()['live']['port']}"
    ports = {"candidate": free_port(), "plain": free_port(), "mirror": free_port()}
    urls = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    py = [sys.executable, MIRROR_ENDPOINT]
    candidate = [*py, "candidate", "--port", str(ports["candidate"]), "--sleep", str(sleep)]
    procs = {"candidate": w.spawn(candidate)}
    for name in ("plain", "mirror"):
        cmd = [*py, "endpoint", "--port", str(ports[name]), "--target", live]
        if name == "mirror":
            cmd += ["--mirror", urls["candidate"]]
        procs[name] = w.spawn(cmd, stdout=subprocess.PIPE, text=True)

    def up(url: str) -> bool:
        try:
            return httpx.get(url + "/readyz", timeout=1.0, trust_env=False).status_code < 500
        except httpx.HTTPError:
            return False

    for name in ports:
        wait_until(lambda u=urls[name]: up(u), 30, f"the {name} process", 0.1)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        mode: {"plain": [], "mirror": []} for mode in ("fixed_rate", "closed_loop")
    }
    for i in range(rounds):
        for mode in runs:
            # Turn about, so that a machine getting busier weighs on both alike.
            for name in ("plain", "mirror")[:: 1 if i % 2 == 0 else -1]:
                proc = loadgen(
                    w,
                    urls[name],
                    connections=conns if mode == "closed_loop" else 4,
                    duration=seconds,
                    rate=rate if mode == "fixed_rate" else None,
                )
                runs[mode][name].append(finish_loadgen(proc))
    counts = {}
    for name in ("plain", "mirror"):
        procs[name].send_signal(signal.SIGTERM)
        said, _ = procs[name].communicate(timeout=60)
        counts[name] = json.loads(said.strip().splitlines()[-1])
    stop(procs["candidate"])
    out: dict[str, Any] = {"sleep_s": sleep, "rate": rate, "connections": conns, "runs": runs}
    for mode, by in runs.items():
        for name, rs in by.items():
            for key in ("p50_ms", "p95_ms", "throughput"):
                out[f"{mode}_{name}_{key}"] = round(median([r[key] for r in rs]), 3)
        out[f"{mode}_errors"] = sum(r["errors"] for rs in by.values() for r in rs)
    out["added_p50_ms"] = round(out["fixed_rate_mirror_p50_ms"] - out["fixed_rate_plain_p50_ms"], 3)
    out["throughput_ratio"] = round(
        out["closed_loop_mirror_throughput"] / out["closed_loop_plain_throughput"], 3
    )
    out["counts"] = counts
    return out


def agent_memory(w: World) -> dict[str, Any]:
    proc = psutil.Process(w.agent_pid())
    info = proc.memory_full_info()
    mib = 2**20
    return {
        "pid": proc.pid,
        "rss_mib": round(info.rss / mib, 1),
        "uss_mib": round(info.uss / mib, 1),
    }


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="reverts of each kind (median)")
    parser.add_argument("--rounds", type=int, default=3, help="load rounds per mode and target")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one load round")
    parser.add_argument("--rate", type=float, default=200.0, help="fixed-rate load, req/s")
    parser.add_argument("--connections", type=int, default=8, help="closed-loop connections")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--mirror-only", action="store_true", help="only the mirror scenario (no rollbacks)"
    )
    parser.add_argument(
        "--agent-mirror-only",
        action="store_true",
        help="only the real agent's mirror step, A-B-A (no rollbacks)",
    )
    parser.add_argument("--mirror-sleep", type=float, default=2.0, help="the candidate's delay")
    args = parser.parse_args()
    if args.mirror_only and args.agent_mirror_only:
        parser.error("--mirror-only and --agent-mirror-only: choose one")
    doc: dict[str, Any] = {"benchmark": "serving", "machine": machine(), "args": vars(args)}
    started = time.monotonic()
    with world("serving", keep=args.keep) as w:
        print(f"serving benchmark in {w.root}", file=sys.stderr)
        w.release("1.0.0", "the stable one")
        w.repo.ok("mark-stable", "iris", "1.0.0")
        w.repo.ok("deploy", "iris", "--no-watch")
        # A few thousand requests first: both sides warm (bentoml's first calls are slower).
        finish_loadgen(loadgen(w, w.url, connections=8, duration=3))
        if not args.agent_mirror_only:
            print("  mirror cost ...", file=sys.stderr)
            doc["mirror"] = mirror_cost(
                w, args.rounds, args.seconds, args.rate, args.connections, args.mirror_sleep
            )
        if not args.mirror_only:
            # Releases 2.0.0 as the mirrored candidate and aborts it: 1.0.0 alone after.
            doc["agent_mirror"] = agent_mirror_cost(w, args)
        if not (args.mirror_only or args.agent_mirror_only):
            print("  endpoint cost ...", file=sys.stderr)
            cost = proxy_cost(w, args.rounds, args.seconds, args.rate, args.connections)
            memory = agent_memory(w)
            print("  rollbacks ...", file=sys.stderr)
            back, _ = rollback(w, args.runs, 3)
            memory_after = agent_memory(w)
            doc.update(proxy=cost, rollback=back, agent_memory=[memory, memory_after])
    # A mirror scenario alone keeps the full run's results file as it is.
    name = "serving"
    if args.mirror_only:
        name = "serving_mirror"
    elif args.agent_mirror_only:
        name = "serving_agent_mirror"
    return finish(name, doc, started, report)


def mirror_rows(m: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    mirrored = sum(m["counts"]["mirror"]["mirrored"].values())
    return [
        (
            f"mirror to a {m['sleep_s']:g} s candidate: added p50, fixed {m['rate']:g} req/s "
            f"({m['fixed_rate_plain_p50_ms']:.2f} → {m['fixed_rate_mirror_p50_ms']:.2f} ms)",
            f"{m['added_p50_ms']:+.3f} ms",
            "≤ 1 ms",
            m["added_p50_ms"] <= 1.0,
        ),
        (
            f"mirror: throughput, {m['connections']} connections closed loop "
            f"({m['closed_loop_plain_throughput']:.0f} → "
            f"{m['closed_loop_mirror_throughput']:.0f} req/s)",
            f"{m['throughput_ratio']:.1%} of no mirror",
            "≥ 90%",
            m["throughput_ratio"] >= 0.9,
        ),
        (
            "  copies the candidate answered / dropped (queue full)",
            f"{mirrored} / {m['counts']['mirror']['dropped']}",
            "",
            None,
        ),
        (
            "failed user requests with and without the mirror",
            str(m["fixed_rate_errors"] + m["closed_loop_errors"]),
            "0",
            m["fixed_rate_errors"] + m["closed_loop_errors"] == 0,
        ),
    ]


def report(doc: dict[str, Any]) -> str:
    if "proxy" not in doc:
        rows = mirror_rows(doc["mirror"]) if "mirror" in doc else []
        rows += agent_mirror_rows(doc["agent_mirror"]) if "agent_mirror" in doc else []
        passed = sum(1 for r in rows if r[3] is True)
        total = sum(1 for r in rows if r[3] is not None)
        which = "mirror only" if "mirror" in doc else "agent mirror step only"
        return (
            f"## Serving ({which})\n\n{table(rows)}\n\n{passed}/{total} targets met. "
            f"Load average {doc['machine']['loadavg_at_start']} at start, "
            f"{doc['loadavg_at_end']} at end ({doc['machine']['cpus']} CPUs)."
        )
    p, b = doc["proxy"], doc["rollback"]
    mem = max(m["rss_mib"] for m in doc["agent_memory"])
    uss = max(m["uss_mib"] for m in doc["agent_memory"])
    cold_budget = b["server_start_median"] + 1.0
    rows = [
        (
            "warm revert → first answer from stable (median)",
            f"{b['warm_median']:.3f} s",
            "≤ 1.0 s",
            b["warm_median"] <= 1.0,
        ),
        (
            "cold revert → first answer from stable (median)",
            f"{b['cold_median']:.3f} s",
            f"≤ server start + 1 s = {cold_budget:.3f} s",
            b["cold_median"] <= cold_budget,
        ),
        (
            "  baseline: plain `bentoml serve` → /readyz, same probe load (median)",
            f"{b['server_start_median']:.3f} s",
            "",
            None,
        ),
        (
            "failed requests during the reverts",
            str(b["failed_requests"]),
            "0",
            b["failed_requests"] == 0,
        ),
        (
            f"added p50, fixed {p['rate']:g} req/s "
            f"({p['fixed_rate_direct_p50_ms']:.2f} → {p['fixed_rate_endpoint_p50_ms']:.2f} ms)",
            f"{p['fixed_rate_added_p50_ms']:+.3f} ms",
            "≤ 1 ms",
            p["fixed_rate_added_p50_ms"] <= 1.0,
        ),
        (
            f"added p95, fixed {p['rate']:g} req/s "
            f"({p['fixed_rate_direct_p95_ms']:.2f} → {p['fixed_rate_endpoint_p95_ms']:.2f} ms)",
            f"{p['fixed_rate_added_p95_ms']:+.3f} ms",
            "",
            None,
        ),
        (
            f"throughput, {p['connections']} connections closed loop "
            f"({p['closed_loop_direct_throughput']:.0f} → "
            f"{p['closed_loop_endpoint_throughput']:.0f} req/s)",
            f"{p['throughput_ratio']:.1%} of direct",
            "≥ 90%",
            p["throughput_ratio"] >= 0.9,
        ),
        (
            f"added p50 / p95 at saturation ({p['connections']} connections)",
            f"{p['closed_loop_added_p50_ms']:+.3f} / {p['closed_loop_added_p95_ms']:+.3f} ms",
            "",
            None,
        ),
        (
            "failed requests during the load rounds",
            str(p["fixed_rate_errors"] + p["closed_loop_errors"]),
            "0",
            p["fixed_rate_errors"] + p["closed_loop_errors"] == 0,
        ),
        ("agent memory (max RSS / USS)", f"{mem:.1f} / {uss:.1f} MiB", "≤ 80 MiB", mem <= 80),
        *mirror_rows(doc["mirror"]),
        *(agent_mirror_rows(doc["agent_mirror"]) if "agent_mirror" in doc else []),
    ]
    passed = sum(1 for r in rows if r[3] is True)
    total = sum(1 for r in rows if r[3] is not None)
    summary = (
        f"Serving benchmark: {passed}/{total} targets met. A warm rollback reached the stable "
        f"version in {b['warm_median']:.2f} s (median of {len(b['warm'])}); a cold one in "
        f"{b['cold_median']:.2f} s against a plain server start of "
        f"{b['server_start_median']:.2f} s measured in the same run. The endpoint added "
        f"{p['fixed_rate_added_p50_ms']:.2f} ms at p50 under a fixed {p['rate']:g} req/s and "
        f"kept {p['throughput_ratio']:.0%} of the direct throughput with "
        f"{p['connections']} connections; the agent held {mem:.0f} MiB RSS. Load average "
        f"{doc['machine']['loadavg_at_start']} at start, {doc['loadavg_at_end']} at end "
        f"({doc['machine']['cpus']} CPUs)."
    )
    return "## Serving\n\n" + table(rows) + "\n\n" + summary


if __name__ == "__main__":
    sys.exit(main())
