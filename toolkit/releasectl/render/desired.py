"""The rendered state as the registry holds it: `releasectl render` on the
working tree, and the files a release or revert commit carries
(docs/ARCHITECTURE.md, "Kubernetes")."""

from __future__ import annotations

from dataclasses import dataclass

from releasectl import git as g
from releasectl.errors import BadInput, OperationFailed
from releasectl.manifest import schema as mf
from releasectl.names import check_model, manifest_path, tag_name
from releasectl.render import kubernetes as r


def release_serial(git: g.Git, manifest: mf.Manifest) -> int:
    """The serial of the release the manifest's version came from: the
    manifest's own, except after a revert (serial +1, a rollback record),
    where it is the reverted-to release's, so that the restored folder is
    exactly what a re-render gives (the pod template, and with it the
    ReplicaSet Argo Rollouts switches back to, is byte-identical)."""
    if manifest.rollback is None:
        return manifest.serial
    tag = tag_name("release", manifest.model, manifest.version)
    text = g.read_blob(git, f"refs/tags/{tag}^{{commit}}", manifest_path(manifest.model))
    if text is None:
        raise OperationFailed(
            f"{manifest.model} was reverted to {manifest.version} but {tag} is missing here",
            "fetch the registry's tags: git fetch --tags",
        )
    return mf.load(text, manifest_path(manifest.model), model=manifest.model).serial


@dataclass(frozen=True)
class RenderResult:
    model: str
    folder: str
    files: list[str]  # every file of the render (repository-relative)
    written: list[str]  # files whose bytes changed
    removed: list[str]  # files the render no longer has

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)

    def summary(self) -> dict[str, object]:
        return {
            "model": self.model,
            "folder": self.folder,
            "files": self.files,
            "written": self.written,
            "removed": self.removed,
            "changed": self.changed,
        }


def render_worktree(git: g.Git, model: str, *, check: bool = False) -> RenderResult:
    """Render the model's manifest as it is in the working tree into its
    folder; with `check`, write nothing and report what would change."""
    check_model(model)
    path = git.cwd / manifest_path(model)
    if not path.is_file():
        raise BadInput(f"{manifest_path(model)} does not exist", "see `releasectl list`")
    manifest = mf.load(path.read_text(), manifest_path(model), model=model)
    rendered = r.render(manifest, release_serial(git, manifest))
    index = r.index_path(manifest)
    existing = (git.cwd / index).read_text() if index and (git.cwd / index).is_file() else None
    files = r.with_index(rendered, manifest, existing)
    extra = [index] if index else []  # listed whether or not it changes
    if check:
        changes = r.differences(git.cwd, files, rendered.folder)
    else:
        changes = r.write(git.cwd, files, rendered.folder)
    return RenderResult(
        model, rendered.folder, rendered.names() + extra, changes.written, changes.removed
    )


@dataclass(frozen=True)
class CommitFiles:
    """What a release commit writes for the rendered state: the folder is
    replaced by `files` (so a file the render no longer has goes)."""

    folder: str
    files: dict[str, str]


def for_release(git: g.Git, manifest: mf.Manifest, base: str) -> CommitFiles | None:
    """The rendered state a release commit carries; None for another target."""
    if manifest.deploy.kubernetes is None:
        return None
    rendered = r.render(manifest, manifest.serial)
    index = r.index_path(manifest)
    existing = g.read_blob(git, base, index) if index else None
    return CommitFiles(rendered.folder, r.with_index(rendered, manifest, existing))


def folders(manifest: mf.Manifest) -> tuple[str, ...]:
    folder = r.folder_of(manifest)
    return (folder,) if folder else ()


def sync_paths(rendered: CommitFiles | None) -> tuple[str, ...]:
    """The working-tree paths to bring to the commit: the folder (stale files
    go too) and the environment's index when the commit writes it."""
    if rendered is None:
        return ()
    inside = f"{rendered.folder}/"
    return (rendered.folder, *sorted(p for p in rendered.files if not p.startswith(inside)))


def committed_differences(git: g.Git, manifest: mf.Manifest, rev: str) -> list[str]:
    """The rendered files at `rev` that differ from a render of the manifest
    (missing, changed or stale); [] for another target or when they agree."""
    if manifest.deploy.kubernetes is None:
        return []
    rendered = r.render(manifest, release_serial(git, manifest))
    committed = {entry.split("\t", 1)[1] for entry in g.tree_entries(git, rev, rendered.folder)}
    wrong = [
        path for path, text in sorted(rendered.files.items()) if g.read_blob(git, rev, path) != text
    ]
    return wrong + sorted(committed - set(rendered.files))
