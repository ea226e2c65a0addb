"""A new team's first steps: `init` points git's own signature checks at the
trust root releasectl verified, `new` before `init` is refused naming `init`,
and a repository without a commit (empty, or a clone that checked nothing out)
is one line saying so. Real git, real SSH keys, the real executable."""

from __future__ import annotations

import subprocess
from pathlib import Path

from testing.cli import run as run_cli
from testing.repos import Repo, git, make_key


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def _signature(repo: Repo, rev: str = "HEAD") -> str:
    """What git itself says about a commit's signature, with the repository's config."""
    return repo.git("log", "-1", "--show-signature", "--format=%H", rev)


def test_init_points_git_log_at_the_verified_trust_root(registry: Repo, tmp_path: Path) -> None:
    configured = registry.git("config", "--get", "gpg.ssh.allowedSignersFile")
    git_dir = Path(registry.git("rev-parse", "--absolute-git-dir"))
    assert Path(configured) == git_dir / "releasectl" / "allowed_signers"
    assert 'Good "git" signature for operator@example.test' in _signature(registry)

    # The working-tree file is not what git reads: a key written there, uncommitted,
    # does not make its signatures good.
    stranger = make_key(tmp_path / "keys", "stranger")
    public = stranger.with_name("stranger.pub").read_text().split()
    allowed = registry.path / ".releasectl/allowed_signers"
    allowed.write_text(allowed.read_text() + f"stranger@example.test {' '.join(public[:2])}\n")
    registry.write("docs/notes.md", "by a stranger\n")
    registry.git("add", "docs/notes.md")
    registry.git(
        "-c", f"user.signingkey={stranger}", "-c", "user.email=stranger@example.test",
        "commit", "-q", "-S", "-m", "a stranger's commit",
    )  # fmt: skip
    shown = _signature(registry)
    assert "signature for stranger" not in shown and "No principal matched" in shown
    registry.git("checkout", "-q", "--", ".releasectl/allowed_signers")

    # A teammate added by a trusted, signed change: after releasectl has read the
    # trust root at HEAD, git agrees with it.
    registry.git("reset", "-q", "--hard", "HEAD~1")
    allowed.write_text(allowed.read_text() + f"stranger@example.test {' '.join(public[:2])}\n")
    registry.commit("trust: a teammate")
    registry.ok("list")
    registry.write("docs/notes.md", "by the teammate\n")
    registry.git("add", "docs/notes.md")
    registry.git(
        "-c", f"user.signingkey={stranger}", "-c", "user.email=stranger@example.test",
        "commit", "-q", "-S", "-m", "the teammate's commit",
    )  # fmt: skip
    assert 'Good "git" signature for stranger@example.test' in _signature(registry)

    # Running init again changes nothing and says so.
    assert "nothing to do" in registry.ok("init")


def test_new_before_init_is_refused_naming_init(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    git(repo, "commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", "a repository")
    for args in (["new", "iris"], ["new", "iris", "--dry-run"]):
        proc = run_cli(args, cwd=repo)
        assert proc.returncode == 2, proc.stderr
        line = _one_line(proc)
        assert "not a registry yet" in line and "`releasectl init`" in line
    assert not (repo / "model-releases").exists()


def _refused_in(where: Path, *args: str) -> str:
    proc = run_cli(args, cwd=where)
    assert proc.returncode in (1, 2), (args, proc.stderr)
    line = _one_line(proc)
    assert "exit code 128" not in line and "bad revision" not in line, line
    return line


COMMANDS = (
    ["list"],
    ["history", "iris"],
    ["show", "iris"],
    ["release", "iris", "1.0.0"],
    ["deploy", "iris", "--dry-run"],
)


def test_an_empty_repository_is_one_line_that_says_so(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q", "-b", "main")
    for args in (*COMMANDS, ["new", "iris"]):
        line = _refused_in(empty, *args)
        assert "this repository has no commits yet" in line and "releasectl init" in line, line


def test_a_clone_whose_head_has_no_commit_is_told_to_check_out_a_branch(
    registry: Repo, tmp_path: Path
) -> None:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "trunk", str(bare))  # its HEAD: trunk, unborn
    registry.git("remote", "add", "origin", str(bare))
    registry.git("push", "-q", "origin", "main")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(bare), str(clone))  # checks nothing out
    for args in (*COMMANDS, ["new", "iris"]):
        line = _refused_in(clone, *args)
        assert "trunk has no commits yet" in line and "git checkout main" in line, line
