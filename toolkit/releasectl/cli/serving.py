"""build, deploy, status, agent: bundles and the local target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from releasectl.cli.output import (
    DryRunOption,
    JsonLinesOption,
    JsonOption,
    ModelArg,
    bare_version,
    ci_summary,
    emit,
    emit_line,
    funnel,
    repo,
    say,
    warn,
)
from releasectl.errors import INTERNAL, AnalysisFailed, BadInput, OperationFailed

if TYPE_CHECKING:
    from releasectl.analysis.engine import Measurement
    from releasectl.git import Git
    from releasectl.serving.local import DeployResult
    from releasectl.serving.local.state import AgentInfo

app = typer.Typer()

_NOT_RUNNING = "the agent is not running"


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
            metavar="[VERSION]", help="Default: the current release.", callback=bare_version
        ),
    ] = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Build from the tag even if it is stored.")
    ] = False,
    json: JsonOption = False,
) -> None:
    """Build (or verify and re-use) a release's bundle from its tag; store it."""
    from releasectl.bundles.build import build_release
    from releasectl.registry import history as reg
    from releasectl.signing import trust_root

    git = repo(ctx)
    wanted = version or reg.current(git, model)[0].version
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
        typer.Option("--version", help="Deploy this release's state.", callback=bare_version),
    ] = None,
    target: Annotated[str, typer.Option(help="Deploy target.")] = "local",
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
    from releasectl.pipeline.watch import start_detached
    from releasectl.serving.deploy import deploy as do_deploy
    from releasectl.serving.deploy import resolve

    if target != "local":
        raise BadInput(f"unknown target {target!r}", "this release drives 'local'")
    git = repo(ctx)
    state = resolve(git, model, version)
    auto = state.manifest.analysis.auto if watch is None else watch
    # A revert is fast-tracked: its bundle is known good, there is no bake.
    auto = auto and not state.fast_track
    if auto:
        from releasectl.pipeline.notify import load as load_hook
        from releasectl.signing import check_signing_key

        check_signing_key(git)  # before deploying, not after the bake
        load_hook(git)  # and a malformed notification hook
    if dry_run:
        _say_preview(git, model, version, auto, json)
        return
    from releasectl.cli.progress import terminal_progress

    result = do_deploy(
        git,
        model,
        version=version,
        ready_timeout=ready_timeout,
        progress=terminal_progress(),
    )
    watcher = start_detached(git, model, result.version) if auto else None
    if json:
        emit({**result.model_dump(mode="json"), "watcher": watcher})
        return
    print_deploy(result)
    if watcher:
        say(
            f"  watching {result.version} (pid {watcher['pid']}, "
            f"{'pushes' if watcher['push'] else 'local only'}): {watcher['log']}"
        )


@app.command()
@funnel()
def status(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Argument(metavar="[MODEL]")] = None,
    json: JsonOption = False,
) -> None:
    """What the local target is serving: live, standby, health, last deploy."""
    from releasectl.config import home
    from releasectl.names import check_model
    from releasectl.serving.local import LocalTarget

    if model is not None:
        check_model(model)
    from releasectl.pipeline.outcomes import load as load_outcome
    from releasectl.pipeline.watch import detached

    # A read command starts nothing: a stopped agent is reported, from its record.
    target = LocalTarget(home())
    running = target.running()
    statuses = target.status(model, start=False)
    watchers = {s.model: detached(s.model) for s in statuses}
    results = {s.model: load_outcome(s.model) for s in statuses}
    if not running:
        note = f"{_NOT_RUNNING}: nothing is served (`releasectl agent start` starts it)"
        if json:
            warn(note)
        else:
            say(note + ("; as last recorded:" if statuses else ""))
    if json:
        emit(
            [
                {
                    **s.model_dump(mode="json"),
                    "watcher": watchers[s.model],
                    "watch_outcome": (
                        r.model_dump(mode="json") if (r := results[s.model]) else None
                    ),
                }
                for s in statuses
            ]
        )
        return
    if not statuses:
        say("nothing deployed on the local target")
    for s in statuses:
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
        if s.last_deploy:
            d = s.last_deploy
            say(f"  last deploy {'ok' if d.ok else 'FAILED'}: {d.version} {d.message}")
        w = watchers[s.model]
        if w is not None:
            say(f"  watcher  {_watcher_line(w)}")
        r = results[s.model]
        if r is not None:
            at = r.at.isoformat(timespec="seconds")
            say(f"  outcome  {r.line()} ({at})")
            failed = [d for d in r.notified if not d.ok]
            if failed:
                say(f"  notify   FAILED: {failed[0].detail}")


