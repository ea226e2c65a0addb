"""`releasectl propose` starts from the current HEAD: a feature branch's
commits are in the proposal; `--base` names only the pull request's target."""

from __future__ import annotations

import json
from typing import Any

from testing.histories import MANIFEST, iris_stable
from testing.repos import Repo, git

SERVICE = "model-releases/iris/service.py"


def _check(repo: Repo, base: str) -> tuple[int, dict[str, Any]]:
    proc = repo.cli("check", "--base", base, "--no-build", "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_propose_on_a_feature_branch_carries_its_commits(registry: Repo) -> None:
    iris_stable(registry)
    main = registry.head()
    registry.git("checkout", "-q", "-b", "better-iris")
    registry.write(SERVICE, "# iris, better\n")
    feature = registry.commit("iris: a better model")
    before = registry.snapshot()

    proc = registry.cli("propose", "iris", "1.1.0", "--base", "main")
    assert proc.returncode == 0, proc.stderr
    proposal = registry.git("rev-parse", "propose/iris/v1.1.0")
    assert registry.git("rev-parse", f"{proposal}^") == feature  # on top of the feature
    assert registry.git("show", f"{proposal}:{SERVICE}") == "# iris, better"
    assert registry.git("diff", "--name-only", main, proposal).split() == [MANIFEST, SERVICE]
    assert "gh pr create --base main --head propose/iris/v1.1.0" in proc.stdout
    # the feature branch, main and the working tree stay as they were
    _, status, head = registry.snapshot()
    assert (status, head) == before[1:]
    assert registry.git("rev-parse", "main") == main
    assert registry.git("symbolic-ref", "--short", "HEAD") == "better-iris"
    # the pull request it proposes, against main, passes the check
    registry.git("checkout", "-q", "propose/iris/v1.1.0")
    code, out = _check(registry, "main")
    assert code == 0, out
    assert any(f["check"] == "signed" and "2 commit(s)" in f["detail"] for f in out["findings"])


def test_base_names_only_the_pull_requests_target(registry: Repo) -> None:
    iris_stable(registry)
    registry.git("branch", "release-1.x")  # the target, left behind by what follows
    registry.write(SERVICE, "# iris on main\n")
    on_main = registry.commit("iris: on main")

    proc = registry.cli("propose", "iris", "1.1.0", "--base", "release-1.x")
    assert proc.returncode == 0, proc.stderr
    proposal = registry.git("rev-parse", "propose/iris/v1.1.0")
    assert registry.git("rev-parse", f"{proposal}^") == on_main  # from HEAD, not release-1.x
    assert "gh pr create --base release-1.x --head propose/iris/v1.1.0" in proc.stdout


def test_a_base_only_on_the_remote_is_the_target(with_remote: tuple[Repo, object]) -> None:
    registry, _ = with_remote
    iris_stable(registry)
    registry.git("push", "-q", "origin", "main")
    registry.git("checkout", "-q", "-b", "work")
    registry.git("branch", "-q", "-D", "main")  # only origin/main is left
    proc = registry.cli("propose", "iris", "1.1.0", "--base", "main")
    assert proc.returncode == 0, proc.stderr
    assert "gh pr create --base main" in proc.stdout


def test_an_unknown_base_is_bad_input_and_writes_nothing(registry: Repo) -> None:
    iris_stable(registry)
    before = registry.snapshot()
    proc = registry.cli("propose", "iris", "1.1.0", "--base", "mian")
    assert proc.returncode == 2
    assert "unknown base branch 'mian'" in proc.stderr
    assert registry.snapshot() == before


def test_a_head_that_already_declares_the_version_says_what_to_do(registry: Repo) -> None:
    iris_stable(registry)
    registry.git("checkout", "-q", "-b", "by-hand")
    path = registry.path / MANIFEST
    text = path.read_text().replace("version: 1.0.0", "version: 1.1.0")
    path.write_text(text.replace("serial: 1", "serial: 2"))
    registry.commit("iris 1.1.0 by hand")
    before = registry.snapshot()
    proc = registry.cli("propose", "iris", "1.1.0")
    assert proc.returncode == 1
    assert "by-hand already declares iris 1.1.0" in proc.stderr
    assert "releasectl release iris 1.1.0 --dry-run" in proc.stderr
    assert registry.snapshot() == before
    assert git(registry.path, "branch", "--list", "propose/*") == ""
