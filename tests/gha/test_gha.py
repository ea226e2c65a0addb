"""Tests of the local stand-in runner (testing/gha) on small inline workflows.

These prove the runner, not the project's workflows: each test writes the few
lines of workflow it needs and runs it against a tiny bare remote."""

from __future__ import annotations

import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testing import gha
from testing.gha import Event, ExpressionError, NotTriggered, StepContext, WorkflowError
from testing.repos import git

PIN = "11bd71901bbe5b1630ceea73d27597364c9af683"  # any 40-hex commit reads as pinned


@dataclass
class Remote:
    bare: Path
    first: str  # main~1: adds README
    main: str  # main: changes model-releases/iris/release.yaml; tagged release/iris/v1.0.0


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    src = tmp_path / "src"
    src.mkdir()
    git(src, "init", "-q", "-b", "main")
    (src / "README.md").write_text("readme\n")
    git(src, "add", "-A")
    git(src, "commit", "-q", "--no-gpg-sign", "-m", "first")
    first = git(src, "rev-parse", "HEAD")
    (src / "model-releases/iris").mkdir(parents=True)
    (src / "model-releases/iris/release.yaml").write_text("version: 1.0.0\n")
    git(src, "add", "-A")
    git(src, "commit", "-q", "--no-gpg-sign", "-m", "iris 1.0.0")
    git(src, "tag", "--no-sign", "-a", "-m", "release", "release/iris/v1.0.0")
    git(src, "tag", "--no-sign", "-a", "-m", "old", "old-tag", first)
    bare = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(src), str(bare))
    return Remote(bare, first, git(src, "rev-parse", "HEAD"))


def workflow(tmp_path: Path, text: str, name: str = "wf.yml") -> Path:
    path = tmp_path / "workflows" / name
    path.parent.mkdir(exist_ok=True)
    head = ON_PUSH if text.startswith(ON_PUSH) else ""  # ON_PUSH + an indented body
    path.write_text(head + textwrap.dedent(text[len(head) :]))
    return path


def push(remote: Remote, ref: str = "refs/heads/main", **kw: Any) -> Event:
    return Event.push(ref, remote.main, **kw)


def run(path: Path, event: Event, remote: Remote, tmp_path: Path, **kw: Any) -> gha.RunResult:
    return gha.run_workflow(path, event, remote=remote.bare, workdir=tmp_path / "runs", **kw)


ON_PUSH = "on: push\npermissions: {}\n"


# --- triggers -------------------------------------------------------------------


TAG_WF = """\
    on:
      push:
        tags: ["release/**"]
    jobs:
      a: {runs-on: ubuntu-latest, steps: [{run: "true"}]}
    """


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("refs/tags/release/iris/v1.0.0", True),
        ("refs/tags/release/v1", True),
        ("refs/tags/stable/iris/v1.0.0", False),
        ("refs/heads/main", False),  # only tags are filtered: branch pushes never trigger
        ("refs/heads/release/iris", False),
    ],
)
def test_tag_push_filter(tmp_path: Path, remote: Remote, ref: str, expected: bool) -> None:
    assert gha.triggered(workflow(tmp_path, TAG_WF), push(remote, ref)) is expected


