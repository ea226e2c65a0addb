"""The rendered state of a kubernetes-target model: the folder Argo CD syncs
(docs/ARCHITECTURE.md, "Kubernetes").

A pure function of the manifest (and the serial of the release it belongs
to), deterministic to the byte: sorted keys, one fixed YAML dumper, one
trailing newline. The same state renders to the same bytes, so a re-render
is a no-op and a revert that restores the stable folder is what a re-render
of the reverted manifest gives."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from releasectl.errors import BadInput
from releasectl.manifest.kubernetes import KubernetesDeploy, split_pinned
from releasectl.manifest.schema import Manifest
from releasectl.names import manifest_path
from releasectl.render.analysis_template import analysis_template
from releasectl.render.canary import canary_service, canary_strategy, mesh_of
from releasectl.render.mesh import SELF_REPORTED, self_reported
from releasectl.render.smoke import smoke_template, template_name

KUSTOMIZATION = "kustomization.yaml"
NAME_LABEL = "app.kubernetes.io/name"
VERSION_LABEL = "app.kubernetes.io/version"
SERIAL_LABEL = "releasectl.dev/serial"
MANAGED_BY = {"app.kubernetes.io/managed-by": "releasectl"}
SERVICE_PORT = 80
REVISION_HISTORY = 3


def folder_of(manifest: Manifest) -> str | None:
    """Where the model's rendered state lives; None for another target."""
    k8s = manifest.deploy.kubernetes
    return k8s.folder(manifest.model) if k8s is not None else None


def _k8s(manifest: Manifest) -> KubernetesDeploy:
    k8s = manifest.deploy.kubernetes
    if k8s is None:
        raise BadInput(
            f"{manifest_path(manifest.model)}: deploy.target is {manifest.deploy.target}, "
            "not kubernetes: there is nothing to render",
            "set deploy.target: kubernetes and a deploy.kubernetes block",
        )
    return k8s


def _pinned_image(manifest: Manifest) -> tuple[str, str]:
    if manifest.bundle.image is None:
        raise BadInput(
            f"{manifest_path(manifest.model)}: bundle.image is not pinned "
            f"({manifest.model} has no released image yet)",
            "release the model, or pin bundle.image: <repository>@sha256:<digest>",
        )
    return split_pinned(manifest.bundle.image)


def _pod_template(manifest: Manifest, serial: int) -> dict[str, Any]:
    k8s = _k8s(manifest)
    container: dict[str, Any] = {
        "name": manifest.model,
        # The repository only: kustomization.yaml pins it by digest (`images:`).
        "image": k8s.image,
        "env": [{"name": "BENTOML_PORT", "value": str(manifest.deploy.port)}],
        "ports": [{"name": "http", "containerPort": manifest.deploy.port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 6,
        },
    }
    if k8s.resources is not None:
        container["resources"] = k8s.resources.model_dump(exclude_none=True)
    labels = {
        NAME_LABEL: manifest.model,
        VERSION_LABEL: manifest.version,
        SERIAL_LABEL: str(serial),
    }
    return {"metadata": {"labels": labels}, "spec": {"containers": [container]}}


def _metadata(manifest: Manifest, name: str) -> dict[str, Any]:
    return {"name": name, "labels": {NAME_LABEL: manifest.model, **MANAGED_BY}}


def _service(manifest: Manifest, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(manifest, name),
        "spec": {
            "type": "ClusterIP",
            "selector": {NAME_LABEL: manifest.model},
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}
            ],
        },
    }


def preview_service(model: str) -> str:
    return f"{model}-preview"


def _blue_green(manifest: Manifest) -> dict[str, Any]:
    model = manifest.model
    traffic = {
        "templates": [{"templateName": model}],
        "args": [{"name": "version", "value": manifest.version}],
    }
    blue_green: dict[str, Any] = {
        "activeService": model,
        "previewService": preview_service(model),
        "autoPromotionEnabled": True,
        # The previous version stays warm this long: a revert inside it
        # switches back to its ReplicaSet without a new rollout.
        "scaleDownDelaySeconds": int(manifest.deploy.standby),
        # Traffic thresholds judge promoted traffic: the preview Service gets none
        # (docs/ARCHITECTURE.md, "Analysis in the cluster").
        "postPromotionAnalysis": traffic,
    }
    if manifest.analysis.smoke:
        blue_green["prePromotionAnalysis"] = {"templates": [{"templateName": template_name(model)}]}
    return {"blueGreen": blue_green}


