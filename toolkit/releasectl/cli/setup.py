"""init, upgrade-workflows, new, schema, demo: the commands that set up a
registry, its workflows and a model's first files (docs/ARCHITECTURE.md,
"The command line").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

import releasectl.cli.completion as completion
from releasectl.cli.output import (
    DryRunOption,
    JsonOption,
    emit,
    funnel,
    repo,
    say,
    shared,
    shown,
    warn,
)

if TYPE_CHECKING:
    from releasectl.pipeline.lock import Source

app = typer.Typer()

IndexUrlOption = Annotated[
    str | None,
    typer.Option(
        "--index-url",
        help="Lock releasectl from this index (yours, or https://pypi.org/simple).",
    ),
]
FindLinksOption = Annotated[
    list[str] | None,
    typer.Option("--find-links", help="Lock from wheels in this folder or URL (repeatable)."),
]
NoIndexOption = Annotated[
    bool, typer.Option("--no-index", help="Only --find-links: no index at all.")
]


def _source(index_url: str | None, find_links: list[str] | None, no_index: bool) -> Source:
    """The source as named on the command line; a folder becomes an absolute path
    (the lock records it, and uv runs elsewhere)."""
    from pathlib import Path

    from releasectl.pipeline.lock import Source

    links = tuple(x if "://" in x else str(Path(x).resolve()) for x in find_links or ())
    return Source(index_url, links, no_index)


@app.command()
@funnel()
def init(
    ctx: typer.Context,
    index_url: IndexUrlOption = None,
    find_links: FindLinksOption = None,
    no_index: NoIndexOption = False,
    kubernetes: Annotated[
        bool,
        typer.Option(
            "--kubernetes",
            help="Also write an example Argo CD Application syncing deploy/production/ "
            "(added to an existing registry too).",
        ),
    ] = False,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """Set up this git repository as a registry (one signed commit). With a
    source (--index-url / --find-links), also the lock the workflows install."""
    from releasectl.pipeline.init import set_up
    from releasectl.pipeline.lock import LOCK_FILE

    source = _source(index_url, find_links, no_index)
    made = set_up(repo(ctx), source=source, dry_run=dry_run, kubernetes=kubernetes)
    if json:
        emit(made.to_json())
        return
    commit = (made.commit or "")[:12]
    if not made.files:
        say("already a registry: .releasectl/allowed_signers exists; nothing to do")
    elif made.dry_run:
        say("would create, in one signed commit:\n  " + "\n  ".join(made.created))
    elif not made.new_registry:  # an existing registry: only the Argo CD example
        say(f"added at {commit}: " + ", ".join(made.created))
    else:
        say(f"registry ready at {commit}: " + ", ".join(made.created))
        if not made.locked:
            say(
                f"no {LOCK_FILE} yet: the workflows refuse to run without it; name the "
                "source releasectl is installed from: releasectl upgrade-workflows "
                "--index-url URL (or --find-links DIR), then commit"
            )
    if made.pointed:
        say(
            f"set gpg.ssh.allowedSignersFile to {made.signers}, the trust root releasectl "
            "verified (kept up to date), so that `git log --show-signature` checks it"
        )
    if made.landed is not None and made.new_registry:
        say("next: releasectl new MODEL")


@app.command("upgrade-workflows")
@funnel()
def upgrade_workflows(
    ctx: typer.Context,
    index_url: IndexUrlOption = None,
    find_links: FindLinksOption = None,
    no_index: NoIndexOption = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace whole workflows, even ones without markers."),
    ] = False,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """Rewrite the workflows' releasectl blocks and the lock for this version
    (your edits outside the blocks are kept); shows the diff, commits nothing."""
    from releasectl.pipeline.lock import LOCK_FILE, pins, read_source
    from releasectl.pipeline.workflows import upgrade

    root = repo(ctx).cwd
    done = upgrade(root, _source(index_url, find_links, no_index), force=force, dry_run=dry_run)
    if json:
        emit(done.to_json())
        return
    changes = done.changes
    for change in changes:
        if not change.changed:
            say(f"unchanged {shown(change.path)}")
        elif change.path == LOCK_FILE and change.old is None:
            locked = pins(change.new)
            say(
                f"{'would write' if dry_run else 'wrote'} {LOCK_FILE}: releasectl "
                f"{locked.get('releasectl')} and {len(locked) - 1} dependencies, "
                f"pinned by hash, from {read_source(change.new).describe()}"
            )
        elif change.path == LOCK_FILE:
            old, new = pins(change.old or ""), pins(change.new)
            moved = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
            say(
                f"{'would write' if dry_run else 'wrote'} {LOCK_FILE}: "
                + (
                    ", ".join(f"{n} {old.get(n, '-')} -> {new.get(n, '-')}" for n in moved)
                    or "same versions, hashes refreshed"
                )
            )
        else:
            kept = " (kept your edits outside releasectl's blocks)" if change.kept_edits else ""
            say(f"{'would update' if dry_run else 'updated'} {shown(change.path)}{kept}")
            say(change.diff().rstrip())
    if not dry_run and any(c.changed for c in changes):
        say("review, then commit them (signed)")


@app.command()
@funnel()
def new(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="Model name (a lower-case DNS label).")],
    port: Annotated[
        int | None,
        typer.Option(
            min=1024,
            max=65535,
            help="The model's local endpoint port (default: the lowest from 3000 "
            "that no other model of the registry uses).",
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="MODEL_OR_PATH",
            autocompletion=completion.models,
            help="Copy this model of the registry (or model folder) instead of the "
            "template, its name renamed to MODEL.",
        ),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy",
            metavar="bluegreen|canary",
            help="The template's deploy.strategy (default: bluegreen). canary: a mirror "
            "step, then weight steps, that `watch` drives.",
        ),
    ] = None,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """Scaffold model-releases/MODEL/ (manifest, train.py, service, bentofile)."""
    from releasectl.names import check_model
    from releasectl.registry.scaffold import new_model, require_registry
    from releasectl.registry.spellings import Spellings

    check_model(model)  # a bad name is bad input, even outside a repository
    git = repo(ctx)
    require_registry(git)
    made = new_model(
        git.cwd,
        model,
        port=port,
        source=source,
        cwd=shared(ctx).repo,
        dry_run=dry_run,
        strategy=strategy,
    )
    plan = made.plan
    if made.dry_run:
        if json:
            emit(made.to_json())
            return
        say(f"would create {plan.folder}/ from {shown(plan.source or 'the model template')}:")
        say("  " + "\n  ".join(sorted(plan.files)))
        return
    for name in plan.unpinned:
        warn(
            f"{name} is not installed here: bentofile.yaml lists it unpinned; install it and pin it"
        )
    if json:
        emit(made.to_json())
        return
    for path in made.created:
        say(f"created {path}")
    if plan.source is not None:
        old = Spellings(plan.source_model or "")
        renames = ", ".join(f"{name} ({n})" for name, n in sorted(plan.renamed.items()))
        say(f"copied {shown(plan.source)}: {shown(old.name)} renamed to {model} in {renames}")
        say(
            f"  only where {old.name} starts a word ({old.snake}_x, {old.camel}X); "
            f"inside another (load_{old.snake}) it is left as it is: review the copy"
        )
    say(f"serves on 127.0.0.1:{plan.port} once deployed (deploy.port in release.yaml)")
    say(f"next: commit it (signed), then `releasectl release {model} 0.1.0`")


@app.command()
@funnel(json="always")
def schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of release.yaml (for editors)."""
    from releasectl.manifest.edits import json_schema

    emit(json_schema())


@app.command()
@funnel()
def demo(
    ctx: typer.Context,
    keep: Annotated[
        str | None, typer.Option(help="Run in this folder and keep it (default: a temp dir).")
    ] = None,
) -> None:
    """Run the end-to-end demo in a throwaway registry."""
    from pathlib import Path

    from releasectl.cli.demo import run_demo

    run_demo(say, Path(keep).resolve() if keep else None)
