"""A pull request cannot forge a revert: `check` refuses a version that is
already released or rejected and any rollback record a pull request writes;
`ci plan` calls a commit a revert only when it is a verified revert that
restores a verified stable release's folder byte for byte. The attackers: a
contributor with push rights and no trusted key, and one with a trusted key
who writes the revert by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from testing.histories import MANIFEST, iris_stable, release, revert_message
from testing.repos import Repo, make_key

MALLORY = "mallory@example.test"


@pytest.fixture
def iris(registry: Repo) -> Repo:
    """iris 1.0.0 stable, then 2.0.0 (a changed service) live on main."""
    return iris_stable(registry, then="2.0.0")


def _fake_revert(
    repo: Repo, *, to: str, frm: str, serial: int, restore: bool, signer: tuple[Path, str]
) -> str:
    """A hand-made revert on branch `pr`: the manifest of release `to` with
    serial and a rollback record (as `releasectl revert` writes them), the
    folder restored from `to` when `restore`, the revert's trailers, signed
    by `signer` (key, e-mail)."""
    from releasectl.manifest.edits import edit

    repo.git("checkout", "-q", "-b", "pr")
    if restore:
        repo.git("checkout", f"release/iris/v{to}", "--", "model-releases/iris")
    stable = repo.git("show", f"release/iris/v{to}:{MANIFEST}") + "\n"
    record = {"from": frm, "to": to, "reason": "it is bad", "at": "2026-11-30T08:00:00+00:00"}
    record["by"] = signer[1]
    repo.write(MANIFEST, edit(stable, MANIFEST, {"serial": serial, "rollback": record}))
    repo.git("add", "-A", "model-releases/iris")
    key, email = signer
    repo.git(
        "-c", f"user.signingkey={key}", "-c", f"user.email={email}",
        "commit", "-q", "-S", "-m", revert_message("iris", frm, to, serial),
    )  # fmt: skip
    return repo.head()


def _check(repo: Repo) -> tuple[int, dict[str, str]]:
    """The exit code, and the failed checks with their details joined."""
    proc = repo.cli("check", "--base", "main", "--no-build", "--json")
    failed: dict[str, str] = {}
    for f in json.loads(proc.stdout)["findings"]:
        if not f["ok"]:
            failed[f["check"]] = failed.get(f["check"], "") + f["detail"] + "; "
    return proc.returncode, failed


def _plan_after_merge(repo: Repo, tmp_path: Path) -> list[dict[str, Any]]:
    """The PR lands on main (a fast-forward: what a merge without review
    would do); `ci plan` reads the push."""
    before = repo.git("rev-parse", "main")
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--ff-only", "pr")
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"before": before}))
    proc = repo.cli(
        "ci",
        "plan",
        "--json",
        env={
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_REF": "refs/heads/main",
            "GITHUB_SHA": repo.head(),
            "GITHUB_EVENT_PATH": str(event),
        },
    )
    assert proc.returncode == 0, proc.stderr
    return cast(list[dict[str, Any]], json.loads(proc.stdout))


def test_an_untrusted_contributor_forges_a_revert_to_the_older_release(
    iris: Repo, tmp_path: Path
) -> None:
    mallory = make_key(tmp_path / "m", "mallory")
    _fake_revert(iris, to="1.0.0", frm="2.0.0", serial=3, restore=True, signer=(mallory, MALLORY))
    code, failed = _check(iris)
    assert code == 3
    assert set(failed) >= {"signed", "rollback", "version"}
    assert "already released (release/iris/v1.0.0)" in failed["version"]
    assert "never writes one" in failed["rollback"]
    items = _plan_after_merge(iris, tmp_path)
    assert items == [{"model": "iris", "kind": "release", "version": "1.0.0"}]  # not a revert
    # The deploy gate does not fast-track it either.
    from releasectl.git import open_repo
    from releasectl.serving.deploy import resolve

    assert resolve(open_repo(iris.path), "iris").fast_track is False


def test_an_untrusted_contributor_redeclares_the_rejected_release(
    iris: Repo, tmp_path: Path
) -> None:
    iris.ok("revert", "iris", "--reason", "2.0.0 is bad")  # main: 1.0.0, serial 3
    mallory = make_key(tmp_path / "m", "mallory")
    # "Revert the revert": 2.0.0 again, as a rollback from 1.0.0 to 2.0.0.
    _fake_revert(iris, to="2.0.0", frm="1.0.0", serial=4, restore=True, signer=(mallory, MALLORY))
    code, failed = _check(iris)
    assert code == 3
    assert set(failed) >= {"signed", "rollback", "version"}
    assert "already released and rejected" in failed["version"]
    items = _plan_after_merge(iris, tmp_path)
    assert [i["kind"] for i in items] == ["release"]


def test_a_trusted_signer_hand_writes_a_revert_that_is_not_one(iris: Repo, tmp_path: Path) -> None:
    """Signed by an allowed signer, with every trailer, claiming a rollback to
    the stable 1.0.0, but keeping 2.0.0's service: not a verified revert."""
    _fake_revert(
        iris, to="1.0.0", frm="2.0.0", serial=3, restore=False, signer=(iris.key, iris.email)
    )
    code, failed = _check(iris)
    assert code == 3
    assert set(failed) == {"rollback", "version"}  # the signature is fine
    items = _plan_after_merge(iris, tmp_path)
    assert items == [{"model": "iris", "kind": "release", "version": "1.0.0"}]

    from releasectl.git import open_repo
    from releasectl.manifest.schema import load
    from releasectl.registry.revert import revert_problem
    from releasectl.view import trust_root

    git = open_repo(iris.path)
    manifest = load((iris.path / MANIFEST).read_text(), MANIFEST, model="iris")
    problem = revert_problem(git, trust_root(git), "iris", iris.head(), manifest)
    assert problem is not None and "service.py" in problem