def _rollout(manifest: Manifest, serial: int) -> dict[str, Any]:
    model = manifest.model
    canary = manifest.deploy.strategy.kind == "canary"
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": _metadata(manifest, model),
        "spec": {
            "replicas": _k8s(manifest).replicas,
            "revisionHistoryLimit": REVISION_HISTORY,
            # A revert to a revision Rollouts still holds skips analysis: the stable
            # state is known good (docs/ARCHITECTURE.md, "Kubernetes").
            "rollbackWindow": {"revisions": REVISION_HISTORY},
            "selector": {"matchLabels": {NAME_LABEL: model}},
            "template": _pod_template(manifest, serial),
            "strategy": canary_strategy(manifest) if canary else _blue_green(manifest),
        },
    }


def _namespace(manifest: Manifest) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": _k8s(manifest).namespace, "labels": dict(MANAGED_BY)},
    }


def _deployment(manifest: Manifest, serial: int) -> dict[str, Any]:
    model = manifest.model
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(manifest, model),
        "spec": {
            "replicas": _k8s(manifest).replicas,
            "revisionHistoryLimit": REVISION_HISTORY,
            "selector": {"matchLabels": {NAME_LABEL: model}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": _pod_template(manifest, serial),
        },
    }


def objects(manifest: Manifest, serial: int) -> dict[str, dict[str, Any]]:
    """File name -> the object it holds (kustomization.yaml included)."""
    k8s = _k8s(manifest)
    strategy = manifest.deploy.strategy
    repository, digest = _pinned_image(manifest)
    model = manifest.model
    found: dict[str, dict[str, Any]] = {"service.yaml": _service(manifest, model)}
    if strategy.kind in ("bluegreen", "canary"):
        if strategy.kind == "canary":
            found["service-canary.yaml"] = _service(manifest, canary_service(model))
        else:
            found["service-preview.yaml"] = _service(manifest, preview_service(model))
        found["rollout.yaml"] = _rollout(manifest, serial)
        mesh = mesh_of(manifest)
        template = analysis_template(manifest.analysis, model, name=model, mesh=mesh)
        template["metadata"] = {**template.get("metadata", {}), **_metadata(manifest, model)}
        own = self_reported(manifest.analysis, mesh)
        if strategy.kind == "canary" and own:
            # The pods' own figures, named (docs/ARCHITECTURE.md, "Kubernetes").
            template["metadata"]["annotations"] = {SELF_REPORTED: ",".join(own)}
        found["analysis-template.yaml"] = template
        smoke = smoke_template(
            manifest.analysis,
            model,
            namespace=k8s.namespace,
            port=SERVICE_PORT,
            labels=_metadata(manifest, model)["labels"],
            service=canary_service(model) if strategy.kind == "canary" else None,
        )
        if smoke is not None:
            found["smoke-template.yaml"] = smoke
    else:
        found["deployment.yaml"] = _deployment(manifest, serial)
    if k8s.create_namespace:
        found["namespace.yaml"] = _namespace(manifest)
    found[KUSTOMIZATION] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": k8s.namespace,
        "images": [{"name": repository, "newName": repository, "digest": digest}],
        "resources": sorted(found),
    }
    return found


