"""Shared fixtures. Every test runs with HOME, git's global config, BentoML's
home and releasectl's state pointed into a temporary folder, so nothing a test
does can read or write the developer's real configuration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# `scripts/bootstrap wheelhouse` (run by scripts/test) fills it: a wheel of every
# package .venv has, plus the extra pins the tests serve.
WHEELHOUSE = Path(__file__).resolve().parents[1] / ".venv" / "wheelhouse"


def _session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This session's temporary root, the one all xdist workers share."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    home = tmp_path_factory.mktemp("home")
    gitconfig = home / ".gitconfig"
    gitconfig.write_text(
        "[user]\n\tname = Test Operator\n\temail = operator@example.test\n"
        "[init]\n\tdefaultBranch = main\n"
        "[advice]\n\tdetachedHead = false\n"
    )
    os.environ.update(
        HOME=str(home),
        GIT_CONFIG_GLOBAL=str(gitconfig),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_EDITOR="false",
        BENTOML_HOME=str(home / "bentoml"),
        BENTOML_DO_NOT_TRACK="true",
        RELEASECTL_HOME=str(home / "releasectl-state"),
        # The local target serves each bento from an environment made by uv from its own
        # pins: made once per session (and shared by xdist workers, which the cache's
        # lock allows), from the local wheelhouse only, never an index.
        RELEASECTL_ENV_CACHE=str(_session_root(tmp_path_factory) / "bento-envs"),
        UV_NO_INDEX="1",
        UV_OFFLINE="1",  # and never the network, whatever a test's uv is asked
        UV_FIND_LINKS=str(WHEELHOUSE),
    )
    for var in ("SSH_AUTH_SOCK", "GNUPGHOME", "RELEASECTL_ALLOWED_SIGNERS"):
        os.environ.pop(var, None)


@pytest.fixture
def home() -> Path:
    return Path(os.environ["HOME"])


# --- real git repositories with real SSH signing keys -------------------------


RELEASECTL = str(Path(sys.executable).with_name("releasectl"))


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
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RELEASECTL, *args],
            cwd=self.path,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            check=False,
        )

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


@pytest.fixture
def registry(tmp_path: Path) -> Repo:
    """A registry (after `releasectl init`) with one signing key."""
    return new_repo(tmp_path)


@pytest.fixture
def with_remote(tmp_path: Path, registry: Repo) -> tuple[Repo, Path]:
    """The registry plus a bare remote `origin` that has main and the tags."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    registry.git("remote", "add", "origin", str(bare))
    registry.git("push", "-q", "-u", "origin", "main", "--tags")
    return registry, bare


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
