"""The shipped workflows install exactly the releasectl that wrote them
(docs/ARCHITECTURE.md, "Supply chain"). `init` (given a source) commits
`.releasectl/requirements.lock`, every distribution pinned by hash; every job installs from it with
`--require-hashes` (or checks a runner's own install against it) and stops at
once, saying what to set, when there is no lock or it names another version.
The workflows run on the local runner stand-in (testing/gha) against a bare
remote; installs come only from the local wheelhouse."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from releasectl import __version__
from releasectl.pipeline.lock import LOCK_FILE, RUNNER_PYTHON, pins, read_source
from releasectl.pipeline.workflows import merge, split, templates
from testing.gha import Event, RunResult, load_workflow, run_workflow
from testing.paths import ROOT
from testing.repos import RELEASECTL, Repo, git, make_key
from testing.wheels import PIP_ENV, tool_dir, wheelhouse

SHIPPED = ("deploy.yml", "pr-check.yml", "release.yml", "rollback.yml")
INSTALL = "Install releasectl from the lock"
CHECK = "Check the install against the lock"


def _lock(repo: Repo) -> str:
    proc = repo.cli("upgrade-workflows", "--no-index", "--find-links", str(wheelhouse()))
    assert proc.returncode == 0, proc.stderr
    assert (
        f"wrote {LOCK_FILE}: releasectl {__version__} and " in proc.stdout
        and f"pinned by hash, from --find-links {wheelhouse()} --no-index" in proc.stdout
    ), proc.stdout
    return (repo.path / LOCK_FILE).read_text()


def _hashed_blocks(text: str) -> dict[str, str]:
    """requirement line -> its whole block (continuation lines joined)."""
    blocks: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"^[A-Za-z0-9]", line):
            current = line.split(" ")[0]
            blocks[current] = line
        elif current and line.startswith("    --hash="):
            blocks[current] += line
    return blocks


# --- the workflows as shipped ----------------------------------------------------------


def test_the_project_ships_exactly_its_templates_and_keeps_publish_yml_to_itself() -> None:
    shipped = templates()
    assert sorted(Path(p).name for p in shipped) == sorted(SHIPPED)
    for name in SHIPPED:
        assert (ROOT / ".github/workflows" / name).read_text() == shipped[
            f".github/workflows/{name}"
        ], f"{name}: .github/workflows and the template differ"
    assert (ROOT / ".github/workflows/publish.yml").is_file()


@pytest.mark.parametrize("name", SHIPPED)
def test_every_job_installs_from_the_lock_then_checks_the_install(name: str) -> None:
    text = templates()[f".github/workflows/{name}"]
    parts = split(text)
    assert parts is not None
    jobs = load_workflow(ROOT / ".github/workflows" / name)["jobs"]
    assert [i for i, _ in parts[1]] == ["install"] * len(jobs)
    assert all("- name: Set up Python\n" in block for _, block in parts[1])
    for job_id, job in jobs.items():
        steps = [s.get("name", "") for s in job["steps"]]
        runs = [str(s.get("run", "")) for s in job["steps"]]
        first = next(i for i, r in enumerate(runs) if "releasectl" in r and "pip install" not in r)
        assert steps.index(INSTALL) < first, f"{job_id}: releasectl runs before it is installed"
        assert runs[first].startswith(("releasectl ci setup", "releasectl ci check-install")), (
            f"{job_id}: {runs[first]!r}"
        )
        install = job["steps"][steps.index(INSTALL)]
        # the Python the lock is compiled for is set up inside the same managed block
        assert steps.index("Set up Python") == steps.index(INSTALL) - 1
        assert job["steps"][steps.index("Set up Python")]["with"]["python-version"] == (
            RUNNER_PYTHON
        )
        assert '--require-hashes --no-deps --only-binary :all: -r "$lock"' in install["run"]
        assert "RELEASECTL_SPEC" not in str(job) and "command -v releasectl" not in str(job)
    if name == "pr-check.yml":  # a pull request cannot choose what judges it
        install = jobs["check"]["steps"][steps.index(INSTALL)]
        assert install["env"]["LOCK_REV"] == "${{ github.event.pull_request.base.sha }}"


# --- init, the lock, upgrade-workflows -------------------------------------------------------


def test_init_without_a_source_writes_no_lock_and_guesses_no_index(registry: Repo) -> None:
    assert not (registry.path / LOCK_FILE).exists()
    proc = registry.cli("upgrade-workflows")
    assert proc.returncode == 2, proc.stderr
    assert "no source to lock releasectl from" in proc.stderr and "--index-url" in proc.stderr
    assert not (registry.path / LOCK_FILE).exists()
    proc = registry.cli("ci", "setup")
    assert proc.returncode == 3
    assert f"no {LOCK_FILE}" in proc.stderr and "upgrade-workflows" in proc.stderr


def _scratch(tmp_path: Path) -> Repo:
    """A git repository with a signing key, not yet a registry."""
    key = make_key(tmp_path / "keys", "k")
    path = tmp_path / "scratch"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    for k, v in (("gpg.format", "ssh"), ("user.signingkey", str(key))):
        git(path, "config", k, v)
    return Repo(path, key, "operator@example.test")


def test_init_without_a_source_says_the_workflows_need_a_lock(tmp_path: Path) -> None:
    repo = _scratch(tmp_path)
    out = repo.ok("init")
    assert f"no {LOCK_FILE} yet: the workflows refuse to run without it" in out
    assert "releasectl upgrade-workflows --index-url URL" in out
    assert LOCK_FILE not in git(repo.path, "show", "--name-only", "--format=", "HEAD")


def test_init_with_a_source_commits_a_lock_pinning_every_distribution_by_hash(
    tmp_path: Path,
) -> None:
    repo = _scratch(tmp_path)
    path = repo.path
    relative = os.path.relpath(wheelhouse(), path)  # recorded as an absolute path
    out = repo.ok("init", "--no-index", "--find-links", relative)
    assert "the workflows refuse to run without it" not in out
    assert LOCK_FILE in out
    assert LOCK_FILE in git(path, "show", "--name-only", "--format=", "HEAD").splitlines()
    text = (path / LOCK_FILE).read_text()
    locked = pins(text)
    assert locked["releasectl"] == __version__
    assert {"bentoml", "pydantic", "typer", "scikit-learn"} <= set(locked)
    blocks = _hashed_blocks(text)
    assert len(blocks) == len(locked) > 50
    unhashed = [req for req, block in blocks.items() if "--hash=sha256:" not in block]
    assert not unhashed, unhashed
    assert read_source(text).find_links == (str(wheelhouse()),) and read_source(text).no_index
    proc = repo.cli("ci", "check-install")  # this environment is what the lock was made from
    assert proc.returncode == 0, proc.stderr
    assert f"releasectl {__version__} and {len(locked) - 1} dependencies" in proc.stdout


def test_ci_setup_refuses_a_lock_of_another_version(registry: Repo) -> None:
    text = _lock(registry).replace(f"releasectl=={__version__} ", "releasectl==0.0.9 ")
    registry.write(LOCK_FILE, text)
    registry.commit("a lock of another version")
    proc = registry.cli("ci", "setup")
    assert proc.returncode == 3
    assert (
        f"releasectl {__version__} is running but {LOCK_FILE} pins releasectl 0.0.9" in proc.stderr
    )


def test_ci_setup_refuses_an_environment_the_lock_does_not_describe(registry: Repo) -> None:
    text = _lock(registry)
    version = pins(text)["pydantic"]
    registry.write(LOCK_FILE, text.replace(f"pydantic=={version} ", "pydantic==1.0.0 "))
    registry.commit("a lock this environment does not match")
    proc = registry.cli("ci", "setup")
    assert proc.returncode == 3
    assert f"pydantic {version} (lock: 1.0.0)" in proc.stderr


def test_ci_setup_points_uv_at_the_locks_source_unless_the_job_names_one(
    registry: Repo, tmp_path: Path
) -> None:
    """A served bento's environment is made by uv (serving/local/envs.py): in CI from
    the source the lock names, never a guessed index."""
    _lock(registry)
    registry.commit("lock")
    github_env = tmp_path / "github-env"
    unset = {"UV_FIND_LINKS": "", "UV_NO_INDEX": ""}  # a job that names no uv source
    env = {"GITHUB_ENV": str(github_env), "RELEASECTL_TRUST_REPOSITORY": "1", **unset}
    env["RUNNER_TEMP"] = str(tmp_path / "runner")
    proc = registry.cli("ci", "setup", env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"bento environments from the lock's source (--find-links {wheelhouse()}" in proc.stdout
    lines = github_env.read_text().splitlines()
    assert f"UV_FIND_LINKS={wheelhouse()}" in lines and "UV_NO_INDEX=1" in lines

    github_env.unlink()
    proc = registry.cli("ci", "setup", env={**env, "UV_INDEX_URL": "https://pypi.example/simple"})
    assert proc.returncode == 0, proc.stderr
    assert "uv's source as this job sets it" in proc.stdout
    written = github_env.read_text() if github_env.exists() else ""
    assert not any(line.startswith("UV_") for line in written.splitlines())


def test_upgrade_keeps_edits_outside_the_blocks_and_replaces_the_blocks(registry: Repo) -> None:
    _lock(registry)
    registry.commit("lock")
    path = registry.path / ".github/workflows/pr-check.yml"
    template = path.read_text()
    edited = template.replace("timeout-minutes: 30", "timeout-minutes: 45")
    edited = edited.replace(f"- name: {INSTALL}", "- name: Install releasectl somehow")
    path.write_text(edited)
    before = registry.snapshot()

    proc = registry.cli("upgrade-workflows", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "would update .github/workflows/pr-check.yml (kept your edits" in proc.stdout
    assert f"-      - name: Install releasectl somehow\n+      - name: {INSTALL}" in proc.stdout
    assert path.read_text() == edited and registry.snapshot() == before

    proc = registry.cli("upgrade-workflows")
    assert proc.returncode == 0, proc.stderr
    assert path.read_text() == template.replace("timeout-minutes: 30", "timeout-minutes: 45")
    assert "unchanged .github/workflows/deploy.yml" in proc.stdout
    assert f"unchanged {LOCK_FILE}" in proc.stdout  # same source, same versions: same bytes


def test_upgrade_moves_an_older_lock_to_the_running_version(registry: Repo) -> None:
    text = _lock(registry)
    registry.write(LOCK_FILE, text.replace(f"releasectl=={__version__} ", "releasectl==0.0.9 "))
    registry.commit("the lock an older releasectl wrote")
    proc = registry.cli("upgrade-workflows")  # the source recorded in the lock
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {LOCK_FILE}: releasectl 0.0.9 -> {__version__}" in proc.stdout
    assert (registry.path / LOCK_FILE).read_text() == text
    assert registry.cli("ci", "check-install").returncode == 3  # not committed yet
    registry.commit("upgrade releasectl")
    assert registry.cli("ci", "check-install").returncode == 0


def test_upgrade_refuses_a_workflow_whose_blocks_are_gone_and_writes_nothing(
    registry: Repo,
) -> None:
    path = registry.path / ".github/workflows/rollback.yml"
    path.write_text(path.read_text().replace("      # <<< releasectl:install\n", ""))
    edited = path.read_text()
    proc = registry.cli("upgrade-workflows", "--no-index", "--find-links", str(wheelhouse()))
    assert proc.returncode == 3
    assert "rollback.yml: its releasectl blocks (install) are missing" in proc.stderr
    assert "--force" in proc.stderr
    assert path.read_text() == edited and not (registry.path / LOCK_FILE).exists()
    proc = registry.cli(
        "upgrade-workflows", "--force", "--no-index", "--find-links", str(wheelhouse())
    )
    assert proc.returncode == 0, proc.stderr
    assert path.read_text() == templates()[".github/workflows/rollback.yml"]
    assert (registry.path / LOCK_FILE).is_file()


def test_merge_places_each_new_block_where_the_user_file_has_it() -> None:
    old = "a\n  # >>> releasectl:x old\n  old\n  # <<< releasectl:x\nmine\n"
    new = "A\n  # >>> releasectl:x new\n  new\n  # <<< releasectl:x\nB\n"
    change = merge("w.yml", old, new)
    assert change.new == "a\n  # >>> releasectl:x new\n  new\n  # <<< releasectl:x\nmine\n"
    assert change.kept_edits
    assert merge("w.yml", None, new).new == new
    assert split("# >>> releasectl:x\n# <<< releasectl:y\n") is None
    assert split("# >>> releasectl:x\n") is None


def test_pins_reads_requirements_and_their_markers_only() -> None:
    text = (
        "--find-links /w\n--no-index\n# releasectl==9.9.9 in a comment\n"
        "a==1.0 \\\n    --hash=sha256:00\n    # via b\n"
        "b==2.0 ; sys_platform == 'nonexistent' \\\n    --hash=sha256:11\n"
        "Ruamel.Yaml==0.18.6 --hash=sha256:22\n"
    )
    assert pins(text) == {"a": "1.0", "ruamel-yaml": "0.18.6"}


# --- the workflows on the runner stand-in --------------------------------------------------


class Hub:
    """A registry pushed to a bare remote, and runs of its deploy.yml plan job."""

    def __init__(self, repo: Repo, root: Path) -> None:
        self.repo, self.root = repo, root
        self.remote = root / "remote.git"
        git(root, "init", "-q", "--bare", "-b", "main", str(self.remote))
        repo.git("remote", "add", "origin", str(self.remote))
        self.runs = 0

    def run(self, *, preinstalled: bool) -> RunResult:
        self.repo.git("push", "-q", "-f", "origin", "main")
        sha = git(self.remote, "rev-parse", "refs/heads/main")
        self.runs += 1
        env = {
            # actions/setup-python's python and the system: releasectl is not on this PATH
            "PATH": f"{tool_dir(self.root)}:/usr/bin:/bin",
            **PIP_ENV,
        }
        if preinstalled:
            env["RELEASECTL_PREINSTALLED"] = RELEASECTL
        return run_workflow(
            ROOT / ".github/workflows/deploy.yml",
            Event.push("refs/heads/main", sha, changed_files=["model-releases/README.md"]),
            remote=self.remote,
            workdir=self.root / f"run-{self.runs}",
            env=env,
            jobs=["plan"],
        )


def _failed_step(result: RunResult) -> tuple[str, str, list[tuple[str, str]]]:
    job = result.jobs["plan"]
    step = next(s for s in job.steps if s.outcome == "failure")
    return step.name, step.log, job.annotations


@pytest.mark.slow
def test_a_workflow_without_a_lock_stops_at_once_saying_what_to_set(
    registry: Repo, tmp_path: Path
) -> None:
    result = Hub(registry, tmp_path).run(preinstalled=False)
    assert result.conclusion == "failure"
    name, _, annotations = _failed_step(result)
    assert name == INSTALL
    assert any(
        f"no {LOCK_FILE} in HEAD" in text and "releasectl upgrade-workflows --index-url" in text
        for _, text in annotations
    ), annotations
    job = result.jobs["plan"]
    assert [s.outcome for s in job.steps][-2:] == ["skipped", "skipped"]
    assert job.workspace is not None
    assert not (job.workspace.parent / "temp" / "releasectl").exists()  # nothing installed


@pytest.mark.slow
def test_a_runner_install_of_another_version_than_the_lock_is_refused(
    registry: Repo, tmp_path: Path
) -> None:
    text = _lock(registry).replace(f"releasectl=={__version__} ", "releasectl==0.0.9 ")
    registry.write(LOCK_FILE, text)
    registry.commit("a lock of another version")
    result = Hub(registry, tmp_path).run(preinstalled=True)
    assert result.conclusion == "failure"
    name, log, annotations = _failed_step(result)
    assert name == CHECK
    assert any(
        f"releasectl {__version__} is running but {LOCK_FILE} pins releasectl 0.0.9" in text
        for _, text in annotations
    ), log
    assert result.step("plan", "What changed").outcome == "skipped"


@pytest.mark.slow
def test_a_runner_install_that_matches_the_lock_is_used(registry: Repo, tmp_path: Path) -> None:
    _lock(registry)
    registry.commit("lock")
    result = Hub(registry, tmp_path).run(preinstalled=True)
    assert result.conclusion == "success", _failed_step(result)
    log = result.step("plan", CHECK).log
    assert f"releasectl {__version__} and " in log and f"as {LOCK_FILE} pins them" in log


@pytest.mark.slow
def test_a_lock_with_a_wrong_hash_installs_nothing(registry: Repo, tmp_path: Path) -> None:
    text = _lock(registry)
    block = _hashed_blocks(text)[f"releasectl=={__version__}"]
    digest = re.findall(r"--hash=sha256:([0-9a-f]{64})", block)
    assert digest, block
    for d in digest:
        text = text.replace(d, ("0" if d[0] != "0" else "1") + d[1:])
    registry.write(LOCK_FILE, text)
    registry.commit("a lock whose releasectl hash is not the wheel's")
    result = Hub(registry, tmp_path).run(preinstalled=False)
    assert result.conclusion == "failure"
    name, log, _ = _failed_step(result)
    assert name == INSTALL
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in log and "releasectl" in log
    assert result.step("plan", CHECK).outcome == "skipped"


@pytest.mark.slow
def test_the_workflow_installs_releasectl_from_the_lock_with_hashes(tmp_path: Path) -> None:
    """The acceptance run: a registry that `init` made with a lock; the plan job's
    install step makes a virtual environment and installs the lock with
    --require-hashes from the local wheelhouse; ci setup and ci plan then run
    that install (releasectl is not on the runner's PATH otherwise)."""
    repo = _scratch(tmp_path)
    repo.ok("init", "--no-index", "--find-links", str(wheelhouse()))
    text = (repo.path / LOCK_FILE).read_text()
    result = Hub(repo, tmp_path).run(preinstalled=False)
    assert result.conclusion == "success", _failed_step(result)
    job = result.jobs["plan"]
    assert job.workspace is not None
    venv = job.workspace.parent / "temp" / "releasectl"
    assert (venv / "bin" / "releasectl").is_file()
    dist = next((venv / "lib").glob(f"python3.*/site-packages/releasectl-{__version__}.dist-info"))
    direct = dist / "direct_url.json"  # a wheel from the find-links folder, not a checkout
    assert not direct.exists() or "editable" not in json.loads(direct.read_text()).get(
        "dir_info", {}
    )
    check = result.step("plan", CHECK).log
    assert f"releasectl {__version__} and {len(pins(text)) - 1} dependencies" in check
    assert result.step("plan", "What changed").outcome == "success"
    assert job.outputs["count"] == "0"
