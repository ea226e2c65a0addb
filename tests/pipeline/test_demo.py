"""The README's first command: the demo runs end to end and tells the story."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testing.paths import ROOT
from testing.processes import bentoml_processes
from testing.repos import git


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = readme.split("```")
    first_code = blocks[1]
    assert "scripts/demo" in first_code and "scripts/test" in first_code
    assert (ROOT / ".ci/run").read_text().strip().endswith("exec scripts/test")


@pytest.mark.slow
def test_demo_runs_and_leaves_a_reverted_registry(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "releasectl", "demo", "--keep", str(keep)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    try:
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert "iris 1.0.0 passed: marked stable" in proc.stdout
        assert "the watcher pushed a revert: rejected/iris/v1.1.0" in proc.stdout
        assert "time to recover" in proc.stdout
        assert "after the switch: 0 of" in proc.stdout
        # the automatic revert reached the remote
        remote = keep / "remote.git"
        manifest = git(remote, "show", "main:model-releases/iris/release.yaml")
        assert "version: 1.0.0" in manifest and "rollback:" in manifest
        assert git(remote, "tag", "--list", "rejected/*") == "rejected/iris/v1.1.0"
        assert git(remote, "tag", "--list", "stable/*") == "stable/iris/v1.0.0"
    finally:
        # the demo stops what it started; make sure, by PID
        leftovers = bentoml_processes(keep)
        for p in leftovers:
            p.kill()
    assert not leftovers, "the demo left servers running"
