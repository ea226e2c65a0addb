"""What a kubernetes-target manifest must hold to work in a cluster, and what it
should (docs/ARCHITECTURE.md, "Analysis in the cluster"): a refusal where the
render could not work, a warning where it works worse than its author expects."""

from __future__ import annotations

from releasectl.analysis.promql import query_range
from releasectl.errors import BadInput
from releasectl.manifest import schema as mf
from releasectl.manifest.analysis import PrometheusSourceSpec
from releasectl.manifest.durations import format_duration
from releasectl.names import manifest_path
from releasectl.render import kubernetes as r

# What a revert's push and Argo CD's sync take after the bake's verdict, at most
# (a webhook syncs at once; the poll, 3 minutes, is not counted on).
PUSH_ALLOWANCE_S = 60.0


def require_prometheus(manifest: mf.Manifest) -> None:
    """A kubernetes model is judged through Prometheus: the bake (`watch`) reads the
    cluster's metrics there, and that is what writes the revert back to Git. BadInput
    (exit 2) otherwise, naming the key to set."""
    if manifest.deploy.kubernetes is None:
        return
    if not isinstance(manifest.analysis.source, PrometheusSourceSpec):
        raise BadInput(
            f"{manifest_path(manifest.model)}: {manifest.model} runs on kubernetes, but "
            f"analysis.source is {manifest.analysis.source.kind}: the bake reads the "
            "cluster's metrics from Prometheus",
            "set analysis.source to {kind: prometheus, url: http://..., scrape_interval: 30s}",
        )


def warnings(manifest: mf.Manifest) -> list[tuple[str, str]]:
    """What works, but not as its author may think, as (what, why) pairs (none for
    another target)."""
    if manifest.deploy.kubernetes is None:
        return []
    spec = manifest.analysis
    found: list[tuple[str, str]] = []
    span = query_range(spec)
    if spec.interval < span:
        found.append(
            (
                "query range",
                f"analysis.interval {format_duration(spec.interval)} is shorter than the query "
                f"range {format_duration(span)} (4 x scrape_interval, or window): measurements "
                "overlap, so one bad stretch can fail several in a row and failure_limit "
                f"{spec.failure_limit} is reached sooner; set interval to {format_duration(span)} "
                "to judge each stretch once",
            )
        )
    needed = spec.bake + PUSH_ALLOWANCE_S
    if manifest.deploy.standby < needed:
        found.append(
            (
                "standby",
                f"deploy.standby {format_duration(manifest.deploy.standby)} is shorter than "
                f"the bake plus a push ({format_duration(needed)}): the previous ReplicaSet is "
                "scaled down before a failed bake's revert reaches the cluster, so the revert "
                f"starts cold; set deploy.standby to at least {format_duration(needed)}",
            )
        )
    return found


def shared_namespaces(manifests: dict[str, mf.Manifest]) -> list[tuple[list[str], str]]:
    """Models of one environment that render the same Namespace: kustomize refuses the
    environment's index (one object twice), so Argo CD syncs none of them. Each
    problem: the models, and the line that says so."""
    owners: dict[tuple[str, str], list[str]] = {}
    for model, manifest in sorted(manifests.items()):
        k8s = manifest.deploy.kubernetes
        index = r.index_path(manifest) if k8s is not None else None
        if k8s is not None and k8s.create_namespace and index is not None:
            owners.setdefault((index, k8s.namespace), []).append(model)
    return [
        (
            models,
            f"{', '.join(models)} all render the Namespace {namespace} into {index}: "
            "set deploy.kubernetes.create_namespace: false in all but one",
        )
        for (index, namespace), models in sorted(owners.items())
        if len(models) > 1
    ]
