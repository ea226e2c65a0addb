"""The shipped workflows, run for real on a scratch clone through the local
stand-in for GitHub's runner (testing/gha): real git, real keys, real
bentoml, the local target; only GitHub itself is stood in for."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

import releasectl
from releasectl.loopback import free_port
from testing.bentos import FAST_ANALYSIS as FAST
from testing.bentos import iris_registry, set_analysis, set_faults
from testing.gha import Event, JobResult, RunResult, load_workflow, run_workflow
from testing.paths import WORKFLOWS
from testing.processes import bentoml_processes
from testing.repos import RELEASECTL, git, make_key
from testing.traffic import Load
from testing.wheels import wheelhouse

pytestmark = pytest.mark.slow

CI_EMAIL = "ci@example.test"


def _pub(key: Path) -> str:
    return " ".join(key.with_name(key.name + ".pub").read_text().split()[:2])


class GitHub:
    """A scratch 'GitHub repository' (a bare remote), a developer's clone, and
    a self-hosted runner's state home, store, secrets and variables."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dev = iris_registry(root, self.port)
        self.ci_key = make_key(root / "ci", "ci-key")
        signers = self.dev.path / ".releasectl/allowed_signers"
        signers.write_text(signers.read_text() + f"{CI_EMAIL} {_pub(self.ci_key)}\n")
        self.dev.commit("trust the CI key")
        # One artifact store for the team, committed: the developer's releases
        # (and the weights they train) and CI's rebuilds meet in it.
        self.store = root / "team-store"
        self.dev.write(".releasectl/config.yaml", f"store: {self.store}\n")
        self.dev.commit("one artifact store for the team")
        # The workflows run only the releasectl a committed lock pins
        # (docs/ARCHITECTURE.md, "Supply chain").
        # This runner provides it (RELEASECTL_PREINSTALLED in run()), so the jobs
        # skip the venv install; `ci setup` still checks it against the lock.
        # tests/pipeline/test_supply_chain.py runs the install from the lock itself.
        self.dev.ok("upgrade-workflows", "--no-index", "--find-links", str(wheelhouse()))
        self.dev.commit("lock releasectl for the workflows")
        set_analysis(self.dev, FAST)
        self.remote = root / "remote.git"
        git(root, "init", "-q", "--bare", "-b", "main", str(self.remote))
        self.dev.git("remote", "add", "origin", str(self.remote))
        self.dev.git("push", "-q", "-u", "origin", "main")
        self.runner_home = root / "runner"
        self.runs = 0
        self.vars = {
            "RELEASECTL_ALLOWED_SIGNERS": signers.read_text(),
            "RELEASECTL_CI_EMAIL": CI_EMAIL,
            "RELEASECTL_HOME": str(self.runner_home),
        }
        self.secrets = {"RELEASECTL_SIGNING_KEY": self.ci_key.read_text()}

    def run(self, workflow: str, event: Event) -> RunResult:
        self.runs += 1
        return run_workflow(
            WORKFLOWS / workflow,
            event,
            remote=self.remote,
            workdir=self.root / f"run-{self.runs}",
            secrets=self.secrets,
            vars=self.vars,
            env={
                "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
                "BENTOML_DO_NOT_TRACK": "true",
                "RELEASECTL_PREINSTALLED": RELEASECTL,
                # Steps start from a minimal environment: name the releasectl under
                # test, or the venv's own install (another checkout's) would answer.
                "PYTHONPATH": str(Path(releasectl.__file__).parents[1]),
            },
        )

    def remote_sha(self, ref: str) -> str:
        return git(self.remote, "rev-parse", ref)

    def status(self) -> dict[str, Any]:
        env = {"RELEASECTL_HOME": str(self.runner_home)}
        proc = self.dev.cli("status", "iris", "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        return cast(dict[str, Any], json.loads(proc.stdout)[0])


def _summary(result: RunResult) -> str:
    return "\n".join(job.summary for job in result.jobs.values())


def _logs(result: RunResult) -> str:
    """What failed, for an assertion's message."""
    return "\n".join(
        f"[{job.id}/{step.name}] {step.log[-1500:]}"
        for job in result.jobs.values()
        for step in job.steps
        if step.outcome == "failure"
    ) or _summary(result)


@pytest.fixture(scope="module")
def gh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHub]:
    root = tmp_path_factory.mktemp("github")
    hub = GitHub(root)
    try:
        yield hub
    finally:
        hub.dev.cli("agent", "stop", env={"RELEASECTL_HOME": str(hub.runner_home)})
        leftovers = bentoml_processes(hub.runner_home)
        for proc in leftovers:
            proc.kill()
        assert not leftovers, "a workflow left servers running"


