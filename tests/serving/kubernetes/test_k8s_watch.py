"""`releasectl watch` for a kubernetes-target model judges the version the branch
declares through Prometheus, by the `version` label a cluster's pods carry, and acts
through Git alone: a failure is reverted and pushed (Argo CD syncs the stable state
back), a pass is marked stable; nothing is started on this machine.

No API server or Argo controller runs here: the "cluster" is a real bento server per
version, scraped by a real Prometheus that labels each with its version as a cluster's
relabelling would (testing/prometheus.py)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from releasectl.bundles.archive import extract
from releasectl.loopback import HOST, free_port
from releasectl.manifest.edits import edit
from releasectl.manifest.schema import load
from releasectl.names import manifest_path
from releasectl.render.analysis_template import queries
from testing.bentos import iris_registry, serving, set_analysis, set_faults
from testing.cli import watch
from testing.processes import bentoml_processes, state_home
from testing.prometheus import prometheus_scraping
from testing.repos import Repo, git, new_repo
from testing.traffic import Load

pytestmark = pytest.mark.slow

MANIFEST = manifest_path("iris")

STABLE, HEALTHY, FAULTY = "1.0.0", "2.0.0", "3.0.0"


def analysis(prometheus: str) -> dict[str, Any]:
    return {
        "interval": "2s",
        "bake": "6s",
        "min_requests": 5,
        "failure_limit": 1,
        "inconclusive_limit": 2,
        "consecutive_error_limit": 2,
        # Scraped every second here (testing/prometheus.py): ranges of four scrapes.
        "source": {"kind": "prometheus", "url": prometheus, "scrape_interval": "1s"},
        "metrics": {"error_rate": {"max": 0.05}, "latency_ms": {"p95": 200}},
    }


def to_kubernetes(repo: Repo, model: str) -> None:
    """Move the model to the kubernetes target (one signed commit)."""
    path = repo.path / "model-releases" / model / "release.yaml"
    # The image is pinned by hand (as a team that builds it elsewhere would): watching
    # reads Prometheus only, so no image is built or pulled here.
    changes = {
        "deploy": {
            "target": "kubernetes",
            "kubernetes": {"image": "registry.example/ml/iris", "namespace": "ml"},
        },
        "bundle": {"image": "registry.example/ml/iris@sha256:" + "ab" * 32},
    }
    path.write_text(edit(path.read_text(), "release.yaml", changes))
    repo.commit(f"{model}: served by the cluster")


class Reserved:
    """A loopback port held bound (never listening) between the Prometheus runs
    that use it: the manifest names it at release time, and a port only chosen
    then is anyone's until Prometheus binds it (a bentoml server of another
    test took it once)."""

    def __init__(self) -> None:
        self.port = 0
        self.sock = self._bind()
        self.port = int(self.sock.getsockname()[1])

    def _bind(self) -> socket.socket:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        return sock

    @contextmanager
    def released(self) -> Iterator[int]:
        self.sock.close()
        try:
            yield self.port
        finally:
            self.sock = self._bind()


@dataclass
class Cluster:
    repo: Repo
    bare: Path
    home: Path
    root: Path
    prometheus: Reserved

    @property
    def prometheus_port(self) -> int:
        return self.prometheus.port

    def remote_tags(self, prefix: str) -> str:
        return git(self.bare, "tag", "--list", f"{prefix}/iris/*")

    @contextmanager
    def serving(self, version: str) -> Iterator[None]:
        """The release's own stored bento serving under load, as the cluster's pods
        would, and a Prometheus that scrapes it with its version label."""
        manifest = load(self.repo.git("show", f"release/iris/v{version}:{MANIFEST}"), MANIFEST)
        assert manifest.bundle.archive is not None
        folder = self.root / version
        bento = extract(self.home / "artifacts" / manifest.bundle.archive, folder / "bento")
        with ExitStack() as stack:
            url = stack.enter_context(serving(bento, folder / "bentoml"))
            stack.enter_context(Load(url))
            spec = manifest.analysis
            ready = list(queries(spec, "iris", version).values())
            port = stack.enter_context(self.prometheus.released())
            stack.enter_context(prometheus_scraping(folder / "prom", port, {version: url}, ready))
            yield


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """iris on the kubernetes target, 1.0.0 released and marked stable, pushed."""
    root = tmp_path_factory.mktemp("k8s-watch")
    prometheus = Reserved()
    prometheus_port = prometheus.port
    with state_home(root / "state") as home:
        repo = iris_registry(root, free_port())
        bare = root / "remote.git"
        git(root, "init", "-q", "--bare", "-b", "main", str(bare))
        repo.git("remote", "add", "origin", str(bare))
        repo.git("push", "-q", "-u", "origin", "main")
        to_kubernetes(repo, "iris")
        set_analysis(repo, analysis(f"http://127.0.0.1:{prometheus_port}"))
        repo.ok("release", "iris", STABLE, "--push")
        repo.ok("mark-stable", "iris", STABLE, "--push")
        yield Cluster(repo, bare, home, root, prometheus)
    prometheus.sock.close()


def test_a_version_other_than_the_declared_one_is_refused(cluster: Cluster) -> None:
    before = cluster.repo.snapshot()
    code, lines, err = watch(cluster.repo.path, "iris", "--version", "9.0.0")
    message = f"iris runs on kubernetes, where the branch's version {STABLE} is deployed, not 9.0.0"
    hint = "drop --version or pass the declared one"
    # --json: the error document is the only line; stderr has the one line.
    assert code == 2
    assert lines == [{"error": {"code": 2, "message": message, "hint": hint}}]
    assert err.strip().splitlines() == [f"releasectl: {message} ({hint})"]
    assert cluster.repo.snapshot() == before


def test_a_healthy_version_is_marked_stable_on_the_remote(cluster: Cluster) -> None:
    cluster.repo.ok("release", "iris", HEALTHY, "--push")
    with cluster.serving(HEALTHY):
        code, lines, err = watch(cluster.repo.path, "iris", "--push")
    assert code == 0, err
    assert lines[-1]["action"] == "marked-stable"
    assert lines[-1]["verdict"]["outcome"] == "passed"
    assert f"stable/iris/v{HEALTHY}" in cluster.remote_tags("stable")


def test_a_failing_version_is_reverted_and_pushed_and_nothing_runs_here(
    cluster: Cluster,
) -> None:
    set_faults(cluster.repo, "error_ratio: 0.2\n", f"iris: faults for {FAULTY}")
    cluster.repo.ok("release", "iris", FAULTY, "--push")
    code, lines, err = watch(cluster.repo.path, "iris", "--dry-run", "--push")
    assert code == 0, err
    assert lines[0]["version"] == FAULTY
    assert lines[0]["on_fail"] == (
        f"revert iris {FAULTY} -> {HEALTHY} and push it: Argo CD syncs the cluster back "
        "once it is pushed; exit 4"
    )
    with cluster.serving(FAULTY):
        code, lines, err = watch(cluster.repo.path, "iris", "--push")
    assert code == 4, err
    result = lines[-1]
    assert result["verdict"]["outcome"] == "failed"
    assert result["verdict"]["metric"] == "error_rate"
    assert result["action"] == "reverted"
    # Recovery is the pushed revert: the remote holds it, and the rejected mark.
    outcome = result["outcome"]
    assert (outcome["outcome"], outcome["serving"], outcome["record"]) == (
        "failed-recovered",
        HEALTHY,
        "done",
    )
    assert git(cluster.bare, "rev-parse", "main") == result["revert_commit"]
    assert f"Releasectl-Revert-From: {FAULTY}" in git(cluster.bare, "log", "-1", "--format=%B")
    assert f"rejected/iris/v{FAULTY}" in cluster.remote_tags("rejected")
    assert f"reverted to {HEALTHY}" in err
    # The reverted state is the stable release's, on the kubernetes target still.
    assert (
        git(
            cluster.bare,
            "diff",
            "--stat",
            f"stable/iris/v{HEALTHY}",
            "main",
            "--",
            ":!*/release.yaml",
        )
        == ""
    )
    reverted = load(git(cluster.bare, "show", f"main:{MANIFEST}"), MANIFEST)
    assert (reverted.version, reverted.deploy.target) == (HEALTHY, "kubernetes")
    # Judged in the cluster: no local agent, no local server was ever started.
    assert bentoml_processes(cluster.home) == []
    assert not (cluster.home / "local").exists()


def test_the_scrape_source_is_refused_for_a_cluster(tmp_path: Path) -> None:
    repo = new_repo(tmp_path)
    repo.add_model("wine")
    to_kubernetes(repo, "wine")
    before = repo.snapshot()
    for args in ((), ("--dry-run",), ("--judge-only",)):
        proc = repo.cli("watch", "wine", *args, env={"RELEASECTL_HOME": str(tmp_path / "s")})
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().splitlines() == [
            "releasectl: wine runs on kubernetes: watch reads its metrics from Prometheus, "
            "not by scraping a local server "
            "(set analysis.source to {kind: prometheus, url: http://...})"
        ]
    assert repo.snapshot() == before
    assert not (tmp_path / "s").exists()
