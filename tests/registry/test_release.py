"""`release` and `mark-stable`."""

from __future__ import annotations

import json
from pathlib import Path

from testing.histories import release, stable_pair
from testing.repos import Repo, assert_refused, make_key


def test_release_bumps_serial_and_makes_a_signed_commit_and_tag(registry: Repo) -> None:
    registry.add_model("iris")
    before = registry.head()
    out = json.loads(registry.ok("release", "iris", "1.0.0", "--json"))
    assert out["serial"] == 1 and out["tags"] == ["release/iris/v1.0.0"]
    assert registry.git("rev-parse", f"{out['commit']}^") == before
    assert registry.git("diff", "--name-only", before, out["commit"]) == (
        "model-releases/iris/release.yaml"
    )
    assert registry.git("rev-parse", "release/iris/v1.0.0^{commit}") == out["commit"]
    text = registry.git("show", "HEAD:model-releases/iris/release.yaml")
    assert "version: 1.0.0" in text and "serial: 1" in text
    assert text.startswith("# The release manifest of iris")  # comments kept
    assert registry.git("status", "--porcelain") == ""
    verified = json.loads(registry.ok("verify", "iris", "--json"))
    assert verified["ok"] is True


def test_release_refuses_a_version_not_greater(registry: Repo) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.1.0")
    assert_refused(registry, "release", "iris", "1.0.9", code=3, words="not greater")
    assert_refused(registry, "release", "iris", "1.1.0-rc.1", code=3, words="not greater")


def test_release_refuses_an_existing_tag(registry: Repo) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0")
    assert_refused(registry, "release", "iris", "1.0.0", code=3, words="already exists")


def test_release_refuses_a_dirty_folder(registry: Repo) -> None:
    registry.add_model("iris")
    registry.write("model-releases/iris/service.py", "# uncommitted\n")
    assert_refused(registry, "release", "iris", "1.0.0", code=1, words="uncommitted changes")


def test_release_of_a_merged_pull_request_tags_its_commit(registry: Repo) -> None:
    """The branch already declares the version (the PR changed the manifest):
    tag the merge commit after checking the PR commit's signature."""
    registry.add_model("iris")
    registry.git("checkout", "-q", "-b", "pr")
    manifest = registry.path / "model-releases/iris/release.yaml"
    manifest.write_text(
        manifest.read_text()
        .replace("version: 0.0.0", "version: 1.0.0")
        .replace("serial: 0", "serial: 1")
    )
    pr_commit = registry.commit("release iris 1.0.0 (PR)")
    registry.git("checkout", "-q", "main")
    registry.write("docs/x.md", "unrelated\n")
    registry.commit("docs on main")
    registry.git("merge", "-q", "--no-ff", "-S", "-m", "Merge PR", "pr")
    merge = registry.head()
    out = json.loads(registry.ok("release", "iris", "1.0.0", "--json"))
    assert out["commit"] is None  # no new commit
    assert registry.head() == merge
    assert registry.git("rev-parse", "release/iris/v1.0.0^{commit}") == merge
    checks = json.loads(registry.ok("verify", "iris", "1.0.0", "--json"))["checks"]
    assert any(pr_commit[:12] in c["name"] and c["ok"] for c in checks), checks


def test_release_of_a_merged_unsigned_pull_request_is_refused(registry: Repo) -> None:
    registry.add_model("iris")
    manifest = registry.path / "model-releases/iris/release.yaml"
    manifest.write_text(manifest.read_text().replace("version: 0.0.0", "version: 1.0.0"))
    registry.commit("unsigned bump", sign=False)
    assert_refused(registry, "release", "iris", "1.0.0", code=3, words="not signed")


def test_mark_stable_refuses_a_tag_that_does_not_verify(registry: Repo, tmp_path: Path) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0")
    registry.git("tag", "-a", "-m", "x", "release/iris/v1.0.1", "HEAD")  # unsigned
    assert_refused(registry, "mark-stable", "iris", "1.0.1", code=3, words="not signed")
    stranger = make_key(tmp_path / "s", "stranger")
    registry.git(
        "-c", f"user.signingkey={stranger}", "tag", "-s", "-m", "x", "release/iris/v1.0.2", "HEAD"
    )
    assert_refused(
        registry, "mark-stable", "iris", "1.0.2", code=3, words="not in the allowed signers"
    )


def test_mark_stable_refuses_a_rejected_release(registry: Repo) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    release(registry, "iris", "1.1.0")
    registry.ok("revert", "iris")
    assert_refused(registry, "mark-stable", "iris", "1.1.0", code=3, words="was rejected")


def test_mark_stable_twice_is_a_no_op(registry: Repo) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    before = registry.snapshot()
    assert "already stable" in registry.ok("mark-stable", "iris", "1.0.0")
    assert registry.snapshot() == before


def test_push_publishes_commit_and_tags(with_remote: tuple[Repo, Path]) -> None:
    repo, bare = with_remote
    repo.add_model("iris")
    repo.git("push", "-q", "origin", "main")
    repo.ok("release", "iris", "1.0.0", "--push")
    repo.ok("mark-stable", "iris", "1.0.0", "--push")
    from testing.repos import git

    assert git(bare, "rev-parse", "main") == repo.head()
    assert git(bare, "tag", "--list").split() == [
        "release/iris/v1.0.0",
        "stable/iris/v1.0.0",
    ]


def test_unsafe_stable_pair_helper_really_is_unsigned(registry: Repo) -> None:
    """Guard for the refusal tests: the hand-made tags are what they claim."""
    registry.add_model("iris")
    stable_pair(registry, "0.9.0", sign_key=None)
    assert "-----BEGIN" not in registry.git("cat-file", "tag", "release/iris/v0.9.0")


def test_dry_runs_write_nothing(registry: Repo, tmp_path: Path) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0")
    before = registry.snapshot()
    out = json.loads(registry.ok("release", "iris", "1.1.0", "--dry-run", "--json"))
    assert out == {
        "model": "iris",
        "version": "1.1.0",
        "serial": 2,
        "digest": None,  # no bentofile: no bundle (a bundle's digest: test_scaffold.py)
        "trains": False,
        "unsigned_sources": [],  # no source commit that a release signer did not sign
        "dry_run": True,
    }
    assert "would tag stable/iris/v1.0.0" in registry.ok(
        "mark-stable", "iris", "1.0.0", "--dry-run"
    )
    assert "would create" in registry.ok("new", "churn", "--dry-run")
    assert registry.snapshot() == before
    assert not (registry.path / "model-releases/churn").exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    from testing.repos import git

    git(fresh, "init", "-q", "-b", "main")
    for key, value in (
        ("user.email", registry.email),
        ("gpg.format", "ssh"),
        ("user.signingkey", str(registry.key)),
    ):
        git(fresh, "config", key, value)
    planned = json.loads(
        Repo(fresh, registry.key, registry.email).ok("init", "--dry-run", "--json")
    )
    assert ".releasectl/allowed_signers" in planned["created"] and planned["commit"] is None
    assert ".github/workflows/release.yml" in planned["created"]
    assert not (fresh / ".releasectl").exists()