def test_single_star_does_not_cross_slashes(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(tmp_path, TAG_WF.replace("release/**", "release/*"))
    assert gha.triggered(wf, push(remote, "refs/tags/release/v1"))
    assert not gha.triggered(wf, push(remote, "refs/tags/release/iris/v1.0.0"))


def test_not_triggered_raises(tmp_path: Path, remote: Remote) -> None:
    with pytest.raises(NotTriggered, match="not in tags"):
        run(workflow(tmp_path, TAG_WF), push(remote, "refs/tags/other"), remote, tmp_path)
    with pytest.raises(NotTriggered, match="no 'pull_request' trigger"):
        run(
            workflow(tmp_path, TAG_WF),
            Event.pull_request(remote.main, base="main", head="f"),
            remote,
            tmp_path,
        )


def test_branch_filters_with_negation(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        """\
        on:
          push:
            branches: ["main", "release/**", "!release/**-wip"]
        jobs:
          a: {runs-on: ubuntu-latest, steps: [{run: "true"}]}
        """,
    )
    assert gha.triggered(wf, push(remote))
    assert gha.triggered(wf, push(remote, "refs/heads/release/1.x"))
    assert not gha.triggered(wf, push(remote, "refs/heads/release/1.x-wip"))
    assert not gha.triggered(wf, push(remote, "refs/heads/feature"))
    assert not gha.triggered(wf, push(remote, "refs/tags/release/iris/v1.0.0"))


PATHS_WF = """\
    on:
      push:
        branches: [main]
        paths: ["model-releases/**"]
    jobs:
      a: {runs-on: ubuntu-latest, steps: [{run: "true"}]}
    """


def test_paths_filter_from_the_remote_diff(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(tmp_path, PATHS_WF)
    # main changed model-releases/iris/release.yaml; main~1 only README.md
    assert gha.triggered(wf, push(remote), remote=remote.bare)
    assert not gha.triggered(wf, Event.push("refs/heads/main", remote.first), remote=remote.bare)


def test_paths_filter_from_explicit_files_and_ignore(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(tmp_path, PATHS_WF)
    assert gha.triggered(wf, push(remote, changed_files=["model-releases/iris/service.py"]))
    assert not gha.triggered(wf, push(remote, changed_files=["docs/model-releases.md"]))
    ignore = workflow(tmp_path, PATHS_WF.replace("paths:", "paths-ignore:"), "ignore.yml")
    assert gha.triggered(ignore, push(remote, changed_files=["docs/x.md", "model-releases/a"]))
    assert not gha.triggered(ignore, push(remote, changed_files=["model-releases/a/b"]))


def test_paths_are_not_evaluated_for_tag_pushes(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(tmp_path, PATHS_WF.replace("branches: [main]", "tags: ['release/**']"))
    assert gha.triggered(wf, push(remote, "refs/tags/release/x", changed_files=["docs/x"]))


def test_pull_request_branches_and_types(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        """\
        on:
          pull_request:
            branches: [main]
        jobs:
          a: {runs-on: ubuntu-latest, steps: [{run: "true"}]}
        """,
    )
    assert gha.triggered(wf, Event.pull_request(remote.main, base="main", head="feature"))
    assert not gha.triggered(wf, Event.pull_request(remote.main, base="dev", head="feature"))
    closed = Event.pull_request(remote.main, base="main", head="f", action="closed")
    assert not gha.triggered(wf, closed)


def test_pull_request_context(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        """\
        on: pull_request
        jobs:
          a:
            runs-on: ubuntu-latest
            steps:
              - id: s
                env:
                  BASE: ${{ github.base_ref }}
                  HEAD: ${{ github.head_ref }}
                run: |
                  echo "ctx=$BASE $HEAD" >> "$GITHUB_OUTPUT"
                  echo "env=$GITHUB_BASE_REF $GITHUB_HEAD_REF $GITHUB_REF" >> "$GITHUB_OUTPUT"
        """,
    )
    event = Event.pull_request(remote.main, base="main", head="feature", number=7)
    out = run(wf, event, remote, tmp_path).step("a", "s").outputs
    assert out == {"ctx": "main feature", "env": "main feature refs/pull/7/merge"}


DISPATCH_WF = """\
    on:
      workflow_dispatch:
        inputs:
          model: {required: true, type: string}
          environment:
            type: choice
            options: [staging, production]
            default: staging
          dry-run: {type: boolean, default: true}
    jobs:
      a:
        runs-on: ubuntu-latest
        steps:
          - id: s
            env:
              MODEL: ${{ inputs.model }}
              TARGET: ${{ inputs.environment }}
              DRY: ${{ inputs.dry-run && 'yes' || 'no' }}
              LEGACY: ${{ github.event.inputs.model }}
            run: |
              echo "v=$MODEL $TARGET $DRY $LEGACY" >> "$GITHUB_OUTPUT"
              python3 -c 'import json,os; print("payload=" + json.load(open(os.environ["GITHUB_EVENT_PATH"]))["inputs"]["dry-run"])' >> "$GITHUB_OUTPUT"
    """  # noqa: E501


def test_workflow_dispatch_inputs(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(tmp_path, DISPATCH_WF)
    result = run(
        wf, Event.dispatch("refs/heads/main", remote.main, {"model": "iris"}), remote, tmp_path
    )
    assert result.step("a", "s").outputs == {"v": "iris staging yes iris", "payload": "true"}
    given = {"model": "fraud", "environment": "production", "dry-run": False}
    result = run(wf, Event.dispatch("refs/heads/main", remote.main, given), remote, tmp_path)
    assert result.step("a", "s").outputs["v"] == "fraud production no fraud"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "required input 'model'"),
        ({"model": "iris", "environment": "prod"}, "not in"),
        ({"model": "iris", "dry-run": "maybe"}, "true/false"),
        ({"model": "iris", "typo": "x"}, "unexpected inputs"),
    ],
)
def test_workflow_dispatch_refuses_bad_inputs(
    tmp_path: Path, remote: Remote, inputs: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkflowError, match=message):
        run(
            workflow(tmp_path, DISPATCH_WF),
            Event.dispatch("refs/heads/main", remote.main, inputs),
            remote,
            tmp_path,
        )


def test_on_key_is_not_read_as_yaml_11_boolean(tmp_path: Path) -> None:
    path = workflow(tmp_path, "on: [push]\njobs: {a: {runs-on: x, steps: []}}\nenv: {A: yes}\n")
    doc: dict[Any, Any] = gha.load_workflow(path)
    assert doc["on"] == ["push"] and True not in doc
    assert doc["env"]["A"] == "yes"  # YAML 1.2: `yes` is a string, as on GitHub


# --- jobs, needs, outputs, if: ---------------------------------------------------------


def test_needs_order_and_outputs(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH
        + """\
        jobs:
          deploy:
            needs: [build, check]
            runs-on: ubuntu-latest
            steps:
              - id: s
                env:
                  DIGEST: ${{ needs.build.outputs.digest }}
                  RESULTS: ${{ join(needs.*.result, ',') }}
                run: echo "got=$DIGEST $RESULTS" >> "$GITHUB_OUTPUT"
          build:
            runs-on: ubuntu-latest
            outputs:
              digest: ${{ steps.b.outputs.digest }}
              missing: ${{ steps.b.outputs.nope }}
            steps:
              - id: b
                run: echo "digest=sha256:abc" >> "$GITHUB_OUTPUT"
          check:
            needs: build
            runs-on: ubuntu-latest
            steps: [{run: "true"}]
        """,
    )
    result = run(wf, push(remote), remote, tmp_path)
    assert list(result.jobs) == ["build", "check", "deploy"]
    assert result.jobs["build"].outputs == {"digest": "sha256:abc", "missing": ""}
    assert result.step("deploy", "s").outputs == {"got": "sha256:abc success,success"}
    assert result.conclusion == "success"


def test_jobs_selection_pulls_in_needs(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH
        + """\
        jobs:
          a: {runs-on: x, steps: [{run: "true"}]}
          b: {runs-on: x, needs: a, steps: [{run: "true"}]}
          c: {runs-on: x, steps: [{run: "true"}]}
        """,
    )
    assert list(run(wf, push(remote), remote, tmp_path, jobs=["b"]).jobs) == ["a", "b"]


FAILING_WF = (
    ON_PUSH
    + """\
    jobs:
      build:
        runs-on: ubuntu-latest
        steps:
          - id: ok
            run: echo fine
          - id: boom
            run: |
              echo "about to fail"
              exit 3
              echo "not reached"
          - id: later
            run: echo later
          - id: cleanup
            if: always()
            run: echo "status=${{ job.status }}" >> "$GITHUB_OUTPUT"
          - id: on-failure
            if: failure() && steps.boom.outcome == 'failure'
            run: echo handled
          - id: on-success
            if: success()
            run: echo nope
      deploy:
        needs: build
        runs-on: ubuntu-latest
        steps: [{run: "true"}]
      rollback:
        needs: deploy
        if: failure()
        runs-on: ubuntu-latest
        steps: [{run: "true"}]
      report:
        needs: [build, deploy]
        if: always()
        runs-on: ubuntu-latest
        steps:
          - id: r
            run: echo "r=${{ needs.build.result }}/${{ needs.deploy.result }}" >> "$GITHUB_OUTPUT"
    """
)


def test_failing_step_fails_job_and_skips_later_steps(tmp_path: Path, remote: Remote) -> None:
    result = run(workflow(tmp_path, FAILING_WF), push(remote), remote, tmp_path)
    steps = {s.id: s for s in result.jobs["build"].steps}
    assert {k: s.outcome for k, s in steps.items()} == {
        "ok": "success",
        "boom": "failure",
        "later": "skipped",
        "cleanup": "success",
        "on-failure": "success",
        "on-success": "skipped",
    }
    assert "about to fail" in steps["boom"].log and "not reached" not in steps["boom"].log
    assert "exit code 3" in steps["boom"].log
    assert steps["cleanup"].outputs == {"status": "failure"}
    assert result.jobs["build"].conclusion == "failure"
    assert result.conclusion == "failure"
    # a failed need skips dependents, transitively; failure()/always() still run
    assert result.jobs["deploy"].conclusion == "skipped"
    assert result.jobs["rollback"].conclusion == "success"
    assert result.step("report", "r").outputs == {"r": "failure/skipped"}


def test_continue_on_error(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH
        + """\
        jobs:
          a:
            runs-on: x
            steps:
              - {id: flaky, continue-on-error: true, run: exit 1}
              - id: next
                run: echo "seen=${{ steps.flaky.outcome }}/${{ steps.flaky.conclusion }}" >> "$GITHUB_OUTPUT"
          b:
            runs-on: x
            continue-on-error: true
            steps: [{run: exit 1}]
        """,  # noqa: E501
    )
    result = run(wf, push(remote), remote, tmp_path)
    assert result.step("a", "next").outputs == {"seen": "failure/success"}
    assert result.jobs["a"].conclusion == "success"
    assert (result.jobs["b"].outcome, result.jobs["b"].conclusion) == ("failure", "success")
    assert result.conclusion == "success"


def test_job_if_with_needs_outputs(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH
        + """\
        jobs:
          plan:
            runs-on: x
            outputs: {changed: "${{ steps.p.outputs.changed }}"}
            steps: [{id: p, run: echo "changed=false" >> "$GITHUB_OUTPUT"}]
          apply:
            needs: plan
            if: needs.plan.outputs.changed == 'true'
            runs-on: x
            steps: [{run: "true"}]
          noop:
            needs: plan
            if: ${{ needs.plan.outputs.changed != 'true' }}
            runs-on: x
            steps: [{run: "true"}]
        """,
    )
    result = run(wf, push(remote), remote, tmp_path)
    assert result.jobs["apply"].conclusion == "skipped"
    assert result.jobs["noop"].conclusion == "success"


# --- expressions --------------------------------------------------------------------------

CONTEXTS = {
    "github": {"ref": "refs/tags/release/iris/v1.2.0", "event_name": "push", "event": {"n": 3}},
    "inputs": {"model": "Iris", "flag": True, "list": ["a", "b"]},
    "needs": {"a": {"result": "success"}, "b": {"result": "failure"}},
    "steps": {},
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("'it''s'", "it's"),
        ("1 == 1.0", True),
        ("0x10 == 16", True),
        ("-1 < 0", True),
        ("null", None),
        ("'abc' == 'ABC'", True),  # string equality ignores case
        ("'1' == 1", True),  # different types: both coerced to numbers
        ("'' == 0", True),
        ("null == 0", True),
        ("true == 1", True),
        ("'x' == 0", False),  # NaN equals nothing
        ("'b' > 'A'", True),
        ("1 < 'x'", False),
        ("!''", True),
        ("!'false'", False),  # a non-empty string is truthy
        ("(1 == 1) && 'yes' || 'no'", "yes"),
        ("(1 == 2) && 'yes' || 'no'", "no"),
        ("null || 'default'", "default"),
        ("github.event_name == 'push' && startsWith(github.ref, 'refs/tags/release/')", True),
        ("endsWith(github.ref, 'V1.2.0')", True),
        ("contains(github.ref, '/IRIS/')", True),
        ("contains(inputs.list, 'A')", True),
        ("contains(needs.*.result, 'failure')", True),
        ("format('{0}-{1}-{{x}}', inputs.model, 2)", "Iris-2-{x}"),
        ("join(inputs.list, '+')", "a+b"),
        ("join('single')", "single"),
        ("fromJSON('{\"a\": [1, 2]}').a[1]", 2),
        ("fromJSON('true')", True),
        ("toJSON(inputs.list)", '[\n  "a",\n  "b"\n]'),
        ("github.EVENT_NAME", "push"),  # property names are case-insensitive
        ("github['ref']", "refs/tags/release/iris/v1.2.0"),
        ("github.event.n >= 3", True),
        ("github.nothing.deeper", None),
        ("inputs.flag", True),
    ],
)
def test_expression_table(expr: str, expected: Any) -> None:
    assert gha.evaluate(expr, CONTEXTS) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v${{ 1 }}-${{ true }}-${{ null }}-${{ 1.5 }}", "v1-true--1.5"),
        ("${{ '}}' }}", "}}"),
        ("${{ inputs.list }}", "Array"),
        ("${{ toJSON(github.event) }}", '{\n  "n": 3\n}'),
    ],
)
def test_template_rendering(text: str, expected: str) -> None:
    assert gha.Scope(CONTEXTS).text(text) == expected


