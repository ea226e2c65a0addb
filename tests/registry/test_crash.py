"""kill -9 at any instant of a write: `release` and `revert --push` are killed
(SIGKILL, by releasectl's crash-test hook) right after their k-th git command,
for 20 values of k spread over the whole run; a fresh run of the same command
must then finish or undo what the dead one left, and the registry must be
consistent: no tag on a commit the branch does not contain, no half-synced
working tree, the rejected tag on the remote with the revert."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any, cast

from testing.histories import release
from testing.repos import Repo, git

POINTS = 20


def run_traced(repo: Repo, trace: Path, *args: str) -> int:
    """How many git commands a normal run of `args` makes."""
    proc = repo.cli(*args, env={"RELEASECTL_TEST_GIT_TRACE": str(trace)})
    assert proc.returncode == 0, proc.stderr
    return len(trace.read_text().splitlines())


def spread(calls: int) -> list[int]:
    return sorted({round(1 + i * (calls - 1) / (POINTS - 1)) for i in range(POINTS)})


def copy_world(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)
    return dest


def registry_tags(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname:short) %(*objectname)", "refs/tags")
    return dict(line.split(" ", 1) for line in out.splitlines() if line)


def assert_tags_on(repo: Path, branch_ref: str) -> None:
    for name, commit in registry_tags(repo).items():
        if name.startswith(("release/", "stable/", "rejected/")):
            assert (
                git(repo, "merge-base", "--is-ancestor", commit, branch_ref, check=False) == ""
            ), name
            proc = git(repo, "branch", "-a", "--contains", commit)
            assert proc, f"{name} points at a commit no branch contains"


def manifest(repo: Path, rev: str) -> dict[str, Any]:
    from ruamel.yaml import YAML

    return cast(
        dict[str, Any],
        YAML(typ="safe").load(git(repo, "show", f"{rev}:model-releases/iris/release.yaml")),
    )


def _killed(repo: Repo, k: int, *args: str) -> None:
    proc = repo.cli(*args, env={"RELEASECTL_TEST_CRASH_AFTER_GIT": str(k)})
    assert proc.returncode in (-signal.SIGKILL, 0), (k, proc.returncode, proc.stderr)


def test_release_killed_at_any_step_then_run_again_is_consistent(
    registry: Repo, tmp_path: Path
) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    registry.write("model-releases/iris/service.py", "# iris 1.1.0\n")
    registry.commit("iris 1.1.0")
    pristine = tmp_path / "pristine"
    shutil.copytree(registry.path, pristine, symlinks=True)
    calls = run_traced(registry, tmp_path / "trace", "release", "iris", "1.1.0")
    assert calls >= POINTS
    for k in spread(calls):
        world = copy_world(pristine, tmp_path / f"release-{k}")
        repo = Repo(world, registry.key, registry.email)
        _killed(repo, k, "release", "iris", "1.1.0")
        again = repo.cli("release", "iris", "1.1.0")
        # Either the dead run had not landed (undone, released now), or it had
        # (finished, and said so; the release then already exists).
        finished = "finished a change an interrupted run had landed" in again.stderr
        assert again.returncode == 0 or (finished and "already exists" in again.stderr), (
            k,
            again.stderr,
        )
        assert manifest(world, "main")["version"] == "1.1.0", k
        assert repo.cli("verify", "iris", "1.1.0").returncode == 0, k
        assert_tags_on(world, "main")
        assert repo.git("status", "--porcelain") == "", k
        assert not (world / ".git/releasectl/landing.json").exists(), k


def test_revert_push_killed_at_any_step_then_run_again_is_consistent(
    with_remote: tuple[Repo, Path], tmp_path: Path
) -> None:
    registry, bare = with_remote
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    registry.write("model-releases/iris/service.py", "# iris 1.1.0\n")
    registry.commit("iris 1.1.0")
    release(registry, "iris", "1.1.0")
    registry.git("push", "-q", "origin", "main", "--tags")
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    shutil.copytree(registry.path, pristine / "repo", symlinks=True)
    shutil.copytree(bare, pristine / "remote.git", symlinks=True)
    calls = run_traced(registry, tmp_path / "trace", "revert", "iris", "--push")
    assert calls >= POINTS
    for k in spread(calls):
        world = copy_world(pristine, tmp_path / f"revert-{k}")
        work, remote = world / "repo", world / "remote.git"
        git(work, "remote", "set-url", "origin", str(remote))
        repo = Repo(work, registry.key, registry.email)
        _killed(repo, k, "revert", "iris", "--push")
        again = repo.cli("revert", "iris", "--push", "--json")
        assert again.returncode == 0, (k, again.stderr)
        on_remote = manifest(remote, "main")
        assert (on_remote["version"], on_remote["rollback"]["from"]) == ("1.0.0", "1.1.0"), k
        rejected = git(remote, "rev-parse", "refs/tags/rejected/iris/v1.1.0^{commit}")
        assert rejected == git(remote, "rev-parse", "refs/tags/release/iris/v1.1.0^{commit}"), k
        assert_tags_on(remote, "main")
        repo.git("fetch", "-q", "origin")
        assert_tags_on(work, "refs/remotes/origin/main")
        assert not (work / ".git/releasectl/landing.json").exists(), k
        assert json.loads(repo.ok("show", "iris", "--json"))["last_stable"] == "1.0.0"
