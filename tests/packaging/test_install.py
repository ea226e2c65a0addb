"""The README's Install section, run as written
(docs/ARCHITECTURE.md, "Supply chain"): a clone of this repository, a fresh
virtual environment, `pip install './releasectl[example]'` and `releasectl
--version`. Offline, as the other
packaging tests: pip reads no configuration and no index, only the local
wheelhouse (the dependencies) and the publish tools' wheels (setuptools, which
the build from the clone needs). The one change: the clone's URL is this
working tree."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import cast

import pytest

from releasectl import __version__
from testing.paths import ROOT
from testing.wheels import clean_env, wheelhouse

pytestmark = pytest.mark.slow

URL = "<repository-url>"


def _block() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Install\n")
    section = readme[start : readme.index("\n## ", start + 1)]
    [block] = re.findall(r"```sh\n(.*?)```", section, re.S)
    return cast(str, block)


def test_the_install_section_is_what_the_next_test_runs() -> None:
    assert _block().splitlines() == [
        f"git clone {URL} releasectl",
        "python3 -m venv .venv && . .venv/bin/activate",
        "pip install './releasectl[example]'",
        "releasectl --version",
    ]


def test_the_readme_install_section_installs_a_working_releasectl(tmp_path: Path) -> None:
    tools = tmp_path / "tools"  # python3 (the base interpreter) and git, nothing else
    tools.mkdir()
    (tools / "python3").symlink_to(getattr(sys, "_base_executable", sys.executable))
    links = f"{wheelhouse()} {ROOT / '.venv' / 'wheelhouse-publish'}"
    env = clean_env(
        PATH=f"{tools}{os.pathsep}/usr/bin{os.pathsep}/bin",
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=links,
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    script = _block().replace(URL, shlex.quote(str(ROOT)))
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert proc.returncode == 0, f"{proc.stderr[-3000:]}{proc.stdout[-2000:]}"
    assert proc.stdout.splitlines()[-1] == f"releasectl {__version__}"
    # The venv's own copy, built from the clone: not this working tree, not editable.
    where = subprocess.run(
        [str(tmp_path / ".venv" / "bin" / "python"), "-c",
         "import releasectl, sklearn; print(releasectl.__file__)"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(tmp_path / ".venv")), where