def test_whole_expression_keeps_its_type() -> None:
    assert gha.Scope(CONTEXTS).render("${{ inputs.flag }}") is True


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("nope.x", "unknown context 'nope'"),
        ("frobnicate(1)", "unknown function frobnicate()"),
        ("hashFiles('**/x')", "hashFiles\\(\\) is not implemented"),
        ("1 ==", "unexpected"),
        ("fromJSON('{')", "invalid JSON"),
        ("success()", "only allowed in if:"),
    ],
)
def test_expression_errors_name_the_expression(expr: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        gha.evaluate(expr, CONTEXTS)


def test_secrets_are_not_available_in_step_if(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH + "jobs:\n  a:\n    runs-on: x\n    steps:\n"
        "      - {if: \"secrets.TOKEN != ''\", run: 'true'}\n",
    )
    with pytest.raises(ExpressionError, match=r"unknown context 'secrets'.*steps\[0\]\.if"):
        run(wf, push(remote), remote, tmp_path)


# --- the step environment and file commands -----------------------------------------------


def test_file_commands_outputs_env_path_summary(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH
        + """\
        jobs:
          a:
            runs-on: x
            steps:
              - id: write
                run: |
                  echo "plain=a=b" >> "$GITHUB_OUTPUT"
                  { echo "notes<<EOF_1"; echo "line 1"; echo "line=2"; echo "EOF_1"; } >> "$GITHUB_OUTPUT"
                  echo "FROM_ENV=set by step" >> "$GITHUB_ENV"
                  mkdir -p "$RUNNER_TEMP/bin"
                  printf '#!/bin/sh\\necho tool-ran\\n' > "$RUNNER_TEMP/bin/mytool"
                  chmod +x "$RUNNER_TEMP/bin/mytool"
                  echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
                  echo "## first" >> "$GITHUB_STEP_SUMMARY"
                  echo "::error file=x.py,line=1::bad thing"
                  echo "::warning::careful"
              - id: read
                run: |
                  echo "env=$FROM_ENV|${{ env.FROM_ENV }}" >> "$GITHUB_OUTPUT"
                  echo "tool=$(mytool)" >> "$GITHUB_OUTPUT"
                  echo "notes=${{ steps.write.outputs.notes == 'line 1\\nline=2' }}" >> "$GITHUB_OUTPUT"
                  echo "second" >> "$GITHUB_STEP_SUMMARY"
        """,  # noqa: E501
    )
    result = run(wf, push(remote), remote, tmp_path)
    job = result.jobs["a"]
    assert job.steps[0].outputs == {"plain": "a=b", "notes": "line 1\nline=2"}
    assert result.step("a", "read").outputs == {
        "env": "set by step|set by step",
        "tool": "tool-ran",
        "notes": "false",  # expressions have no escapes: '\n' is backslash-n
    }
    assert job.summary == "## first\nsecond\n"
    assert job.annotations == [("error", "bad thing"), ("warning", "careful")]
    assert job.env["FROM_ENV"] == "set by step"


def test_parse_file_command_forms() -> None:
    text = "a=1\nb<<X\nl1\n\nl3\nX\nc=x<<y\n"
    assert gha.parse_file_command(text) == {"a": "1", "b": "l1\n\nl3", "c": "x<<y"}
    with pytest.raises(WorkflowError, match="never closed"):
        gha.parse_file_command("a<<EOF\nno end\n")


def test_github_variables_and_env_precedence(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        """\
        name: vars
        on: push
        env: {LEVEL: workflow, W: w}
        jobs:
          a:
            runs-on: x
            env: {LEVEL: job, J: "${{ github.ref_name }}"}
            steps:
              - id: s
                env: {LEVEL: step}
                run: |
                  for v in GITHUB_ACTIONS CI GITHUB_WORKFLOW GITHUB_JOB GITHUB_REF \\
                           GITHUB_REF_NAME GITHUB_REF_TYPE GITHUB_SHA GITHUB_EVENT_NAME \\
                           RUNNER_OS LEVEL W J EXTRA; do
                    echo "$v=${!v}" >> "$GITHUB_OUTPUT"
                  done
                  echo "home=$HOME" >> "$GITHUB_OUTPUT"
                  echo "ws=$(pwd)|$GITHUB_WORKSPACE" >> "$GITHUB_OUTPUT"
                  echo "event=$(cat "$GITHUB_EVENT_PATH" | tr -d ' \\n')" >> "$GITHUB_OUTPUT"
                  echo "leak=${PYTEST_CURRENT_TEST:-none}" >> "$GITHUB_OUTPUT"
        """,
    )
    event = push(remote, "refs/tags/release/iris/v1.0.0")
    result = run(wf, event, remote, tmp_path, env={"EXTRA": "from caller"})
    out = result.step("a", "s").outputs
    assert {k: out[k] for k in ("GITHUB_ACTIONS", "CI", "GITHUB_WORKFLOW", "GITHUB_JOB")} == {
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_WORKFLOW": "vars",
        "GITHUB_JOB": "a",
    }
    assert out["GITHUB_REF"] == "refs/tags/release/iris/v1.0.0"
    assert (out["GITHUB_REF_NAME"], out["GITHUB_REF_TYPE"]) == ("release/iris/v1.0.0", "tag")
    assert (out["GITHUB_SHA"], out["GITHUB_EVENT_NAME"]) == (remote.main, "push")
    assert (out["LEVEL"], out["W"], out["J"]) == ("step", "w", "release/iris/v1.0.0")
    assert (out["RUNNER_OS"], out["EXTRA"]) == ("Linux", "from caller")
    assert out["home"] != os.environ["HOME"] and out["home"].startswith(str(tmp_path))
    cwd, workspace = out["ws"].split("|")
    assert cwd == workspace == str(result.jobs["a"].workspace)
    assert f'"after":"{remote.main}"' in out["event"]
    assert out["leak"] == "none"  # the runner's own environment does not leak into steps


def test_shell_defaults_and_working_directory(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH
        + """\
        jobs:
          plain:
            runs-on: x
            steps:
              - {id: nopipefail, run: "false | true"}
          strict:
            runs-on: x
            defaults: {run: {shell: bash, working-directory: sub}}
            steps:
              - {working-directory: ., run: mkdir sub}
              - {id: where, run: echo "dir=$(basename "$PWD")" >> "$GITHUB_OUTPUT"}
              - {id: pipefail, continue-on-error: true, run: "false | true"}
              - id: py
                shell: python
                run: |
                  import os
                  open(os.environ["GITHUB_OUTPUT"], "a").write("py=ok\\n")
        """,
    )
    result = run(wf, push(remote), remote, tmp_path)
    # no shell anywhere: GitHub runs `bash -e {0}`, without pipefail
    assert result.step("plain", "nopipefail").outcome == "success"
    assert result.step("strict", "where").outputs == {"dir": "sub"}
    assert result.step("strict", "pipefail").outcome == "failure"
    assert result.step("strict", "py").outputs == {"py": "ok"}


def test_timeout_and_leftover_processes_are_killed(tmp_path: Path, remote: Remote) -> None:
    pidfile = tmp_path / "bg.pid"
    wf = workflow(
        tmp_path,
        ON_PUSH
        + f"""\
        jobs:
          a:
            runs-on: x
            steps:
              - id: bg
                run: |
                  sleep 300 &
                  echo $! > {pidfile}
              - id: slow
                timeout-minutes: 0.02
                run: sleep 300
              - id: after
                if: always()
                run: echo after
        """,
    )
    result = run(wf, push(remote), remote, tmp_path)
    assert result.step("a", "bg").outcome == "success"
    assert result.step("a", "slow").outcome == "failure"
    assert "timed out" in result.step("a", "slow").log
    assert result.step("a", "after").outcome == "success"
    stat = Path(f"/proc/{int(pidfile.read_text())}/stat")
    # gone, or a zombie waiting for PID 1 to reap it
    assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] == "Z"


