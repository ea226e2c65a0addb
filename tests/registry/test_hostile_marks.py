"""Only verified marks decide; plans are made from what the last fetch brought.

An attacker here has push rights but no trusted key: they can create tags,
lightweight or signed by their own key, or copy a genuine tag object under
another name. Real git, real SSH keys, bare remotes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from testing.histories import three_releases
from testing.repos import Repo, clone, git, make_key

Forge = Callable[[Repo, str, str], None]


def lightweight(repo: Repo, name: str, target: str) -> None:
    repo.git("tag", name, target)


def stranger_signed(repo: Repo, name: str, target: str) -> None:
    """Annotated and signed, by a key that is not in the allowed signers."""
    key = repo.path.parent / "stranger" / "stranger-key"
    if not key.exists():
        make_key(key.parent, key.name)
    repo.git("-c", f"user.signingkey={key}", "tag", "-s", "-m", "looks fine", name, target)


def copied(repo: Repo, name: str, target: str) -> None:
    """A genuine signed tag object (made by a trusted key for another name)
    placed under `name`: the name inside the object says otherwise."""
    decoy = name.replace("/v", "/decoy-v")
    repo.git("tag", "-s", "-m", "genuine, for another name", decoy, target)
    obj = repo.git("rev-parse", f"refs/tags/{decoy}")
    repo.git("update-ref", f"refs/tags/{name}", obj)
    repo.git("tag", "-d", decoy)


FORGERIES = [lightweight, stranger_signed, copied]


def commit_of(repo: Repo, version: str) -> str:
    return repo.git("rev-parse", f"release/iris/v{version}^{{commit}}")


@pytest.mark.parametrize("forge", FORGERIES, ids=lambda f: f.__name__)
def test_a_forged_stable_mark_does_not_pick_the_revert_target(registry: Repo, forge: Forge) -> None:
    three_releases(registry)
    forge(registry, "stable/iris/v1.1.0", commit_of(registry, "1.1.0"))
    plan = json.loads(registry.ok("revert", "iris", "--dry-run", "--json"))
    assert (plan["from"], plan["to"]) == ("1.2.0", "1.0.0")
    before = registry.snapshot()
    proc = registry.cli("revert", "iris", "--to", "1.1.0")
    assert proc.returncode == 3
    assert "stable/iris/v1.1.0" in proc.stderr or "not marked stable" in proc.stderr
    assert registry.snapshot() == before


@pytest.mark.parametrize("forge", FORGERIES, ids=lambda f: f.__name__)
def test_a_forged_mark_on_the_current_release_does_not_stop_the_revert(
    registry: Repo, forge: Forge
) -> None:
    three_releases(registry)
    forge(registry, "stable/iris/v1.2.0", commit_of(registry, "1.2.0"))
    proc = registry.cli("revert", "iris", "--reason", "incident")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(registry.ok("show", "iris", "--json"))
    assert (shown["version"], shown["rollback"]["from"]) == ("1.0.0", "1.2.0")


@pytest.mark.parametrize("forge", FORGERIES, ids=lambda f: f.__name__)
def test_a_forged_rejected_mark_neither_blocks_nor_hides_a_stable_release(
    registry: Repo, forge: Forge
) -> None:
    three_releases(registry)
    forge(registry, "rejected/iris/v1.0.0", commit_of(registry, "1.0.0"))
    plan = json.loads(registry.ok("revert", "iris", "--dry-run", "--json"))
    assert plan["to"] == "1.0.0"
    forge(registry, "rejected/iris/v1.1.0", commit_of(registry, "1.1.0"))
    out = registry.cli("mark-stable", "iris", "1.1.0")
    assert out.returncode == 0, out.stderr
    assert json.loads(registry.ok("show", "iris", "--json"))["last_stable"] == "1.1.0"


def test_mark_stable_under_a_taken_name_is_refused_and_says_why(registry: Repo) -> None:
    three_releases(registry)
    lightweight(registry, "stable/iris/v1.1.0", commit_of(registry, "1.1.0"))
    before = registry.snapshot()
    proc = registry.cli("mark-stable", "iris", "1.1.0")
    assert proc.returncode == 3
    assert "stable/iris/v1.1.0 exists but does not verify" in proc.stderr
    assert registry.snapshot() == before


@pytest.mark.parametrize("forge", [lightweight, stranger_signed], ids=lambda f: f.__name__)
def test_a_hand_made_release_tag_raises_no_bar(registry: Repo, forge: Forge) -> None:
    three_releases(registry)
    forge(registry, "release/iris/v9.9.9", registry.head())
    registry.write("model-releases/iris/service.py", "# iris 1.3.0\n")
    registry.commit("iris 1.3.0")
    proc = registry.cli("release", "iris", "1.3.0")
    assert proc.returncode == 0, proc.stderr


def _team(tmp_path: Path, registry: Repo) -> tuple[Repo, Repo, Path]:
    """The operator's clone and CI's clone of one remote, both at iris 1.2.0."""
    three_releases(registry)
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    registry.git("remote", "add", "origin", str(bare))
    registry.git("push", "-q", "-u", "origin", "main", "--tags")
    ci = clone(bare, tmp_path / "ci", registry.key, registry.email)
    ci.git("fetch", "-q", "--tags", "origin")
    return registry, ci, bare


def _remote_manifest_version(bare: Path) -> str:
    text = git(bare, "show", "main:model-releases/iris/release.yaml")
    return next(line.split()[1] for line in text.splitlines() if line.startswith("version:"))


def test_revert_push_plans_with_a_stable_mark_pushed_meanwhile(
    tmp_path: Path, registry: Repo
) -> None:
    operator, ci, bare = _team(tmp_path, registry)
    # The operator's command reads the registry, CI marks 1.1.0 stable on the remote...
    ci.ok("mark-stable", "iris", "1.1.0", "--push")
    assert operator.git("tag", "--list", "stable/iris/v1.1.0") == ""
    # ...and the revert, planned after its fetch, goes back to 1.1.0, not 1.0.0.
    out = json.loads(operator.ok("revert", "iris", "--push", "--json"))
    assert (out["from"], out["to"]) == ("1.2.0", "1.1.0")
    assert _remote_manifest_version(bare) == "1.1.0"
    assert git(bare, "rev-parse", "--verify", "refs/tags/rejected/iris/v1.2.0")


def test_revert_push_plans_with_a_rejection_pushed_meanwhile(
    tmp_path: Path, registry: Repo
) -> None:
    operator, ci, bare = _team(tmp_path, registry)
    operator.ok("mark-stable", "iris", "1.1.0", "--push")
    ci.git("fetch", "-q", "--tags", "origin")
    # CI reverts first: 1.2.0 -> 1.1.0, and later 1.1.0 is rolled back too.
    ci.git("pull", "-q", "--ff-only")
    ci.ok("revert", "iris", "--push")
    ci.ok("revert", "iris", "--to", "1.0.0", "--push", "--reason", "1.1.0 is bad as well")
    out = operator.cli("revert", "iris", "--push", "--json")
    assert out.returncode == 0, out.stderr
    # On the remote's tip the model is already at 1.0.0, its last stable release.
    assert _remote_manifest_version(bare) == "1.0.0"
    assert "already" in out.stdout


@pytest.mark.parametrize("command", [["release", "iris", "1.3.0"], ["revert", "iris"]])
def test_a_held_index_lock_is_waited_on_then_refused_with_nothing_written(
    registry: Repo, command: list[str]
) -> None:
    three_releases(registry)
    registry.write("model-releases/iris/service.py", "# iris 1.3.0\n")
    registry.commit("iris 1.3.0")
    lock = registry.path / ".git" / "index.lock"
    lock.write_text("")  # another git process is at work
    try:
        before = registry.snapshot()
        proc = registry.cli(*command)
        assert proc.returncode == 1, proc.stderr
        assert "index.lock" in proc.stderr and "nothing was written" in proc.stderr
        assert registry.snapshot() == before
    finally:
        lock.unlink()
    assert registry.cli(*command).returncode == 0  # the lock gone, the same command lands


@pytest.mark.parametrize("forge", [lightweight, stranger_signed], ids=lambda f: f.__name__)
def test_a_hand_made_release_tag_blocks_no_pull_request(registry: Repo, forge: Forge) -> None:
    three_releases(registry)
    base = registry.head()
    forge(registry, "release/iris/v99.0.0", base)
    proposed = registry.cli("propose", "iris", "1.3.0", "--no-build")
    assert proposed.returncode == 0, proposed.stderr
    registry.git("checkout", "-q", "propose/iris/v1.3.0")
    proc = registry.cli("check", "--base", base, "--no-build", "--json")
    findings = json.loads(proc.stdout)["findings"]
    version = [f for f in findings if f["check"] == "version"]
    assert version and all(f["ok"] for f in version), findings
