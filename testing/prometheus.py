"""A real Prometheus (Debian's package) for the Kubernetes analysis tests, scraping
bento servers that stand in for a cluster's pods: each scrape target carries the
`model` and `version` labels that a cluster's Prometheus relabels from the pod labels."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from releasectl.analysis.promql import MODEL_LABEL
from releasectl.render.analysis_template import VERSION_LABEL
from testing.processes import stop

DATA_DEADLINE_S = 90.0


def prometheus_values(url: str, promql: str) -> list[float]:
    """An instant query's values, as Argo's Prometheus provider hands them to the
    conditions: one float per series of the vector, NaN as NaN."""
    answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    assert answer["data"]["resultType"] == "vector", answer
    return [float(item["value"][1]) for item in answer["data"]["result"]]


@contextmanager
def prometheus_scraping(
    home: Path,
    port: int,
    served: dict[str, str],
    ready_when: Iterable[str],
    *,
    model: str = "iris",
    strangers: Iterable[tuple[str, str, str]] = (),
    scrape_interval: str = "1s",
) -> Iterator[str]:
    """Prometheus on 127.0.0.1:`port` scraping every server of `served` (version ->
    base URL) every `scrape_interval`, labelled with `model` and its version, and each
    of `strangers` (another model, a version, a base URL) with theirs; yields its URL
    once every query of `ready_when` has a number (a full rate() window of scrapes)."""
    binary = shutil.which("prometheus")
    assert binary, "the tests need Debian's prometheus package (scripts/test installs it)"
    home.mkdir(parents=True, exist_ok=True)
    pods = [(model, version, base) for version, base in served.items()] + list(strangers)
    targets = "".join(
        f"      - targets: ['{base.removeprefix('http://')}']\n"
        f"        labels: {{{MODEL_LABEL}: '{name}', {VERSION_LABEL}: '{version}'}}\n"
        for name, version, base in pods
    )
    config = home / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {scrape_interval}, evaluation_interval: {scrape_interval}}}\n"
        "scrape_configs:\n"
        "  - job_name: pods\n"
        "    static_configs:\n" + targets
    )
    log_path = home / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, list(ready_when), proc, log_path)
        yield url
    finally:
        stop(proc)


def _wait_for(url: str, queries: list[str], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DATA_DEADLINE_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"prometheus exited:\n{log.read_text()[-2000:]}"
        try:
            # 503 until the TSDB is open: ask the readiness endpoint before querying.
            ready = httpx.get(f"{url}/-/ready", timeout=5).status_code == 200
            if ready and all(
                any(not math.isnan(v) for v in prometheus_values(url, q)) for q in queries
            ):
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.2)
    raise AssertionError(
        f"prometheus had no data for every query within {DATA_DEADLINE_S:g}s:\n"
        f"{log.read_text()[-2000:]}"
    )
