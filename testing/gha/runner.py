"""Running a workflow: jobs in `needs:` order, each job's `if:`, env, outputs,
concurrency and environment, then the run's result."""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testing.gha.actions import StepContext
from testing.gha.context import FAKE_TOKEN, Run, github_context, runner_context, steps_context
from testing.gha.errors import WorkflowError
from testing.gha.expressions import Scope, to_str, truthy
from testing.gha.files import load_workflow
from testing.gha.results import JobResult, RunResult, static_uses
from testing.gha.steps import run_steps
from testing.gha.triggers import Event, check_trigger

_RUN_IDS = itertools.count(1000)


def _needs(spec: dict[str, Any]) -> list[str]:
    needs = spec.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def _job_order(jobs: dict[str, Any], selected: list[str] | None) -> list[str]:
    """Topological order by needs:, ties in file order; `selected` pulls in what it needs."""
    for job_id, spec in jobs.items():
        if missing := [n for n in _needs(spec) if n not in jobs]:
            raise WorkflowError(f"job {job_id!r} needs unknown jobs {missing}")
    wanted, stack = set(), list(selected if selected is not None else jobs)
    while stack:
        job_id = stack.pop()
        if job_id not in jobs:
            raise WorkflowError(f"no job {job_id!r} in the workflow: {list(jobs)}")
        if job_id not in wanted:
            wanted.add(job_id)
            stack.extend(_needs(jobs[job_id]))
    order: list[str] = []
    while len(order) < len(wanted):
        ready = [
            j
            for j in jobs
            if j in wanted and j not in order and all(n in order for n in _needs(jobs[j]))
        ]
        if not ready:
            raise WorkflowError(f"needs: cycle among {sorted(wanted - set(order))}")
        order.append(ready[0])
    return order


def _ancestors(jobs: dict[str, Any], job_id: str) -> set[str]:
    found: set[str] = set()
    stack = _needs(jobs[job_id])
    while stack:
        if (j := stack.pop()) not in found:
            found.add(j)
            stack.extend(_needs(jobs[j]))
    return found


def _concurrency(value: Any, scope: Scope) -> dict[str, Any] | None:
    if value is None:
        return None
    value = scope.render(value)
    if isinstance(value, str):
        return {"group": value, "cancel-in-progress": False}
    return {
        "group": to_str(value.get("group")),
        "cancel-in-progress": value.get("cancel-in-progress", False),
    }


def _run_job(run: Run, job_id: str) -> JobResult:
    jobs = run.doc["jobs"]
    spec = jobs[job_id] or {}
    for unsupported in ("strategy", "services", "container", "uses"):
        if unsupported in spec:
            raise WorkflowError(
                f"job {job_id!r}: {unsupported}: is not supported by the stand-in runner"
            )
    results = [run.jobs[a].conclusion for a in _ancestors(jobs, job_id)]
    needs = {
        n: {"result": run.jobs[n].conclusion, "outputs": run.jobs[n].outputs} for n in _needs(spec)
    }
    base_ctx = {
        "github": {**run.github, "job": job_id},
        "needs": needs,
        "vars": run.vars,
        "inputs": run.inputs,
        "strategy": {},
        "matrix": {},
    }
    status = {
        "success": all(r == "success" for r in results),
        "failure": any(r == "failure" for r in results),
        "always": True,
        "cancelled": False,
    }
    job_scope = Scope(base_ctx, where=f"jobs.{job_id}")
    name = job_scope.text(spec.get("name", job_id))
    result = JobResult(
        job_id,
        name,
        "skipped",
        "skipped",
        permissions=spec.get("permissions"),
        runs_on=spec.get("runs-on"),
    )
    if not Scope(
        {k: base_ctx[k] for k in ("github", "needs", "vars", "inputs")}, status, f"jobs.{job_id}.if"
    ).condition(spec.get("if")):
        return result
    env_scope = Scope({**base_ctx, "secrets": run.secrets}, where=f"jobs.{job_id}.env")
    job_env = {
        **run.workflow_env,
        **{k: env_scope.text(v) for k, v in (spec.get("env") or {}).items()},
    }
    result.concurrency = _concurrency(spec.get("concurrency"), job_scope)
    environment = spec.get("environment")
    if environment is not None:
        environment = {"name": environment} if isinstance(environment, str) else dict(environment)
        result.environment = {"name": job_scope.text(environment.get("name")), "url": ""}
    folder = Path(tempfile.mkdtemp(prefix=f"{job_id}-", dir=run.root))
    workspace, temp = folder / "workspace", folder / "temp"
    workspace.mkdir()
    temp.mkdir()
    result.workspace = workspace
    result.temp = temp
    run_steps(run, job_id, spec, result, base_ctx, job_env, workspace, temp)
    final = Scope(
        {
            **base_ctx,
            "secrets": run.secrets,
            "env": result.env,
            "steps": steps_context(result.steps),
            "job": {"status": result.outcome},
            "runner": runner_context(temp),
        },
        where=f"jobs.{job_id}.outputs",
    )
    result.outputs = {k: final.text(v) for k, v in (spec.get("outputs") or {}).items()}
    if result.environment is not None and environment:
        result.environment["url"] = final.text(environment.get("url", ""))
    if result.outcome == "failure" and truthy(
        job_scope.render(spec.get("continue-on-error", False))
    ):
        result.conclusion = "success"
    else:
        result.conclusion = result.outcome
    return result


def run_workflow(
    path: Path,
    event: Event,
    *,
    remote: Path,
    workdir: Path,
    secrets: dict[str, str] | None = None,
    vars: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    actions: dict[str, Callable[[StepContext], dict[str, str]]] | None = None,
    jobs: list[str] | None = None,
) -> RunResult:
    """Run the workflow at `path` for `event` against `remote` (a bare repository
    standing in for the GitHub repository). Raises NotTriggered if GitHub would
    not start it. `env` is the runner's process environment on top of a minimal
    one (PATH, LANG, a fresh HOME); `jobs` picks jobs (plus what they need)."""
    doc = load_workflow(path)
    inputs = check_trigger(doc, event, remote)
    run_id = next(_RUN_IDS)
    workdir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"run{run_id}-", dir=workdir))
    run = Run(
        doc,
        event,
        remote,
        root,
        {"GITHUB_TOKEN": FAKE_TOKEN, **(secrets or {})},
        dict(vars or {}),
        dict(env or {}),
        dict(actions or {}),
        inputs,
        run_id,
        github_context(doc, event, remote, run_id, inputs),
    )
    (root / "event.json").write_text(json.dumps(run.github["event"], indent=2))
    top = Scope({"github": run.github, "inputs": inputs, "vars": run.vars}, where="workflow")
    wf_scope = Scope({**top.contexts, "secrets": run.secrets}, where="workflow env")
    run.workflow_env = {k: wf_scope.text(v) for k, v in (doc.get("env") or {}).items()}
    for job_id in _job_order(doc["jobs"], jobs):
        run.jobs[job_id] = _run_job(run, job_id)
    failed = any(j.conclusion == "failure" for j in run.jobs.values())
    return RunResult(
        "failure" if failed else "success",
        run.jobs,
        top.text(doc.get("run-name", doc.get("name", path.name))),
        doc.get("permissions"),
        _concurrency(doc.get("concurrency"), top),
        static_uses(doc),
    )
