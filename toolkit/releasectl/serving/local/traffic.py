"""A canary's traffic in the agent: how its state turns into the endpoint's split or
mirror, how `advance`, `promote` and `abort` change it, and what a restart finds
(docs/ARCHITECTURE.md, "Deployment strategies").

While a canary steps, the model's `live` slot is the candidate (the version the branch
declares, the one `watch` judges) and its `standby` slot the stable version, serving
beside it with no standby expiry. A mirror step answers every user from stable and
copies a share of the requests on the mirror routes to the candidate; a weight step
sends a share of the requests to the candidate, sticky per client; `full` sends them
all to the candidate, stable kept warm for the deploy's standby window; `aborted`
sends none. The supervisor writes the state first, then calls `apply`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from datetime import timedelta

from releasectl import loopback
from releasectl.analysis.endpoint import CANDIDATE, ERROR_OUTCOMES, MIRROR, STABLE
from releasectl.errors import BadInput, Refused
from releasectl.serving.local.meter import Meter
from releasectl.serving.local.models import (
    DeployRequest,
    RoleFigures,
    TrafficInfo,
    TrafficPlan,
    TrafficRequest,
)
from releasectl.serving.local.proxy import Backend, Mirror, Proxy, check_routes
from releasectl.serving.local.state import ModelState, Slot, TrafficRecord, now


class WeightedSplit:
    """`weight`% of requests to `candidate`. With the `key` header present, the side is a
    stable hash of (candidate version, value) into 0..99, the candidate's when below the
    weight: a client on the candidate at 10% stays on it at 50%. Without it, by chance."""

    __slots__ = ("candidate", "key", "salt", "weight")

    def __init__(self, candidate: Backend, weight: int, key: str | None, version: str) -> None:
        self.candidate, self.weight = candidate, weight
        self.key = key.lower().encode("latin-1") if key else None
        self.salt = version.encode() + b"\0"

    def takes(self, headers: Iterable[tuple[bytes, bytes]]) -> bool:
        if self.key is not None:
            for k, v in headers:
                if k == self.key:
                    return bucket(self.salt + v) < self.weight
        return random.random() * 100 < self.weight


def bucket(data: bytes) -> int:
    """A stable 0..99 for `data`, the same in every process (unlike `hash`)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") % 100


def url(slot: Slot) -> str:
    return loopback.url(slot.port)


def check(model: str, plan: TrafficPlan) -> None:
    """A plan the endpoint can serve, or BadInput saying why not."""
    if any(s.kind == "mirror" for s in plan.steps) and not plan.mirror_routes:
        raise BadInput(f"{model}: a mirror step needs mirror_routes, the routes to copy")
    try:
        check_routes(plan.mirror_routes)
    except ValueError as exc:
        raise BadInput(f"{model}: {exc}") from None


def stable_of(ms: ModelState) -> Slot | None:
    """The slot a new canary keeps serving as stable: the stable version of a canary
    that still steps (or was aborted), else the live version."""
    t = ms.traffic
    return ms.standby if t is not None and t.state != "full" else ms.live


def begin(ms: ModelState, candidate: Slot, stable: Slot, req: DeployRequest) -> list[Slot]:
    """The one state change that starts a canary (saved by the caller before the proxy
    changes): the candidate live, stable its standby with no expiry, step 0. Returns the
    slots to retire (an earlier canary's candidate, an earlier standby)."""
    assert req.traffic is not None
    keep = {candidate.id, stable.id}
    retire = [s for s in (ms.live, ms.standby) if s is not None and s.id not in keep]
    candidate.since = now()
    ms.live, ms.standby, ms.standby_until, ms.pending = candidate, stable, None, None
    ms.raise_high_water(candidate)
    ms.traffic = TrafficRecord(
        plan=req.traffic,
        stable=stable.version,
        since=now(),
        standby_seconds=req.standby_seconds,
    )
    ms.message = None
    return retire


