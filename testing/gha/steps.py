"""Running one job's steps: `run:` steps as real shell processes with a minimal
environment and no network, `uses:` steps through their stand-ins."""

from __future__ import annotations

import math
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any

from testing.gha.actions import BUILTIN_ACTIONS, StepContext
from testing.gha.context import Run, runner_context, steps_context
from testing.gha.errors import WorkflowError
from testing.gha.expressions import Scope, to_number, truthy
from testing.gha.files import parse_file_command
from testing.gha.processes import spawn
from testing.gha.results import JobResult, StepResult, is_pinned

_ANNOTATION = re.compile(r"^::(error|warning|notice)(?:\s[^:]*)?::(.*)$", re.M)
_MASK = re.compile(r"^::add-mask::(.*)$", re.M)
_SHELLS = {
    None: ["bash", "-e", "{0}"],  # GitHub's default when no shell is set anywhere
    "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", "{0}"],
    "sh": ["sh", "-e", "{0}"],
    "python": ["python", "{0}"],
}
_NO_NETWORK = {
    "GIT_ALLOW_PROTOCOL": "file",
    **{
        k: "http://127.0.0.1:9"
        for k in (
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "all_proxy",
        )
    },
    **{k: "127.0.0.1,localhost,::1" for k in ("no_proxy", "NO_PROXY")},
}


def run_steps(
    run: Run,
    job_id: str,
    spec: dict[str, Any],
    result: JobResult,
    base_ctx: dict[str, Any],
    job_env: dict[str, str],
    workspace: Path,
    temp: Path,
) -> None:
    """Each step in order; a failure skips later steps unless their if: says otherwise."""
    defaults = {
        **((run.doc.get("defaults") or {}).get("run") or {}),
        **((spec.get("defaults") or {}).get("run") or {}),
    }
    minutes = to_number(Scope(base_ctx).render(spec.get("timeout-minutes", 360)))
    deadline = time.monotonic() + 60 * (360 if math.isnan(minutes) else minutes)
    set_env: dict[str, str] = {}
    paths: list[str] = []
    masks: list[str] = []
    failed = False
    home = run.env.get("HOME") or str(run.root / "home")
    Path(home).mkdir(exist_ok=True)
    for index, step in enumerate(spec.get("steps") or []):
        env_ctx = {**job_env, **set_env}
        ctx = {
            **base_ctx,
            "github": {**base_ctx["github"], "workspace": str(workspace)},
            "runner": runner_context(temp),
            "env": env_ctx,
            "steps": steps_context(result.steps),
            "job": {"status": "failure" if failed else "success"},
        }
        where = f"jobs.{job_id}.steps[{index}]"
        status = {"success": not failed, "failure": failed, "always": True, "cancelled": False}
        scope = Scope({**ctx, "secrets": run.secrets}, where=where)
        uses = step.get("uses")
        first_line = (str(step.get("run", "")).strip().splitlines() or [""])[0]
        name = scope.text(step.get("name", f"Run {uses or first_line}"))
        record = StepResult(
            job_id,
            step.get("id"),
            name,
            "skipped",
            "skipped",
            uses=uses,
            pinned=is_pinned(uses) if uses else None,
        )
        result.steps.append(record)
        if time.monotonic() >= deadline or not Scope(ctx, status, f"{where}.if").condition(
            step.get("if")
        ):
            continue
        step_env = {k: scope.text(v) for k, v in (step.get("env") or {}).items()}
        scope.contexts["env"] = {**env_ctx, **step_env}
        files = {k: temp / f"_{k}_{index}" for k in ("output", "env", "path", "summary")}
        for f in files.values():
            f.write_text("")
        github_vars = {
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "GITHUB_WORKFLOW": run.github["workflow"],
            "GITHUB_RUN_ID": run.github["run_id"],
            "GITHUB_RUN_NUMBER": "1",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_JOB": job_id,
            "GITHUB_REF": run.event.ref,
            "GITHUB_REF_NAME": run.github["ref_name"],
            "GITHUB_REF_TYPE": run.github["ref_type"],
            "GITHUB_SHA": run.event.sha,
            "GITHUB_REPOSITORY": run.github["repository"],
            "GITHUB_REPOSITORY_OWNER": run.github["repository_owner"],
            "GITHUB_EVENT_NAME": run.event.name,
            "GITHUB_EVENT_PATH": str(run.root / "event.json"),
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_OUTPUT": str(files["output"]),
            "GITHUB_ENV": str(files["env"]),
            "GITHUB_PATH": str(files["path"]),
            "GITHUB_STEP_SUMMARY": str(files["summary"]),
            "GITHUB_ACTOR": "local-runner",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_API_URL": "https://api.github.com",
            "GITHUB_BASE_REF": run.event.base_ref,
            "GITHUB_HEAD_REF": run.event.head_ref,
            "RUNNER_TEMP": str(temp),
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            "RUNNER_NAME": "local-stand-in",
            "RUNNER_TOOL_CACHE": str(temp / "_tool"),
        }
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": home,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            **_NO_NETWORK,
            **run.env,
        }
        proc_env = {**base, **env_ctx, **step_env, **github_vars}
        proc_env["PATH"] = os.pathsep.join([*reversed(paths), proc_env["PATH"]])
        step_minutes = to_number(scope.render(step.get("timeout-minutes", 360)))
        timeout = min(deadline, time.monotonic() + 60 * step_minutes)
        if uses:
            outcome, log = _uses_step(run, job_id, step, record, scope, proc_env, workspace)
        else:
            outcome, log = _run_step(
                step, defaults, scope, proc_env, workspace, temp, index, timeout - time.monotonic()
            )
        masks += _MASK.findall(log)
        record.log = run.mask(log, masks)
        record.annotations = _ANNOTATION.findall(record.log)
        try:
            record.outputs = parse_file_command(files["output"].read_text())
            set_env.update(parse_file_command(files["env"].read_text()))
        except WorkflowError as exc:
            outcome, record.log = "failure", f"{record.log}\n{exc}"
        paths += [p for p in files["path"].read_text().splitlines() if p.strip()]
        record.summary = files["summary"].read_text()
        record.outcome = outcome
        coe = truthy(scope.render(step.get("continue-on-error", False)))
        record.conclusion = "success" if outcome == "failure" and coe else outcome
        failed = failed or record.conclusion == "failure"
        result.annotations += record.annotations
    if time.monotonic() >= deadline:
        failed = True
    result.outcome = "failure" if failed else "success"
    result.summary = "".join(s.summary for s in result.steps)
    result.env = {**job_env, **set_env}


