"""`releasectl promote` and `releasectl abort` (pipeline/traffic.py), and `status` of a
canary: on the local target through the canary's Stepper, here the stand-in for the
agent's traffic API (testing/traffic_double.py), with real git, real signing keys, the
real revert and outcomes; on kubernetes, the `kubectl argo rollouts` command printed
and nothing changed (docs/ARCHITECTURE.md, "Deployment strategies", "The canary")."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest

from releasectl.cli.serving import traffic_lines
from releasectl.errors import BadInput
from releasectl.git import open_repo
from releasectl.pipeline import traffic
from releasectl.serving import outcomes, targets
from testing.histories import iris_stable
from testing.kubernetes import ISTIO, canary_iris, kubernetes_iris
from testing.repos import Repo, assert_refused
from testing.traffic_double import CanaryLocal, SteppedCanary, canary

IN_PROCESS = pytest.mark.skipif(
    os.environ.get("RELEASECTL_TEST_CLI") == "process",
    reason="the stand-in target is injected into this process",
)


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own state home: outcomes and promote records are per model."""
    monkeypatch.setenv("RELEASECTL_HOME", str(tmp_path / "state"))


@pytest.fixture
def iris(registry: Repo) -> Repo:
    """iris 1.0.0 released and stable, 2.0.0 released: the canary's candidate."""
    return iris_stable(registry, then="2.0.0")


def _stepper(repo: Repo, candidate: str = "2.0.0", step: int = 1) -> SteppedCanary:
    # The probe: the registry's HEAD when the traffic changed.
    return SteppedCanary(canary("iris", "1.0.0", candidate, step), probe=repo.head)


def _inject(monkeypatch: pytest.MonkeyPatch, target: targets.Target) -> None:
    monkeypatch.setattr(targets, "declared", lambda git, model: target)


def test_abort_stops_the_candidate_before_any_git_write_then_reverts(
    iris: Repo, tmp_path: Path
) -> None:
    told = tmp_path / "told.json"
    config = iris.path / ".releasectl/config.yaml"
    text = config.read_text() if config.exists() else ""
    iris.write(".releasectl/config.yaml", text + f"notify:\n  command: [sh, -c, 'cat > {told}']\n")
    iris.commit("notify the on-call")
    before = iris.head()
    stepper = _stepper(iris)
    done = traffic.abort(open_repo(iris.path), "iris", target=CanaryLocal(stepper))
    assert done.exit_code == 0
    # Weight 0 first, while HEAD was still the candidate's release.
    assert stepper.calls == [("abort", before)]
    assert done.after is not None and done.after.candidate_weight == 0
    body = iris.git("log", "-1", "--format=%B")
    assert iris.head() != before and "Releasectl-Revert-From: 2.0.0" in body
    assert "aborted by operator@example.test" in body
    assert iris.git("tag", "--list", "rejected/iris/v2.0.0") == "rejected/iris/v2.0.0"
    kept = outcomes.load("iris")
    assert kept is not None and kept.kind == "failed-recovered" and kept.record == "done"
    assert kept.aborted_by == "operator@example.test" and kept.serving == "1.0.0"
    assert kept.line().startswith(
        "2.0.0 stopped by releasectl abort: aborted by operator@example.test; reverted to 1.0.0"
    )
    assert json.loads(iris.ok("verify", "iris", "--json"))["ok"]
    # The hook hears of it as of a failed verdict, with who aborted it.
    assert [d.ok for d in kept.notified] == [True]
    heard = json.loads(told.read_text())
    assert heard["outcome"] == "failed-recovered" and heard["aborted_by"] == iris.email


def test_abort_that_cannot_switch_back_still_stops_the_candidate(iris: Repo) -> None:
    """The local target's own recovery planning: no stored bundle of 1.0.0 here, so no
    switch back and no revert, as after a failed verdict; the candidate answers nothing."""
    before = iris.head()
    stepper = _stepper(iris)
    target = CanaryLocal(stepper, switches_back=True)
    done = traffic.abort(open_repo(iris.path), "iris", reason="wrong labels", target=target)
    assert done.exit_code == 1 and stepper.calls == [("abort", before)]
    assert iris.head() == before
    assert done.outcome is not None and done.outcome.kind == "failed-unrecovered"
    assert "weight 0" in done.outcome.message and done.outcome.message.startswith("wrong labels")
    problem = done.problem()
    assert problem is not None and problem.code == 1 and "NOT rolled back" in problem.line()


def test_promote_takes_100_now_and_writes_nothing_to_git(iris: Repo) -> None:
    before = iris.snapshot()
    stepper = _stepper(iris)
    done = traffic.promote(open_repo(iris.path), "iris", push=True, target=CanaryLocal(stepper))
    assert [a for a, _ in stepper.calls] == ["promote"]
    assert done.after is not None and done.after.state == "full"
    assert done.after.candidate_weight == 100
    assert iris.snapshot() == before
    assert traffic.NOTHING_PUSHED in done.notes and done.to_json()["pushed_to"] is None
    promoted = outcomes.load_promoted("iris")
    assert promoted is not None and (promoted.version, promoted.from_step) == ("2.0.0", 1)
    # A new deploy makes the record history, with the outcome.
    outcomes.clear("iris")
    assert outcomes.load_promoted("iris") is None


