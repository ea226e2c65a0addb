"""`releasectl promote` and `releasectl abort`: a running canary, driven by hand
(docs/ARCHITECTURE.md, "Deployment strategies").

On the local target, through the target's `Stepper` (the agent holds the steps):
- promote: the candidate takes 100% now; the rest of the bake runs at 100% under
  the watcher, which marks it stable or reverts it as usual. The promote is kept
  beside the watcher's outcome (`outcomes.Promoted`), which `status` shows. It
  writes nothing to git, so `--push` has nothing to push (the result says so).
- abort: the candidate's weight goes to 0 and mirroring stops at once (one request
  to the agent, before any git write); the detached watcher is stopped; then the
  path of a failed verdict: the switch back to the stable release, the signed
  revert with its `rejected/` mark (pushed with `--push`), the outcome kept and the
  hook told, by `releasectl.pipeline.watch`'s own functions.

On kubernetes, Argo Rollouts runs the steps: the result is the `kubectl argo rollouts`
command for the operator to run, and nothing is changed from here
(docs/ARCHITECTURE.md, "The canary").
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from releasectl import git as g
from releasectl.errors import FAILED, OK, BadInput, OperationFailed, ReleasectlError, for_code
from releasectl.names import check_model, check_reason
from releasectl.pipeline.watch import (
    RECORD_TIMEOUT_S,
    Say,
    _before_bake,
    recover_and_record,
)
from releasectl.registry.history import current
from releasectl.registry.revert import RevertResult
from releasectl.serving import outcomes, targets, watcher

if TYPE_CHECKING:
    from releasectl.serving.local.models import TrafficInfo
    from releasectl.serving.targets import Stepper

Action = Literal["promote", "abort"]

NOTHING_PUSHED = "promote writes nothing to git: nothing was pushed"


@dataclass
class TrafficResult:
    """What `promote` or `abort` did (or, with `dry_run`, would do)."""

    model: str
    action: Action
    target: str
    dry_run: bool
    before: TrafficInfo | None = None  # the canary as found
    after: TrafficInfo | None = None  # the canary after the change
    command: list[str] | None = None  # kubernetes: the command for the operator to run
    outcome: outcomes.WatchOutcome | None = None  # abort: what was done, as a verdict's
    promoted: outcomes.Promoted | None = None
    revert: RevertResult | None = None
    would: list[str] = field(default_factory=list)  # a dry run: what would happen, in order
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0, unless an abort could not switch back or record its revert (1)."""
        o = self.outcome
        return (
            FAILED if o is not None and (o.kind != "failed-recovered" or o.record != "done") else OK
        )

    def problem(self) -> ReleasectlError | None:
        if self.exit_code == OK or self.outcome is None:
            return None
        return for_code(self.exit_code)(
            f"{self.model}: {self.outcome.line()}", report=self.to_json()
        )

    def to_json(self) -> dict[str, Any]:
        landed = self.revert.landed if self.revert else None
        return {
            "model": self.model,
            "action": self.action,
            "target": self.target,
            "dry_run": self.dry_run,
            "before": self.before.model_dump(mode="json") if self.before else None,
            "after": self.after.model_dump(mode="json") if self.after else None,
            "command": self.command,
            "command_line": shlex.join(self.command) if self.command else None,
            "outcome": self.outcome.model_dump(mode="json") if self.outcome else None,
            "promoted": self.promoted.model_dump(mode="json") if self.promoted else None,
            "revert_commit": landed.commit if landed else None,
            "pushed_to": landed.pushed_to if landed else None,
            **({"would": self.would} if self.dry_run else {}),
            "notes": self.notes,
        }


def promote(
    git: g.Git,
    model: str,
    *,
    push: bool = False,
    dry_run: bool = False,
    target: targets.Target | None = None,
) -> TrafficResult:
    """The candidate takes 100% now. `target`: the model's (default: the one the
    branch declares)."""
    check_model(model)
    target = target or targets.declared(git, model)
    command = target.rollouts_command(model, "promote")
    if command is not None:
        return _printed(model, "promote", target.kind, command, dry_run)
    stepper, info = _canary(git, model, target)
    if info.state == "aborted":
        raise BadInput(
            f"{model} {info.candidate} was aborted: it answers no request until the revert "
            "lands; it cannot be promoted",
            f"finish the abort with `releasectl abort {model}`, or release it again",
        )
    found = TrafficResult(model, "promote", target.kind, dry_run, before=info, after=info)
    if push:
        found.notes.append(NOTHING_PUSHED)
    if info.state == "full":
        found.notes.append(f"{info.candidate} already answers every request: nothing to do")
        return found
    if dry_run:
        found.would = [
            f"make {info.candidate} answer every request now (at {_step(info)}); "
            f"keep {info.stable} warm as the standby",
            "leave the rest of the bake, at 100%, to the watcher: it marks the candidate "
            "stable or reverts it",
            "write nothing to git",
        ]
        return found
    found.after = stepper.change("promote")
    who = g.config_get(git, "user.email") or "unknown"
    found.promoted = outcomes.Promoted(
        model=model, version=info.candidate, by=who, from_step=info.step
    )
    outcomes.save_promoted(found.promoted)
    return found