def _no_key_no_token(gh: GitHub, workflow: str, result: RunResult, *jobs: str) -> None:
    """The jobs that run model code (build, serve, bake) hold no signing key and no
    write token (docs/ARCHITECTURE.md, "Trust"): as written, and as they actually ran."""
    doc = load_workflow(WORKFLOWS / workflow)
    key = gh.secrets["RELEASECTL_SIGNING_KEY"].strip()
    for job_id in jobs:
        spec = doc["jobs"][job_id]
        assert "secrets." not in f"{spec}{doc.get('env') or ''}", job_id
        assert spec["permissions"] == {"contents": "read"}, job_id
        checkouts = [s for s in spec["steps"] if "actions/checkout@" in str(s.get("uses"))]
        assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts), (
            job_id
        )
        job = result.jobs[job_id]
        assert job.conclusion != "skipped" and job.temp and job.workspace, job_id
        assert not _holds_key(job, key), f"{job_id} had the signing key"
        config = git(job.workspace, "config", "--local", "--list")
        assert "user.signingkey" not in config and "extraheader" not in config, (job_id, config)
        assert all(key not in v for v in job.env.values()), job_id


def _holds_key(job: JobResult, key: str) -> bool:
    """The CI key in a file under the job's RUNNER_TEMP, or named by its git config."""
    assert job.temp is not None and job.workspace is not None
    files = [p for p in job.temp.rglob("*") if p.is_file() and not p.is_symlink()]
    in_temp = any(key in p.read_text(errors="replace") for p in files)
    named = git(job.workspace, "config", "--local", "--default", "", "--get", "user.signingkey")
    return in_temp or bool(named)


def _keyed(gh: GitHub, workflow: str, result: RunResult, job_id: str) -> None:
    """The control: the job that signs and pushes held the key (so the check above
    does see a key where there is one), and runs no model code."""
    job = result.jobs[job_id]
    assert job.conclusion == "success", job_id
    assert _holds_key(job, gh.secrets["RELEASECTL_SIGNING_KEY"].strip()), job_id
    spec = load_workflow(WORKFLOWS / workflow)["jobs"][job_id]
    runs = [str(step.get("run", "")) for step in spec["steps"]]
    assert not any(re.search(r"releasectl\s+(build|deploy|watch)\b|--deploy\b", r) for r in runs)


def _pr_event(gh: GitHub, branch: str) -> Event:
    head = gh.remote_sha(f"refs/heads/{branch}")
    base = gh.remote_sha("refs/heads/main")
    pr = {
        "number": 7,
        "base": {"ref": "main", "sha": base},
        "head": {"ref": branch, "sha": head},
    }
    return Event(
        "pull_request",
        "refs/pull/7/merge",
        head,
        {"action": "opened", "number": 7, "pull_request": pr},
    )


def _branch(gh: GitHub, name: str, edit: Callable[[str], str], *, sign: bool = True) -> None:
    d = gh.dev
    d.git("checkout", "-q", "-b", name, "main")
    path = d.path / "model-releases/iris/release.yaml"
    path.write_text(edit(path.read_text()))
    d.commit(f"{name}", sign=sign)
    d.git("push", "-q", "origin", name)
    d.git("checkout", "-q", "main")


def _bump(text: str) -> str:
    return text.replace("version: 0.0.0", "version: 1.0.0").replace("serial: 0", "serial: 1")


def test_pr_check_passes_a_good_pull_request(gh: GitHub) -> None:
    proc = gh.dev.cli("propose", "iris", "1.0.0", "--push")
    assert proc.returncode == 0, proc.stderr
    result = gh.run("pr-check.yml", _pr_event(gh, "propose/iris/v1.0.0"))
    assert result.conclusion == "success", _logs(result)
    summary = _summary(result)
    assert "releasectl check: passed" in summary and "sha256:" in summary
    assert result.jobs["check"].permissions == {"contents": "read"}


@pytest.mark.parametrize(
    ("branch", "edit", "sign", "words"),
    [
        ("unsigned", _bump, False, "not signed"),
        ("no-bump", lambda t: t.replace("serial: 0", "serial: 1"), True, "the version must rise"),
        ("unknown-key", lambda t: _bump(t) + "colour: blue\n", True, "unknown key 'colour'"),
    ],
)
def test_pr_check_fails_a_bad_pull_request(
    gh: GitHub,
    branch: str,
    edit: Callable[[str], str],
    sign: bool,
    words: str,
) -> None:
    _branch(gh, branch, edit, sign=sign)
    result = gh.run("pr-check.yml", _pr_event(gh, branch))
    assert result.conclusion == "failure"
    assert words in _summary(result)
    annotations = result.jobs["check"].annotations
    assert any(level == "error" and words in text for level, text in annotations), annotations