def test_secrets_vars_and_masking(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH
        + """\
        jobs:
          a:
            runs-on: x
            steps:
              - id: s
                env:
                  KEY: ${{ secrets.DEPLOY_KEY }}
                  MISSING: ${{ secrets.NOT_SET }}
                  REGION: ${{ vars.REGION }}
                run: |
                  echo "key is $KEY"
                  echo "::add-mask::runtime-secret"
                  echo "printed runtime-secret"
                  echo "r=$REGION|$MISSING|${#KEY}" >> "$GITHUB_OUTPUT"
        """,
    )
    result = run(
        wf, push(remote), remote, tmp_path, secrets={"DEPLOY_KEY": "s3cr3t"}, vars={"REGION": "eu"}
    )
    step = result.step("a", "s")
    assert step.outputs == {"r": "eu||6"}
    assert "s3cr3t" not in step.log and "key is ***" in step.log
    assert "printed ***" in step.log


# --- uses: stand-ins ------------------------------------------------------------------------


def test_checkout_clones_the_event_ref(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH
        + f"""\
        jobs:
          a:
            runs-on: x
            steps:
              - id: co
                uses: actions/checkout@{PIN}
              - id: state
                run: |
                  echo "head=$(git rev-parse HEAD)" >> "$GITHUB_OUTPUT"
                  echo "shallow=$(git rev-parse --is-shallow-repository)" >> "$GITHUB_OUTPUT"
                  echo "tags=$(git tag | tr '\\n' ' ')" >> "$GITHUB_OUTPUT"
                  echo "type=$(git cat-file -t refs/tags/release/iris/v1.0.0)" >> "$GITHUB_OUTPUT"
                  echo "header=$(git config --get http.https://github.com/.extraheader)" >> "$GITHUB_OUTPUT"
        """,  # noqa: E501
    )
    result = run(wf, push(remote, "refs/tags/release/iris/v1.0.0"), remote, tmp_path)
    out = result.step("a", "state").outputs
    assert out["head"] == remote.main
    assert out["shallow"] == "true"  # fetch-depth defaults to 1
    assert out["tags"].split() == ["release/iris/v1.0.0"]
    assert out["type"] == "tag"  # the annotated tag object itself, so it can be verified
    assert out["header"]  # persist-credentials defaults to true, as on GitHub
    co = result.step("a", "co")
    assert co.outputs["commit"] == remote.main and co.pinned is True


