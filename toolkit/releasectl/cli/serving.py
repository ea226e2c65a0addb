"""build, deploy, status, agent: the commands for bundles and the local target
(docs/ARCHITECTURE.md, "The command line").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

import releasectl.cli.completion as completion
from releasectl.cli.output import (
    DryRunOption,
    JsonOption,
    ModelArg,
    bare_version,
    ci_summary,
    emit,
    funnel,
    repo,
    say,
    shown,
    warn,
)

if TYPE_CHECKING:
    from releasectl.pipeline.deploying import DeployPlan
    from releasectl.serving.local import DeployResult
    from releasectl.serving.local.models import DeployOutcome, TrafficInfo

app = typer.Typer()

NOT_RUNNING = "the agent is not running"


def print_deploy(result: DeployResult) -> None:
    how = {"cold": "started", "warm": "switched to the warm standby", "none": "already live"}
    ci_summary(
        f"✅ {result.model} {result.version} live ({how[result.switch]}"
        + (", fast track: a revert, no bake" if result.fast_track else "")
        + f", commit `{result.commit[:12]}`, serial {result.serial})"
    )
    say(
        f"{result.model} {result.version} live at {result.endpoint} "
        f"({how[result.switch]}, {result.seconds:.2f} s)"
        + (" [fast track]" if result.fast_track else "")
    )
    if result.switch == "none" or not result.previous_version:
        return  # nothing was switched: the standby, if any, is as it was
    if result.standby_until is None:
        say(f"  {result.previous_version}, live before, was retired (no standby window)")
        return
    until = result.standby_until.isoformat(timespec="seconds")
    say(f"  standby: {result.previous_version}, live before, stays warm until {until}")


@app.command()
@funnel()
def build(
    ctx: typer.Context,
    model: ModelArg,
    version: Annotated[
        str | None,
        typer.Argument(
            metavar="[VERSION]",
            help="Default: the current release.",
            callback=bare_version,
            autocompletion=completion.versions,
        ),
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Build from the tag even if it is stored.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Build (or verify and re-use) a release's bundle from its tag; store it."""
    from releasectl.registry.builds import build_release
    from releasectl.registry.history import current
    from releasectl.view import trust_root

    git = repo(ctx)
    wanted = version or current(git, model)[0].version
    if not json:
        say(f"building {model} {wanted} from release/{model}/v{wanted} ...")
    from releasectl.cli.progress import terminal_progress

    built = build_release(
        git, trust_root(git), model, wanted, rebuild=rebuild, progress=terminal_progress()
    )
    ci_summary(
        f"✅ {model} {wanted}: bundle `{built.digest}` "
        + ("(stored build verified)" if built.reused else "built from the tag, equal to the pin")
    )
    if json:
        emit(built.to_json())
        return
    what = "verified the stored bundle" if built.reused else "built and stored"
    say(f"{what} {built.bento}:{built.version} {built.digest} ({built.seconds:.1f} s)")
    say(f"  {built.archive}")


@app.command()
@funnel()
def deploy(
    ctx: typer.Context,
    model: ModelArg,
    version: Annotated[
        str | None,
        typer.Option(
            "--version",
            help="Deploy this release's state.",
            callback=bare_version,
            autocompletion=completion.versions,
        ),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="The target it must deploy to (default: the manifest's).")
    ] = None,
    ready_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the new server's /readyz.")
    ] = 120.0,
    watch: Annotated[
        bool | None,
        typer.Option(
            "--watch/--no-watch",
            help="Then watch it detached and act on the verdict (default: analysis.auto).",
        ),
    ] = None,
    dry_run: DryRunOption = False,
    json: JsonOption = False,
) -> None:
    """Deploy what the branch's manifest pins, through the deploy gate."""
    from releasectl.pipeline.deploying import deploy_and_watch, plan_deploy

    git = repo(ctx)
    if dry_run:
        _say_preview(plan_deploy(git, model, version=version, watch=watch, target=target), json)
        return
    from releasectl.cli.progress import terminal_progress

    done = deploy_and_watch(
        git,
        model,
        version=version,
        watch=watch,
        target=target,
        ready_timeout=ready_timeout,
        progress=terminal_progress(),
    )
    if json:
        emit(done.to_json())
        return
    print_deploy(done.result)
    if done.watcher:
        w = done.watcher
        how = "pushes" if w.push else "local only"
        say(f"  watching {w.version} (pid {w.pid}, {how}): {w.log}")


