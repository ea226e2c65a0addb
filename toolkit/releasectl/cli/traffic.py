"""promote, abort: a running canary driven by hand; the library is
`releasectl.pipeline.traffic` (docs/ARCHITECTURE.md, "The command line").
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Annotated

import typer

from releasectl.cli.output import (
    DryRunOption,
    JsonOption,
    ModelArg,
    PushOption,
    emit,
    funnel,
    repo,
    say,
    shown,
    warn,
)

if TYPE_CHECKING:
    from releasectl.pipeline.traffic import TrafficResult

app = typer.Typer()


@app.command()
@funnel()
def promote(
    ctx: typer.Context,
    model: ModelArg,
    dry_run: DryRunOption = False,
    push: Annotated[
        bool,
        typer.Option(
            "--push",
            help="Accepted for symmetry with abort: promote writes nothing to git.",
        ),
    ] = False,
    json: JsonOption = False,
) -> None:
    """A canary's candidate takes 100% now; the rest of the bake runs at 100% under
    the watcher. On kubernetes: the `kubectl argo rollouts` command to run."""
    from releasectl.pipeline.traffic import promote as do_promote

    _report(do_promote(repo(ctx), model, push=push, dry_run=dry_run), json)


@app.command()
@funnel()
def abort(
    ctx: typer.Context,
    model: ModelArg,
    reason: Annotated[
        str | None,
        typer.Option(help="Why; recorded in the revert (default: aborted by <user.email>)."),
    ] = None,
    dry_run: DryRunOption = False,
    push: PushOption = False,
    json: JsonOption = False,
) -> None:
    """A canary's candidate answers nothing now, then it is switched back and reverted
    as a failed verdict is. On kubernetes: the `kubectl argo rollouts` command to run."""
    from releasectl.pipeline.traffic import abort as do_abort

    result = do_abort(
        repo(ctx),
        model,
        reason=reason,
        push=push,
        dry_run=dry_run,
        on_event=None if json else lambda text: say(f"  {text}"),
    )
    _report(result, json)


def _report(result: TrafficResult, json: bool) -> None:
    problem = result.problem()
    if problem is not None:
        raise problem  # the funnel prints its one line (and with --json, the document)
    if json:
        emit(result.to_json())
        return
    if result.command is not None:
        say(shlex.join(result.command))
    elif result.dry_run:
        for line in result.would or ["change nothing"]:
            say(f"would {line}")
    else:
        _say_done(result)
    for note in result.notes:
        warn(note)


def _say_done(result: TrafficResult) -> None:
    after, o, p = result.after, result.outcome, result.promoted
    if p is not None and after is not None:
        by = shown(p.by)
        say(f"{result.model} {p.version} answers every request now (promoted by {by})")
        say(f"  {after.stable} stays warm as the standby; the watcher judges the rest of the bake")
    elif o is not None:
        say(f"{result.model}: {shown(o.line())}")
    elif after is not None:
        say(f"{result.model} {after.candidate}: nothing changed")
