"""publish.yml, the project's own release, on the runner stand-in: its build
job, for real, on a bare copy of this repository at HEAD. The tag must be
annotated and signed by a key in RELEASE_ALLOWED_SIGNERS, CHANGELOG.md must
have the version's section, the build tools come from the hashed
.github/publish-tools.lock (installed from the local copy scripts/bootstrap
made), and the sdist and wheel must carry the tag's version. Only GitHub's
services are stood in for: the provenance attestation (Sigstore) and the
artifact storage record what they were given. The publish job (PyPI) does not
run here; zizmor and the schema check it (tests/pipeline/test_workflow_lint.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from releasectl import __version__
from testing.gha import Event, RunResult, StepContext, run_workflow
from testing.paths import ROOT
from testing.repos import git, make_key
from testing.wheels import PIP_ENV, new_venv

pytestmark = pytest.mark.slow

PUBLISH = ROOT / ".github" / "workflows" / "publish.yml"
TOOLS = ROOT / ".venv" / "wheelhouse-publish"
TAG_CHECK = "Check the tag (signed by a release signer, names this version)"
EMAIL = "maintainer@example.test"


@dataclass
class Services:
    """Stand-ins for GitHub's attestation and artifact services."""

    root: Path
    attested: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)

    def attest(self, ctx: StepContext) -> dict[str, str]:
        subjects = sorted(ctx.workspace.glob(ctx.inputs["subject-path"]))
        if not subjects:
            raise RuntimeError(f"no files match subject-path {ctx.inputs['subject-path']!r}")
        self.attested += [p.name for p in subjects]
        return {"bundle-path": str(self.root / "attestation.jsonl")}

    def upload(self, ctx: StepContext) -> dict[str, str]:
        files = sorted((ctx.workspace / ctx.inputs["path"]).glob("*"))
        if not files and ctx.inputs.get("if-no-files-found") == "error":
            raise RuntimeError("no files to upload")
        store = self.root / "artifacts" / ctx.inputs["name"]
        store.mkdir(parents=True, exist_ok=True)
        for path in files:
            shutil.copy2(path, store / path.name)
        self.uploaded += [p.name for p in files]
        return {"artifact-id": "1"}


@dataclass
class Project:
    root: Path
    remote: Path
    clone: Path
    key: Path
    python: Path  # the runner's Python (actions/setup-python's), a venv of its own
    runs: int = 0

    def tag(self, name: str, *, key: Path | None = None, signed: bool = True) -> str:
        if signed:
            git(
                self.clone,
                "-c",
                f"user.signingkey={key or self.key}",
                "tag",
                "-s",
                "-m",
                name,
                name,
            )
        else:
            git(self.clone, "tag", name)
        git(self.clone, "push", "-q", "origin", f"refs/tags/{name}")
        return git(self.remote, "rev-parse", f"refs/tags/{name}^{{commit}}")

    def run(self, tag: str, sha: str, signers: str) -> tuple[RunResult, Services]:
        self.runs += 1
        services = Services(self.root / f"services-{self.runs}")
        result = run_workflow(
            PUBLISH,
            Event.push(f"refs/tags/{tag}", sha),
            remote=self.remote,
            workdir=self.root / f"run-{self.runs}",
            vars={"RELEASE_ALLOWED_SIGNERS": signers},
            env={
                "PATH": f"{self.python}:/usr/bin:/bin",
                **PIP_ENV,
                "PIP_NO_INDEX": "1",
                "PIP_FIND_LINKS": str(TOOLS),
            },
            actions={
                "actions/attest-build-provenance": services.attest,
                "actions/upload-artifact": services.upload,
            },
            jobs=["build"],
        )
        return result, services

    def signers(self, key: Path | None = None) -> str:
        pub = (key or self.key).with_name((key or self.key).name + ".pub").read_text()
        return f'{EMAIL} namespaces="git" {" ".join(pub.split()[:2])}'


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    if not list(TOOLS.glob("build-*.whl")):
        pytest.fail(f"no build tools in {TOOLS}: run scripts/bootstrap wheelhouse", pytrace=False)
    root = tmp_path_factory.mktemp("publish")
    remote = root / "project.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    clone = root / "maintainer"
    git(root, "clone", "-q", "--no-local", str(ROOT), str(clone))
    key = make_key(root / "keys", "maintainer")
    for k, v in (("user.email", EMAIL), ("gpg.format", "ssh"), ("user.signingkey", str(key))):
        git(clone, "config", k, v)
    git(clone, "remote", "set-url", "origin", str(remote))
    git(clone, "push", "-q", "origin", "HEAD:refs/heads/main")
    yield Project(root, remote, clone, key, new_venv(root / "runner-python"))


def _failure(result: RunResult) -> tuple[str, str]:
    step = next(s for s in result.jobs["build"].steps if s.outcome == "failure")
    return step.name, step.log


def test_a_signed_version_tag_builds_checks_and_attests_both_files(project: Project) -> None:
    tag = f"v{__version__}"
    result, services = project.run(tag, project.tag(tag), project.signers())
    assert result.conclusion == "success", _failure(result)
    files = [f"releasectl-{__version__}-py3-none-any.whl", f"releasectl-{__version__}.tar.gz"]
    assert sorted(services.attested) == sorted(files) == sorted(services.uploaded)
    log = result.step("build", "Check them (and that they carry the tag's version)").log
    assert log.count("PASSED") == 2
    assert 'Good "git" signature' in result.step("build", TAG_CHECK).log


def test_a_tag_signed_by_another_key_publishes_nothing(project: Project, tmp_path: Path) -> None:
    stranger = make_key(tmp_path, "stranger")
    tag = f"v{__version__}-stranger"
    result, services = project.run(tag, project.tag(tag, key=stranger), project.signers())
    assert result.conclusion == "failure"
    name, log = _failure(result)
    assert name == TAG_CHECK
    assert "No principal matched" in log or "Could not verify signature" in log, log
    assert services.attested == services.uploaded == []


def test_a_lightweight_tag_or_no_signers_publishes_nothing(project: Project) -> None:
    sha = project.tag("v0.0.1-light", signed=False)
    result, _ = project.run("v0.0.1-light", sha, project.signers())
    assert _failure(result)[0] == TAG_CHECK
    assert any("is not an annotated, signed tag" in t for _, t in result.jobs["build"].annotations)
    result, _ = project.run("v0.0.1-light", sha, "")
    assert any(
        "set the RELEASE_ALLOWED_SIGNERS variable" in t for _, t in result.jobs["build"].annotations
    )


def test_the_tag_must_name_the_packages_version_and_a_changelog_section(
    project: Project,
) -> None:
    result, _ = project.run("v9.9.9", project.tag("v9.9.9"), project.signers())
    assert _failure(result)[0] == TAG_CHECK
    annotations = result.jobs["build"].annotations
    assert any("CHANGELOG.md has no section for 9.9.9" in t for _, t in annotations)

    changelog = project.clone / "CHANGELOG.md"
    changelog.write_text(changelog.read_text() + "\n## 9.9.8\n\n- a section, not a version\n")
    git(project.clone, "commit", "-q", "-S", "-am", "a changelog section without the version")
    git(project.clone, "push", "-q", "origin", "HEAD:refs/heads/main")
    result, services = project.run("v9.9.8", project.tag("v9.9.8"), project.signers())
    name, log = _failure(result)
    assert name == "Check them (and that they carry the tag's version)"
    assert "releasectl-9.9.8.tar.gz" in log and services.attested == []
