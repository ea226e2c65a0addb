"""The pull-request flow without GitHub: check, propose, the pre-commit hook,
and what `releasectl ci plan` makes of each event."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from testing.histories import MANIFEST, iris_stable, release
from testing.paths import ROOT
from testing.repos import Repo, make_key


@pytest.fixture
def iris(registry: Repo) -> Repo:
    return iris_stable(registry)


def _pr(repo: Repo, edit, *, sign: bool = True) -> None:  # type: ignore[no-untyped-def]
    repo.git("checkout", "-q", "-b", "pr")
    path = repo.path / MANIFEST
    path.write_text(edit(path.read_text()))
    repo.commit("the PR", sign=sign)


def _check(repo: Repo) -> tuple[int, dict[str, Any]]:
    proc = repo.cli("check", "--base", "main", "--no-build", "--json")
    return proc.returncode, json.loads(proc.stdout)


def _bump(text: str) -> str:
    return text.replace("version: 1.0.0", "version: 1.1.0").replace("serial: 1", "serial: 2")


def test_a_good_pull_request_passes(iris: Repo) -> None:
    _pr(iris, _bump)
    code, out = _check(iris)
    assert code == 0, out
    assert out["models"] == ["iris"] and out["ok"] is True
    assert {f["check"] for f in out["findings"]} >= {
        "signed",
        "manifest",
        "version",
        "serial",
        "analysis",
    }


def test_an_unsigned_commit_fails(iris: Repo) -> None:
    _pr(iris, _bump, sign=False)
    code, out = _check(iris)
    assert code == 3
    bad = [f for f in out["findings"] if not f["ok"]]
    assert bad[0]["check"] == "signed" and "not signed" in bad[0]["detail"]


def test_no_version_bump_fails(iris: Repo) -> None:
    _pr(iris, lambda t: t.replace("serial: 1", "serial: 2"))
    code, out = _check(iris)
    assert code == 3
    assert any(f["check"] == "version" and not f["ok"] for f in out["findings"])


def test_a_wrong_serial_fails(iris: Repo) -> None:
    _pr(
        iris,
        lambda t: t.replace("version: 1.0.0", "version: 1.1.0").replace("serial: 1", "serial: 5"),
    )
    code, out = _check(iris)
    assert code == 3
    assert any(f["check"] == "serial" and "must be 2" in f["detail"] for f in out["findings"])


def test_an_unknown_key_fails(iris: Repo) -> None:
    _pr(iris, lambda t: _bump(t) + "colour: blue\n")
    code, out = _check(iris)
    assert code == 2
    assert any("unknown key 'colour'" in f["detail"] for f in out["findings"])


def test_missing_analysis_thresholds_fail(registry: Repo) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0")
    _pr(registry, _bump)
    code, out = _check(registry)
    assert code == 2
    assert any(f["check"] == "analysis" and not f["ok"] for f in out["findings"])


def test_a_pull_request_cannot_trust_its_own_key(iris: Repo, tmp_path: Path) -> None:
    """Signers are read from the base: a PR that adds its key and signs with it fails."""
    mallory = make_key(tmp_path / "m", "mallory")
    iris.git("checkout", "-q", "-b", "pr")
    pub = " ".join(mallory.with_name("mallory.pub").read_text().split()[:2])
    with (iris.path / ".releasectl/allowed_signers").open("a") as f:
        f.write(f"mallory@example.test {pub}\n")
    path = iris.path / MANIFEST
    path.write_text(_bump(path.read_text()))
    iris.git("config", "user.signingkey", str(mallory))
    iris.git("config", "user.email", "mallory@example.test")
    iris.commit("trust me and release")
    code, out = _check(iris)
    assert code == 3
    assert any(
        f["check"] == "signed" and "not in the allowed" in f["detail"] for f in out["findings"]
    )


def test_propose_makes_a_signed_branch_and_leaves_the_work_tree(iris: Repo) -> None:
    before = iris.snapshot()
    proc = iris.cli("propose", "iris", "1.1.0", "--no-build")
    assert proc.returncode == 0, proc.stderr
    assert "gh pr create --base main --head propose/iris/v1.1.0" in proc.stdout
    _, status, head = iris.snapshot()
    assert (status, head) == before[1:]  # working tree and current branch untouched
    branch = iris.git("rev-parse", "propose/iris/v1.1.0")
    assert iris.git("rev-parse", f"{branch}^") == head
    assert iris.git("diff", "--name-only", head, branch) == MANIFEST
    iris.git("checkout", "-q", "propose/iris/v1.1.0")
    code, out = _check(iris)
    assert code == 0, out  # the PR it proposes passes the check


def test_pre_commit_hook_checks_staged_manifests(iris: Repo) -> None:
    path = iris.path / MANIFEST
    original = path.read_text()
    path.write_text(original.replace("version: 1.0.0", "version: 1.1.0"))
    proc = iris.cli("check-manifests", MANIFEST)
    assert proc.returncode == 2 and "serial must be 2" in proc.stdout
    path.write_text(_bump(original))
    assert iris.cli("check-manifests", MANIFEST, "README.md").returncode == 0
    path.write_text(_bump(original) + "oops: 1\n")
    proc = iris.cli("check-manifests", MANIFEST)
    assert proc.returncode == 2 and "unknown key 'oops'" in proc.stdout
    hooks = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "entry: releasectl check-manifests" in hooks


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda t: t.replace("standby: 10m", "standby: 5m"), "changed without a release"),
        (lambda t: t.replace("serial: 1", "serial: 2"), "version 1.0.0 is not above 1.0.0"),
        (
            lambda t: t.replace("version: 1.0.0", "version: 0.9.0").replace(
                "serial: 1", "serial: 2"
            ),
            "version 0.9.0 is not above 1.0.0",
        ),
        (lambda t: _bump(t).replace("serial: 2", "serial: 3"), "serial must be 2, not 3"),
    ],
)
def test_pre_commit_hook_holds_the_succession_policy(
    iris: Repo, edit: Callable[[str], str], said: str
) -> None:
    """The hook refuses what `check` refuses: a manifest change that is not a
    release, a version that does not rise, a serial that is not the next one."""
    path = iris.path / MANIFEST
    path.write_text(edit(path.read_text()))
    proc = iris.cli("check-manifests", MANIFEST)
    assert proc.returncode == 2, proc.stdout
    assert said in proc.stdout


def _plan(
    repo: Repo, tmp_path: Path, name: str, ref: str, payload: dict[str, Any]
) -> tuple[list[Any], str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps(payload))
    out, summary = tmp_path / "out", tmp_path / "summary"
    out.write_text("")
    summary.write_text("")
    proc = repo.cli(
        "ci",
        "plan",
        "--json",
        env={
            "GITHUB_ACTIONS": "true",
            "GITHUB_EVENT_NAME": name,
            "GITHUB_REF": ref,
            "GITHUB_SHA": repo.head(),
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_OUTPUT": str(out),
            "GITHUB_STEP_SUMMARY": str(summary),
        },
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), out.read_text()


def test_ci_plan_reads_each_event(iris: Repo, tmp_path: Path) -> None:
    items, out = _plan(iris, tmp_path, "push", "refs/tags/release/iris/v1.0.0", {})
    assert items == [{"model": "iris", "kind": "release", "version": "1.0.0"}]
    assert "model=iris" in out and "version=1.0.0" in out
    before = iris.head()
    release(iris, "iris", "1.1.0")
    iris.ok("revert", "iris")
    items, out = _plan(iris, tmp_path, "push", "refs/heads/main", {"before": before})
    assert items == [{"model": "iris", "kind": "revert", "version": "1.0.0"}]
    assert 'matrix={"include": [{"model": "iris", "kind": "revert"' in out
    items, _ = _plan(
        iris, tmp_path, "workflow_dispatch", "refs/heads/main", {"inputs": {"model": "iris"}}
    )
    assert items == [{"model": "iris", "kind": "deploy", "version": "1.0.0"}]
    before = iris.head()
    (iris.path / "docs.md").write_text("x\n")
    iris.commit("docs only")
    items, out = _plan(iris, tmp_path, "push", "refs/heads/main", {"before": before})
    assert items == [] and "count=0" in out


def test_ci_plan_refuses_a_bad_model_input(iris: Repo, tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"inputs": {"model": "$(rm -rf /)"}}))
    proc = iris.cli(
        "ci",
        "plan",
        env={"GITHUB_EVENT_NAME": "workflow_dispatch", "GITHUB_EVENT_PATH": str(event)},
    )
    assert proc.returncode == 2 and "invalid model name" in proc.stderr


def test_errors_become_annotations_and_summary_in_actions(iris: Repo, tmp_path: Path) -> None:
    summary = tmp_path / "summary"
    proc = iris.cli(
        "verify",
        "iris",
        "9.9.9",
        env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)},
    )
    assert proc.returncode == 2
    assert proc.stdout.startswith("::error title=releasectl verify iris 9.9.9::")
    assert "❌ `releasectl verify iris 9.9.9` (exit 2)" in summary.read_text()
