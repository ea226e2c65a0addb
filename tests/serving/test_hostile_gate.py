"""The deploy gate remembers: the highest state a target has served survives
`agent stop` and restarts, a verified `rejected/` release is never deployed,
and a release off the current branch is refused however good its tag. Real
iris bundles, real bentoml servers on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from releasectl.loopback import free_port
from testing.bentos import iris_registry
from testing.processes import bentoml_processes, state_home
from testing.repos import Repo

pytestmark = pytest.mark.slow


def _status(repo: Repo) -> dict[str, Any]:
    out = json.loads(repo.ok("status", "iris", "--json"))
    assert len(out) == 1
    return cast(dict[str, Any], out[0])


def _refused(repo: Repo, home: Path, *args: str, words: str) -> None:
    """Exit 3 naming why, and the target serves exactly what it served before."""
    before = _status(repo)
    servers = sorted(p.pid for p in bentoml_processes(home))
    proc = repo.cli("deploy", "iris", *args)
    assert proc.returncode == 3, (args, proc.stderr, proc.stdout)
    assert words in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    after = _status(repo)
    for key in ("live", "standby", "last_deploy"):
        assert after[key] == before[key], key
    assert sorted(p.pid for p in bentoml_processes(home)) == servers


def _high_water(home: Path) -> dict[str, Any]:
    doc = json.loads((home / "local" / "state.json").read_text())
    return cast(dict[str, Any], doc["models"]["iris"]["high_water"])


def test_the_gate_remembers_across_agent_stop_and_refuses_rejected_and_off_branch(
    tmp_path: Path,
) -> None:
    with state_home(tmp_path / "state") as home:
        r = iris_registry(tmp_path, free_port())
        r.ok("release", "iris", "1.0.0")
        r.ok("mark-stable", "iris", "1.0.0")
        r.write("model-releases/iris/NOTES.md", "2.0.0\n")
        r.commit("iris: 2.0.0")
        r.ok("release", "iris", "2.0.0")
        r.ok("deploy", "iris", "--version", "1.0.0")
        r.ok("deploy", "iris")
        v2 = r.git("rev-parse", "release/iris/v2.0.0^{commit}")
        assert _high_water(home)["serial"] == 2 and _high_water(home)["commit"] == v2

        # 2.0.0 is reverted in git (another operator's clone, say); its
        # rejected tag verifies. Redeploying it while it is still live: refused.
        r.ok("revert", "iris", "--reason", "bad answers")
        _refused(r, home, "--version", "2.0.0", words="rejected/iris/v2.0.0")

        # The target forgets its slots: `agent stop`, then a fresh agent.
        r.ok("agent", "stop")
        assert bentoml_processes(home) == []
        assert _status(r)["live"] is None  # as recorded: nothing live (status starts no agent)
        assert _high_water(home)["serial"] == 2
        # Variant 1: the rejected release, cold, on an empty target.
        _refused(r, home, "--version", "2.0.0", words="it is never deployed again")
        # Variant 2: an older release, replayed on an empty target.
        _refused(r, home, "--version", "1.0.0", words="not higher than the deployed serial 2")
        assert bentoml_processes(home) == []

        # The revert is new state: it deploys, and raises the mark.
        out = json.loads(r.ok("deploy", "iris", "--json"))
        assert out["version"] == "1.0.0" and out["fast_track"] is True and out["serial"] == 3
        assert _high_water(home) == {**_high_water(home), "serial": 3, "commit": r.head()}
        main = r.head()

        # Variant 3: a release made on a branch that is not the current one:
        # signed by a trusted key, its tag verifies, its serial is higher and
        # it descends from the deployed commit. Still refused.
        r.git("checkout", "-q", "-b", "side")
        r.write("model-releases/iris/NOTES.md", "9.0.0 on a side branch\n")
        r.commit("iris: side")
        r.ok("release", "iris", "9.0.0")
        side = r.head()
        r.git("checkout", "-q", "main")
        assert r.cli("verify", "iris", "9.0.0").returncode == 0
        _refused(r, home, "--version", "9.0.0", words="is not on the current branch")
        # ... and from the side branch's own checkout it deploys: the branch decides.
        r.git("checkout", "-q", "side")
        out = json.loads(r.ok("deploy", "iris", "--version", "9.0.0", "--json"))
        assert out["version"] == "9.0.0" and out["commit"] == side
        r.git("checkout", "-q", "main")
        # Back on main, main's state is older than what the target has served.
        _refused(r, home, words="not higher than the deployed serial 4")
        assert _status(r)["live"]["commit"] == side and r.head() == main
