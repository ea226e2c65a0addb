"""release, mark-stable, revert: the commands that write release state
(docs/ARCHITECTURE.md, "The command line").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

import releasectl.cli.completion as completion
from releasectl.cli.output import (
    DryRunOption,
    JsonOption,
    ModelArg,
    PushOption,
    RetrainOption,
    VersionArg,
    bare_version,
    emit,
    funnel,
    repo,
    say,
    shown,
    warn,
)
from releasectl.cli.serving import print_deploy

if TYPE_CHECKING:
    from releasectl.git import Git

app = typer.Typer()


@app.command()
@funnel()
def release(
    ctx: typer.Context,
    model: ModelArg,
    version: VersionArg,
    dry_run: DryRunOption = False,
    push: PushOption = False,
    build: Annotated[
        bool | None,
        typer.Option(
            "--build/--no-build",
            help="Build, store and pin the bundle first (default: when there is a bentofile).",
        ),
    ] = None,
    retrain: RetrainOption = False,
    allow_unsigned_sources: Annotated[
        bool,
        typer.Option(
            "--allow-unsigned-sources",
            help="Release over source commits no release signer signed (recorded in the commit).",
        ),
    ] = False,
    json: JsonOption = False,
) -> None:
    """Signed commit (version, serial, bundle digest) + signed tag release/MODEL/vVERSION."""
    from releasectl.registry import release_outcome as outcome

    git = repo(ctx)
    _recover(git, dry_run)
    if dry_run:
        seen = outcome.dry_run(
            git,
            model,
            version,
            push=push,
            build=build,
            retrain=retrain,
            allow_unsigned_sources=allow_unsigned_sources,
        )
        if json:
            emit(seen.to_json())
            return
        what = "tag the merged commit" if seen.plan.tagged_existing else "commit + tag"
        say(f"would release {model} {version} (serial {seen.plan.serial}): {what}")
        if seen.digest:
            say(f"  bundle {seen.digest}")
        elif seen.seen.trains:
            say("  bundle: bundle.train runs first; the digest is known after it")
        _say_note(seen.note)
        return
    from releasectl.cli.progress import terminal_progress

    made = outcome.release(
        git,
        model,
        version,
        push=push,
        build=build,
        retrain=retrain,
        progress=terminal_progress(),
        allow_unsigned_sources=allow_unsigned_sources,
    )
    if json:
        emit(made.to_json())
        return
    p, landed = made.plan, made.landed
    commit = f"commit {landed.commit[:12]} and " if landed.commit else ""
    say(f"released {model} {version} (serial {p.serial}): {commit}{landed.tags[0]}")
    if landed.note:
        say(landed.note)
    if p.pin is not None:
        for trained in p.pin.trained.models if p.pin.trained else []:
            say(f"  trained {trained.tag}: weights sha256:{trained.sha256} pinned")
        say(f"  bundle {p.pin.digest} stored as {p.pin.archive}")
    if p.image is not None:
        say(f"  image {p.image}")
    if landed.pushed_to:
        say(f"pushed to {landed.pushed_to}")
    _say_carried(landed.carried)


@app.command()
@funnel()
def sync(
    ctx: typer.Context,
    push_only: Annotated[
        bool, typer.Option("--push", help="Only publish the tags the remote lacks.")
    ] = False,
    pull_only: Annotated[
        bool, typer.Option("--pull", help="Only fetch the tags this clone lacks.")
    ] = False,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """Fetch and publish the registry tags (release/, stable/, rejected/ of every model)
    between this clone and its remote. A tag that differs on the two sides is refused."""
    from releasectl.registry.sharing import sync as do_sync
    from releasectl.view import trust_root

    git = repo(ctx)
    _recover(git, dry_run)
    pull, push = (not push_only) or pull_only, (not pull_only) or push_only
    report = do_sync(git, lambda tip: trust_root(git, tip), pull=pull, push=push, dry_run=dry_run)
    if json:
        emit(report.to_json())
        return
    verb = "would " if dry_run else ""
    if pull:
        say(f"{verb}fetch {len(report.pulled)} tag(s) from {report.remote}")
        for name in report.pulled:
            say(f"  {shown(name)}")
    if push:
        say(f"{verb}push {len(report.pushed)} tag(s) to {report.remote}")
        for name in report.pushed:
            say(f"  {shown(name)}")
        for name, why in report.skipped:
            say(f"  not pushed: {shown(name)}: {shown(why)}")
    for note in report.notes:
        warn(note)


@app.command("mark-stable")
@funnel()
def mark_stable(
    ctx: typer.Context,
    model: ModelArg,
    version: VersionArg,
    dry_run: DryRunOption = False,
    push: PushOption = False,
    json: JsonOption = False,
) -> None:
    """Signed tag stable/MODEL/vVERSION: the release passed its bake."""
    from releasectl.registry.marking import mark_stable_outcome

    git = repo(ctx)
    _recover(git, dry_run)
    marked = mark_stable_outcome(git, model, version, push=push, dry_run=dry_run)
    if json:
        emit(marked.to_json())
    elif marked.dry_run:
        say(
            f"would tag {marked.tag} at {marked.release.commit[:12]}"
            if marked.created
            else f"{marked.release.tag.name} is already stable"
        )
        _say_note(marked.note)
    elif marked.landed is None:
        say(f"{model} {version} is already stable; nothing to do")
    else:
        if marked.created:
            say(f"marked {model} {version} stable: {marked.landed.tags[0]}")
        else:
            say(f"{model} {version} is already stable")
        if marked.landed.pushed_to:
            say(f"pushed to {marked.landed.pushed_to}")
        _say_carried(marked.landed.carried)


@app.command()
@funnel()
def revert(
    ctx: typer.Context,
    model: ModelArg,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Revert to this stable version.",
            callback=bare_version,
            autocompletion=completion.stable_versions,
        ),
    ] = None,
    reason: Annotated[str, typer.Option(help="Why; recorded in the commit.")] = "rollback",
    dry_run: DryRunOption = False,
    push: PushOption = False,
    deploy: Annotated[
        bool, typer.Option("--deploy", help="Then deploy it (a warm standby switches at once).")
    ] = False,
    json: JsonOption = False,
) -> None:
    """One signed commit back to the last stable release (+ rejected/ tag)."""
    from releasectl.registry.history import prefetch

    git = repo(ctx)
    _recover(git, dry_run)
    prefetch(git, model)

    from releasectl.registry import revert as rv

    if dry_run:
        seen = rv.dry_run(git, model, to=to, reason=reason, push=push)
        if json:
            emit(seen.to_json())
        elif not seen.changes:
            say(f"nothing to do: {shown(seen.plan.note)}")
        else:
            say(seen.plan.message.rstrip())
            say()
            say(seen.diff.rstrip())
            _say_note(seen.note)
        return
    from releasectl.pipeline.deploying import revert_and_deploy

    done = revert_and_deploy(git, model, to=to, reason=reason, push=push, deploy=deploy)
    outcome, deployed = done.revert, done.deployed
    p, landed = outcome.plan, outcome.landed
    if json:
        emit(done.to_json())
        return
    if outcome.kind != "reverted" or landed is None or landed.commit is None:
        if outcome.kind == "nothing-to-do":
            _say_carried(outcome.carried)  # nothing to revert; tags were published
        say(f"nothing to do: {shown(outcome.note)}")
    else:
        say(
            f"reverted {model} {p.from_version} -> {p.to_version}: "
            f"commit {landed.commit[:12]} (serial {p.serial})"
            + (f", {landed.tags[0]}" if landed.tags else "")
        )
        if landed.pushed_to:
            say(f"pushed to {landed.pushed_to}")
        _say_carried(landed.carried)
        if landed.note:
            say(landed.note)
    if deployed is not None:
        print_deploy(deployed)


def _say_note(note: str | None) -> None:
    if note:
        say(f"note: {shown(note)}")


def _say_carried(carried: tuple[str, ...]) -> None:
    if carried:
        tags = ", ".join(shown(t) for t in carried)
        say(f"also pushed {len(carried)} registry tag(s) the remote lacked: {tags}")


def _recover(git: Git, dry_run: bool) -> None:
    """Finish or undo what an interrupted write left, and say so (on stderr);
    a dry run only says that there is something to recover."""
    from releasectl.registry.landing import pending_recovery, recover

    if dry_run:
        if pending_recovery(git):
            warn("an interrupted write left work to finish or undo")
        return
    for note in recover(git):
        warn(note)
