"""The strategy benchmark (docs/ARCHITECTURE.md, "Deployment strategies"): how many users a
bad release reaches under each deployment strategy, on the real iris model and real bentoml
servers on 127.0.0.1, in a throwaway RELEASECTL_HOME.

One run deploys the same kind of bad candidate (`faults.yaml: error_ratio: 0.2`, every fifth
predict call fails) three times over the stable 1.0.0, under a steady load (a load generator in
another process, --rate req/s, at least --min-requests user requests per strategy):

- blue-green: the candidate answers every request once it is ready;
- canary: a first weight step of 10%, then 50%, then 100%;
- canary with a mirror step: copies of /predict go to the candidate, every user answered by
  1.0.0, then 10%.

Each time `deploy --no-watch` then `releasectl watch iris --json`, which drives the steps,
fails the candidate, sets its weight to 0, switches back and reverts. Counted from the client's
own trace: the user requests that failed from the deploy until the endpoint served 1.0.0 alone
(the last answer from the candidate), and in which step the verdict failed. Targets: with a
mirror step zero failed user requests and the verdict failed during the mirror step; with a
10% first step at most a fifth of blue-green's failed requests.

    python benchmarks/strategy_bench.py [--rate 50] [--min-requests 500] [--interval 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from servinglib import (
    RELEASECTL_BIN,
    World,
    finish,
    finish_loadgen,
    loadgen,
    machine,
    read_trace,
    table,
    world,
)

BAD = "error_ratio: 0.2\n"
STABLE = "1.0.0"


def strategies(interval: float) -> dict[str, dict[str, Any]]:
    step = f"{interval * 5:g}s"  # long enough that only a failure ends a step early
    return {
        "bluegreen": {"kind": "bluegreen"},
        "canary 10%": {
            "kind": "canary",
            "steps": [{"weight": 10, "for": step}, {"weight": 50, "for": step}],
        },
        "canary with mirror": {
            "kind": "canary",
            "mirror_routes": ["/predict"],
            "steps": [{"mirror": 100, "for": step}, {"weight": 10, "for": step}],
        },
    }


def analysis(interval: float) -> dict[str, Any]:
    return {
        "interval": f"{interval:g}s",
        "bake": f"{interval * 15:g}s",
        "min_requests": 5,
        "failure_limit": 1,
        "inconclusive_limit": 2,
        "consecutive_error_limit": 2,
        "metrics": {"error_rate": {"max": 0.05}, "latency_ms": {"p95": 250}},
    }


def watch(w: World) -> tuple[int, list[tuple[float, dict[str, Any]]], str]:
    """`releasectl watch iris --json`: its exit, every stdout line with its arrival time."""
    proc = w.spawn(
        [RELEASECTL_BIN, "watch", "iris", "--json"],
        cwd=w.repo.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[tuple[float, dict[str, Any]]] = []
    err: list[str] = []
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None and stderr is not None
    reader = threading.Thread(target=lambda: err.append(stderr.read()), daemon=True)
    reader.start()
    for line in stdout:
        if line.strip():
            lines.append((time.monotonic(), json.loads(line)))
    code = proc.wait(timeout=300)
    reader.join(timeout=10)
    return code, lines, "".join(err)


def trial(
    w: World, name: str, strategy: dict[str, Any], version: str, args: argparse.Namespace
) -> dict[str, Any]:
    w.edit_manifest("analysis", analysis(args.interval))
    w.edit_manifest("deploy", {"strategy": strategy})
    w.repo.write("model-releases/iris/faults.yaml", BAD)
    w.repo.commit(f"iris: a bad build ({version}, {name})")
    w.repo.ok("release", "iris", version)
    trace = w.root / f"trace-{version}.txt"
    load = loadgen(w, w.url, connections=4, duration=0, rate=args.rate, trace=trace)
    time.sleep(2.0)  # steady load on 1.0.0 first
    t_deploy = time.monotonic()
    w.repo.ok("deploy", "iris", "--no-watch")
    code, lines, err = watch(w)
    # Keep the load on until the strategy has had its share of user requests since the deploy.
    while sum(1 for r in read_trace(trace) if r[0] >= t_deploy) < args.min_requests:
        time.sleep(0.5)
    time.sleep(1.0)
    summary = finish_loadgen(load, interrupt=True)
    rows = [r for r in read_trace(trace) if r[0] >= t_deploy]
    from_candidate = [r for r in rows if r[3] == version]
    t_stable_only = max((r[1] for r in from_candidate), default=t_deploy)
    window = [r for r in rows if r[0] <= t_stable_only]
    last = lines[-1][1] if lines else {}
    verdict = last.get("verdict") or {}
    failed = [
        m
        for _, m in lines
        if m.get("metric") == verdict.get("metric") and m.get("status") == "failed"
    ]
    step = failed[-1].get("step") if failed else None
    return {
        "strategy": name,
        "version": version,
        "watch_exit": code,
        "verdict": verdict.get("outcome"),
        "verdict_message": verdict.get("message"),
        "action": last.get("action"),
        "caught": code == 4 and verdict.get("outcome") == "failed",
        "failed_in_step": step,
        "user_requests": len(rows),
        "window_requests": len(window),
        "window_failed": sum(1 for r in window if r[2] != 200),
        "answered_by_candidate": len(from_candidate),
        "after_failed": sum(1 for r in rows if r[0] > t_stable_only and r[2] != 200),
        "stable_only_after_s": round(t_stable_only - t_deploy, 3),
        "watch_stderr": err[-2000:] if code != 4 else "",
        "load": summary,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=50.0, help="steady load, req/s")
    parser.add_argument("--min-requests", type=int, default=500, help="user requests per strategy")
    parser.add_argument("--interval", type=float, default=2.0, help="analysis interval, s")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    doc: dict[str, Any] = {"benchmark": "strategy", "machine": machine(), "args": vars(args)}
    started = time.monotonic()
    with world("strategy", keep=args.keep) as w:
        print(f"strategy benchmark in {w.root}", file=sys.stderr)
        w.release(STABLE, "the stable one")
        w.repo.ok("mark-stable", "iris", STABLE)
        w.repo.ok("deploy", "iris", "--no-watch")
        finish_loadgen(loadgen(w, w.url, connections=4, duration=2))
        trials = []
        for major, (name, strategy) in enumerate(strategies(args.interval).items(), 2):
            trials.append(trial(w, name, strategy, f"{major}.0.0", args))
            t = trials[-1]
            print(
                f"  {name}: {t['window_failed']} of {t['window_requests']} user requests failed "
                f"until stable-only serving ({t['user_requests']} in all), verdict "
                f"{t['verdict']} in step {t['failed_in_step']}",
                file=sys.stderr,
            )
            # The revert brought back 1.0.0's manifest; the faults file goes for the next one.
            Path(w.repo.path / "model-releases/iris/faults.yaml").unlink(missing_ok=True)
    doc["trials"] = trials
    return finish("strategy", doc, started, report)


def report(doc: dict[str, Any]) -> str:
    by = {t["strategy"]: t for t in doc["trials"]}
    rows: list[tuple[str, str, str, bool | None]] = []
    for name, t in by.items():
        rows.append(
            (
                f"[{name}] verdict",
                f"{t['verdict']} ({t['action']}), exit {t['watch_exit']}",
                "failed and reverted",
                t["caught"],
            )
        )
        rows.append(
            (
                f"[{name}] user requests",
                f"{t['user_requests']}",
                f"≥ {doc['args']['min_requests']}",
                t["user_requests"] >= doc["args"]["min_requests"],
            )
        )
        rows.append(
            (
                f"[{name}] failed user requests, deploy → stable-only serving",
                f"{t['window_failed']} of {t['window_requests']} "
                f"({t['answered_by_candidate']} answered by the candidate)",
                "",
                None,
            )
        )
    blue, canary, mirror = (by.get(k) for k in strategies(doc["args"]["interval"]))
    if blue and canary:
        bound = blue["window_failed"] / 5
        rows.append(
            (
                "[canary 10%] failed user requests vs blue-green",
                f"{canary['window_failed']} vs {blue['window_failed']}",
                f"≤ a fifth ({bound:g})",
                canary["window_failed"] <= bound,
            )
        )
    if mirror:
        rows.append(
            (
                "[canary with mirror] failed user requests",
                f"{mirror['window_failed']}",
                "0",
                mirror["window_failed"] == 0 and mirror["answered_by_candidate"] == 0,
            )
        )
        step = mirror["failed_in_step"] or {}
        rows.append(
            (
                "[canary with mirror] the verdict failed during",
                json.dumps(step) if step else "no step recorded",
                "the mirror step",
                step.get("kind") == "mirror",
            )
        )
    passed = sum(1 for r in rows if r[3] is True)
    total = sum(1 for r in rows if r[3] is not None)
    summary = (
        f"Strategy benchmark: {passed}/{total} targets met (error_ratio 0.2 candidate, steady "
        f"load {doc['args']['rate']:g} req/s, interval {doc['args']['interval']:g} s). Load "
        f"average {doc['machine']['loadavg_at_start']} at start, {doc['loadavg_at_end']} at end."
    )
    return "## Strategies\n\n" + table(rows) + "\n\n" + summary


if __name__ == "__main__":
    sys.exit(main())