def test_checkout_with_ref_depth_and_credentials(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH
        + f"""\
        jobs:
          a:
            runs-on: x
            steps:
              - id: co
                uses: actions/checkout@{PIN}
                with:
                  ref: {remote.first}
                  fetch-depth: 0
                  persist-credentials: false
                  path: repo
              - id: state
                working-directory: repo
                run: |
                  echo "head=$(git rev-parse HEAD)" >> "$GITHUB_OUTPUT"
                  echo "tags=$(git tag | sort | tr '\\n' ' ')" >> "$GITHUB_OUTPUT"
                  echo "header=$(git config --get http.https://github.com/.extraheader || echo none)" >> "$GITHUB_OUTPUT"
                  git push -q origin HEAD:refs/heads/from-ci
        """,  # noqa: E501
    )
    result = run(wf, push(remote), remote, tmp_path)
    out = result.step("a", "state").outputs
    assert out == {"head": remote.first, "tags": "old-tag release/iris/v1.0.0 ", "header": "none"}
    assert result.step("a", "co").inputs["persist-credentials"] == "false"
    assert git(remote.bare, "rev-parse", "refs/heads/from-ci") == remote.first


def test_checkout_branch_by_name(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH
        + f"""\
        jobs:
          a:
            runs-on: x
            steps:
              - {{uses: actions/checkout@{PIN}, with: {{ref: main}}}}
              - id: s
                run: echo "b=$(git branch --show-current) $(git rev-parse HEAD)" >> "$GITHUB_OUTPUT"
        """,
    )
    event = Event.push("refs/tags/old-tag", remote.first)
    assert run(wf, event, remote, tmp_path).step("a", "s").outputs == {"b": f"main {remote.main}"}