def dump(obj: Any, header: str = "") -> str:
    """One YAML document, the same bytes for the same object on every machine."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096  # never fold a long string (a PromQL query)
    yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    yaml.dump(_sorted(obj), out)
    return header + out.getvalue()


def _sorted(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _sorted(node[k]) for k in sorted(node)}
    if isinstance(node, list):
        return [_sorted(v) for v in node]
    return node


def _header(model: str) -> str:
    return (
        f"# Rendered by releasectl from {manifest_path(model)}: do not edit.\n"
        f"# `releasectl render {model}` writes it; every release commit does too.\n"
    )


@dataclass(frozen=True)
class Rendered:
    model: str
    folder: str
    files: dict[str, str]  # repository-relative path -> text

    def names(self) -> list[str]:
        return sorted(self.files)


def render(manifest: Manifest, serial: int) -> Rendered:
    """The model's rendered folder; `serial` is the serial of the release the
    manifest's version came from (see `release_serial`)."""
    folder = folder_of(manifest)
    if folder is None:
        _k8s(manifest)  # raises
        raise AssertionError
    header = _header(manifest.model)
    files = {
        f"{folder}/{name}": dump(obj, header) for name, obj in objects(manifest, serial).items()
    }
    return Rendered(manifest.model, folder, files)


# --- the environment's index: one kustomization listing its models ----------


def index_path(manifest: Manifest) -> str | None:
    """`deploy/<environment>/kustomization.yaml` when the model's folder is
    directly under it (the default), which the Argo CD Application `init
    --kubernetes` writes points at; None for a folder elsewhere."""
    k8s = _k8s(manifest)
    parent, _, _ = k8s.folder(manifest.model).rpartition("/")
    return f"{parent}/{KUSTOMIZATION}" if parent == f"deploy/{k8s.environment}" else None


INDEX_HEADER = (
    "# The models of this environment, listed by releasectl (Argo CD syncs this folder).\n"
)


def index_entries(text: str) -> list[str]:
    """The folders an environment's index lists; BadInput for a broken one."""
    from ruamel.yaml import YAML

    try:
        document = YAML(typ="safe", pure=True).load(text)
    except Exception:  # an index someone broke: refuse rather than overwrite
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("resources"), list):
        raise BadInput(
            "the environment's kustomization.yaml is not a Kustomization with a resources list",
            "fix or remove it; releasectl lists each model's folder there",
        )
    return [str(entry) for entry in document["resources"]]


def index_dump(entries: Iterable[str]) -> str:
    """The index exactly as releasectl writes it: the listed folders, sorted, and nothing else."""
    document = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(set(entries)),
    }
    return dump(document, INDEX_HEADER)


def index_text(existing: str | None, entry: str) -> str | None:
    """The index with `entry` listed (sorted); None when it already is. A
    model is never removed from it: its folder stays while it is deployed."""
    listed = index_entries(existing) if existing is not None else []
    if entry in listed:
        return None
    return index_dump([*listed, entry])


def with_index(rendered: Rendered, manifest: Manifest, existing: str | None) -> dict[str, str]:
    """The rendered files plus the environment's index when it must list the model."""
    files = dict(rendered.files)
    path = index_path(manifest)
    if path is not None:
        text = index_text(existing, rendered.folder.rpartition("/")[2])
        if text is not None:
            files[path] = text
    return files


# --- the working tree ---------------------------------------------------------


@dataclass(frozen=True)
class Written:
    written: list[str]  # files whose bytes changed (or are new)
    removed: list[str]  # files in the folder the render no longer has


def differences(root: Path, files: dict[str, str], folder: str) -> Written:
    """What writing `files` (and clearing the rest of `folder`) would change."""
    written = [
        path
        for path, text in sorted(files.items())
        if not (root / path).is_file() or (root / path).read_bytes() != text.encode()
    ]
    base = root / folder
    present = (
        sorted(p.relative_to(root).as_posix() for p in base.rglob("*") if p.is_file())
        if base.is_dir()
        else []
    )
    removed = [path for path in present if path not in files]
    return Written(written, removed)


def write(root: Path, files: dict[str, str], folder: str) -> Written:
    """Write what differs, remove what the render no longer has; an unchanged
    file is not rewritten (a re-render of the same state touches nothing)."""
    changes = differences(root, files, folder)
    for path in changes.written:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[path].encode())
    for path in changes.removed:
        (root / path).unlink()
    return changes
