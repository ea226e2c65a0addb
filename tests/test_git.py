"""A value that reaches git from a ref, a journal or a file is never read as an
option: each reader puts `--end-of-options` before it, so a crafted revision such
as `--output=FILE` names no revision (nothing found) and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from releasectl import git as g
from releasectl.git import GitError, open_repo
from testing.repos import Repo
from testing.repos import git as run_git

READERS: dict[str, Callable[[g.Git, str], object]] = {
    "rev_parse": lambda git, rev: g.rev_parse(git, rev),
    "read_blob": lambda git, rev: g.read_blob(git, rev, "x"),
    "tree_id": lambda git, rev: g.tree_id(git, rev, "x"),
    "tree_entries": lambda git, rev: g.tree_entries(git, rev, "x"),
    "first_parent_changes": lambda git, rev: g.first_parent_changes(git, rev, ["x"]),
    "last_change": lambda git, rev: g.last_change(git, rev, "x"),
    "last_change_on_branch": lambda git, rev: g.last_change_on_branch(git, rev, "x"),
    "trailers": lambda git, rev: g.trailers(git, rev),
    "is_ancestor": lambda git, rev: g.is_ancestor(git, rev, "HEAD"),
}


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("repo")
    run_git(path, "init", "-q", "-b", "main")
    (path / "x").write_text("x\n")
    run_git(path, "add", "x")
    run_git(path, "-c", "user.name=T", "-c", "user.email=t@example.test", "commit", "-qm", "x")
    return path


@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_revision_shaped_like_an_option_writes_nothing(
    repo: Path, tmp_path: Path, reader: str
) -> None:
    planted = tmp_path / "planted"
    git = open_repo(repo)
    try:
        found = READERS[reader](git, f"--output={planted}")
    except GitError:
        found = None  # refused as no such revision: as good as nothing found
    assert not planted.exists()
    assert not found


@pytest.mark.parametrize("value", ["abc", "-5", "0", "1e9x", "²", "inf", "nan", "9" * 400])
def test_a_network_timeout_that_is_not_seconds_is_bad_input(
    with_remote: tuple[Repo, Path], value: str
) -> None:
    """`RELEASECTL_GIT_TIMEOUT` is read where a fetch or push starts: a value that
    is not a positive number of seconds is exit 2 in one line, not a crash."""
    registry, _ = with_remote
    before = registry.snapshot()
    proc = registry.cli("sync", env={"RELEASECTL_GIT_TIMEOUT": value})
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.count("\n") == 1 and "RELEASECTL_GIT_TIMEOUT" in proc.stderr
    assert registry.snapshot() == before