def test_a_trusted_signer_reverts_to_a_release_that_is_not_stable(
    iris: Repo, tmp_path: Path
) -> None:
    """Second variant: the folder restored byte for byte, but to 2.0.0 after it
    was rejected (serial and trailers right): not a revert to a stable release."""
    iris.ok("revert", "iris", "--reason", "2.0.0 is bad")
    _fake_revert(
        iris, to="2.0.0", frm="1.0.0", serial=4, restore=True, signer=(iris.key, iris.email)
    )
    code, failed = _check(iris)
    assert code == 3 and set(failed) == {"rollback", "version"}
    assert [i["kind"] for i in _plan_after_merge(iris, tmp_path)] == ["release"]


def test_the_real_revert_is_still_a_revert(iris: Repo, tmp_path: Path) -> None:
    """The control: what `releasectl revert` writes is planned as a revert."""
    iris.git("checkout", "-q", "-b", "pr")
    iris.ok("revert", "iris", "--reason", "drill")
    assert _plan_after_merge(iris, tmp_path) == [
        {"model": "iris", "kind": "revert", "version": "1.0.0"}
    ]


def test_a_state_that_declares_a_release_serves_only_its_bundle(
    registry: Repo, tmp_path: Path
) -> None:
    """A trusted signer re-pins the released version to another bundle, by
    hand: the gate refuses it (exit 3) before the target serves anything."""
    from testing.processes import state_home

    registry.add_model("iris")
    release(registry, "iris", "1.0.0")
    text = (registry.path / MANIFEST).read_text()
    registry.write(
        MANIFEST, text.replace("bento: iris", "bento: iris\n  digest: sha256:" + "ab" * 32)
    )
    registry.commit("iris: a better bundle, same version")
    with state_home(tmp_path / "state") as home:
        proc = registry.cli("deploy", "iris")
        assert proc.returncode == 3, proc.stderr
        assert "declares 1.0.0 but pins another bundle than release/iris/v1.0.0" in proc.stderr
        state = json.loads((home / "local" / "state.json").read_text())
        assert state["models"] == {}