agent = typer.Typer(help="The local target's agent.", no_args_is_help=True)
app.add_typer(agent, name="agent")


@agent.command("status")
@funnel()
def agent_status(ctx: typer.Context, json: JsonOption = False) -> None:
    """Whether the agent runs: its pid and address, and what it serves."""
    from releasectl.config import home
    from releasectl.serving.local import LocalTarget

    target = LocalTarget(home())
    info = target.agent()
    if info is None:
        if json:
            emit({"running": False})
        else:
            say(_NOT_RUNNING)
        return
    serving = [
        {
            "model": s.model,
            "health": s.health,
            "live": s.live.version if s.live else None,
            "standby": s.standby.version if s.standby else None,
        }
        for s in target.status(start=False)
    ]
    if json:
        emit({"running": True, **_agent_json(info), "models": serving})
        return
    since = info.started.isoformat(timespec="seconds")
    say(f"the agent is running: pid {info.pid} at {info.url} since {since}")
    for m in serving:
        standby = f", standby {m['standby']}" if m["standby"] else ""
        say(f"  {m['model']}: live {m['live'] or '-'} ({m['health']}){standby}")


@agent.command("start")
@funnel()
def agent_start(ctx: typer.Context, json: JsonOption = False) -> None:
    """Start the agent (a deploy starts it too); it adopts the servers still running."""
    from releasectl.config import home
    from releasectl.serving.local import LocalTarget

    info, started = LocalTarget(home()).start()
    if json:
        emit({**_agent_json(info), "started_now": started})
    elif started:
        say(f"started the agent: pid {info.pid} at {info.url}")
    else:
        say(f"the agent is already running: pid {info.pid} at {info.url}")


@agent.command("stop")
@funnel()
def agent_stop(ctx: typer.Context, json: JsonOption = False) -> None:
    """Stop the agent, every server it started and the detached watchers; say which."""
    from releasectl.config import home
    from releasectl.pipeline.watch import stop_detached
    from releasectl.serving.local import LocalTarget

    watchers = stop_detached()
    stopped = LocalTarget(home()).stop()
    if json:
        emit(
            {
                "agent": stopped.agent,
                "servers": [
                    {"model": m, "role": role, "version": v, "pid": pid}
                    for m, role, v, pid in stopped.servers
                ],
                "watchers": watchers,
                "strays": stopped.strays,
            }
        )
        return
    if stopped.nothing and not watchers:
        say("nothing was running: no agent, no servers, no watchers")
        return
    for w in watchers:
        say(f"stopped the watcher of {w['model']} {w['version']} (pid {w['pid']})")
    for m, role, v, pid in stopped.servers:
        say(f"stopped {m} {v}, the {role} server (pid {pid})")
    if stopped.strays:
        pids = ", ".join(map(str, stopped.strays))
        say(f"stopped {len(stopped.strays)} server process(es) no record named: {pids}")
    if stopped.agent is not None:
        say(f"stopped the agent (pid {stopped.agent})")


def _agent_json(info: AgentInfo) -> dict[str, Any]:
    return {"pid": info.pid, "url": info.url, "started": info.started.isoformat()}


def _say_preview(git: Git, model: str, version: str | None, auto: bool, json: bool) -> None:
    """`deploy --dry-run`: what the deploy would do, once every check passed."""
    from releasectl.serving.deploy import preview

    p = preview(git, model, version=version)
    if json:
        emit({**p.to_json(), "watch": auto})
        return
    how = {
        "cold": "start a new server",
        "warm": "switch to the warm standby",
        "none": "nothing to switch: it is live",
    }
    say(
        f"would deploy {model} {p.version} (commit {p.commit[:12]}, serial {p.serial}) "
        f"at {p.endpoint}: {how[p.switch]}"
        + (" [fast track: a verified revert]" if p.fast_track else "")
    )
    say(f"  bundle from {p.bundle}")
    if p.live and p.switch != "none":
        from releasectl.analysis.engine import format_duration

        after = (
            f"the standby, kept warm for {format_duration(p.standby_s)}"
            if p.standby_s > 0
            else "retired (no standby window)"
        )
        say(f"  live now: {p.live}; it would become {after}")
    if not p.agent_running:
        say(f"  {_NOT_RUNNING}: the deploy would start it")
    if auto:
        say(f"  then watch {p.version} detached and act on the verdict (analysis.auto)")