def test_uses_pinning_custom_and_unknown_actions(tmp_path: Path, remote: Remote) -> None:
    seen: list[StepContext] = []

    def upload(ctx: StepContext) -> dict[str, str]:
        seen.append(ctx)
        (ctx.workspace / "uploaded").write_text(ctx.inputs["name"])
        return {"artifact-id": "42"}

    wf = workflow(
        tmp_path,
        ON_PUSH
        + f"""\
        jobs:
          a:
            runs-on: x
            steps:
              - {{id: py, uses: actions/setup-python@v5, with: {{python-version: "3.11"}}}}
              - id: up
                uses: actions/upload-artifact@{PIN}
                with: {{name: "bundle-${{{{ github.ref_name }}}}"}}
              - id: used
                run: echo "id=${{{{ steps.up.outputs.artifact-id }}}}" >> "$GITHUB_OUTPUT"
              - {{id: unknown, uses: someone/else@{PIN}}}
          b:
            if: false
            runs-on: x
            steps: [{{uses: other/action@main}}]
        """,
    )
    result = run(wf, push(remote), remote, tmp_path, actions={"actions/upload-artifact": upload})
    assert [(u.uses.split("@")[0], u.pinned) for u in result.uses] == [
        ("actions/setup-python", False),
        ("actions/upload-artifact", True),
        ("someone/else", True),
        ("other/action", False),  # recorded even though its job never ran
    ]
    py = result.step("a", "py")
    assert (py.pinned, py.inputs, py.outputs["python-version"]) == (
        False,
        {"python-version": "3.11"},
        "3.11",
    )
    assert seen[0].inputs == {"name": "bundle-main"}
    assert result.step("a", "used").outputs == {"id": "42"}
    unknown = result.step("a", "unknown")
    assert unknown.outcome == "failure" and "no stand-in for action 'someone/else'" in unknown.log
    assert result.jobs["a"].conclusion == "failure"


