"""Shared fixtures. Every test runs with HOME, git's global config, BentoML's
home and releasectl's state pointed into a temporary folder, so nothing a test
does can read or write the developer's real configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
    )
    for var in ("SSH_AUTH_SOCK", "GNUPGHOME", "RELEASECTL_ALLOWED_SIGNERS"):
        os.environ.pop(var, None)


@pytest.fixture
def home() -> Path:
    return Path(os.environ["HOME"])
