"""release.yml for a kubernetes-target model, run for real on the runner stand-in
(testing/gha): the one path back to Git (docs/ARCHITECTURE.md,
"Analysis in the cluster"). The verify job checks the tag, the pinned image in a
real registry and the rendered folder; the bake job judges the version through a
real Prometheus that scrapes the release's real bento, as a cluster's does; the
keyed record job marks it stable, or writes the signed revert and its rejected mark
and pushes them, which Argo CD then syncs. Nothing is deployed from the runner.

The image is pinned, not built: an image holding nothing but the release's bundle
digest label is pushed to Debian's docker-registry on 127.0.0.1 (building the real one
is tests/bundles/test_image.py's business and takes minutes)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import releasectl
from releasectl.bundles.archive import extract
from releasectl.bundles.image import BUNDLE_LABEL
from releasectl.loopback import free_port
from releasectl.manifest.edits import edit
from releasectl.manifest.schema import load
from releasectl.names import manifest_path
from releasectl.render.analysis_template import queries
from testing.bentos import iris_registry, serving, set_analysis, set_faults
from testing.gha import Event, RunResult, run_workflow
from testing.images import docker_registry, push_labelled
from testing.paths import WORKFLOWS
from testing.prometheus import prometheus_scraping
from testing.repos import RELEASECTL, Repo, git, make_key
from testing.traffic import Load
from testing.wheels import wheelhouse

pytestmark = pytest.mark.slow

CI_EMAIL = "ci@example.test"
MANIFEST = manifest_path("iris")
STABLE, HEALTHY, FAULTY = "1.0.0", "2.0.0", "3.0.0"


@dataclass
class Hub:
    """A scratch 'GitHub repository' (a bare remote), the developer's clone of it, an
    image registry, the runner's secrets and variables, and the port the cluster's
    Prometheus answers on."""

    root: Path
    dev: Repo
    remote: Path
    store: Path
    registry: str
    prometheus_port: int
    secrets: dict[str, str]
    vars: dict[str, str]
    runs: list[int] = field(default_factory=list)

    def run(self, event: Event) -> RunResult:
        self.runs.append(len(self.runs) + 1)
        return run_workflow(
            WORKFLOWS / "release.yml",
            event,
            remote=self.remote,
            workdir=self.root / f"run-{len(self.runs)}",
            secrets=self.secrets,
            vars=self.vars,
            env={
                "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
                "BENTOML_DO_NOT_TRACK": "true",
                "RELEASECTL_PREINSTALLED": RELEASECTL,
                "PYTHONPATH": str(Path(releasectl.__file__).parents[1]),
            },
        )

    def release(self, version: str) -> str:
        """Release `version` as a merged pull request with its image pinned: `propose`
        trains when the sources changed and pins the bundle's digest; an image labelled
        with that digest is pushed, pinned and rendered; the release tags the merged
        commit."""
        proposal = json.loads(self.dev.ok("propose", "iris", version, "--json"))
        self.dev.git("merge", "-q", "--ff-only", proposal["branch"])
        digest = load((self.dev.path / MANIFEST).read_text(), MANIFEST).bundle.digest
        assert digest is not None
        scratch = self.root / f"image-{version}"
        scratch.mkdir()
        destination = f"{self.registry}/ml/iris:v{version}"
        ref = push_labelled(destination, {BUNDLE_LABEL: digest}, scratch)
        path = self.dev.path / MANIFEST
        path.write_text(edit(path.read_text(), "release.yaml", {"bundle": {"image": ref}}))
        self.dev.ok("render", "iris")  # a pull request carries its rendered folder
        self.dev.commit(f"iris: the image of {version}", "model-releases", "deploy")
        out = self.dev.ok("release", "iris", version, "--push")
        # The release says which image the cluster will run.
        assert f"  image {ref}\n" in out, out
        assert f"  image: {ref}\n" in self.dev.ok("show", "iris")
        return ref

    def event(self, version: str) -> Event:
        ref = f"refs/tags/release/iris/v{version}"
        return Event.push(ref, git(self.remote, "rev-parse", f"{ref}^{{commit}}"))

    @contextmanager
    def cluster(self, version: str) -> Iterator[None]:
        """The release's stored bento serving under load as the cluster's pods would,
        and Prometheus scraping it, labelled with the model and the version."""
        manifest = load(self.dev.git("show", f"release/iris/v{version}:{MANIFEST}"), MANIFEST)
        assert manifest.bundle.archive is not None
        folder = self.root / f"pod-{version}"
        bento = extract(self.store / manifest.bundle.archive, folder / "bento")
        with ExitStack() as stack:
            url = stack.enter_context(serving(bento, folder / "bentoml"))
            stack.enter_context(Load(url))
            ready = list(queries(manifest.analysis, "iris", version).values())
            stack.enter_context(
                prometheus_scraping(folder / "prom", self.prometheus_port, {version: url}, ready)
            )
            yield


def _pub(key: Path) -> str:
    return " ".join(key.with_name(key.name + ".pub").read_text().split()[:2])


def _logs(result: RunResult) -> str:
    return "\n".join(
        f"[{job.id}/{step.name}] {step.log[-1500:]}"
        for job in result.jobs.values()
        for step in job.steps
        if step.outcome == "failure"
    ) or "\n".join(job.summary for job in result.jobs.values())


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """iris on the kubernetes target, judged through Prometheus (ranges of four 1 s
    scrapes), 1.0.0 released and marked stable on the remote; CI's key trusted."""
    root = tmp_path_factory.mktemp("k8s-release-yml")
    with docker_registry(root / "registry") as registry:
        dev = iris_registry(root, free_port())
        ci_key = make_key(root / "ci", "ci-key")
        signers = dev.path / ".releasectl/allowed_signers"
        signers.write_text(signers.read_text() + f"{CI_EMAIL} {_pub(ci_key)}\n")
        dev.commit("trust the CI key")
        store = root / "team-store"
        dev.write(".releasectl/config.yaml", f"store: {store}\n")
        dev.commit("one artifact store for the team")
        dev.ok("upgrade-workflows", "--no-index", "--find-links", str(wheelhouse()))
        dev.commit("lock releasectl for the workflows")
        path = dev.path / MANIFEST
        changes = {
            "deploy": {
                "target": "kubernetes",
                "kubernetes": {"image": f"{registry}/ml/iris", "namespace": "ml"},
            },
            # 1.0.0 is never verified by CI here: any pin of the repository will do.
            "bundle": {"image": f"{registry}/ml/iris@sha256:" + "ab" * 32},
        }
        path.write_text(edit(path.read_text(), "release.yaml", changes))
        dev.commit("iris: served by the cluster")
        prometheus_port = free_port()
        prometheus = f"http://127.0.0.1:{prometheus_port}"
        set_analysis(
            dev,
            {
                "interval": "2s",
                "bake": "6s",
                "min_requests": 5,
                "failure_limit": 1,
                "inconclusive_limit": 2,
                "consecutive_error_limit": 2,
                "source": {"kind": "prometheus", "url": prometheus, "scrape_interval": "1s"},
                "metrics": {"error_rate": {"max": 0.05}},
            },
        )
        remote = root / "remote.git"
        git(root, "init", "-q", "--bare", "-b", "main", str(remote))
        dev.git("remote", "add", "origin", str(remote))
        dev.git("push", "-q", "-u", "origin", "main")
        dev.ok("release", "iris", STABLE, "--push")
        dev.ok("mark-stable", "iris", STABLE, "--push")
        yield Hub(
            root,
            dev,
            remote,
            store,
            registry,
            prometheus_port,
            secrets={"RELEASECTL_SIGNING_KEY": ci_key.read_text()},
            vars={
                "RELEASECTL_ALLOWED_SIGNERS": signers.read_text(),
                "RELEASECTL_CI_EMAIL": CI_EMAIL,
                "RELEASECTL_HOME": str(root / "runner"),
            },
        )


