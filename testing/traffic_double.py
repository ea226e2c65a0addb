"""A stand-in for the local agent's traffic API (the `Stepper` of
`releasectl.serving.targets`) while the agent's canary is built in parallel: a
canary held in memory that `promote` and `abort` drive, recording each change with
what a probe saw at that moment (the tests probe the registry's HEAD, to show the
traffic changed before any git write). `CanaryLocal` is the local target with that
stepper and no agent: its live version is the one the branch declares, vouched for
by the verified view, as `Local.live` finds it. Everything else (git, signing, the
revert, outcomes, the hook) is the real code.

`switches_back=False` stands for a target that goes back by following the landed
revert (no warm switch here: no agent runs); with True, the local target's own
recovery planning runs (`releasectl.serving.recovery.plan`), which in a registry
without stored bundles reports that it cannot switch back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from releasectl import git as g
from releasectl.registry.revert import RevertResult
from releasectl.serving import outcomes
from releasectl.serving import recovery as rec
from releasectl.serving.deploy import trusted
from releasectl.serving.local.models import (
    PlannedStep,
    RoleFigures,
    TrafficAction,
    TrafficInfo,
)
from releasectl.serving.targets import Live, Local, Stepper

STEPS = [
    PlannedStep(kind="mirror", percent=100, seconds=30),
    PlannedStep(kind="weight", percent=10, seconds=30),
    PlannedStep(kind="weight", percent=50, seconds=30),
]


def canary(model: str, stable: str, candidate: str, step: int = 1) -> TrafficInfo:
    """A canary at `step` of STEPS, with a few per-role figures."""
    planned = STEPS[step]
    weight = planned.percent if planned.kind == "weight" else 0
    return TrafficInfo(
        model=model,
        stable=stable,
        candidate=candidate,
        steps=STEPS,
        step=step,
        state="stepping",
        candidate_weight=weight,
        mirror=planned.percent if planned.kind == "mirror" else 0,
        since=datetime.now(UTC),
        roles=[
            RoleFigures(version=stable, role="stable", requests=90, errors=0, mean_ms=12.5),
            RoleFigures(version=candidate, role="candidate", requests=10, errors=2, mean_ms=None),
        ],
    )


class SteppedCanary:
    """A `Stepper` over one canary in memory; `calls` holds (action, probe()) per change."""

    def __init__(self, info: TrafficInfo | None, probe: Callable[[], object] = lambda: None):
        self.info, self.probe = info, probe
        self.calls: list[tuple[str, object]] = []

    def current(self) -> TrafficInfo | None:
        return self.info

    def change(self, action: TrafficAction, from_step: int | None = None) -> TrafficInfo:
        assert self.info is not None, "no canary to change"
        self.calls.append((action, self.probe()))
        if action == "promote":
            update = {"state": "full", "step": len(self.info.steps), "promoted": True}
            update |= {"candidate_weight": 100, "mirror": 0}
        elif action == "abort":
            update = {"state": "aborted", "candidate_weight": 0, "mirror": 0}
        else:
            raise AssertionError(f"{action}: not driven by promote or abort")
        self.info = self.info.model_copy(update={**update, "since": datetime.now(UTC)})
        return self.info


class CanaryLocal(Local):
    """The local target with `stepper` as its canary's traffic, and no agent."""

    def __init__(self, stepper: Stepper, *, switches_back: bool = False) -> None:
        super().__init__()
        self._stepper, self._switches_back = stepper, switches_back

    def running(self) -> bool:
        return True

    def live(self, git: g.Git, model: str, version: str | None, *, start: bool = True) -> Live:
        manifest = trusted(git, model).manifest
        return Live(model, manifest.version, manifest)

    def stepper(self, live: Live) -> Stepper | None:
        return self._stepper

    def plan_recovery(self, git: g.Git, model: str, version: str) -> rec.Recovery | None:
        return super().plan_recovery(git, model, version) if self._switches_back else None

    def follow_revert(
        self, git: g.Git, reverted: RevertResult | None, outcome: outcomes.WatchOutcome
    ) -> None:
        landed = reverted.landed if reverted else None
        if reverted is not None and landed is not None and landed.commit:
            outcome.kind, outcome.serving = "failed-recovered", reverted.plan.to_version