def _release(gh: GitHub, version: str, *args: str) -> str:
    proc = gh.dev.cli("release", "iris", version, "--push", *args)
    assert proc.returncode == 0, proc.stderr
    return gh.remote_sha("refs/heads/main")


def _tag_push(gh: GitHub, version: str) -> Event:
    ref = f"refs/tags/release/iris/v{version}"
    return Event.push(ref, gh.remote_sha(f"{ref}^{{commit}}"))


def test_a_good_release_ends_with_a_stable_tag_on_the_remote(gh: GitHub) -> None:
    _release(gh, "1.0.0")
    with Load(gh.url):
        result = gh.run("release.yml", _tag_push(gh, "1.0.0"))
    assert result.conclusion == "success", _logs(result)
    assert git(gh.remote, "tag", "--list", "stable/iris/*") == "stable/iris/v1.0.0"
    assert git(gh.remote, "cat-file", "-p", "stable/iris/v1.0.0").count(CI_EMAIL) == 1
    summary = _summary(result)
    assert "built from the tag, equal to the pin" in summary
    assert "iris 1.0.0: passed" in result.jobs["bake"].summary
    assert result.jobs["bake"].outputs["verdict"] == "passed"
    record = result.step("record", "Mark stable or revert, and push")
    assert "marked iris 1.0.0 stable" in record.log
    assert result.jobs["redeploy"].conclusion == "skipped"
    assert gh.status()["live"]["version"] == "1.0.0"
    _no_key_no_token(gh, "release.yml", result, "verify", "bake")
    _keyed(gh, "release.yml", result, "record")


def test_a_faulty_release_is_reverted_and_deploy_yml_fast_tracks_the_stable_one(
    gh: GitHub,
) -> None:
    gh.dev.git("pull", "-q", "--ff-only", "origin", "main")
    gh.dev.git("fetch", "-q", "--tags")
    set_faults(gh.dev, "error_ratio: 0.2\n", "iris: faulty")
    released = _release(gh, "2.0.0")
    with Load(gh.url):
        result = gh.run("release.yml", _tag_push(gh, "2.0.0"))
    assert result.conclusion == "failure"  # the release failed its analysis ...
    judge = result.step("bake", "Watch and judge")
    assert judge.outcome == "failure"
    assert result.jobs["bake"].outputs["verdict"] == "failed"
    # never silent: the failed verdict is an annotation on the run
    annotations = result.jobs["bake"].annotations
    assert any(
        level == "error" and "iris 2.0.0 failed analysis" in text for level, text in annotations
    ), annotations
    reason = result.jobs["bake"].outputs["reason"]
    assert reason.startswith("analysis failed: ") and "\n" not in reason
    # ... CI reverted it on the remote, signed with its own key, in a job that runs no
    # model code ...
    head = gh.remote_sha("refs/heads/main")
    message = git(gh.remote, "log", "-1", "--format=%B", head)
    assert "Releasectl-Revert-From: 2.0.0" in message and "Releasectl-Revert-To: 1.0.0" in message
    assert reason in message
    assert git(gh.remote, "log", "-1", "--format=%ce", head) == CI_EMAIL
    assert git(gh.remote, "tag", "--list", "rejected/iris/*") == "rejected/iris/v2.0.0"
    # ... and a job without the key deployed the stable version from main.
    assert result.jobs["redeploy"].conclusion == "success", _logs(result)
    assert "fast track" in result.jobs["redeploy"].summary
    live = gh.status()["live"]
    assert live["version"] == "1.0.0" and live["commit"] == head and live["fast_track"]
    _no_key_no_token(gh, "release.yml", result, "verify", "bake", "redeploy")
    _keyed(gh, "release.yml", result, "record")

    # deploy.yml, run by that push (with a token that starts workflows), converges.
    push = Event.push("refs/heads/main", head)
    push.payload["before"] = released
    deployed = gh.run("deploy.yml", push)
    assert deployed.conclusion == "success", _logs(deployed)
    assert deployed.jobs["plan"].outputs["count"] == "1"
    assert deployed.jobs["plan"].outputs["kinds"] == "revert"
    assert deployed.jobs["tag"].conclusion == "skipped"
    assert "fast track" in _summary(deployed)
    live = gh.status()["live"]
    assert live["version"] == "1.0.0" and live["commit"] == head and live["fast_track"]
    assert (deployed.jobs["deploy"].environment or {}).get("name") == "production"
    _no_key_no_token(gh, "deploy.yml", deployed, "plan", "deploy")


