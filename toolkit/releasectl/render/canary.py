"""The Argo Rollouts canary of a kubernetes-target model with `deploy.strategy.kind:
canary` (docs/ARCHITECTURE.md, "Kubernetes"): the Rollout's `strategy.canary`,
from the same steps the local endpoint runs and the same AnalysisTemplate
`watch`'s limits make. A pure function of the manifest, as the rest of the render.

Steps: with smoke requests, first one canary pod (`setCanaryScale: {replicas: 1}`)
and the smoke AnalysisTemplate as an inline `analysis` step against the canary
Service, before any user request reaches the candidate; then in the manifest's order:
- a mirror step: `setCanaryScale: {weight: P}` (at weight 0 Argo would run no
  canary pod to mirror to), `setMirrorRoute` (the managed route, `percentage: P`,
  matching `mirror_routes` exactly), `pause: {duration: for}`;
- after the last mirror step, `setMirrorRoute: {name}` with no match, which
  removes the route, and `setCanaryScale: {matchTrafficWeight: true}`;
- a weight step: `setWeight: P`, `pause: {duration: for}`;
- then `setWeight: 100` and a pause for the rest of the bake: the remaining time
  runs at 100%, with the stable ReplicaSet still up, as the local target does.

The analysis runs in the background from the first pause (`startingStep`), when
the candidate already has its first share of traffic.
"""

from __future__ import annotations

from typing import Any

from releasectl.manifest.durations import format_duration
from releasectl.manifest.kubernetes import KubernetesDeploy, TrafficSpec
from releasectl.manifest.schema import Manifest
from releasectl.render.mesh import Mesh
from releasectl.render.smoke import template_name

# The one route Argo manages in the team's VirtualService for mirroring.
MIRROR_ROUTE = "releasectl-mirror"
GATEWAY_PLUGIN = "argoproj-labs/gatewayAPI"


def canary_service(model: str) -> str:
    return f"{model}-canary"


def mesh_of(manifest: Manifest) -> Mesh | None:
    """Istio's request metrics judge a canary routed by Istio; otherwise None (the
    bento's own figures, self-reported)."""
    k8s = manifest.deploy.kubernetes
    if (
        k8s is None
        or manifest.deploy.strategy.kind != "canary"
        or k8s.traffic is None
        or k8s.traffic.istio is None
    ):
        return None
    return Mesh(manifest.model, k8s.namespace)


def _pause(seconds: float) -> dict[str, Any]:
    return {"pause": {"duration": format_duration(seconds)}}


def canary_steps(manifest: Manifest) -> list[dict[str, Any]]:
    strategy = manifest.deploy.strategy
    steps = strategy.steps or []
    last_mirror = max((n for n, s in enumerate(steps) if s.kind == "mirror"), default=-1)
    match = [{"path": {"exact": route}} for route in strategy.mirror_routes or []]
    out: list[dict[str, Any]] = []
    if manifest.analysis.smoke:
        # One canary pod answers the smoke requests before any user request reaches it.
        out.append({"setCanaryScale": {"replicas": 1}})
        out.append({"analysis": {"templates": [{"templateName": template_name(manifest.model)}]}})
        if steps[0].kind == "weight":
            out.append({"setCanaryScale": {"matchTrafficWeight": True}})
    for n, step in enumerate(steps):
        if step.kind == "mirror":
            out.append({"setCanaryScale": {"weight": step.percent}})
            out.append(
                {
                    "setMirrorRoute": {
                        "name": MIRROR_ROUTE,
                        "percentage": step.percent,
                        "match": match,
                    }
                }
            )
        else:
            out.append({"setWeight": step.percent})
        out.append(_pause(step.seconds))
        if n == last_mirror:
            out.append({"setMirrorRoute": {"name": MIRROR_ROUTE}})
            out.append({"setCanaryScale": {"matchTrafficWeight": True}})
    out.append({"setWeight": 100})
    out.append(_pause(manifest.analysis.bake - strategy.seconds))
    return out


def traffic_routing(traffic: TrafficSpec, k8s: KubernetesDeploy, mirrors: bool) -> dict[str, Any]:
    """The Rollout's `trafficRouting` for the declared router: the team's objects named,
    never created (docs/ARCHITECTURE.md, "Kubernetes")."""
    if traffic.istio is not None:
        istio = traffic.istio
        service: dict[str, Any] = {"name": istio.virtual_service}
        if istio.routes:
            service["routes"] = list(istio.routes)
        routing: dict[str, Any] = {"virtualService": service}
        if istio.destination_rule is not None:
            rule = istio.destination_rule
            routing["destinationRule"] = {
                "name": rule.name,
                "canarySubsetName": rule.canary_subset,
                "stableSubsetName": rule.stable_subset,
            }
        found: dict[str, Any] = {"istio": routing}
        if mirrors:
            found["managedRoutes"] = [{"name": MIRROR_ROUTE}]
        return found
    gateway = traffic.gateway_api
    assert gateway is not None  # TrafficSpec names exactly one router
    return {
        "plugins": {
            GATEWAY_PLUGIN: {
                "httpRoute": gateway.http_route,
                "namespace": gateway.namespace or k8s.namespace,
            }
        }
    }


def canary_strategy(manifest: Manifest) -> dict[str, Any]:
    """The Rollout's `strategy` for a canary: `{canary: ...}`."""
    k8s = manifest.deploy.kubernetes
    assert k8s is not None and k8s.traffic is not None  # check_traffic made sure
    model = manifest.model
    steps = canary_steps(manifest)
    first_pause = next(n for n, step in enumerate(steps) if "pause" in step)
    return {
        "canary": {
            "canaryService": canary_service(model),
            "stableService": model,
            "trafficRouting": traffic_routing(k8s.traffic, k8s, manifest.deploy.strategy.mirrors),
            "steps": steps,
            # Background analysis, from the first pause: the candidate has its share.
            "analysis": {
                "templates": [{"templateName": model}],
                "args": [{"name": "version", "value": manifest.version}],
                "startingStep": first_pause,
            },
        }
    }
