"""Read commands: history, show, list, schema; order from the branch, not clocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testing.histories import iris_and_fraud, release
from testing.repos import Repo


def test_history_json_shape_newest_first(registry: Repo) -> None:
    iris_and_fraud(registry)
    registry.ok("revert", "iris")
    everything = json.loads(registry.ok("history", "iris", "--json"))
    revert, *rows = everything  # the revert is the newest row
    assert revert["kind"] == "revert" and (revert["from"], revert["to"]) == ("1.2.0", "1.1.0")
    assert revert["commit"] == registry.head() and revert["by"] == registry.email
    assert revert["verified"] is True and revert["reason"] == "rollback"
    assert [r["kind"] for r in rows] == ["release"] * 3
    assert [r["version"] for r in rows] == ["1.2.0", "1.1.0", "1.0.0"]
    assert [(r["stable"], r["rejected"]) for r in rows] == [
        (False, True),
        (True, False),
        (True, False),
    ]
    assert all(r["verified"] and r["ignored"] == [] and not r["live"] for r in rows)
    first = rows[0]
    assert set(first) >= {"version", "tag", "commit", "stable", "rejected", "signer", "date"}
    assert first["tag"] == "release/iris/v1.2.0"
    assert first["commit"] == registry.git("rev-parse", "release/iris/v1.2.0^{commit}")
    assert first["signer"] == registry.email


def test_order_comes_from_the_branch_not_from_timestamps(registry: Repo) -> None:
    """Clocks lie: 1.1.0 is tagged with a date before 1.0.0's; the newer release
    on the branch is still the last stable one."""
    registry.add_model("iris")
    late = {"GIT_COMMITTER_DATE": "2030-01-01T00:00:00Z"}
    early = {"GIT_COMMITTER_DATE": "2001-01-01T00:00:00Z"}
    for version, env in (("1.0.0", late), ("1.1.0", early)):
        proc = registry.cli("release", "iris", version, env=env)
        assert proc.returncode == 0, proc.stderr
        assert registry.cli("mark-stable", "iris", version, env=env).returncode == 0
    release(registry, "iris", "1.2.0")
    rows = json.loads(registry.ok("history", "iris", "--json"))
    assert [r["version"] for r in rows] == ["1.2.0", "1.1.0", "1.0.0"]
    assert rows[1]["date"].startswith("2001") and rows[2]["date"].startswith("2030")
    assert json.loads(registry.ok("show", "iris", "--json"))["last_stable"] == "1.1.0"
    out = json.loads(registry.ok("revert", "iris", "--json"))
    assert out["to"] == "1.1.0"


def test_show_json_shape_and_a_past_version(registry: Repo) -> None:
    iris_and_fraud(registry)
    now = json.loads(registry.ok("show", "iris", "--json"))
    assert {k: now[k] for k in ("model", "version", "serial", "last_stable", "rollback")} == {
        "model": "iris",
        "version": "1.2.0",
        "serial": 3,
        "last_stable": "1.1.0",
        "rollback": None,
    }
    past = json.loads(registry.ok("show", "iris", "--version", "1.0.0", "--json"))
    assert past["version"] == "1.0.0" and past["serial"] == 1 and past["stable"] is True


def test_list_shows_every_model(registry: Repo) -> None:
    iris_and_fraud(registry)
    registry.ok("revert", "iris")
    rows = {r["model"]: r for r in json.loads(registry.ok("list", "--json"))}
    assert rows["iris"]["version"] == "1.1.0" and rows["iris"]["reverted"] is True
    assert rows["fraud"] == {
        "model": "fraud",
        "version": "2.0.0",
        "serial": 1,
        "last_stable": None,
        "reverted": False,
    }
    table = registry.ok("list")
    assert "iris" in table and "reverted" in table


def test_history_of_a_model_without_releases(registry: Repo) -> None:
    registry.add_model("iris")
    assert json.loads(registry.ok("history", "iris", "--json")) == []
    assert "no releases yet" in registry.ok("history", "iris")


def test_verify_reports_each_check(registry: Repo) -> None:
    iris_and_fraud(registry)
    out = registry.ok("verify", "iris", "1.1.0")
    assert out.count("ok  ") == 4 and "verified" in out


def test_schema_is_a_json_schema_that_refuses_unknown_keys(registry: Repo) -> None:
    schema = json.loads(registry.ok("schema"))
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["additionalProperties"] is False
    assert {"apiVersion", "model", "version", "serial", "bundle"} <= set(schema["required"])
    assert "rollback" in schema["properties"]


@pytest.mark.slow  # its release trains and builds the scaffolded bundle (bentoml build)
def test_new_scaffolds_a_model_that_releases(registry: Repo) -> None:
    out = registry.ok("new", "churn")
    assert "model-releases/churn/release.yaml" in out
    registry.commit("add churn")
    release(registry, "churn", "0.1.0")
    assert json.loads(registry.ok("show", "churn", "--json"))["version"] == "0.1.0"
    again = registry.cli("new", "churn")
    assert again.returncode == 2 and "already exists" in again.stderr


def test_live_follows_the_state_the_target_serves_a_revert_included(
    registry: Repo, tmp_path: Path
) -> None:
    """After a revert, the target serves the revert's state (its own commit), which
    restored 1.1.0: `history` marks 1.1.0 live, as `status` shows it."""
    iris_and_fraud(registry)
    registry.ok("revert", "iris")
    home = tmp_path / "state"
    (home / "local").mkdir(parents=True)
    live = {"version": "1.1.0", "commit": registry.head(), "serial": 5, "since": None}
    (home / "local" / "state.json").write_text(json.dumps({"models": {"iris": {"live": live}}}))
    shown = registry.cli("history", "iris", "--json", env={"RELEASECTL_HOME": str(home)})
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert [r["version"] for r in rows if r.get("live")] == ["1.1.0"]
