"""watch: analyses the live version, then marks it stable or switches back and
reverts (docs/ARCHITECTURE.md, "Unattended rollback").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

import releasectl.cli.completion as completion
from releasectl.cli.output import (
    JsonLinesOption,
    ModelArg,
    bare_version,
    ci_summary,
    emit_line,
    funnel,
    repo,
    say,
    shown,
    warn,
)
from releasectl.cli.serving import NOT_RUNNING
from releasectl.errors import BadInput

if TYPE_CHECKING:
    from releasectl.analysis.engine import Measurement
    from releasectl.analysis.steps import StepTag
    from releasectl.git import Git

app = typer.Typer()


@app.command("watch")
def watch_(
    ctx: typer.Context,
    model: ModelArg,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="The live version to watch.",
            callback=bare_version,
            autocompletion=completion.versions,
        ),
    ] = None,
    push: Annotated[
        bool, typer.Option("--push", help="Push the stable tag or the revert.")
    ] = False,
    judge_only: Annotated[
        bool,
        typer.Option(
            "--judge-only",
            help="Only report the verdict (and, in GitHub Actions, the step outputs "
            "verdict, version and reason); mark nothing, revert nothing, need no key.",
        ),
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Run the checks made before the bake and say what each verdict would "
            "lead to; bake nothing, write nothing.",
        ),
    ] = False,
    json: JsonLinesOption = False,
    record_timeout: Annotated[
        float,
        typer.Option(
            "--record-timeout",
            help="Seconds to keep retrying a refused push of the revert (with backoff).",
        ),
    ] = 600.0,
) -> None:
    """Analyse the live version; mark it stable, or switch back and revert."""
    how = _WatchRun(model, version, push, judge_only, dry_run, record_timeout)
    _watch(ctx=ctx, how=how, json=json)


@dataclass(frozen=True)
class _WatchRun:
    """What `watch` was asked to do."""

    model: str
    version: str | None
    push: bool
    judge_only: bool
    dry_run: bool
    record_timeout: float


@funnel(json="lines")
def _watch(*, ctx: typer.Context, how: _WatchRun, json: bool) -> None:
    if how.judge_only and how.push:
        raise BadInput("--judge-only acts on nothing, so it pushes nothing: drop --push")

    def show(m: Measurement) -> None:
        if json:
            say(m.model_dump_json())
        else:
            mark = {
                "successful": "ok  ",
                "failed": "FAIL",
                "inconclusive": "??  ",
                "pending": "..  ",
            }
            step = f"[{_step(m)}] " if m.step is not None else ""
            say(f"[{m.elapsed_s:6.1f}s] {mark.get(m.status, 'ERR ')} {step}{shown(m.message)}")

    def step(tag: StepTag, text: str) -> None:
        """A canary's step, seen by the watch: one event line (docs/ARCHITECTURE.md,
        "Steps and the bake")."""
        if json:
            emit_line({"event": text, "step": tag.model_dump(mode="json")})
        else:
            warn(text)

    git = repo(ctx)
    if how.dry_run:
        _dry_watch(git, how.model, how.version, how.push, not how.judge_only, json)
    elif how.judge_only:
        _judge(git, how.model, how.version, json, show, step)
    else:
        _act(git, how.model, how.version, how.push, json, show, how.record_timeout, step)


def _step(m: Measurement) -> str:
    """`mirror 10%`, `weight 50%`, `100%`: the canary step a measurement ran in."""
    step = m.step
    assert step is not None
    return (
        f"{step.kind} {step.percent}%"
        if step.kind in ("mirror", "weight")
        else "100%"
        if step.kind == "full"
        else step.kind
    )


def _act(
    git: Git,
    model: str,
    version: str | None,
    push: bool,
    json: bool,
    show: Callable[[Measurement], None],
    record_timeout: float,
    step: Callable[[StepTag, str], None],
) -> None:
    from releasectl.pipeline.watch import watch

    def event(text: str) -> None:
        if json:
            emit_line({"event": text})
        else:
            warn(text)

    result = watch(
        git,
        model,
        version=version,
        push=push,
        on_measurement=show,
        on_event=event,
        record_timeout=record_timeout,
        on_step=step,
    )
    problem = result.problem()
    if problem is not None:
        raise problem
    ci_summary(
        f"✅ analysis of {model} {result.version}: {result.verdict.outcome}: {result.line()}"
        f" → {result.action}"
    )
    if json:
        emit_line(result.to_json())
    else:
        say(f"{model} {result.version} passed: marked stable")


def _dry_watch(
    git: Git, model: str, version: str | None, push: bool, act: bool, json: bool
) -> None:
    """`watch --dry-run`: what `watch` checks before its bake, refused alike;
    then what each verdict would lead to."""
    from releasectl.manifest.durations import format_duration
    from releasectl.pipeline.watch import plan_watch

    p = plan_watch(git, model, version=version, push=push, act=act)
    if json:
        emit_line(p.to_json())
        return
    if p.steps is not None:
        say(f"would {p.steps}")
    say(f"would watch {model} {p.version} for {format_duration(p.bake_s)}, then if it")
    say(f"  passes: {p.on_pass}")
    say(f"  fails: {p.on_fail}")
    say(f"  is inconclusive: {p.on_inconclusive}")
    if not p.agent_running:
        say(f"  {NOT_RUNNING}: the watch would start it (the live version is as last recorded)")


def _judge(
    git: Git,
    model: str,
    version: str | None,
    json: bool,
    show: Callable[[Measurement], None],
    step: Callable[[StepTag, str], None],
) -> None:
    """`watch --judge-only`: the verdict, reported and nothing else. In GitHub
    Actions the step outputs carry it to a job that runs no model code, which
    marks or reverts (docs/ARCHITECTURE.md, "Trust"): `verdict` is one of
    passed, failed, inconclusive; `reason` is one line that `revert --reason`
    accepts."""
    from releasectl.pipeline import ci
    from releasectl.pipeline.watch import watch

    result = watch(git, model, version=version, act=False, on_measurement=show, on_step=step)
    verdict = result.verdict
    ci.set_output("verdict", verdict.outcome.value)
    ci.set_output("version", result.version)
    ci.set_output("reason", result.reason)
    problem = result.problem()
    if problem is not None:
        raise problem
    ci_summary(
        f"✅ analysis of {model} {result.version}: {verdict.outcome}: {verdict.message}"
        " → judged only"
    )
    if json:
        emit_line(result.to_json())
    else:
        say(f"{model} {result.version} passed (judged only: not marked stable here)")
