"""`releasectl store migrate`: the artifact store's own commands
(docs/ARCHITECTURE.md, "The artifact store").
"""

from __future__ import annotations

from typing import Annotated

import typer

from releasectl.cli.output import DryRunOption, JsonOption, emit, funnel, repo, say, shown
from releasectl.errors import OperationFailed

store = typer.Typer(help="The artifact store.", no_args_is_help=True)


@store.command("migrate")
@funnel()
def migrate(
    ctx: typer.Context,
    to: Annotated[
        str,
        typer.Option("--to", metavar="URL", help="The team's store: a folder or fsspec URL."),
    ],
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="URL",
            help="Default: RELEASECTL_STORE, else this machine's $RELEASECTL_HOME/artifacts.",
        ),
    ] = None,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """Copy every artifact a verified release or a weight pin needs into the team's
    store, each checked against its pin; what is there already is left alone."""
    import os

    from releasectl.bundles.store import ArtifactStore
    from releasectl.cli.progress import terminal_progress
    from releasectl.config import home
    from releasectl.registry.migrate import migrate as run
    from releasectl.view import trust_root

    git = repo(ctx)
    origin = source or os.environ.get("RELEASECTL_STORE") or str(home() / "artifacts")
    done = run(
        git,
        trust_root(git),
        ArtifactStore(origin),
        ArtifactStore(to),
        dry_run=dry_run,
        progress=None if json else terminal_progress(),
    )
    problem = None
    if done.missing:
        first = done.missing[0].need
        problem = OperationFailed(
            f"{len(done.missing)} artifact(s) are in neither store, e.g. {first.key} "
            f"({', '.join(first.used_by)})",
            "run this where they were made, or name that store with --from",
            report=done.to_json(),
        )
    if json and problem is None:
        emit(done.to_json())
        return
    if not json:
        verb = "would copy" if dry_run else "copied"
        for item in done.artifacts:
            if item.action in ("copied", "would copy"):
                say(f"{verb} {shown(item.need.key)} ({shown(', '.join(item.need.used_by))})")
        say(
            f"{done.count('would copy' if dry_run else 'copied')} {verb}, "
            f"{done.count('present')} already in {done.dest}, {len(done.missing)} missing"
            + (" (dry run: nothing written)" if dry_run else "")
        )
    if problem is not None:
        raise problem
