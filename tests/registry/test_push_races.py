"""`revert --push` against one bare remote from two clones at the same moment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from testing.histories import iris_and_bad_fraud
from testing.repos import RELEASECTL, Repo, clone, git

ROUNDS = 10


@pytest.fixture
def template(tmp_path_factory: pytest.TempPathFactory, registry: Repo) -> Repo:
    """iris as in the acceptance history, plus fraud with a stable 2.0.0 and a bad 2.1.0."""
    iris_and_bad_fraud(registry)
    return registry


def _remote_with_two_clones(template: Repo, root: Path) -> tuple[Path, Repo, Repo]:
    root.mkdir(parents=True)
    bare = root / "remote.git"
    git(root, "clone", "-q", "--bare", str(template.path), str(bare))
    a = clone(bare, root / "a", template.key, template.email)
    b = clone(bare, root / "b", template.key, template.email)
    for repo in (a, b):
        repo.git("fetch", "-q", "--tags")
    return bare, a, b


def _start(repo: Repo, model: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [RELEASECTL, "revert", model, "--push", "--reason", "race"],
        cwd=repo.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _reverts_on(bare: Path, model: str) -> list[str]:
    out = git(
        bare,
        "log",
        "--format=%H %(trailers:key=Releasectl-Model,valueonly,separator=)",
        "--grep=^Releasectl-Revert-From",
        "main",
    )
    return [line.split()[0] for line in out.splitlines() if line.split()[1:] == [model]]


def test_same_model_from_two_clones_lands_exactly_once(template: Repo, tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        bare, a, b = _remote_with_two_clones(template, tmp_path / f"same{round_}")
        procs = [_start(a, "iris"), _start(b, "iris")]
        results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
        for code, out, err in results:
            assert code == 0, (round_, out, err)
        assert len(_reverts_on(bare, "iris")) == 1, round_
        said = sorted(out for _, out, _ in results)
        assert any("reverted iris 1.2.0 -> 1.1.0" in out for out in said), said
        assert any("already" in out and "reverted" in out for out in said), said
        # the remote's rejected tag is the winner's, and it stays unique
        assert git(bare, "tag", "--list", "rejected/iris/*") == "rejected/iris/v1.2.0"


def test_different_models_from_two_clones_both_land(template: Repo, tmp_path: Path) -> None:
    for round_ in range(ROUNDS):
        bare, a, b = _remote_with_two_clones(template, tmp_path / f"diff{round_}")
        procs = [_start(a, "iris"), _start(b, "fraud")]
        for p in procs:
            code = p.wait(timeout=60)
            out, err = p.communicate()
            assert code == 0, (round_, out, err)
        iris, fraud = _reverts_on(bare, "iris"), _reverts_on(bare, "fraud")
        assert len(iris) == 1 and len(fraud) == 1, round_
        # linear history: one revert is the other's parent (the second was rebased)
        head = git(bare, "rev-parse", "main")
        assert head in iris + fraud
        parent = git(bare, "rev-parse", f"{head}^")
        assert parent in iris + fraud
        tree = git(bare, "ls-tree", "-r", "main", "--", "model-releases")
        assert "rollback" in git(bare, "show", "main:model-releases/iris/release.yaml")
        assert "rollback" in git(bare, "show", "main:model-releases/fraud/release.yaml")
        assert tree
        assert git(bare, "tag", "--list", "rejected/*").split() == [
            "rejected/fraud/v2.1.0",
            "rejected/iris/v1.2.0",
        ]


def test_push_refuses_when_the_local_branch_has_unpushed_commits(
    template: Repo, tmp_path: Path
) -> None:
    bare, a, _ = _remote_with_two_clones(template, tmp_path / "ahead")
    a.write("notes.md", "local only\n")
    a.commit("local work")
    before = a.snapshot()
    remote_before = git(bare, "for-each-ref")
    proc = a.cli("revert", "iris", "--push")
    assert proc.returncode == 1
    assert "commits that origin/main does not have" in proc.stderr
    assert a.snapshot() == before
    assert git(bare, "for-each-ref") == remote_before
