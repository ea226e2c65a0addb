"""Whose rendered state a changed path is (docs/ARCHITECTURE.md, "Kubernetes").

Argo CD applies whatever the environment's index lists, so a pull request
that edits `deploy/` changes the cluster as surely as a release does. The
pull-request check therefore asks, of every changed path outside the
registry: which model's rendered folder holds it, is it an environment's
index, or is it under `deploy/` and rendered by no model at all."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from releasectl import git as g
from releasectl.errors import ReleasectlError
from releasectl.manifest import schema as mf
from releasectl.names import manifest_path
from releasectl.registry.history import list_models
from releasectl.render import kubernetes as r

DEPLOY_ROOT = "deploy/"
# `init --kubernetes` writes the Argo CD Applications here; they are applied by
# hand, once, and nothing syncs the folder, so they are not rendered state.
APPLICATIONS = "deploy/argocd/"
_INDEX = re.compile(r"deploy/[^/]+/" + re.escape(r.KUSTOMIZATION))


@dataclass
class DeployChanges:
    by_model: dict[str, list[str]] = field(default_factory=dict)  # in its rendered folder
    indexes: list[str] = field(default_factory=list)  # environments' indexes
    strays: list[str] = field(default_factory=list)  # under deploy/, rendered by no model
    # Two models at the head whose folders are one, or one inside the other: each
    # render would overwrite the other's state (a new model claiming a live one's).
    overlaps: list[str] = field(default_factory=list)
    # The head's kubernetes models, read once for the ownership and the index checks.
    head: dict[str, mf.Manifest] = field(default_factory=dict)


def kubernetes_manifests(git: g.Git, rev: str) -> dict[str, mf.Manifest]:
    """The kubernetes-target models at `rev`, by name. A manifest that does
    not load is left out: the check reports it as the model's own finding."""
    models = list_models(git, rev)
    try:
        texts = g.read_blobs(git, [f"{rev}:{manifest_path(model)}" for model in models])
    except ReleasectlError:  # a manifest that is not text: read the others one by one
        texts = [_text_or_none(git, rev, manifest_path(model)) for model in models]
    found: dict[str, mf.Manifest] = {}
    for model, text in zip(models, texts, strict=True):
        if text is None:
            continue
        try:
            manifest = mf.load(text, manifest_path(model), model=model)
        except ReleasectlError:
            continue
        if manifest.deploy.kubernetes is not None:
            found[model] = manifest
    return found


def _text_or_none(git: g.Git, rev: str, path: str) -> str | None:
    try:
        return g.read_blob(git, rev, path)
    except ReleasectlError:
        return None


def _folders(manifests: dict[str, mf.Manifest]) -> list[tuple[str, str]]:
    """(`<folder>/`, model) for each model's rendered folder."""
    owned = []
    for model, manifest in manifests.items():
        folder = r.folder_of(manifest)
        if folder is not None:
            owned.append((f"{folder}/", model))
    return owned


def classify(git: g.Git, base: str, head: str, paths: list[str]) -> DeployChanges:
    """Sort changed paths (outside the registry) by owner. A folder counts as
    a model's at the base or the head, so moving or emptying it is seen too;
    the base is read only when some path needs an owner."""
    head_models = kubernetes_manifests(git, head)
    head_owned = _folders(head_models)
    changes = DeployChanges(overlaps=_overlaps(head_owned), head=head_models)
    if not paths:
        return changes
    owned = _folders(kubernetes_manifests(git, base)) + head_owned
    for path in paths:
        owners = sorted({model for folder, model in owned if path.startswith(folder)})
        for owner in owners:
            changes.by_model.setdefault(owner, []).append(path)
        if owners:
            continue
        if _INDEX.fullmatch(path):
            changes.indexes.append(path)
        elif path.startswith(DEPLOY_ROOT) and not path.startswith(APPLICATIONS):
            changes.strays.append(path)
    return changes


def _overlaps(owned: list[tuple[str, str]]) -> list[str]:
    found = []
    ordered = sorted(owned)
    for i, (outer, outer_model) in enumerate(ordered):
        for inner, inner_model in ordered[i + 1 :]:
            if inner.startswith(outer):
                found.append(f"{inner_model} renders into {inner}, {outer_model}'s {outer}")
    return found


def index_problem(
    git: g.Git,
    base: str,
    head: str,
    path: str,
    head_models: dict[str, mf.Manifest],
    *,
    may_remove: set[str] | frozenset[str] = frozenset(),
) -> str | None:
    """Why a changed environment index is not one releasectl would write, or
    None. It lists folders only, sorted; it gains only the folder of a
    kubernetes model of that environment, and loses none (that would make
    Argo CD prune a model nobody reverted or removed)."""
    text = g.read_blob(git, head, path)
    if text is None:
        return f"{path} was removed: Argo CD would prune every model it lists"
    entries = r.index_entries(text)
    old = g.read_blob(git, base, path)
    before = set(r.index_entries(old)) if old is not None else set()
    models = {
        folder.rstrip("/").rpartition("/")[2]
        for folder, model in _folders(head_models)
        if r.index_path(head_models[model]) == path
    }
    # An entry whose model moved away (another path or target) goes with its folder.
    removed = sorted(before - set(entries) - set(may_remove))
    if removed:
        return f"{path} no longer lists {', '.join(removed)}"
    unknown = sorted(set(entries) - before - models)
    if unknown:
        return f"{path} lists {', '.join(unknown)}, which no kubernetes model renders here"
    if text != r.index_dump(entries):
        return f"{path} holds more than the sorted list of model folders releasectl writes"
    return None