def _warn_roles(ctx: typer.Context) -> None:
    """A registry made before roles: say so until an admins file is committed."""
    from releasectl.errors import ReleasectlError
    from releasectl.view import roles_warning

    try:
        line = roles_warning(repo(ctx))
    except ReleasectlError:
        return  # not in a registry: status still shows the local target
    if line:
        warn(line)


@app.command()
@funnel()
def status(
    ctx: typer.Context,
    model: Annotated[
        str | None, typer.Argument(metavar="[MODEL]", autocompletion=completion.models)
    ] = None,
    json: JsonOption = False,
) -> None:
    """What the local target is serving: live, standby, health, last deploy."""
    from releasectl.names import check_model
    from releasectl.serving.status import status as report_status

    if model is not None:
        check_model(model)
    _warn_roles(ctx)
    # A read command starts nothing: a stopped agent is reported, from its record.
    report = report_status(model)
    if not report.running:
        note = f"{NOT_RUNNING}: nothing is served (`releasectl agent start` starts it)"
        if json:
            warn(note)
        else:
            say(note + ("; as last recorded:" if report.models else ""))
    if json:
        emit(report.to_json())
        return
    if not report.models:
        say("nothing deployed on the local target")
    for m in report.models:
        s = m.status
        live = s.live
        say(f"{s.model}: {s.endpoint} health={s.health}")
        if live:
            since = live.since.isoformat(timespec="seconds") if live.since else "-"
            say(
                f"  live     {live.version} {live.digest[:19]} commit {live.commit[:12]}"
                f" serial {live.serial} since {since}"
            )
        if s.standby:
            until = s.standby_until.isoformat(timespec="seconds") if s.standby_until else "-"
            say(f"  standby  {s.standby.version} warm until {until}")
        if s.traffic is not None:
            for line in traffic_lines(s.traffic):
                say(line)
        if m.promoted is not None:
            p = m.promoted
            at = p.at.isoformat(timespec="seconds")
            say(f"  promoted {shown(p.version)} to 100% by {shown(p.by)} ({at})")
        if s.last_deploy:
            say(last_deploy_line(s.last_deploy))
        if m.watcher is not None:
            say(f"  watcher  {_watcher_line(m.watcher)}")
        r = m.outcome
        if r is not None:
            at = r.at.isoformat(timespec="seconds")
            say(f"  outcome  {shown(r.line())} ({at})")
            failed = [d for d in r.notified if not d.ok]
            if failed:
                say(f"  notify   FAILED: {shown(failed[0].detail)}")


# `releasectl agent ...`: added to the root by cli/__init__, after the commands.
agent = typer.Typer(help="The local target's agent.", no_args_is_help=True)


@agent.command("status")
@funnel()
def agent_status(ctx: typer.Context, json: JsonOption = False) -> None:
    """Whether the agent runs: its pid and address, and what it serves."""
    from releasectl.serving.status import agent_status as report_agent

    report = report_agent()
    if json:
        emit(report.to_json())
    elif not report.running:
        say(NOT_RUNNING)
    elif report.info is None:
        # It runs, but its record does not lead to it: it can only be stopped.
        say(
            f"an agent is running (pid {report.pid}) but cannot be reached (its record is"
            " stale, or it does not answer); `releasectl agent stop` stops it"
        )
    else:
        info = report.info
        since = info.started.isoformat(timespec="seconds")
        say(f"the agent is running: pid {info.pid} at {info.url} since {since}")
        for s in report.models:
            live = s.live.version if s.live else "-"
            standby = f", standby {s.standby.version}" if s.standby else ""
            say(f"  {s.model}: live {live} ({s.health}){standby}")


@agent.command("start")
@funnel()
def agent_start(ctx: typer.Context, json: JsonOption = False) -> None:
    """Start the agent (a deploy starts it too); it adopts the servers still running."""
    from releasectl.serving.status import agent_start as start

    started = start()
    info = started.info
    if json:
        emit(started.to_json())
    elif started.started_now:
        say(f"started the agent: pid {info.pid} at {info.url}")
    else:
        say(f"the agent is already running: pid {info.pid} at {info.url}")


