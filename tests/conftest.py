"""Shared fixtures, and only fixtures (plus the run order's hook, from
`testing.schedule`): the helpers live in the top-level `testing` package. Every
test runs with HOME, git's global config, BentoML's home and releasectl's state
pointed into a temporary folder, so nothing a test does can read or write the
developer's real configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testing.repos import Repo, copy_registry, git, new_repo
from testing.schedule import pytest_collection_modifyitems as pytest_collection_modifyitems
from testing.wheels import WHEELHOUSE


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


# --- scratch registries (testing/repos.py) ----------------------------------------


@pytest.fixture(scope="session")
def _registry_template(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """One `releasectl init` per worker; each test gets a copy (`registry`)."""
    return new_repo(tmp_path_factory.mktemp("registry-template"))


@pytest.fixture
def registry(tmp_path: Path, _registry_template: Repo) -> Repo:
    """A registry (after `releasectl init`) with one signing key."""
    return copy_registry(_registry_template, tmp_path)


@pytest.fixture
def with_remote(tmp_path: Path, registry: Repo) -> tuple[Repo, Path]:
    """The registry plus a bare remote `origin` that has main and the tags."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    registry.git("remote", "add", "origin", str(bare))
    registry.git("push", "-q", "-u", "origin", "main", "--tags")
    return registry, bare
