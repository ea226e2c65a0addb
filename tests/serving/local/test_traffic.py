"""A canary's state in the agent, without processes
(docs/ARCHITECTURE.md, "Deployment strategies"): the plan a deploy sends, what
`advance`/`promote`/`abort` change, and what an agent restarted after a crash makes
of a canary whose stable or candidate is gone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from releasectl.errors import BadInput, Refused
from releasectl.manifest import schema as mf
from releasectl.serving.deploy import DeployState
from releasectl.serving.local.models import TrafficPlan, TrafficRequest
from releasectl.serving.local.state import ModelState, Slot, TrafficRecord
from releasectl.serving.local.traffic import change, reconcile
from releasectl.serving.release_ref import ReleaseRef
from releasectl.serving.targets import traffic_plan

MANIFEST = """\
apiVersion: releasectl/v1
model: iris
version: "2.0.0"
serial: 2
bundle: {bento: iris}
analysis:
  bake: 5m
  metrics: {error_rate: {max: 0.05}}
  compare: {field: label, max_disagreement: 0.1}
deploy:
  strategy:
    kind: canary
    mirror_routes: [/predict]
    client_key: X-Client-Id
    steps:
      - {mirror: 100, for: 30s}
      - {weight: 10, for: 1m}
"""
PLAN = TrafficPlan.model_validate(
    {
        "steps": [
            {"kind": "mirror", "percent": 50, "seconds": 30},
            {"kind": "weight", "percent": 10, "seconds": 30},
        ],
        "mirror_routes": ["/predict"],
    }
)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_deploy_sends_the_verified_manifests_steps_and_a_revert_none() -> None:
    manifest = mf.load(MANIFEST, "x")
    plan = traffic_plan(DeployState("iris", "c" * 40, manifest))
    assert plan is not None
    assert [(s.kind, s.percent, s.seconds) for s in plan.steps] == [
        ("mirror", 100, 30.0),
        ("weight", 10, 60.0),
    ]
    assert (plan.mirror_routes, plan.client_key, plan.compare_field) == (
        ["/predict"],
        "X-Client-Id",
        "label",
    )
    # A verified revert (and so every switch back) never steps.
    revert = DeployState("iris", "c" * 40, manifest, verified_revert=True)
    assert traffic_plan(revert) is None
    compare = "  compare: {field: label, max_disagreement: 0.1}\n"
    blue = mf.load(MANIFEST.split("deploy:")[0].replace(compare, ""), "x")
    assert traffic_plan(DeployState("iris", "c" * 40, blue)) is None


def slot(version: str) -> Slot:
    release = ReleaseRef(version=version, digest=f"sha256:{version}", commit="c", serial=1)
    return Slot(
        id=f"{version}-x", model="iris", release=release, bento_dir="/b", port=1, started=T0
    )


def canary(standby_seconds: float = 60) -> ModelState:
    ms = ModelState(model="iris", port=3000, live=slot("2.0.0"), standby=slot("1.0.0"))
    ms.traffic = TrafficRecord(plan=PLAN, stable="1.0.0", since=T0, standby_seconds=standby_seconds)
    return ms


def ask(action: str, from_step: int | None = None, version: str = "2.0.0") -> TrafficRequest:
    return TrafficRequest.model_validate(
        {"model": "iris", "version": version, "action": action, "from_step": from_step}
    )


def test_steps_advance_one_at_a_time_then_the_candidate_takes_all() -> None:
    ms = canary()
    assert ms.traffic is not None
    assert (ms.traffic.mirror, ms.traffic.weight) == (50, 0)
    assert change(ms, ask("advance", 0)) == []
    assert (ms.traffic.step, ms.traffic.mirror, ms.traffic.weight) == (1, 0, 10)
    assert ms.standby_until is None  # stable kept, no expiry, while steps run
    with pytest.raises(Refused, match="cannot advance from step 0"):
        change(ms, ask("advance", 0))
    assert ms.traffic.step == 1
    change(ms, ask("advance", 1))
    info = ms.traffic_info()
    assert info is not None
    assert (info.state, info.step, info.candidate_weight, info.promoted) == ("full", 2, 100, False)
    assert ms.standby is not None and ms.standby_until is not None  # warm for the window


def test_promote_abort_and_what_is_refused() -> None:
    ms = canary(standby_seconds=0)
    with pytest.raises(Refused, match="not the canary's candidate"):
        change(ms, ask("promote", version="1.0.0"))
    stable = ms.standby
    # At full with no standby window, stable is let go at once.
    assert change(ms, ask("promote")) == [stable]
    assert ms.traffic is not None and (ms.traffic.state, ms.traffic.promoted) == ("full", True)
    with pytest.raises(Refused, match="nothing to send the traffic back to"):
        change(ms, ask("abort"))
    ms = canary()
    change(ms, ask("abort"))
    assert ms.traffic is not None and (ms.traffic.state, ms.traffic.weight) == ("aborted", 0)
    with pytest.raises(Refused):
        change(ms, ask("promote"))
    with pytest.raises(BadInput, match="no canary"):
        change(ModelState(model="iris", port=3000, live=slot("1.0.0")), ask("abort"))


def test_a_restart_without_stable_gives_the_candidate_all_and_says_why() -> None:
    ms = canary()
    reconcile(ms, live_ok=True, stable_ok=False)
    assert ms.traffic is not None and ms.traffic.state == "full" and ms.standby is None
    assert (
        ms.message
        == "stable 1.0.0 (slot 1.0.0-x) was not running: candidate 2.0.0 takes every request"
    )


def test_a_restart_without_the_candidate_serves_stable_again() -> None:
    ms = canary()
    reconcile(ms, live_ok=False, stable_ok=True)
    assert ms.live is not None and ms.live.version == "1.0.0"
    assert (ms.standby, ms.traffic) == (None, None)
    assert (
        ms.message == "candidate 2.0.0 (slot 2.0.0-x) was not running: stable 1.0.0 is live again"
    )
