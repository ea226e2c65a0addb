"""check, propose, ci: the commands of the pull-request flow and the ones the
workflows run (docs/ARCHITECTURE.md, "The command line").
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from releasectl.cli.output import (
    DryRunOption,
    JsonOption,
    ModelArg,
    PushOption,
    RetrainOption,
    VersionArg,
    emit,
    funnel,
    repo,
    say,
    shown,
)
from releasectl.errors import BadInput

app = typer.Typer()


@app.command()
@funnel()
def check(
    ctx: typer.Context,
    base: Annotated[
        str | None,
        typer.Option(help="Base revision (default: origin/$GITHUB_BASE_REF, else origin/main)."),
    ] = None,
    build: Annotated[bool, typer.Option("--build/--no-build", help="Build the bundles.")] = True,
    json: JsonOption = False,
) -> None:
    """The pull-request check: manifests, version bump, serial, signatures, bundle."""
    import json as json_

    from releasectl.pipeline import ci
    from releasectl.pipeline.check import WARNING
    from releasectl.pipeline.check import check as run_check

    default = f"origin/{os.environ.get('GITHUB_BASE_REF') or 'main'}"
    report = run_check(repo(ctx), base or default, build=build)
    if ci.in_actions():
        ci.summary(report.markdown())
        ci.set_output("ok", str(report.ok).lower())
        ci.set_output("digests", json_.dumps(report.digests))
        for f in report.findings:
            if not f.ok:
                say(ci.error_annotation(f"{f.subject}: {f.check}: {f.detail}"))
            elif f.detail.startswith(WARNING):
                line = f"{f.subject}: {f.check}: {f.detail.removeprefix(WARNING)}"
                say(ci.error_annotation(line, level="warning"))
    doc = report.to_json()
    if not json:
        for f in report.findings:
            mark = "FAIL" if not f.ok else "warn" if f.detail.startswith(WARNING) else "ok  "
            say(f"{mark}  {shown(f.subject)}: {shown(f.check)}: {shown(f.detail)}")
        say("check passed" if report.ok else "check FAILED")
    if report.error is not None:
        failed = [f for f in report.findings if not f.ok]
        worst = next(f for f in failed if f.code == report.code)  # the one the exit code names
        raise report.error(
            f"check failed: {len(failed)} finding(s), e.g. "
            f"{worst.subject}: {worst.check}: {worst.detail}",
            report=doc,
        )
    if json:
        emit(doc)


@app.command()
@funnel()
def propose(
    ctx: typer.Context,
    model: ModelArg,
    version: VersionArg,
    base: Annotated[
        str,
        typer.Option(
            help="The branch the pull request targets (its signers judge the proposal); "
            "the proposal itself starts from the current HEAD."
        ),
    ] = "main",
    push: PushOption = False,
    build: Annotated[
        bool | None, typer.Option("--build/--no-build", help="Build and pin the bundle.")
    ] = None,
    retrain: RetrainOption = False,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """A branch from HEAD with the signed manifest change, ready for a pull request."""
    from releasectl.pipeline.propose import propose as do_propose

    p = do_propose(
        repo(ctx),
        model,
        version,
        base=base,
        push=push,
        build=build,
        retrain=retrain,
        dry_run=dry_run,
    )
    if json:
        emit(p.to_json())
        return
    if p.dry_run:
        say(
            f"would make branch {p.branch} from {base}: one signed commit "
            f"({model} {version}, serial {p.serial}); no bundle is built in a dry run"
        )
        if p.remote:
            say(f"  and push it to {p.remote}")
        return
    made = f"commit {p.commit[:12]}" if p.commit else "no commit"
    say(f"branch {p.branch}: {made} ({model} {version}, serial {p.serial})")
    if p.digest:
        say(f"  bundle {p.digest}")
    if p.pushed:
        say(f"pushed to {p.remote}")
    say("open the pull request with:")
    say(f"  {p.gh_command}")


@app.command("check-manifests", hidden=True)
@funnel()
def check_manifests(ctx: typer.Context, files: Annotated[list[str], typer.Argument()]) -> None:
    """The pre-commit hook: validate staged release manifests."""
    from releasectl.pipeline.propose import manifest_file_problems

    problems = manifest_file_problems(repo(ctx), files)
    for line in problems:
        say(line)
    if problems:
        raise BadInput(
            f"{len(problems)} problem(s) in the staged release manifests", "fix them, then commit"
        )


# `releasectl ci ...`: added to the root by cli/__init__, after the commands.
ci = typer.Typer(help="What the GitHub Actions workflows run.", no_args_is_help=True)


@ci.command("plan")
@funnel()
def ci_plan(ctx: typer.Context, json: JsonOption = False) -> None:
    """What this event means (release, revert, a merged PR, a manual deploy)."""
    from releasectl.pipeline import ci as c

    items = c.plan(repo(ctx))
    c.publish_plan(items)
    if json:
        emit([i.to_json() for i in items])
    else:
        for i in items:
            say(f"{i.model}: {i.kind} {i.version}")
        if not items:
            say("nothing to do for this event")


@ci.command("setup")
@funnel()
def ci_setup(
    ctx: typer.Context,
    signing: Annotated[
        bool, typer.Option("--signing", help="This job signs: require the CI key.")
    ] = False,
) -> None:
    """Write the trust root and the CI signing key (mode 0600) from the job's env."""
    from releasectl.pipeline import ci as c

    for line in c.setup(repo(ctx), signing=signing):
        say(line)


@ci.command("check-install")
@funnel()
def ci_check_install(ctx: typer.Context) -> None:
    """The running releasectl and its dependencies are what the lock pins (as in ci setup)."""
    from releasectl.pipeline import ci as c

    say(c.installed_as_locked(repo(ctx)))


@ci.command("deploy")
@funnel()
def ci_deploy(ctx: typer.Context, push: PushOption = False) -> None:
    """deploy.yml's step: act on this push's plan (deploy reverts, tag merged PRs)."""
    from releasectl.pipeline import ci as c

    git = repo(ctx)
    for line in c.execute(git, c.plan(git), push=push):
        say(line)
