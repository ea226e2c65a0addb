"""The shipped workflows, run for real on a scratch clone through the local
stand-in for GitHub's runner (tests/gha.py): real git, real keys, real
bentoml, the local target; only GitHub itself is stood in for."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundle_helpers import free_port
from conftest import RELEASECTL, git, make_key
from gha import Event, RunResult, run_workflow
from serving_helpers import Load, bentoml_processes, iris_registry, set_analysis, set_faults
from supply_chain_helpers import wheelhouse
from test_watch import FAST

pytestmark = pytest.mark.slow

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"
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
        # The workflows run only the releasectl a committed lock pins (issue 14).
        # This runner provides it (RELEASECTL_PREINSTALLED in run()), so the jobs
        # skip the venv install; `ci setup` still checks it against the lock.
        # tests/test_supply_chain.py runs the install from the lock itself.
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
            },
        )

    def remote_sha(self, ref: str) -> str:
        return git(self.remote, "rev-parse", ref)

    def status(self) -> dict:
        env = {"RELEASECTL_HOME": str(self.runner_home)}
        proc = self.dev.cli("status", "iris", "--json", env=env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)[0]


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


def _branch(gh: GitHub, name: str, edit, *, sign: bool = True) -> None:  # type: ignore[no-untyped-def]
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
    edit,
    sign: bool,
    words: str,  # type: ignore[no-untyped-def]
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
    assert "built from the tag, equal to the pin" in summary and "marked-stable" in summary
    assert gh.status()["live"]["version"] == "1.0.0"


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
    watch = result.step("deploy", "Watch, then mark stable or revert")
    assert watch.outcome == "failure"
    # ... and CI reverted it on the remote, signed with its own key
    head = gh.remote_sha("refs/heads/main")
    message = git(gh.remote, "log", "-1", "--format=%B", head)
    assert "Releasectl-Revert-From: 2.0.0" in message and "Releasectl-Revert-To: 1.0.0" in message
    assert git(gh.remote, "log", "-1", "--format=%ce", head) == CI_EMAIL
    assert git(gh.remote, "tag", "--list", "rejected/iris/*") == "rejected/iris/v2.0.0"

    push = Event.push("refs/heads/main", head)
    push.payload["before"] = released
    deployed = gh.run("deploy.yml", push)
    assert deployed.conclusion == "success", _logs(deployed)
    assert deployed.jobs["plan"].outputs["count"] == "1"
    assert "fast track" in _summary(deployed)
    live = gh.status()["live"]
    assert live["version"] == "1.0.0" and live["commit"] == head and live["fast_track"]
    assert deployed.jobs["deploy"].environment["name"] == "production"


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
    assert result.jobs["deploy"].conclusion == "skipped"
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
    assert result.jobs["deploy"].conclusion == "skipped"
    assert "but the release pins" in _summary(result)
    assert gh.status()["live"] == before
    assert gh.store.is_dir()
