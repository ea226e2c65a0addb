"""`releasectl trust add|remove|adopt`: the signed commits that change who
holds a role, or vouch for a path's content (docs/ARCHITECTURE.md, "Trust")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from releasectl.cli.output import (
    DryRunOption,
    JsonOption,
    PushOption,
    emit,
    funnel,
    repo,
    say,
    shown,
)

if TYPE_CHECKING:
    from releasectl.registry.keys import TrustChange

app = typer.Typer(
    help="Who may sign what: the release signers and the admins.", no_args_is_help=True
)

RoleOption = Annotated[
    str,
    typer.Option("--role", help="release (signs releases and marks) or admin (changes the rules)."),
]
EmailOption = Annotated[str, typer.Option("--email", help="The signer's e-mail (its principal).")]


def _report(change: TrustChange, dry_run: bool, json: bool) -> None:
    if json:
        emit(
            {
                "action": change.action,
                "path": change.path,
                "role": change.role,
                "changed": change.changed,
                "commit": change.commit,
                "pushed_to": change.pushed_to,
                "dry_run": dry_run,
            }
        )
    elif not change.changed:
        say(f"nothing to do: {shown(change.message)}")
    elif dry_run:
        say(f"would commit, signed: {shown(change.message)} ({shown(change.path)})")
    else:
        assert change.commit is not None
        pushed = f", pushed to {change.pushed_to}" if change.pushed_to else ""
        say(f"{shown(change.message)}: commit {change.commit[:12]}{pushed}")


@app.command("add")
@funnel()
def add(
    ctx: typer.Context,
    key: Annotated[
        str, typer.Argument(metavar="KEY_OR_FILE", help="An SSH public key or .pub file.")
    ],
    email: EmailOption,
    role: RoleOption = "release",
    dry_run: DryRunOption = False,
    push: PushOption = False,
    json: JsonOption = False,
) -> None:
    """Add a signer to a role, in one commit signed by an admin."""
    from releasectl.registry import keys

    _report(keys.add(repo(ctx), key, email, role, dry_run=dry_run, push=push), dry_run, json)


@app.command("remove")
@funnel()
def remove(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(metavar="EMAIL")],
    role: RoleOption = "release",
    dry_run: DryRunOption = False,
    push: PushOption = False,
    json: JsonOption = False,
) -> None:
    """Remove a signer's keys from a role, in one commit signed by an admin."""
    from releasectl.registry import keys

    _report(keys.remove(repo(ctx), email, role, dry_run=dry_run, push=push), dry_run, json)


@app.command("adopt")
@funnel()
def adopt(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="PATH")],
    dry_run: DryRunOption = False,
    push: PushOption = False,
    json: JsonOption = False,
) -> None:
    """Vouch for PATH's current content (a commit signed by the role owning it,
    with a Releasectl-Adopt trailer): the start for a path with unsigned history."""
    from releasectl.registry import keys

    _report(keys.adopt(repo(ctx), path, dry_run=dry_run, push=push), dry_run, json)
