"""One registry on every clone: registry tags travel with every --push and
with `releasectl sync`, differing tags are refused by name, bundles live in
one content-addressed store that every clone reaches through the committed
configuration. Real git, real keys, bare remotes, two or more clones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from ruamel.yaml import YAML

from testing.bentos import SETOSA, team_registry
from testing.processes import state_home
from testing.repos import Repo, clone, git

REGISTRY_TAGS = ("refs/tags/release", "refs/tags/stable", "refs/tags/rejected")


def remote_tags(bare: Path) -> set[str]:
    out = git(bare, "for-each-ref", "--format=%(refname:short)", *REGISTRY_TAGS)
    return set(out.split())


def fresh_clone(bare: Path, dest: Path, a: Repo) -> Repo:
    return clone(bare, dest, a.key, a.email)


def test_tags_made_without_push_travel_with_the_next_push(
    with_remote: tuple[Repo, Path], tmp_path: Path
) -> None:
    a, bare = with_remote
    a.add_model("iris")
    a.git("push", "-q", "origin", "main")
    a.ok("release", "iris", "1.0.0")
    a.ok("mark-stable", "iris", "1.0.0")
    a.write("model-releases/iris/service.py", "# iris v2\n")
    a.commit("iris v2")
    out = json.loads(a.ok("release", "iris", "1.1.0", "--push", "--json"))
    assert set(out["carried"]) == {"release/iris/v1.0.0", "stable/iris/v1.0.0"}
    assert remote_tags(bare) == {
        "release/iris/v1.0.0",
        "stable/iris/v1.0.0",
        "release/iris/v1.1.0",
    }

    b = fresh_clone(bare, tmp_path / "b", a)
    b.git("fetch", "-q", "--tags", "origin")
    assert b.cli("verify", "iris", "1.0.0").returncode == 0
    shown = json.loads(b.ok("show", "iris", "--json"))
    assert shown["version"] == "1.1.0" and shown["last_stable"] == "1.0.0"
    dry = json.loads(b.ok("revert", "iris", "--dry-run", "--json"))
    assert (dry["from"], dry["to"]) == ("1.1.0", "1.0.0")

    # mark-stable --push of a release already stable here still publishes the mark.
    a.ok("mark-stable", "iris", "1.1.0")
    again = json.loads(a.ok("mark-stable", "iris", "1.1.0", "--push", "--json"))
    assert again["created"] is False and again["carried"] == ["stable/iris/v1.1.0"]
    assert "stable/iris/v1.1.0" in remote_tags(bare)


def test_stray_and_forged_local_tags_are_not_published(
    with_remote: tuple[Repo, Path],
) -> None:
    a, bare = with_remote
    a.add_model("iris")
    a.ok("release", "iris", "1.0.0")
    a.git("push", "-q", "origin", "main")  # the branch, not the tags
    head = a.head()
    a.git("tag", "release/iris/v9.9.9", head)  # lightweight
    a.git("tag", "-a", "--no-sign", "-m", "trust me", "stable/iris/v1.0.0", head)  # unsigned
    out = json.loads(a.ok("sync", "--push", "--json"))
    assert out["pushed"] == ["release/iris/v1.0.0"]
    skipped = {item["tag"]: item["reason"] for item in out["skipped"]}
    assert set(skipped) == {"release/iris/v9.9.9", "stable/iris/v1.0.0"}
    assert "lightweight" in skipped["release/iris/v9.9.9"]
    assert "not signed" in skipped["stable/iris/v1.0.0"]
    assert remote_tags(bare) == {"release/iris/v1.0.0"}
    # A release whose commit the remote's branch lacks is not published either.
    a.git("tag", "-d", "release/iris/v9.9.9", "stable/iris/v1.0.0")
    a.write("model-releases/iris/service.py", "# iris v2\n")
    a.commit("iris v2")
    a.ok("release", "iris", "1.1.0")
    local_only = json.loads(a.ok("sync", "--push", "--json"))
    assert local_only["pushed"] == []
    assert {item["tag"]: item["reason"] for item in local_only["skipped"]}[
        "release/iris/v1.1.0"
    ] == "its commit is not on the branch being pushed"


def test_a_tag_that_differs_between_clones_is_refused_by_name(
    with_remote: tuple[Repo, Path], tmp_path: Path
) -> None:
    a, bare = with_remote
    a.add_model("iris")
    a.ok("release", "iris", "1.0.0", "--push")
    b = fresh_clone(bare, tmp_path / "b", a)
    b.git("fetch", "-q", "--tags", "origin")
    a.ok("mark-stable", "iris", "1.0.0", "--push")
    # B makes its own stable mark for the same release: same name, another object.
    b.git("tag", "-s", "-m", "mine", "stable/iris/v1.0.0", "release/iris/v1.0.0^{}")
    before_b, before_remote = b.snapshot(), remote_tags(bare)
    theirs = git(bare, "rev-parse", "refs/tags/stable/iris/v1.0.0")
    for args in (["sync"], ["sync", "--pull"], ["release", "iris", "1.1.0", "--push"]):
        proc = b.cli(*args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert "tag stable/iris/v1.0.0 differs between origin" in proc.stderr
        assert b.snapshot() == before_b
        assert remote_tags(bare) == before_remote
        assert git(bare, "rev-parse", "refs/tags/stable/iris/v1.0.0") == theirs


def test_sync_pull_fetches_what_another_clone_published(
    with_remote: tuple[Repo, Path], tmp_path: Path
) -> None:
    a, bare = with_remote
    a.add_model("iris")
    a.ok("release", "iris", "1.0.0", "--push")
    b = fresh_clone(bare, tmp_path / "b", a)
    a.ok("mark-stable", "iris", "1.0.0", "--push")
    dry = json.loads(b.ok("sync", "--pull", "--dry-run", "--json"))
    assert "stable/iris/v1.0.0" in dry["pulled"]
    assert b.git("tag", "--list", "stable/*") == ""
    out = json.loads(b.ok("sync", "--pull", "--json"))
    assert "stable/iris/v1.0.0" in out["pulled"] and out["pushed"] == []
    assert json.loads(b.ok("show", "iris", "--json"))["last_stable"] == "1.0.0"


def _bundle(repo: Repo, rev: str) -> dict[str, Any]:
    text = repo.git("show", f"{rev}:model-releases/iris/release.yaml")
    return cast(dict[str, Any], YAML(typ="safe").load(text)["bundle"])


@pytest.mark.slow
def test_two_proposals_of_one_version_store_side_by_side(tmp_path: Path) -> None:
    a, _, store = team_registry(tmp_path)
    a.ok("propose", "iris", "1.0.0")
    first = _bundle(a, "propose/iris/v1.0.0")
    a.git("branch", "-D", "propose/iris/v1.0.0")
    service = a.path / "model-releases/iris/service.py"
    service.write_text(service.read_text() + "\n# reworked after review\n")
    a.commit("iris: rework")
    a.ok("propose", "iris", "1.0.0")
    second = _bundle(a, "propose/iris/v1.0.0")
    assert first["digest"] != second["digest"]
    for pinned in (first, second):
        key = pinned["archive"]
        assert key == f"bundles/{pinned['digest'].removeprefix('sha256:')}.bento"
        sidecar = json.loads((store / f"{key}.json").read_text())
        assert sidecar["digest"] == pinned["digest"]
        assert (sidecar["model"], sidecar["version"]) == ("iris", "1.0.0")
    # Every key names its content: no two digests under one key.
    for sidecar_path in store.glob("bundles/*.json"):
        digest = json.loads(sidecar_path.read_text())["digest"]
        assert sidecar_path.name == f"{digest.removeprefix('sha256:')}.bento.json"


@pytest.mark.slow
def test_a_teammate_deploys_a_release_from_the_team_store(tmp_path: Path) -> None:
    a, bare, _ = team_registry(tmp_path)
    a.ok("release", "iris", "1.0.0", "--push")
    pinned = _bundle(a, "release/iris/v1.0.0")
    assert not pinned["archive"].startswith("/") and "://" not in pinned["archive"]
    b = fresh_clone(bare, tmp_path / "b", a)
    b.git("fetch", "-q", "--tags", "origin")
    with state_home(tmp_path / "b-state"):  # another machine's state home and default store
        out = json.loads(b.ok("deploy", "iris", "--json"))
        assert out["version"] == "1.0.0"
        port = YAML(typ="safe").load((b.path / "model-releases/iris/release.yaml").read_text())[
            "deploy"
        ]["port"]
        answer = httpx.post(
            f"http://127.0.0.1:{port}/predict", json={"features": SETOSA}, timeout=30
        )
        assert answer.status_code == 200 and answer.json()["version"] == "1.0.0"
        # Reads report what the local target serves, from its state alone.
        rows = json.loads(b.ok("history", "iris", "--json"))
        assert [(r["version"], r["live"]) for r in rows] == [("1.0.0", True)]
        assert json.loads(b.ok("show", "iris", "--json"))["live"]["version"] == "1.0.0"