@app.command("watch")
def watch_(
    ctx: typer.Context,
    model: ModelArg,
    version: Annotated[
        str | None,
        typer.Option("--version", help="The live version to watch.", callback=bare_version),
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
    detached: Annotated[bool, typer.Option("--detached", hidden=True)] = False,
) -> None:
    """Analyse the live version; mark it stable, or switch back and revert."""
    how = _WatchRun(model, version, push, judge_only, dry_run, record_timeout)
    if not detached:
        _watch(ctx=ctx, how=how, json=json)
        return
    # The detached watcher's exit is reported by `status`, whatever it is.
    import os

    from releasectl.pipeline.outcomes import record_exit

    code = INTERNAL  # unless the funnel says otherwise
    try:
        _watch(ctx=ctx, how=how, json=json)
        code = 0
    except typer.Exit as exc:
        code = exc.exit_code
        raise
    finally:
        record_exit(model, os.getpid(), code)


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
            say(f"[{m.elapsed_s:6.1f}s] {mark.get(m.status, 'ERR ')} {m.message}")

    git = repo(ctx)
    if how.dry_run:
        _dry_watch(git, how.model, how.version, how.push, not how.judge_only, json)
    elif how.judge_only:
        _judge(git, how.model, how.version, json, show)
    else:
        _act(git, how.model, how.version, how.push, json, show, how.record_timeout)


def _watcher_line(w: dict[str, Any]) -> str:
    where = f"pid {w['pid']}: {w['log']}"
    if w["alive"]:
        return f"{w['version']} watching ({where})"
    if w["exit_code"] is not None:
        return f"{w['version']} watcher exited with code {w['exit_code']} ({where})"
    return f"{w['version']} watcher DIED without a word (killed?) ({where})"


def _act(
    git: Git,
    model: str,
    version: str | None,
    push: bool,
    json: bool,
    show: Callable[[Measurement], None],
    record_timeout: float,
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
    )
    verdict, outcome = result.verdict, result.outcome
    line = f"{model}: {outcome.line()}" if outcome else verdict.message
    if result.action != "marked-stable":
        raise AnalysisFailed(line, report=result.to_json())
    if outcome is not None and outcome.record == "failed":
        # Marked stable here, but the mark was not recorded: a warning, exit 1.
        raise OperationFailed(line, report=result.to_json(), severity="warning")
    ci_summary(
        f"✅ analysis of {model} {result.version}: {verdict.outcome}: {line} → {result.action}"
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
    from releasectl.analysis.engine import format_duration
    from releasectl.pipeline.watch import check_watch

    p = check_watch(git, model, version=version, push=push, act=act)
    if json:
        emit_line(p.to_json())
        return
    say(f"would watch {model} {p.version} for {format_duration(p.bake_s)}, then if it")
    say(f"  passes: {p.on_pass}")
    say(f"  fails: {p.on_fail}")
    say(f"  is inconclusive: {p.on_inconclusive}")
    if not p.agent_running:
        say(f"  {_NOT_RUNNING}: the watch would start it (the live version is as last recorded)")


def _judge(
    git: Git, model: str, version: str | None, json: bool, show: Callable[[Measurement], None]
) -> None:
    """`watch --judge-only`: the verdict, reported and nothing else. In GitHub
    Actions the step outputs carry it to a job that runs no model code, which
    marks or reverts (docs/ARCHITECTURE.md, "Trust"): `verdict` is one of
    passed, failed, inconclusive; `reason` is one line that `revert --reason`
    accepts."""
    from releasectl.pipeline import ci
    from releasectl.pipeline.watch import revert_reason, watch

    result = watch(git, model, version=version, act=False, on_measurement=show)
    verdict = result.verdict
    reason = revert_reason(verdict)
    ci.set_output("verdict", verdict.outcome.value)
    ci.set_output("version", result.version)
    ci.set_output("reason", reason)
    report = {**result.to_json(), "reason": reason}
    if not verdict.passed:
        raise AnalysisFailed(
            f"{model} {result.version} failed analysis: {verdict.message}; "
            "judged only: not reverted"
            if verdict.outcome == "failed"
            else f"{model} {result.version} needs a human: {verdict.message}; nothing changed",
            report=report,
        )
    ci_summary(
        f"✅ analysis of {model} {result.version}: {verdict.outcome}: {verdict.message}"
        " → judged only"
    )
    if json:
        emit_line(report)
    else:
        say(f"{model} {result.version} passed (judged only: not marked stable here)")
