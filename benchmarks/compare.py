"""Two commits side by side: run one benchmark in a checkout of each, in the same invocation,
and print every figure both report with the ratio new/old.

    scripts/bench --compare OLD_REF [--registry|--serving|--analysis] [options for that script]

The old commit is checked out with `git worktree add --detach` into a temporary folder and
runs its own copy of the benchmark against its own package (PYTHONPATH), so a change that
moves modules is measured as users would get it. The two runs alternate (old, new, old, new
for `--rounds 2`) so that a machine that gets busier half-way does not favour one side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {
    "registry": "registry_bench.py",
    "serving": "serving_bench.py",
    "analysis": "analysis_bench.py",
}
# Keys of the figures worth comparing: durations and rates, not settings or sizes.
FIGURE_SUFFIXES = ("_s", "_ms", "_seconds", "_mb", "_mib", "rps", "p50", "p95", "p99")


def figures(node: object, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf whose key names a measurement, flattened to a dotted path."""
    out: dict[str, float] = {}
    if isinstance(node, dict):
        label = node.get("command") or node.get("name") or node.get("case")
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(label, str) and not isinstance(value, dict | list):
                path = f"{prefix}[{label}].{key}" if prefix else f"[{label}].{key}"
            if isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                if str(key).lower().endswith(FIGURE_SUFFIXES):
                    out[path] = float(value)
            else:
                out.update(figures(value, path))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            out.update(figures(item, f"{prefix}[{i}]"))
    return out


def run(checkout: Path, script: str, args: list[str], results: Path) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(checkout / "toolkit"))
    cmd = [sys.executable, str(checkout / "benchmarks" / script), *args]
    if script == "registry_bench.py":
        cmd += ["--results", str(results)]
        subprocess.run(cmd, cwd=checkout, env=env, check=True)
        return figures(json.loads(results.read_text()))
    # The other two write to their own checkout's results folder: keep the committed file.
    written = checkout / "benchmarks" / "results" / script.replace("_bench.py", ".json")
    kept = written.read_bytes() if written.exists() else None
    try:
        subprocess.run(cmd, cwd=checkout, env=env, check=True)
        return figures(json.loads(written.read_text()))
    finally:
        if kept is not None:
            written.write_bytes(kept)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", help="the commit to compare against (e.g. HEAD~5, a tag)")
    parser.add_argument("--bench", choices=sorted(SCRIPTS), default="registry")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each side, alternating")
    # Everything after `--` (or not ours) goes to the benchmark.
    opts, rest = parser.parse_known_args()
    script = SCRIPTS[opts.bench]
    rest = [arg for arg in rest if arg != "--"]
    with tempfile.TemporaryDirectory(prefix="releasectl-compare-") as tmp:
        old_tree = Path(tmp) / "old"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(old_tree), opts.old],
            cwd=ROOT,
            check=True,
        )
        cache = ROOT / "benchmarks" / ".cache"
        if cache.is_dir() and not (old_tree / "benchmarks" / ".cache").exists():
            # The generated registries are inputs, not code: both sides read the same ones.
            (old_tree / "benchmarks" / ".cache").symlink_to(cache)
        try:
            sides: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
            for i in range(opts.rounds):
                for side, tree in (("old", old_tree), ("new", ROOT)):
                    print(f"== {opts.bench}: {side} ({i + 1}/{opts.rounds})", file=sys.stderr)
                    res = Path(tmp) / f"{side}-{i}.json"
                    sides[side].append(run(tree, script, rest, res))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT)
    old = median_figures(sides["old"])
    new = median_figures(sides["new"])
    print(f"| figure ({opts.bench}) | old {opts.old} | new HEAD | new/old |")
    print("|---|---:|---:|---:|")
    for key in sorted(old.keys() & new.keys()):
        ratio = new[key] / old[key] if old[key] else float("nan")
        print(f"| {key} | {old[key]:.4g} | {new[key]:.4g} | {ratio:.2f} |")
    return 0


def median_figures(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = set.intersection(*(set(r) for r in runs)) if runs else set()
    return {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in keys}


if __name__ == "__main__":
    sys.exit(main())