def apply(proxy: Proxy, ms: ModelState, meter: Meter, live: Backend | None) -> Mirror | None:
    """Point `proxy` at what `ms` says: `live` (the live slot's backend in role live) when
    no canary runs, else the canary's sides. Returns a mirror no longer used, to close."""
    t, cand, stable = ms.traffic, ms.live, ms.standby
    old, mirror = proxy.mirror, None
    if t is None or cand is None or (stable is None and t.state != "full"):
        proxy.target, proxy.split = live, None
    elif t.state == "full" or stable is None:
        proxy.target = Backend(url(cand), meter.tally(ms.model, cand.version, CANDIDATE))
        proxy.split = None
    else:
        proxy.target = Backend(url(stable), meter.tally(ms.model, stable.version, STABLE))
        if t.weight:
            side = Backend(url(cand), meter.tally(ms.model, cand.version, CANDIDATE))
            proxy.split = WeightedSplit(side, t.weight, t.plan.client_key, cand.version)
        else:
            proxy.split = None
        if t.mirror:
            same = old is not None and old.backend.url == url(cand) and old.percent == t.mirror
            mirror = old if same else None
            if mirror is None:
                mirror = Mirror(
                    Backend(url(cand), meter.tally(ms.model, cand.version, MIRROR)),
                    t.plan.mirror_routes,
                    meter.mirror_pairs(ms.model, cand.version),
                    proxy.client,
                    compare_field=t.plan.compare_field,
                    percent=t.mirror,
                )
    proxy.mirror = mirror
    return old if old is not mirror else None


def change(ms: ModelState | None, req: TrafficRequest) -> list[Slot]:
    """Apply `req` to the state (not yet saved); the slots to retire. Refused when it
    names another candidate or, for `advance`, another step than the current one."""
    if ms is None:
        raise BadInput(f"model {req.model} has never been deployed to this machine")
    t, cand = ms.traffic, ms.live
    if t is None or cand is None:
        raise BadInput(f"{req.model} has no canary running on this machine")
    if req.version != cand.version:
        raise Refused(
            f"{req.model} {req.version} is not the canary's candidate (it is {cand.version})"
        )
    if req.action == "advance":
        if t.state != "stepping" or req.from_step != t.step:
            where = f"at step {t.step}" if t.state == "stepping" else t.state
            raise Refused(
                f"{req.model} {cand.version}: cannot advance from step {req.from_step}: "
                f"the canary is {where}"
            )
        t.step += 1
        if t.step < len(t.plan.steps):
            t.since = now()
            return []
    elif req.action == "promote":
        if t.state == "aborted":
            raise Refused(f"{req.model} {cand.version}: the canary was aborted, not promoted")
        if t.state == "full":
            return []
        t.promoted = True
    else:
        if t.state == "aborted":
            return []
        if ms.standby is None:
            raise Refused(
                f"{req.model}: the stable version {t.stable} is no longer running: "
                "nothing to send the traffic back to"
            )
        t.state, t.since, ms.standby_until = "aborted", now(), None
        return []
    # Full: the candidate answers every request; stable stays warm for the standby window.
    t.state, t.since = "full", now()
    if ms.standby is not None and t.standby_seconds <= 0:
        gone, ms.standby = ms.standby, None
        return [gone]
    ms.standby_until = now() + timedelta(seconds=t.standby_seconds) if ms.standby else None
    return []


def reconcile(ms: ModelState, live_ok: bool, stable_ok: bool) -> None:
    """After a restart: a canary whose candidate is gone leaves stable live; one whose
    stable version is gone gives the candidate every request."""
    t, cand, stable = ms.traffic, ms.live, ms.standby
    if t is None or cand is None:
        ms.traffic = None
        return
    if not live_ok:
        ms.message = f"candidate {cand.version} (slot {cand.id}) was not running"
        if stable is not None and stable_ok:
            ms.live, ms.message = stable, f"{ms.message}: stable {stable.version} is live again"
        else:
            ms.live = None
        ms.standby = ms.standby_until = ms.traffic = None
    elif not stable_ok:
        if stable is not None and t.state != "full":
            ms.message = (
                f"stable {stable.version} (slot {stable.id}) was not running: "
                f"candidate {cand.version} takes every request"
            )
            t.state, t.since = "full", now()
        ms.standby = ms.standby_until = None


def figures(meter: Meter, ms: ModelState) -> TrafficInfo | None:
    """The canary with what the endpoint counted for each version in each role."""
    t = ms.traffic
    if t is None or ms.live is None:
        return None
    roles = []
    for (model, version, role), counts in sorted(meter.tallies.items()):
        if model != ms.model or version not in (t.stable, ms.live.version):
            continue
        n = sum(counts.outcomes.values())
        errors = sum(c for o, c in counts.outcomes.items() if o in ERROR_OUTCOMES)
        mean = round(counts.sum / n * 1000, 3) if n else None
        roles.append(
            RoleFigures(version=version, role=role, requests=n, errors=errors, mean_ms=mean)
        )
    return ms.traffic_info(roles)