def test_failing_action_fails_its_step(tmp_path: Path, remote: Remote) -> None:
    def broken(ctx: StepContext) -> dict[str, str]:
        raise RuntimeError("registry unreachable")

    wf = workflow(
        tmp_path,
        ON_PUSH + f"jobs:\n  a:\n    runs-on: x\n    steps:\n"
        f"      - {{id: x, uses: acme/push@{PIN}}}\n",
    )
    step = run(wf, push(remote), remote, tmp_path, actions={"acme/push": broken}).step("a", "x")
    assert step.outcome == "failure" and "registry unreachable" in step.log


def test_permissions_concurrency_environment_recorded(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        """\
        on:
          workflow_dispatch:
            inputs: {model: {required: true}}
        permissions: {}
        concurrency: wf-${{ github.ref }}
        jobs:
          deploy:
            runs-on: ubuntu-latest
            permissions: {contents: write, id-token: write}
            environment:
              name: production
              url: ${{ steps.d.outputs.url }}
            concurrency:
              group: deploy-${{ inputs.model }}-production
              cancel-in-progress: false
            steps: [{id: d, run: echo "url=http://127.0.0.1:3000" >> "$GITHUB_OUTPUT"}]
          other:
            runs-on: ubuntu-latest
            steps: [{run: "true"}]
        """,
    )
    event = Event.dispatch("refs/heads/main", remote.main, {"model": "iris"})
    result = run(wf, event, remote, tmp_path)
    assert result.permissions == {} and result.concurrency == {
        "group": "wf-refs/heads/main",
        "cancel-in-progress": False,
    }
    deploy = result.jobs["deploy"]
    assert deploy.permissions == {"contents": "write", "id-token": "write"}
    assert deploy.concurrency == {"group": "deploy-iris-production", "cancel-in-progress": False}
    assert deploy.environment == {"name": "production", "url": "http://127.0.0.1:3000"}
    assert result.jobs["other"].permissions is None