def abort(
    git: g.Git,
    model: str,
    *,
    reason: str | None = None,
    push: bool = False,
    dry_run: bool = False,
    target: targets.Target | None = None,
    record_timeout: float = RECORD_TIMEOUT_S,
    on_event: Say | None = None,
) -> TrafficResult:
    """The candidate answers nothing now; then the way back of a failed verdict."""
    say: Say = on_event or (lambda _text: None)
    check_model(model)
    target = target or targets.declared(git, model)
    command = target.rollouts_command(model, "abort")
    if command is not None:
        found = _printed(model, "abort", target.kind, command, dry_run)
        why = f" --reason {shlex.quote(check_reason(reason))}" if reason is not None else ""
        found.notes.append(
            f"then record it: `releasectl revert {model} --push{why}` (Argo CD syncs the revert)"
        )
        return found
    who = g.config_get(git, "user.email") or "unknown"
    reason = check_reason(reason if reason is not None else f"aborted by {who}")
    # Every refusal of the way back before the traffic changes: a usable key, the hook.
    hook = _before_bake(git, model, act=True)
    stepper, info = _canary(git, model, target)
    found = TrafficResult(model, "abort", target.kind, dry_run, before=info, after=info)
    if dry_run:
        found.would = _abort_plan(git, model, target, info, reason, push, who)
        return found

    # Users first: the candidate's weight is 0 before anything else happens.
    found.after = stepper.change("abort")
    say(f"{info.candidate} answers no request now: {info.stable} answers every one")
    for stopped in watcher.stop_detached(model):
        say(f"stopped the watcher of {model} {stopped.get('version')} (pid {stopped['pid']})")
    outcome = outcomes.WatchOutcome(
        model=model,
        version=info.candidate,
        kind="failed-unrecovered",
        message=reason,
        serving=info.stable,
        aborted_by=who,
        record="pending",
    )
    recovery = target.plan_recovery(git, model, info.candidate)
    found.revert = recover_and_record(
        git, target, outcome, recovery, hook, reason, push, record_timeout, say
    )
    if outcome.kind != "failed-recovered" and recovery is not None:
        outcome.message += "; the candidate answers no request (weight 0)"
        outcomes.save(outcome)
    found.outcome = outcome
    return found


def _canary(git: g.Git, model: str, target: targets.Target) -> tuple[Stepper, TrafficInfo]:
    """The model's running canary, or a refusal naming what runs instead (exit 2)."""
    if not target.running():
        raise OperationFailed(
            f"{model}: the agent is not running, so no canary runs",
            "`releasectl agent start` starts it with the servers it kept",
        )
    stepper = target.stepper(target.live(git, model, None, start=False))
    info = stepper.current() if stepper is not None else None
    if stepper is None or info is None:
        raise BadInput(
            f"{model} runs no canary: its live version answers every request (blue-green)",
            f"promote and abort drive a canary's steps; to go back: `releasectl revert {model}`",
        )
    declared = current(git, model)[0].version
    if declared != info.candidate:
        raise BadInput(
            f"the branch declares {model} {declared}, but the canary's candidate is "
            f"{info.candidate}",
            "run it on the branch that deployed the canary",
        )
    return stepper, info


def _step(info: TrafficInfo) -> str:
    """Where a canary is, in words: `step 2/3: weight 10%`, `full, promoted`, ..."""
    if info.state != "stepping":
        return info.state + (", promoted" if info.promoted else "")
    step = info.steps[info.step]
    return f"step {info.step + 1}/{len(info.steps)}: {step.kind} {step.percent}%"


def _abort_plan(
    git: g.Git,
    model: str,
    target: targets.Target,
    info: TrafficInfo,
    reason: str,
    push: bool,
    who: str,
) -> list[str]:
    """`abort --dry-run`: what the abort would do, in order; what only the real
    revert can find out (the remote moved) is said, not refused."""
    from releasectl.registry.landing import head
    from releasectl.registry.revert import plan as plan_revert

    would = [
        f"set {info.candidate}'s weight to 0 and stop mirroring at once (now at "
        f"{_step(info)}): {info.stable} answers every request"
    ]
    running = watcher.detached(model)
    if running is not None and running.get("alive"):
        would.append(f"stop the detached watcher (pid {running['pid']})")
    where = " and push it" if push else ""
    try:
        p = plan_revert(git, model, head(git), reason=reason, who=who)
        would.append(
            f"revert {model} {p.from_version} -> {p.to_version} "
            f"(signed, rejected/{model}/v{p.from_version}){where}{target.way_back(p.to_version)}"
            if p.change is not None
            else f"nothing to revert ({p.note})"
        )
    except ReleasectlError as exc:
        would.append(f"try to revert {model}, which would fail: {exc.message}")
    return would


def _printed(
    model: str, action: Action, kind: str, command: list[str], dry_run: bool
) -> TrafficResult:
    found = TrafficResult(model, action, kind, dry_run, command=command)
    found.notes.append(
        "Argo Rollouts runs the steps in the cluster: run this command; nothing was changed"
    )
    if dry_run:
        found.would = [f"print `{shlex.join(command)}` for you to run; change nothing"]
    return found
