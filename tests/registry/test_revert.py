"""`releasectl revert`: one signed commit back to the last stable release."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
from ruamel.yaml import YAML

from testing.histories import iris_and_fraud, release, stable_pair
from testing.repos import Repo, assert_refused, make_key


def tree(repo: Repo, rev: str, path: str = "") -> dict[str, str]:
    out = repo.git("ls-tree", "-r", rev, "--", *([path] if path else []))
    return {line.split("\t")[1]: line.split()[2] for line in out.splitlines()}


def yaml_at(repo: Repo, rev: str, path: str) -> dict[str, Any]:
    return cast(dict[str, Any], YAML(typ="safe").load(repo.git("show", f"{rev}:{path}")))


def trailers(repo: Repo, rev: str) -> dict[str, str]:
    out = repo.git("log", "-1", "--format=%(trailers:only,unfold)", rev)
    return dict(line.split(": ", 1) for line in out.splitlines() if line)


def verify_with_allowed_signers(repo: Repo, kind: str, ref: str) -> str:
    """git's own verification against the repository's allowed signers (stderr)."""
    allowed = repo.path / ".releasectl" / "allowed_signers"
    proc = subprocess.run(
        ["git", "-c", f"gpg.ssh.allowedSignersFile={allowed}", f"verify-{kind}", ref],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stderr


def test_revert_makes_one_commit_that_restores_only_the_model(registry: Repo) -> None:
    before = iris_and_fraud(registry)["head"]
    serial_before = yaml_at(registry, before, "model-releases/iris/release.yaml")["serial"]

    proc = registry.cli("revert", "iris", "--reason", "error rate")
    assert proc.returncode == 0, proc.stderr
    assert "1.2.0 -> 1.1.0" in proc.stdout

    after = registry.head()
    assert registry.git("rev-list", "--count", f"{before}..{after}") == "1"
    assert registry.git("rev-parse", f"{after}^") == before

    stable = "release/iris/v1.1.0"
    restored = tree(registry, after, "model-releases/iris")
    expected = tree(registry, stable, "model-releases/iris")
    manifest = "model-releases/iris/release.yaml"
    assert {k: v for k, v in restored.items() if k != manifest} == {
        k: v for k, v in expected.items() if k != manifest
    }
    assert "model-releases/iris/extra/new.txt" not in restored  # added by 1.2.0, gone

    new = yaml_at(registry, after, manifest)
    old = yaml_at(registry, stable, manifest)
    rollback = new.pop("rollback")
    assert new.pop("serial") == serial_before + 1
    old.pop("serial")
    assert new == old
    assert rollback["from"] == "1.2.0" and rollback["to"] == "1.1.0"
    assert rollback["reason"] == "error rate" and rollback["by"] == registry.email
    # the user's comments survive the edit
    assert registry.git("show", f"{after}:{manifest}").startswith("# The release manifest of iris")

    # every other path byte-identical
    others_before = {
        k: v for k, v in tree(registry, before).items() if not k.startswith("model-releases/iris/")
    }
    others_after = {
        k: v for k, v in tree(registry, after).items() if not k.startswith("model-releases/iris/")
    }
    assert others_before == others_after

    assert 'Good "git" signature for operator@example.test' in verify_with_allowed_signers(
        registry, "commit", after
    )
    assert 'Good "git" signature for operator@example.test' in verify_with_allowed_signers(
        registry, "tag", "rejected/iris/v1.2.0"
    )
    assert registry.git("rev-parse", "rejected/iris/v1.2.0^{commit}") == registry.git(
        "rev-parse", "release/iris/v1.2.0^{commit}"
    )
    t = trailers(registry, after)
    assert t["Releasectl-Model"] == "iris"
    assert t["Releasectl-Revert-From"] == "1.2.0"
    assert t["Releasectl-Revert-To"] == "1.1.0"
    assert registry.git("log", "-1", "--format=%s", after).startswith('Revert "iris 1.2.0"')
    # the working tree follows: nothing left to commit
    assert registry.git("status", "--porcelain") == ""

    show = json.loads(registry.ok("show", "iris", "--json"))
    assert show["version"] == "1.1.0" and show["serial"] == serial_before + 1
    assert show["rollback"]["from"] == "1.2.0" and show["last_stable"] == "1.1.0"


def test_revert_when_already_at_last_stable_changes_nothing(registry: Repo) -> None:
    iris_and_fraud(registry)
    registry.ok("revert", "iris")
    before = registry.snapshot()
    proc = registry.cli("revert", "iris")
    assert proc.returncode == 0
    assert "already at its last stable release 1.1.0" in proc.stdout
    assert "--to" in proc.stdout
    assert registry.snapshot() == before


def test_revert_to_an_older_stable_release(registry: Repo) -> None:
    iris_and_fraud(registry)
    registry.ok("revert", "iris", "--to", "1.0.0", "--reason", "both bad")
    show = json.loads(registry.ok("show", "iris", "--json"))
    assert show["version"] == "1.0.0" and show["rollback"]["from"] == "1.2.0"
    assert registry.git("show", "HEAD:model-releases/iris/service.py") == "# iris v1"


def test_dry_run_prints_diff_and_message_and_writes_nothing(registry: Repo) -> None:
    iris_and_fraud(registry)
    before = registry.snapshot()
    objects = registry.git("count-objects", "-v")
    proc = registry.cli("revert", "iris", "--dry-run", "--reason", "error rate")
    assert proc.returncode == 0, proc.stderr
    assert 'Revert "iris 1.2.0"' in proc.stdout
    assert "Releasectl-Revert-To: 1.1.0" in proc.stdout
    assert "-version: 1.2.0" in proc.stdout and "+version: 1.1.0" in proc.stdout
    assert "-# iris v1.2 (bad)" in proc.stdout  # the bundle sources' diff too
    assert registry.snapshot() == before
    assert registry.git("count-objects", "-v") == objects


def test_refuses_a_target_that_is_not_stable(registry: Repo) -> None:
    iris_and_fraud(registry)
    registry.ok("release", "iris", "1.3.0")
    assert_refused(registry, "revert", "iris", "--to", "1.2.0", code=3, words="not marked stable")


def test_refuses_a_rejected_target(registry: Repo) -> None:
    iris_and_fraud(registry)
    registry.ok("revert", "iris")
    # 1.1.0 goes bad too: revert to 1.0.0 rejects it ...
    registry.ok("revert", "iris", "--to", "1.0.0")
    # ... so it is never a target again
    assert_refused(registry, "revert", "iris", "--to", "1.1.0", code=3, words="was rejected")


def test_refuses_an_unsigned_target_tag(registry: Repo) -> None:
    iris_and_fraud(registry)
    stable_pair(registry, "1.2.5", sign_key=None)
    assert_refused(registry, "revert", "iris", "--to", "1.2.5", code=3, words="not signed")


def test_refuses_a_target_signed_by_a_key_not_allowed(registry: Repo, tmp_path: Path) -> None:
    iris_and_fraud(registry)
    stranger = make_key(tmp_path / "other", "stranger")
    stable_pair(registry, "1.2.5", sign_key=stranger)
    assert_refused(
        registry, "revert", "iris", "--to", "1.2.5", code=3, words="not in the allowed signers"
    )


def test_refuses_a_signed_tag_copied_under_another_name(registry: Repo) -> None:
    iris_and_fraud(registry)
    # the valid, signed tag object of 1.0.0 under the name 1.2.5
    tag_object = registry.git("rev-parse", "release/iris/v1.0.0")
    registry.git("update-ref", "refs/tags/release/iris/v1.2.5", tag_object)
    stable = registry.git("rev-parse", "stable/iris/v1.0.0")
    registry.git("update-ref", "refs/tags/stable/iris/v1.2.5", stable)
    assert_refused(
        registry, "revert", "iris", "--to", "1.2.5", code=3, words="named 'stable/iris/v1.0.0'"
    )


def test_refuses_a_tag_by_an_allowed_key_claiming_another_tagger(registry: Repo) -> None:
    iris_and_fraud(registry)
    stable_pair(registry, "1.2.5", sign_key=registry.key, email="mallory@example.test")
    assert_refused(registry, "revert", "iris", "--to", "1.2.5", code=3, words="not by its tagger")


def test_fails_without_a_stable_release(registry: Repo) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0")
    release(registry, "iris", "1.1.0")
    assert_refused(registry, "revert", "iris", code=1, words="no stable release")


def test_fails_when_the_model_folder_is_dirty(registry: Repo) -> None:
    iris_and_fraud(registry)
    registry.write("model-releases/iris/service.py", "# local edit\n")
    assert_refused(registry, "revert", "iris", code=1, words="uncommitted changes")


@pytest.mark.parametrize("breakage", ["unset", "missing", "garbage", "too-open", "untrusted"])
def test_fails_without_a_usable_signing_key(registry: Repo, breakage: str, tmp_path: Path) -> None:
    iris_and_fraud(registry)
    if breakage == "untrusted":
        # it signs, but with a key the allowed signers do not hold
        # (refused by trust, exit 3, before the commit is made: docs/ARCHITECTURE.md, "Trust")
        registry.git("config", "user.signingkey", str(make_key(tmp_path / "k2", "other")))
        words = "is not in the trust root"
    elif breakage == "unset":
        registry.git("config", "--unset", "user.signingkey")
        words = "no signing key"
    elif breakage == "missing":
        registry.git("config", "user.signingkey", str(registry.key) + ".gone")
        words = "cannot be read"
    elif breakage == "garbage":
        registry.key.write_text("not a key\n")
        words = "signing the commit failed"
    else:
        registry.key.chmod(0o644)
        words = "readable by others"
    assert_refused(
        registry, "revert", "iris", code=3 if breakage == "untrusted" else 1, words=words
    )


def test_revert_of_a_release_merged_by_the_forge_goes_back_to_the_stable_one(
    registry: Repo,
) -> None:
    """The pull-request flow: the release's signed commit reaches main through
    the forge's unsigned merge commit, and `release` tags that merge. The
    incident revert moves away from that release (a clean forge merge of
    signed commits is signed state), never from an older one."""
    from releasectl.manifest.edits import edit

    registry.add_model("iris", {"service.py": "# iris v1\n"})
    release(registry, "iris", "1.0.0", stable=True)
    registry.git("checkout", "-q", "-b", "pr")
    path = "model-releases/iris/release.yaml"
    serial = yaml_at(registry, "HEAD", path)["serial"]
    text = (registry.path / path).read_text()
    registry.write(path, edit(text, path, {"version": "1.1.0", "serial": serial + 1}))
    registry.write("model-releases/iris/service.py", "# iris v1.1 (bad)\n")
    registry.commit("iris 1.1.0")  # signed by a release signer
    registry.git("checkout", "-q", "main")
    registry.git("merge", "-q", "--no-ff", "--no-gpg-sign", "-m", "Merge pull request #7", "pr")
    release(registry, "iris", "1.1.0")  # tags the merge commit

    proc = registry.cli("revert", "iris", "--reason", "error rate")
    assert proc.returncode == 0, proc.stderr
    assert "1.1.0 -> 1.0.0" in proc.stdout
    assert trailers(registry, "HEAD")["Releasectl-Revert-From"] == "1.1.0"
    assert yaml_at(registry, "HEAD", path)["serial"] == serial + 2
