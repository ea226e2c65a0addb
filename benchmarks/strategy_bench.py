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
(the last answer from the candidate) and the verdict was in, and in which step the verdict
failed; --trials of each, by turns. Targets: with a mirror step zero failed user requests and
the verdict failed during the mirror step; with a 10% first step at most a fifth of
blue-green's failed requests.

Failed requests are few (a 10% share fails every fifth of its requests), so one trial is
noisy: the ratio is taken over the sums of --trials (3 by default).

    python benchmarks/strategy_bench.py [--rate 50] [--min-requests 500] [--interval 2]
                                        [--trials 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from servinglib import (
    World,
    finish,
    finish_loadgen,
    loadgen,
    machine,
    read_trace,
    table,
    watch_lines,
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
    code, lines, err, _ = watch_lines(w, "iris")
    t_verdict = time.monotonic()
    # Keep the load on until the strategy has had its share of user requests since the deploy
    # (the trace is written when the load generator stops: counted, and reported, after).
    time.sleep(max(1.0, t_deploy + 1.1 * args.min_requests / args.rate - time.monotonic()))
    summary = finish_loadgen(load, interrupt=True)
    rows = [r for r in read_trace(trace) if r[0] >= t_deploy]
    from_candidate = [r for r in rows if r[3] == version]
    t_stable_only = max((r[1] for r in from_candidate), default=t_deploy)
    # Until stable alone serves and the verdict is in (with a mirror step stable always
    # serves: the window is then the whole watch).
    window = [r for r in rows if r[0] <= max(t_stable_only, t_verdict)]
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
    parser.add_argument("--min-requests", type=int, default=500, help="user requests per trial")
    parser.add_argument("--interval", type=float, default=2.0, help="analysis interval, s")
    parser.add_argument("--trials", type=int, default=3, help="bad releases per strategy")
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
        major = 2
        for n in range(args.trials):
            # By turns, so that a machine busier in one part of the run weighs on all three.
            for name, strategy in strategies(args.interval).items():
                trials.append(trial(w, name, strategy, f"{major}.0.0", args))
                major += 1
                t = trials[-1]
                print(
                    f"  {name} ({n + 1}/{args.trials}): {t['window_failed']} of "
                    f"{t['window_requests']} user requests failed until stable-only serving "
                    f"({t['user_requests']} in all), verdict {t['verdict']} in step "
                    f"{t['failed_in_step']}",
                    file=sys.stderr,
                )
    doc["trials"] = trials
    doc["summary"] = summarise(trials)
    return finish("strategy", doc, started, report)


def summarise(trials: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for t in trials:
        s = out.setdefault(
            t["strategy"],
            {
                "trials": 0,
                "caught": 0,
                "user_requests_min": None,
                "window_failed": 0,
                "window_requests": 0,
                "answered_by_candidate": 0,
                "after_failed": 0,
                "steps": [],
            },
        )
        s["trials"] += 1
        s["caught"] += int(t["caught"])
        fewest = s["user_requests_min"]
        s["user_requests_min"] = (
            t["user_requests"] if fewest is None else min(fewest, t["user_requests"])
        )
        for key in ("window_failed", "window_requests", "answered_by_candidate", "after_failed"):
            s[key] += t[key]
        s["steps"].append((t["failed_in_step"] or {}).get("kind"))
    return out


def report(doc: dict[str, Any]) -> str:
    by = doc["summary"]
    n = doc["args"]["trials"]
    rows: list[tuple[str, str, str, bool | None]] = []
    for name, s in by.items():
        rows.append(
            (
                f"[{name}] verdicts",
                f"{s['caught']} of {s['trials']} failed and reverted",
                f"all {s['trials']}",
                s["caught"] == s["trials"],
            )
        )
        rows.append(
            (
                f"[{name}] user requests per trial (fewest)",
                f"{s['user_requests_min']}",
                f"≥ {doc['args']['min_requests']}",
                (s["user_requests_min"] or 0) >= doc["args"]["min_requests"],
            )
        )
        rows.append(
            (
                f"[{name}] failed user requests, deploy → stable alone + verdict ({n} trials)",
                f"{s['window_failed']} of {s['window_requests']} "
                f"({s['answered_by_candidate']} answered by the candidate; "
                f"{s['after_failed']} failed after)",
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
                "[canary with mirror] failed user requests, answers from the candidate",
                f"{mirror['window_failed']}, {mirror['answered_by_candidate']}",
                "0, 0",
                mirror["window_failed"] == 0 and mirror["answered_by_candidate"] == 0,
            )
        )
        rows.append(
            (
                "[canary with mirror] the step each verdict failed in",
                ", ".join(str(k) for k in mirror["steps"]),
                "mirror",
                all(k == "mirror" for k in mirror["steps"]),
            )
        )
    passed = sum(1 for r in rows if r[3] is True)
    total = sum(1 for r in rows if r[3] is not None)
    summary = (
        f"Strategy benchmark: {passed}/{total} targets met ({n} trials per strategy by turns, "
        f"error_ratio 0.2 candidate, steady load {doc['args']['rate']:g} req/s, interval "
        f"{doc['args']['interval']:g} s). Load average {doc['machine']['loadavg_at_start']} at "
        f"start, {doc['loadavg_at_end']} at end."
    )
    return "## Strategies\n\n" + table(rows) + "\n\n" + summary


if __name__ == "__main__":
    sys.exit(main())
