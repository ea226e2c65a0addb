"""The analysis benchmark (issue 4), on the real iris model and real bentoml servers on
127.0.0.1, in a throwaway RELEASECTL_HOME.

Under a steady load (a load generator in another process, --rate req/s), a release with
`faults.yaml: error_ratio: 0.2` is deployed (`deploy --no-watch`) and `releasectl watch` is
started at once; watch fails it, reverts and switches back to the stable 1.0.0. Timestamps are
the client's: the first answer from the bad version (t_bad), the moment watch reports the
failure (the arrival on watch's stdout of the failed measurement that exceeds failure_limit;
the verdict line itself is only printed after the revert), the first answer from 1.0.0 again
(t_back). Measured: time to detection (t_detect - t_bad, also in intervals and from the start of
watch), time until the stable version serves (t_back - t_bad), failed requests in the bad
window, failed requests sent after the switch. Targets, with interval 2s and failure_limit 1:
detection <= 2 intervals, recovery <= detection + 1 s, zero failed requests after the switch.
The same is reported at interval 5s. Medians over --trials.

    python benchmarks/analysis_bench.py [--trials 3] [--intervals 2 5] [--rate 50]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from servinglib import (
    RELEASECTL_BIN,
    World,
    finish,
    finish_loadgen,
    loadgen,
    machine,
    median,
    read_trace,
    table,
    world,
)


def analysis(interval: float) -> dict[str, Any]:
    return {
        "interval": f"{interval:g}s",
        "bake": f"{interval * 15:g}s",  # long enough that only a failure ends the watch
        "min_requests": 5,
        "failure_limit": 1,
        "inconclusive_limit": 2,
        "consecutive_error_limit": 2,
        "metrics": {"error_rate": {"max": 0.05}, "latency_ms": {"p95": 250}},
    }


def watch_lines(w: World) -> tuple[int, list[tuple[float, dict[str, Any]]], str, float]:
    """Runs `releasectl watch iris --json`; every stdout line with its arrival time."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    proc = w.spawn(
        [RELEASECTL_BIN, "watch", "iris", "--json"],
        cwd=w.repo.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[tuple[float, dict[str, Any]]] = []
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            lines.append((time.monotonic(), json.loads(line)))
    code = proc.wait(timeout=300)
    reader.join(timeout=10)
    return code, lines, "".join(err), t0


def trial(w: World, interval: float, version: str, rate: float) -> dict[str, Any]:
    from serving_helpers import set_analysis, set_faults

    set_faults(w.repo, "error_ratio: 0.2\n", f"iris: a bad build ({version})")
    set_analysis(w.repo, analysis(interval))
    w.repo.ok("release", "iris", version)
    trace = w.root / f"trace-{version}.txt"
    load = loadgen(w, w.url, connections=4, duration=0, rate=rate, trace=trace)
    time.sleep(2.0)  # steady load on 1.0.0 first
    t_deploy = time.monotonic()
    w.repo.ok("deploy", "iris", "--no-watch")
    code, lines, err, t_watch = watch_lines(w)
    time.sleep(2.0)  # steady load on 1.0.0 again
    summary = finish_loadgen(load, interrupt=True)
    if code != 4:
        raise RuntimeError(f"watch exited {code}, expected 4: {err}")
    verdict = lines[-1][1]["verdict"]
    failed = [
        (t, m)
        for t, m in lines
        if "metric" in m and m["metric"] == verdict["metric"] and m["status"] == "failed"
    ]
    t_detect = failed[-1][0]  # the measurement that took failures past failure_limit
    rows = read_trace(trace)
    t_bad = next(r[1] for r in rows if r[1] >= t_deploy and r[3] == version)
    t_back = next(r[1] for r in rows if r[1] > t_bad and r[3] == "1.0.0")
    bad_window = [r for r in rows if t_bad <= r[1] < t_back]
    after = [r for r in rows if r[0] >= t_back]
    detection = t_detect - t_bad
    return {
        "version": version,
        "interval": interval,
        "verdict": verdict,
        "action": lines[-1][1].get("action"),
        "watch_exit": code,
        "detection_s": round(detection, 3),
        "detection_intervals": round(detection / interval, 2),
        "detection_from_watch_start_s": round(t_detect - t_watch, 3),
        "watch_start_after_first_bad_s": round(t_watch - t_bad, 3),
        "recovery_s": round(t_back - t_bad, 3),
        "switch_after_detection_s": round(t_back - t_detect, 3),
        "bad_window_requests": len(bad_window),
        "bad_window_failed": sum(1 for r in bad_window if r[2] != 200),
        "after_switch_requests": len(after),
        "after_switch_failed": sum(1 for r in after if r[2] != 200),
        "after_switch_from_bad_version": sum(1 for r in after if r[3] == version),
        "failed_before_bad": sum(1 for r in rows if r[1] < t_bad and r[2] != 200),
        "load": summary,
        "measurements": [{"at_s": round(t - t_bad, 3), **m} for t, m in lines if "metric" in m],
    }


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("detection_s", "detection_intervals", "detection_from_watch_start_s", "recovery_s")
    out: dict[str, Any] = {k: round(median([t[k] for t in trials]), 3) for k in keys}
    out["switch_after_detection_s"] = round(
        median([t["switch_after_detection_s"] for t in trials]), 3
    )
    out["bad_window_failed"] = sum(t["bad_window_failed"] for t in trials)
    out["bad_window_requests"] = sum(t["bad_window_requests"] for t in trials)
    out["after_switch_failed"] = sum(t["after_switch_failed"] for t in trials)
    out["after_switch_requests"] = sum(t["after_switch_requests"] for t in trials)
    out["trials"] = len(trials)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="bad releases per interval")
    parser.add_argument("--intervals", type=float, nargs="+", default=[2.0, 5.0])
    parser.add_argument("--rate", type=float, default=50.0, help="steady load, req/s")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    doc: dict[str, Any] = {"benchmark": "analysis", "machine": machine(), "args": vars(args)}
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    with world("analysis", keep=args.keep) as w:
        print(f"analysis benchmark in {w.root}", file=sys.stderr)
        w.release("1.0.0", "the stable one")
        w.repo.ok("mark-stable", "iris", "1.0.0")
        w.repo.ok("deploy", "iris", "--no-watch")
        finish_loadgen(loadgen(w, w.url, connections=4, duration=2))
        major = 2
        for interval in args.intervals:
            trials = []
            for i in range(args.trials):
                trials.append(trial(w, interval, f"{major}.0.0", args.rate))
                major += 1
                t = trials[-1]
                print(
                    f"  interval {interval:g}s trial {i + 1}/{args.trials}: detection "
                    f"{t['detection_s']:.2f} s, recovery {t['recovery_s']:.2f} s, failed after "
                    f"switch {t['after_switch_failed']}",
                    file=sys.stderr,
                )
            results[f"{interval:g}s"] = {"summary": summarise(trials), "trials": trials}
    doc["results"] = results
    return finish("analysis", doc, started, report)