@IN_PROCESS
def test_the_commands_refuse_what_is_not_a_running_canary(
    iris: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    _inject(monkeypatch, CanaryLocal(SteppedCanary(None)))
    for command in ("promote", "abort"):
        assert_refused(iris, command, "iris", code=2, words="iris runs no canary")
    _inject(monkeypatch, CanaryLocal(_stepper(iris, candidate="3.0.0")))
    assert_refused(iris, "abort", "iris", code=2, words="but the canary's candidate is 3.0.0")
    aborted = _stepper(iris)
    aborted.change("abort")
    _inject(monkeypatch, CanaryLocal(aborted))
    assert_refused(iris, "promote", "iris", code=2, words="2.0.0 was aborted")
    assert_refused(iris, "abort", "iris", "--reason", "a\nb", code=2, words="reason")


@IN_PROCESS
def test_dry_runs_say_what_would_happen_and_change_nothing(
    iris: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    stepper = _stepper(iris)
    _inject(monkeypatch, CanaryLocal(stepper))
    before = iris.snapshot()
    doc = json.loads(iris.ok("abort", "iris", "--dry-run", "--push", "--json"))
    assert doc["dry_run"] and doc["before"]["candidate_weight"] == 10
    first, revert = doc["would"][0], doc["would"][-1]
    assert "2.0.0's weight to 0" in first and "(now at step 2/3: weight 10%)" in first
    assert revert.startswith("revert iris 2.0.0 -> 1.0.0") and "and push it" in revert
    text = iris.ok("promote", "iris", "--dry-run")
    assert text.startswith("would make 2.0.0 answer every request now")
    assert stepper.calls == [] and iris.snapshot() == before
    assert outcomes.load("iris") is None and outcomes.load_promoted("iris") is None


@IN_PROCESS
def test_abort_through_the_command_pushes_the_revert(
    iris: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testing.repos import git

    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    iris.git("remote", "add", "origin", str(bare))
    iris.git("push", "-q", "-u", "origin", "main", "--tags")
    _inject(monkeypatch, CanaryLocal(_stepper(iris)))
    doc = json.loads(iris.ok("abort", "iris", "--push", "--json", "--reason", "bad labels"))
    assert doc["outcome"]["outcome"] == "failed-recovered" and doc["pushed_to"]
    assert git(tmp_path, "--git-dir", str(bare), "rev-parse", "main") == doc["revert_commit"]
    remote_tags = git(tmp_path, "--git-dir", str(bare), "tag", "--list", "rejected/*")
    assert remote_tags == "rejected/iris/v2.0.0"


def test_kubernetes_prints_the_rollouts_command_and_changes_nothing(registry: Repo) -> None:
    canary_iris(registry, traffic=ISTIO, mirror=False)
    before = registry.snapshot()
    assert registry.ok("promote", "iris").splitlines() == [
        "kubectl argo rollouts promote iris -n models --full"
    ]
    doc = json.loads(registry.ok("abort", "iris", "--json", "--push", "--reason", "it's bad"))
    assert doc["command"] == ["kubectl", "argo", "rollouts", "abort", "iris", "-n", "models"]
    assert doc["command_line"] == shlex.join(doc["command"]) and doc["target"] == "kubernetes"
    assert any(
        "`releasectl revert iris --push --reason 'it'\"'\"'s bad'`" in note for note in doc["notes"]
    ), doc["notes"]
    assert registry.snapshot() == before


def test_kubernetes_without_a_rollout_is_refused(registry: Repo) -> None:
    kubernetes_iris(registry, strategy="deployment")
    assert_refused(registry, "promote", "iris", code=2, words="no Rollout to promote")
    target = targets.declared(open_repo(registry.path), "iris")
    with pytest.raises(BadInput, match="no Rollout to abort"):
        target.rollouts_command("iris", "abort")


def test_status_lines_show_the_step_weights_and_roles_escaped() -> None:
    info = canary("iris", "1.0.0", "2.0.0\x1b[2J", step=1)
    lines = traffic_lines(info)
    assert "step 2/3: weight 10%" in lines[0]
    assert "candidate 2.0.0\\x1b[2J 10% / stable 1.0.0 90%" in lines[0]
    assert "\x1b" not in "".join(lines)
    assert "90 requests" in lines[1] and "mean 12.5 ms" in lines[1]
    assert "2 errors" in lines[2] and "mean -" in lines[2]
    mirror = traffic_lines(canary("iris", "1.0.0", "2.0.0", step=0))[0]
    assert "step 1/3: mirror 100%" in mirror and "mirror 100%" in mirror
    full = info.model_copy(update={"state": "full", "promoted": True, "candidate_weight": 100})
    assert "full (promoted)" in traffic_lines(full)[0]


@IN_PROCESS
def test_status_shows_a_canary_and_its_promote(
    monkeypatch: pytest.MonkeyPatch, registry: Repo
) -> None:
    """`status` over what the agent reports (a canned report: the agent's canary is the
    stand-in's here) and the promote record kept beside the outcome."""
    from releasectl.serving import status
    from releasectl.serving.local.models import ModelStatus

    info = canary("iris", "1.0.0", "2.0.0", step=1)
    report = status.StatusReport(
        True,
        [
            status.ModelReport(
                ModelStatus(
                    model="iris",
                    endpoint="http://127.0.0.1:3000",
                    health="ready",
                    live=None,
                    standby=None,
                    standby_until=None,
                    deploying=None,
                    last_deploy=None,
                    message=None,
                    traffic=info,
                ),
                None,
                None,
                outcomes.Promoted(model="iris", version="2.0.0", by="a\x1b]0;x@y", from_step=1),
            )
        ],
    )
    monkeypatch.setattr(status, "status", lambda model=None: report)
    text = registry.ok("status", "iris")
    assert "canary   step 2/3: weight 10%" in text and "/ stable 1.0.0 90%" in text
    assert "promoted 2.0.0 to 100% by a\\x1b]0;x@y" in text and "\x1b" not in text
    doc = json.loads(registry.ok("status", "iris", "--json"))[0]
    assert doc["traffic"]["candidate_weight"] == 10 and doc["traffic"]["roles"][1]["errors"] == 2
    assert doc["promoted"]["from_step"] == 1