def test_unsupported_features_are_refused(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH + "jobs:\n  a:\n    runs-on: x\n    strategy: {matrix: {v: [1, 2]}}\n"
        "    steps: [{run: 'true'}]\n",
    )
    with pytest.raises(WorkflowError, match="strategy: is not supported"):
        run(wf, push(remote), remote, tmp_path)


def test_needs_cycle_is_refused(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH + "jobs:\n  a: {runs-on: x, needs: b, steps: []}\n"
        "  b: {runs-on: x, needs: a, steps: []}\n",
    )
    with pytest.raises(WorkflowError, match="cycle"):
        run(wf, push(remote), remote, tmp_path)


def test_event_payload_file_is_json(tmp_path: Path, remote: Remote) -> None:
    wf = workflow(
        tmp_path,
        ON_PUSH + "jobs:\n  a:\n    runs-on: x\n    steps:\n"
        '      - {id: s, run: \'cp "$GITHUB_EVENT_PATH" "$RUNNER_TEMP/copy.json"\'}\n',
    )
    result = run(wf, push(remote), remote, tmp_path)
    temp = Path(str(result.jobs["a"].workspace)).parent / "temp"
    payload = json.loads((temp / "copy.json").read_text())
    # The whole payload a push carries, nothing of the runner's own in it.
    assert payload == {
        "ref": "refs/heads/main",
        "after": remote.main,
        "repository": {"full_name": "local/remote"},
    }