@agent.command("stop")
@funnel()
def agent_stop(ctx: typer.Context, json: JsonOption = False) -> None:
    """Stop the agent, every server it started and the detached watchers; say which."""
    from releasectl.serving.status import stop_everything

    done = stop_everything()
    if json:
        emit(done.to_json())
        return
    if done.nothing:
        say("nothing was running: no agent, no servers, no watchers")
        return
    stopped = done.stopped
    for w in done.watchers:
        say(f"stopped the watcher of {w['model']} {w['version']} (pid {w['pid']})")
    for m, role, v, pid in stopped.servers:
        say(f"stopped {m} {v}, the {role} server (pid {pid})")
    if stopped.strays:
        pids = ", ".join(map(str, stopped.strays))
        say(f"stopped {len(stopped.strays)} server process(es) no record named: {pids}")
    if stopped.agent is not None:
        say(f"stopped the agent (pid {stopped.agent})")


def _say_preview(plan: DeployPlan, json: bool) -> None:
    """`deploy --dry-run`: what the deploy would do, once every check passed."""
    if json:
        emit(plan.to_json())
        return
    p = plan.preview
    how = {
        "cold": "start a new server",
        "warm": "switch to the warm standby",
        "none": "nothing to switch: it is live",
    }
    say(
        f"would deploy {p.model} {p.version} (commit {p.commit[:12]}, serial {p.serial}) "
        f"at {p.endpoint}: {how[p.switch]}"
        + (" [fast track: a verified revert]" if p.fast_track else "")
    )
    say(f"  bundle from {p.bundle}")
    if p.live and p.switch != "none":
        from releasectl.manifest.durations import format_duration

        after = (
            f"the standby, kept warm for {format_duration(p.standby_s)}"
            if p.standby_s > 0
            else "retired (no standby window)"
        )
        say(f"  live now: {p.live}; it would become {after}")
    if not p.agent_running:
        say(f"  {NOT_RUNNING}: the deploy would start it")
    if plan.watch:
        why = "--watch" if plan.asked else "analysis.auto"
        say(f"  then watch {p.version} detached and act on the verdict ({why})")


def last_deploy_line(d: DeployOutcome) -> str:
    """status's line on the last deploy; the version is said once, whether or
    not the target's message names it ("0.1.0 is live")."""
    said = d.message if d.version in d.message.split() else f"{d.version} {d.message}"
    return f"  last deploy {'ok' if d.ok else 'FAILED'}: {said}"


def _watcher_line(w: dict[str, Any]) -> str:
    where = f"pid {w['pid']}: {w['log']}"
    if w["alive"]:
        return f"{w['version']} watching ({where})"
    if w["exit_code"] is not None:
        return f"{w['version']} watcher exited with code {w['exit_code']} ({where})"
    return f"{w['version']} watcher DIED without a word (killed?) ({where})"


def traffic_lines(t: TrafficInfo) -> list[str]:
    """status's lines on a canary: the step, the weights, then per version and role
    what the endpoint counted (docs/ARCHITECTURE.md, "Deployment strategies")."""
    if t.state == "stepping" and t.step < len(t.steps):
        step = t.steps[t.step]
        where = f"step {t.step + 1}/{len(t.steps)}: {step.kind} {step.percent}%"
    else:
        where = t.state + (" (promoted)" if t.promoted and t.state == "full" else "")
    since = t.since.isoformat(timespec="seconds")
    weights = (
        f"candidate {shown(t.candidate)} {t.candidate_weight}% / "
        f"stable {shown(t.stable)} {100 - t.candidate_weight}%"
        + (f", mirror {t.mirror}%" if t.mirror else "")
    )
    lines = [f"  canary   {where} since {since}: {weights}"]
    for r in t.roles:
        mean = f"{r.mean_ms:.1f} ms" if r.mean_ms is not None else "-"
        lines.append(
            f"    {shown(r.version):<12} {shown(r.role):<9} {r.requests:>7} requests "
            f"{r.errors:>5} errors  mean {mean}"
        )
    return lines
