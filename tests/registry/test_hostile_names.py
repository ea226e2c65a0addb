"""Names bound to objects, the exact ref grammar, and untrusted bytes kept out
of argv and the landing journal (root causes 1, 2 and 5 of the trust issue;
docs/THREATS.md). The attacker pushes tags or writes files but holds no trusted key.
Real git, real SSH keys, bare remotes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testing.hostile import World, build_world, copy_world
from testing.repos import Repo, git


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("names-world"))


@pytest.fixture
def world(shared_world: World, tmp_path: Path) -> World:
    return copy_world(shared_world, tmp_path / "w")


def _tag_object(repo: Repo, name: str) -> str:
    return repo.git("rev-parse", f"refs/tags/{name}")


def _one_line(proc_stderr: str) -> None:
    assert len(proc_stderr.strip().splitlines()) == 1, proc_stderr
    assert "Traceback" not in proc_stderr


# --- root cause 1: a name is bound to its object --------------------------------------


def test_a_genuine_tag_object_copied_under_another_name_does_not_verify_from_a_warm_cache(
    world: World,
) -> None:
    op = world.operator
    op.ok("history", "iris")  # warm the verdict cache with the genuine names
    op.git("update-ref", "refs/tags/release/iris/v1.9.0", _tag_object(op, "release/iris/v1.1.0"))
    rows = json.loads(op.ok("history", "iris", "--json"))
    copied = next(r for r in rows if r.get("version") == "1.9.0")
    assert copied["verified"] is False
    assert "named 'release/iris/v1.1.0'" in copied["problem"]
    # A copied name raises no bar: a release above the genuine ones still lands.
    op.write("model-releases/iris/service.py", "# iris 1.2.0\n")
    op.commit("iris 1.2.0")
    op.ok("release", "iris", "1.2.0")
    # and the incident revert picks the genuine stable release
    out = json.loads(op.ok("revert", "iris", "--reason", "incident", "--json"))
    assert (out["from"], out["to"]) == ("1.2.0", "1.0.0")


def test_a_copied_stable_mark_is_not_stable_from_a_warm_cache(world: World) -> None:
    """The genuine release and stable tag objects of 1.0.0 copied under 1.9.0's
    names (both peel to 1.0.0's commit): the cache that judged the genuine
    names must not answer for the new ones, so 1.9.0 is no rollback target."""
    op = world.operator
    op.ok("history", "iris")
    for kind in ("release", "stable"):
        genuine = _tag_object(op, f"{kind}/iris/v1.0.0")
        op.git("update-ref", f"refs/tags/{kind}/iris/v1.9.0", genuine)
    rows = json.loads(op.ok("history", "iris", "--json"))
    row = next(r for r in rows if r.get("version") == "1.9.0")
    assert row["stable"] is False and row["verified"] is False
    assert any("named 'stable/iris/v1.0.0'" in why for why in row["ignored"])
    proc = op.cli("revert", "iris", "--to", "1.9.0")
    assert proc.returncode == 3 and "named 'stable/iris/v1.0.0'" in proc.stderr, proc.stderr


def _journal(op: Repo, doc: dict[str, object]) -> Path:
    path = op.path / ".git/releasectl/landing.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def test_recovery_calls_a_tag_landed_only_when_the_remote_has_the_same_object(
    world: World,
) -> None:
    """A killed `mark-stable --push` left its signed tag and its journal; a
    squatter meanwhile pushed a lightweight tag of that name. Recovery must not
    call it landed (it is someone else's object), and later pushes go on."""
    op, attacker = world.operator, world.attacker
    commit = op.git("rev-parse", "release/iris/v1.1.0^{commit}")
    op.git("tag", "-s", "-m", "iris 1.1.0 is stable", "stable/iris/v1.1.0", commit)
    _journal(
        op,
        {
            "branch": "main",
            "base": op.head(),
            "commit": None,
            "tags": {"stable/iris/v1.1.0": commit},
            "sync_paths": [],
            "remote": "origin",
            "remote_branch": "main",
        },
    )
    attacker.git("tag", "stable/iris/v1.1.0", commit)
    attacker.git("push", "-q", "origin", "refs/tags/stable/iris/v1.1.0")
    proc = op.cli("revert", "iris", "--push", "--reason", "incident")
    assert proc.returncode == 0, proc.stderr
    assert "undid a change an interrupted run had not landed" in proc.stderr
    assert "removed stable/iris/v1.1.0" in proc.stderr
    assert world.remote_ref("refs/heads/main") == op.head()
    assert not (op.path / ".git/releasectl/landing.json").exists()


@pytest.mark.parametrize(
    "field",
    [
        {"remote": "--upload-pack=touch {marker}"},
        {"remote_branch": "--upload-pack=touch {marker}", "remote": "origin"},
        {"tags": {"-o/../x": "0" * 40}},
        {"base": "HEAD; touch {marker}"},
        {"sync_paths": ["../../outside"]},
        {"extra": 1},
    ],
    ids=["remote-option", "branch-option", "tag-name", "base", "sync-path", "unknown-field"],
)
def test_a_bad_landing_journal_is_set_aside_and_never_run(
    world: World, tmp_path: Path, field: dict[str, object]
) -> None:
    op = world.operator
    marker = tmp_path / "ran"
    doc: dict[str, object] = {
        "branch": "main",
        "base": op.head(),
        "commit": None,
        "tags": {},
        "sync_paths": [],
        "remote": "origin",
        "remote_branch": "main",
    }
    doc.update(json.loads(json.dumps(field).replace("{marker}", str(marker))))
    _journal(op, doc)
    tags_before = op.git("for-each-ref", "refs/tags")
    proc = op.cli("sync", "--pull")
    assert proc.returncode == 0, proc.stderr
    assert "set aside a landing journal that is not valid" in proc.stderr
    assert "nothing in it was run" in proc.stderr
    assert not marker.exists()
    kept = list((op.path / ".git/releasectl").glob("landing.bad-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == doc
    assert not (op.path / ".git/releasectl/landing.json").exists()
    assert op.git("for-each-ref", "refs/tags") == tags_before


def test_sync_publishes_only_marks_that_mark_their_release(world: World) -> None:
    """Well-signed marks that are not valid marks (no such release; another
    commit than the release's) are never published: they would squat the
    genuine mark's name on the remote."""
    op = world.operator
    first = op.git("rev-parse", "release/iris/v1.0.0^{commit}")
    op.git("tag", "-s", "-m", "x", "stable/iris/v1.1.0", first)  # 1.1.0 is another commit
    op.git("tag", "-s", "-m", "x", "stable/iris/v7.0.0", first)  # no release 7.0.0
    out = json.loads(op.ok("sync", "--push", "--json"))
    assert out["pushed"] == []
    why = {row["tag"]: row["reason"] for row in out["skipped"]}
    assert "another commit than release/iris/v1.1.0" in why["stable/iris/v1.1.0"]
    assert "no release iris 7.0.0" in why["stable/iris/v7.0.0"]
    assert world.remote_ref("refs/tags/stable/iris/v1.1.0") is None
    assert world.remote_ref("refs/tags/stable/iris/v7.0.0") is None


# --- root cause 2: nobody without a key can take a name the tool needs -----------------


def test_a_ref_below_the_rejected_name_does_not_block_revert_push(world: World) -> None:
    op, attacker = world.operator, world.attacker
    attacker.git("tag", "rejected/iris/v1.1.0/x", "HEAD")
    attacker.git("push", "-q", "origin", "refs/tags/rejected/iris/v1.1.0/x")
    proc = op.cli("revert", "iris", "--push", "--reason", "incident", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert world.remote_ref("refs/heads/main") == out["commit"] == op.head()
    assert "Releasectl-Revert-From: 1.1.0" in op.git("log", "-1", "--format=%B")
    assert "refs/tags/rejected/iris/v1.1.0/x is in the way on origin" in out["note"]
    assert "git push origin :refs/tags/rejected/iris/v1.1.0/x" in out["note"]
    # the stray is never fetched into the operator's clone
    assert op.git("tag", "-l", "rejected/*") == ""


def test_sync_reports_a_stray_ref_and_never_fetches_it(world: World) -> None:
    op, attacker = world.operator, world.attacker
    attacker.git("tag", "rejected/iris/v1.1.0/x", "HEAD")
    attacker.git("push", "-q", "origin", "refs/tags/rejected/iris/v1.1.0/x")
    proc = op.cli("sync")
    assert proc.returncode == 0, proc.stderr
    assert "origin has refs/tags/rejected/iris/v1.1.0/x, which is not a registry name" in (
        proc.stderr
    )
    assert op.git("tag", "-l", "rejected/*") == ""
    # and the genuine name can still be made and published
    op.ok("revert", "iris", "--reason", "incident")
    assert op.git("tag", "-l", "rejected/*") == "rejected/iris/v1.1.0"


@pytest.mark.parametrize(
    "squat",
    ["stable/iris/v1.1.0", "stable/iris/v1.1.0/x"],
    ids=["lightweight-name", "ref-below"],
)
def test_a_squatted_stable_name_is_diagnosed_in_one_line_with_the_fix(
    world: World, squat: str
) -> None:
    op, attacker = world.operator, world.attacker
    attacker.git("tag", squat, "release/iris/v1.1.0^{commit}")
    attacker.git("push", "-q", "origin", f"refs/tags/{squat}")
    proc = op.cli("mark-stable", "iris", "1.1.0", "--push")
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    _one_line(proc.stderr)
    assert f"git push origin :refs/tags/{squat}" in proc.stderr
    assert world.remote_ref("refs/tags/stable/iris/v1.1.0") in (
        None,
        attacker.git("rev-parse", "release/iris/v1.1.0^{commit}"),
    )


def test_doctor_lists_every_remote_registry_ref_that_does_not_verify(world: World) -> None:
    op, attacker = world.operator, world.attacker
    assert json.loads(op.ok("doctor", "--json"))["findings"] == []
    commit = attacker.git("rev-parse", "release/iris/v1.1.0^{commit}")
    attacker.git("tag", "stable/iris/v1.1.0", commit)
    attacker.git("tag", "rejected/iris/v1.0.0/x", commit)
    attacker.git("tag", "-a", "-m", "unsigned", "release/iris/v3.0.0", commit)
    attacker.git("push", "-q", "origin", "--tags")
    proc = op.cli("doctor", "--json")
    assert proc.returncode == 3, proc.stderr
    found = {f["ref"]: f for f in json.loads(proc.stdout)["findings"]}
    assert set(found) == {
        "refs/tags/stable/iris/v1.1.0",
        "refs/tags/rejected/iris/v1.0.0/x",
        "refs/tags/release/iris/v3.0.0",
    }
    assert "lightweight" in found["refs/tags/stable/iris/v1.1.0"]["problem"]
    assert "not a registry name" in found["refs/tags/rejected/iris/v1.0.0/x"]["problem"]
    assert found["refs/tags/release/iris/v3.0.0"]["fix"] == (
        "git push origin :refs/tags/release/iris/v3.0.0"
    )
    text = op.cli("doctor")
    assert text.returncode == 3 and "fix: git push origin :refs/tags/stable/iris/v1.1.0" in (
        text.stdout
    )
    # doctor fetched nothing under refs/tags and left no private ref behind
    assert op.git("tag", "-l", "stable/iris/v1.1.0") == ""
    assert op.git("for-each-ref", "refs/releasectl") == ""


# --- root cause 5: untrusted bytes reach no terminal, file or argv ---------------------


def test_history_shows_an_escape_laden_tagger_escaped(world: World) -> None:
    """A hand-made release tag whose tagger e-mail rewrites its own row: with
    the bytes printed raw, the row of an unsigned tag reads "yes"."""
    op = world.operator
    forged = "x@y\x1b[2K\r3.0.0  stable  yes\x1b[8m"
    commit = op.git("rev-parse", "release/iris/v1.1.0^{commit}")
    op.git("-c", f"user.email={forged}", "tag", "-a", "-m", "x", "release/iris/v3.0.0", commit)
    proc = op.cli("history", "iris")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr and "\r" not in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("3.0.0"))
    assert "x@y\\x1b[2K\\x0d3.0.0  stable  yes\\x1b[8m" in row
    assert row.rstrip().endswith("NO: not signed")


def test_new_from_refuses_a_symlink_to_the_signing_key(world: World, tmp_path: Path) -> None:
    op = world.operator
    source = tmp_path / "source"
    source.mkdir()
    (source / "release.yaml").write_text((op.path / "model-releases/iris/release.yaml").read_text())
    (source / "service.py").write_text("# service\n")
    (source / "weights.bin").symlink_to(op.key)
    before = op.snapshot()
    proc = op.cli("new", "stolen", "--from", str(source))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    _one_line(proc.stderr)
    assert "is a symlink" in proc.stderr
    assert op.snapshot() == before
    assert not (op.path / "model-releases/stolen").exists()


def test_new_from_refuses_a_fifo(world: World, tmp_path: Path) -> None:
    import os

    op = world.operator
    source = tmp_path / "source"
    source.mkdir()
    (source / "release.yaml").write_text((op.path / "model-releases/iris/release.yaml").read_text())
    os.mkfifo(source / "pipe")
    proc = op.cli("new", "piped", "--from", str(source))
    assert proc.returncode == 2 and "not a plain file or folder" in proc.stderr, proc.stderr


def test_git_never_reads_a_remote_name_as_an_option(world: World, tmp_path: Path) -> None:
    """The journal is not the only file that names a remote: branch.main.remote
    from a config edited by a hostile hand reaches ls-remote after `--`."""
    op = world.operator
    marker = tmp_path / "ran"
    op.git("config", "branch.main.remote", f"--upload-pack=touch {marker};")
    proc = op.cli("sync", "--dry-run")
    assert not marker.exists()
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    git(op.path, "config", "branch.main.remote", "origin")