def _run_step(
    step: dict[str, Any],
    defaults: dict[str, Any],
    scope: Scope,
    env: dict[str, str],
    workspace: Path,
    temp: Path,
    index: int,
    timeout: float,
) -> tuple[str, str]:
    script = scope.text(step["run"])
    shell = step.get("shell", defaults.get("shell"))
    argv = _SHELLS.get(shell) or (shlex.split(shell) if shell and "{0}" in shell else None)
    if argv is None:
        return "failure", f"stand-in runner: unsupported shell {shell!r}"
    cwd = workspace / scope.text(
        step.get("working-directory", defaults.get("working-directory", ""))
    )
    if not cwd.is_dir():
        return "failure", f"working-directory {cwd} does not exist"
    path = temp / f"step_{index}.{'py' if shell == 'python' else 'sh'}"
    path.write_text(script)
    log = temp / f"step_{index}.log"
    rc = spawn([a.replace("{0}", str(path)) for a in argv], cwd, env, timeout, log)
    text = log.read_text(errors="replace")
    if rc is None:
        return "failure", f"{text}\n##[error]The step timed out after {timeout:.1f} s"
    return ("success" if rc == 0 else "failure"), (
        text if rc == 0 else f"{text}\n##[error]Process completed with exit code {rc}."
    )


def _uses_step(
    run: Run,
    job_id: str,
    step: dict[str, Any],
    record: StepResult,
    scope: Scope,
    env: dict[str, str],
    workspace: Path,
) -> tuple[str, str]:
    uses = str(step["uses"])
    action = uses.partition("@")[0]
    record.inputs = {k: scope.text(v) for k, v in (step.get("with") or {}).items()}
    fn = run.actions.get(action) or BUILTIN_ACTIONS.get(action)
    if fn is None:
        return "failure", (
            f"stand-in runner: no stand-in for action {action!r} (uses: {uses}); "
            f"pass one in run_workflow(actions={{{action!r}: callable}})"
        )
    ctx = StepContext(
        job_id,
        step.get("id"),
        uses,
        record.inputs,
        env,
        workspace,
        run.remote,
        run.event,
        {**run.github, "workspace": str(workspace)},
    )
    try:
        outputs = fn(ctx) or {}
    except Exception as exc:  # an action's failure is the step's failure, as on GitHub
        return "failure", "\n".join([*ctx.lines, f"##[error]{type(exc).__name__}: {exc}"])
    with Path(env["GITHUB_OUTPUT"]).open("a") as out:
        for key, value in outputs.items():
            out.write(f"{key}<<__STAND_IN_EOF__\n{value}\n__STAND_IN_EOF__\n")
    return "success", "\n".join(ctx.lines)