def test_a_healthy_kubernetes_release_is_marked_stable_by_release_yml(hub: Hub) -> None:
    hub.release(HEALTHY)
    with hub.cluster(HEALTHY):
        result = hub.run(hub.event(HEALTHY))
    assert result.conclusion == "success", _logs(result)
    assert result.jobs["verify"].outputs["target"] == "kubernetes"
    verified = result.step("verify", "Verify the tag")
    assert "carries bundle" in verified.log  # the pinned image, asked of the registry
    assert result.jobs["bake"].outputs["verdict"] == "passed"
    assert (
        "marked iris 2.0.0 stable" in result.step("record", "Mark stable or revert, and push").log
    )
    assert result.jobs["redeploy"].conclusion == "skipped"  # Argo CD syncs; nothing here
    assert f"stable/iris/v{HEALTHY}" in git(hub.remote, "tag", "--list", "stable/iris/*")
    # Judged in the cluster: the bake job started no server of its own.
    assert not (hub.root / "runner" / "local").exists()


def test_a_faulty_kubernetes_release_is_reverted_by_release_yml(hub: Hub) -> None:
    hub.dev.git("pull", "-q", "--ff-only", "origin", "main")
    hub.dev.git("fetch", "-q", "--tags")
    set_faults(hub.dev, "error_ratio: 0.2\n", "iris: faulty")
    hub.release(FAULTY)
    with hub.cluster(FAULTY):
        result = hub.run(hub.event(FAULTY))
    assert result.conclusion == "failure"  # the release failed its analysis ...
    assert result.jobs["bake"].outputs.get("verdict") == "failed", _logs(result)
    assert result.jobs["record"].conclusion == "success", _logs(result)
    # ... and the keyed job wrote the signed revert and the rejected mark, and pushed.
    head = git(hub.remote, "rev-parse", "main")
    message = git(hub.remote, "log", "-1", "--format=%B", head)
    assert f"Releasectl-Revert-From: {FAULTY}" in message
    assert f"Releasectl-Revert-To: {HEALTHY}" in message
    assert git(hub.remote, "log", "-1", "--format=%ce", head) == CI_EMAIL
    assert f"rejected/iris/v{FAULTY}" in git(hub.remote, "tag", "--list", "rejected/iris/*")
    # What Argo CD syncs from main is the stable release's rendered folder, byte for byte.
    folder = "deploy/production/iris"
    assert git(hub.remote, "diff", "--stat", f"stable/iris/v{HEALTHY}", "main", "--", folder) == ""
    assert result.jobs["redeploy"].conclusion == "skipped"
