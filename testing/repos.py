"""Scratch registries: real git repositories signed with real, throwaway SSH keys, the
`releasectl` executable run against them, and the check every refusal must pass."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from testing.cli import RELEASECTL as RELEASECTL
from testing.cli import run


def git(cwd: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}{proc.stdout}")
    return proc.stdout.strip()


def make_key(folder: Path, name: str) -> Path:
    """A throwaway ed25519 key (no passphrase, no agent), mode 0600."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    key.chmod(0o600)
    return key


@dataclass
class Repo:
    path: Path
    key: Path
    email: str

    def git(self, *args: str, **kwargs: object) -> str:
        return git(self.path, *args, **kwargs)  # type: ignore[arg-type]

    def cli(
        self, *args: str, env: dict[str, str] | None = None, process: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """`releasectl *args` here: in this process unless the run needs its own
        (`testing.cli`), or `process=True` because the boundary is the point."""
        return run(args, cwd=self.path, env=env, process=process)

    def ok(self, *args: str) -> str:
        proc = self.cli(*args)
        assert proc.returncode == 0, f"releasectl {' '.join(args)}: {proc.stderr}{proc.stdout}"
        return proc.stdout

    def write(self, rel: str, text: str) -> None:
        path = self.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self, message: str, *paths: str, sign: bool = True) -> str:
        self.git("add", "-A", "--", *paths)
        self.git("commit", "-q", "-S" if sign else "--no-gpg-sign", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def add_model(self, name: str, extra: dict[str, str] | None = None) -> None:
        from releasectl.manifest.edits import render_new

        self.write(f"model-releases/{name}/release.yaml", render_new(name))
        for rel, text in (extra or {"service.py": f"# {name} v0\n"}).items():
            self.write(f"model-releases/{name}/{rel}", text)
        self.commit(f"add {name}")

    def snapshot(self) -> tuple[str, str, str]:
        """Everything a failed command must leave as it was: refs, index and
        working tree state, and the objects reachable from refs."""
        refs = self.git("for-each-ref", "--format=%(refname) %(objectname)")
        status = self.git("status", "--porcelain", "--ignored", "--untracked-files=all")
        return refs, status, self.git("rev-parse", "HEAD")


def new_repo(root: Path, name: str = "repo", email: str = "operator@example.test") -> Repo:
    key = make_key(root / "keys", f"{name}-key")
    path = root / name
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    for key_, value in (
        ("user.email", email),
        ("user.name", "Test Operator"),
        ("gpg.format", "ssh"),
        ("user.signingkey", str(key)),
    ):
        git(path, "config", key_, value)
    repo = Repo(path, key, email)
    repo.ok("init")
    return repo


def copy_registry(template: Repo, root: Path) -> Repo:
    """`new_repo(root)` without running `init` again: a copy of a registry made by
    `new_repo` (its key beside it, at the same relative paths), with the two
    settings that name absolute paths pointed into the copy. One `init` a session
    instead of one a test (docs/ARCHITECTURE.md, "Performance budgets")."""
    source = template.path.parent
    key = root / template.key.relative_to(source)
    shutil.copytree(template.key.parent, key.parent, symlinks=True, dirs_exist_ok=True)
    path = root / template.path.relative_to(source)
    shutil.copytree(template.path, path, symlinks=True)
    git(path, "config", "user.signingkey", str(key))
    signers = git(path, "config", "gpg.ssh.allowedSignersFile")
    git_dir = template.path / ".git"
    git(
        path,
        "config",
        "gpg.ssh.allowedSignersFile",
        str(path / ".git" / Path(signers).relative_to(git_dir)),
    )
    return Repo(path, key, template.email)


def clone(bare: Path, dest: Path, key: Path, email: str) -> Repo:
    git(bare.parent, "clone", "-q", str(bare), str(dest))
    for key_, value in (
        ("user.email", email),
        ("user.name", "Test Operator"),
        ("gpg.format", "ssh"),
        ("user.signingkey", str(key)),
    ):
        git(dest, "config", key_, value)
    return Repo(dest, key, email)


def copy_repo(src: Repo, dest: Path) -> Repo:
    shutil.copytree(src.path, dest, symlinks=True)
    return Repo(dest, src.key, src.email)


def assert_refused(repo: Repo, *args: str, code: int, words: str) -> None:
    """`releasectl *args` refuses: exit `code`, one stderr line holding `words`, no
    traceback, and the repository (refs, index, working tree) exactly as before."""
    before = repo.snapshot()
    proc = repo.cli(*args)
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert words in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert repo.snapshot() == before