def test_a_tag_signed_by_an_untrusted_key_stops_before_deploy(gh: GitHub, tmp_path: Path) -> None:
    stranger = make_key(tmp_path / "s", "stranger")
    before = gh.status()["live"]
    d = gh.dev
    d.git("pull", "-q", "--ff-only", "origin", "main")
    d.git(
        "-c", f"user.signingkey={stranger}", "tag", "-s", "-m", "x", "release/iris/v9.0.0", "HEAD"
    )
    d.git("push", "-q", "origin", "release/iris/v9.0.0")
    result = gh.run("release.yml", _tag_push(gh, "9.0.0"))
    assert result.conclusion == "failure"
    assert result.step("verify", "Verify the tag").outcome == "failure"
    assert result.jobs["bake"].conclusion == "skipped"
    assert result.jobs["record"].conclusion == "skipped"
    assert "not in the allowed signers" in _summary(result)
    assert gh.status()["live"] == before


def test_a_digest_that_does_not_match_its_pin_stops_before_deploy(gh: GitHub) -> None:
    before = gh.status()["live"]
    d = gh.dev
    d.git("pull", "-q", "--ff-only", "origin", "main")
    set_faults(d, None, "iris: healthy")
    # Released without a build, the manifest keeps 1.0.0's pin: not what 10.0.0 builds to.
    _release(gh, "10.0.0", "--no-build")
    result = gh.run("release.yml", _tag_push(gh, "10.0.0"))
    assert result.conclusion == "failure"
    assert result.step("verify", "Build from the tag and store").outcome == "failure"
    assert result.jobs["bake"].conclusion == "skipped"
    assert result.jobs["record"].conclusion == "skipped"
    assert "but the release pins" in _summary(result)
    assert gh.status()["live"] == before
    assert gh.store.is_dir()


def test_a_merged_release_is_tagged_by_a_keyed_job_that_deploys_nothing(gh: GitHub) -> None:
    d = gh.dev
    d.git("pull", "-q", "--ff-only", "origin", "main")
    live = gh.status()["live"]
    proc = d.cli("propose", "iris", "11.0.0", "--push")
    assert proc.returncode == 0, proc.stderr
    before = gh.remote_sha("refs/heads/main")
    d.git("push", "-q", "origin", "propose/iris/v11.0.0:main")  # merged (a fast-forward)
    d.git("checkout", "-q", "main")
    push = Event.push("refs/heads/main", gh.remote_sha("refs/heads/main"))
    push.payload["before"] = before
    result = gh.run("deploy.yml", push)
    assert result.conclusion == "success", _logs(result)
    assert result.jobs["plan"].outputs["kinds"] == "untagged"
    assert result.jobs["deploy"].conclusion == "skipped"
    tag = "release/iris/v11.0.0"
    assert git(gh.remote, "tag", "--list", tag) == tag
    assert git(gh.remote, "cat-file", "-p", tag).count(CI_EMAIL) == 1
    assert "release.yml builds, deploys and watches it" in result.jobs["tag"].summary
    _no_key_no_token(gh, "deploy.yml", result, "plan")
    _keyed(gh, "deploy.yml", result, "tag")
    assert gh.status()["live"] == live


def _rollback(gh: GitHub, reason: str) -> RunResult:
    head = gh.remote_sha("refs/heads/main")
    event = Event.dispatch("refs/heads/main", head, {"model": "iris", "reason": reason})
    return gh.run("rollback.yml", event)


def test_rollback_reverts_in_a_keyed_job_and_deploys_in_a_keyless_one(gh: GitHub) -> None:
    """After the tests above main declares a release that was never deployed
    and 1.0.0 is the last stable release: a rollback reverts to it and serves it."""
    before = gh.remote_sha("refs/heads/main")
    declared = git(gh.remote, "show", "main:model-releases/iris/release.yaml")
    version = next(
        v for k, _, v in (ln.partition(": ") for ln in declared.splitlines()) if k == "version"
    )
    # A reason that is not one line is refused before anything is pushed or deployed.
    refused = _rollback(gh, "two\nlines")
    assert refused.conclusion == "failure"
    assert refused.step("revert", "Revert and push").outcome == "failure"
    assert refused.jobs["deploy"].conclusion == "skipped"
    assert gh.remote_sha("refs/heads/main") == before

    result = _rollback(gh, "latency regression, INC-42")
    assert result.conclusion == "success", _logs(result)
    head = gh.remote_sha("refs/heads/main")
    message = git(gh.remote, "log", "-1", "--format=%B", head)
    assert "Releasectl-Revert-To: 1.0.0" in message and "latency regression, INC-42" in message
    assert git(gh.remote, "log", "-1", "--format=%ce", head) == CI_EMAIL
    assert f"rejected/iris/v{version}" in git(gh.remote, "tag", "--list", "rejected/iris/*")
    live = gh.status()["live"]
    assert live["version"] == "1.0.0" and live["commit"] == head and live["fast_track"]
    _no_key_no_token(gh, "rollback.yml", result, "deploy")
    _keyed(gh, "rollback.yml", result, "revert")