def report(doc: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, bool | None]] = []
    parts = []
    for name, result in doc["results"].items():
        s = result["summary"]
        interval = float(name.rstrip("s"))
        gated = interval == 2.0  # the targets are stated for interval 2s; 5s is reported
        detect_ok = s["detection_s"] <= 2 * interval if gated else None
        recover_ok = s["recovery_s"] <= s["detection_s"] + 1.0 if gated else None
        after_ok = s["after_switch_failed"] == 0 if gated else None
        rows += [
            (
                f"[{name}] time to detection (median, from first bad answer)",
                f"{s['detection_s']:.2f} s = {s['detection_intervals']:.2f} intervals",
                f"≤ 2 intervals = {2 * interval:g} s",
                detect_ok,
            ),
            (
                f"[{name}]   of which: from the start of `watch`",
                f"{s['detection_from_watch_start_s']:.2f} s",
                "",
                None,
            ),
            (
                f"[{name}] time until stable serves (median, from first bad answer)",
                f"{s['recovery_s']:.2f} s (detection + {s['switch_after_detection_s']:.2f} s)",
                "≤ detection + 1 s",
                recover_ok,
            ),
            (
                f"[{name}] failed requests during the bad window (all trials)",
                f"{s['bad_window_failed']} of {s['bad_window_requests']}",
                "(20% injected)",
                None,
            ),
            (
                f"[{name}] failed requests after the switch (all trials)",
                f"{s['after_switch_failed']} of {s['after_switch_requests']}",
                "0",
                after_ok,
            ),
        ]
        parts.append(
            f"at interval {name} detection took {s['detection_s']:.2f} s "
            f"({s['detection_intervals']:.2f} intervals; {s['detection_from_watch_start_s']:.2f}"
            f" s after watch started) and the stable version served again "
            f"{s['switch_after_detection_s']:.2f} s after detection, with "
            f"{s['after_switch_failed']} failed requests after the switch"
        )
    passed = sum(1 for r in rows if r[3] is True)
    total = sum(1 for r in rows if r[3] is not None)
    summary = (
        f"Analysis benchmark: {passed}/{total} targets met (medians of "
        f"{doc['args']['trials']} trials, steady load {doc['args']['rate']:g} req/s, "
        f"error_ratio 0.2, failure_limit 1): " + "; ".join(parts) + ". Load average "
        f"{doc['machine']['loadavg_at_start']} at start, {doc['loadavg_at_end']} at end."
    )
    return "## Analysis (issue 4)\n\n" + table(rows) + "\n\n" + summary


if __name__ == "__main__":
    sys.exit(main())
