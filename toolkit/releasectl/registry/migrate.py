"""`releasectl store migrate --to URL`: the artifacts the registry needs, copied from
the local store to the team's (docs/ARCHITECTURE.md, "The artifact store").

Needed is what a verified release pins (its bundle and its trained weights) and what
the branch's manifests pin now (weights a proposal trained). Each artifact is fetched
from the source, checked against its pin (a bundle re-digested after extracting,
weights by the sha256 of their bytes) and only then written to the destination; one
already there under its pin is left alone, so a second run copies nothing."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from releasectl import git as g
from releasectl.bundles.build import fetch_bundle
from releasectl.bundles.store import ArtifactStore
from releasectl.errors import BadInput, Refused
from releasectl.manifest import schema as mf
from releasectl.names import manifest_path
from releasectl.progress import Progress, step
from releasectl.registry import verified
from releasectl.registry.history import current, history_of, list_models
from releasectl.signing import TrustRoot

Kind = Literal["bundle", "weights"]
Action = Literal["copied", "present", "would copy", "missing"]


@dataclass
class Needed:
    """An artifact the registry needs: its key, what pins it, and who uses it."""

    key: str
    kind: Kind
    pin: str  # a bundle's content digest, or the sha256 hex of the weights' bytes
    used_by: list[str] = field(default_factory=list)  # "iris 1.2.0"


@dataclass(frozen=True)
class Migrated:
    need: Needed
    action: Action

    def to_json(self) -> dict[str, object]:
        n = self.need
        return {
            "key": n.key,
            "kind": n.kind,
            "pin": n.pin,
            "used_by": n.used_by,
            "action": self.action,
        }


@dataclass(frozen=True)
class Migration:
    source: str
    dest: str
    dry_run: bool
    artifacts: list[Migrated]

    def count(self, action: Action) -> int:
        return sum(1 for a in self.artifacts if a.action == action)

    @property
    def missing(self) -> list[Migrated]:
        return [a for a in self.artifacts if a.action == "missing"]

    def to_json(self) -> dict[str, object]:
        return {
            "from": self.source,
            "to": self.dest,
            "dry_run": self.dry_run,
            "copied": self.count("copied"),
            "present": self.count("present"),
            "would_copy": self.count("would copy"),
            "missing": len(self.missing),
            "artifacts": [a.to_json() for a in self.artifacts],
        }


def needed(git: g.Git, trust: TrustRoot) -> list[Needed]:
    """Every artifact a verified release or a manifest on the branch pins, once each."""
    found: dict[str, Needed] = {}

    def add(manifest: mf.Manifest, user: str) -> None:
        b = manifest.bundle
        pins: list[tuple[Kind, str, str]] = []
        if b.digest is not None:
            pins.append(("bundle", ArtifactStore.bundle_key(b.digest), b.digest))
        for model in b.trained.models if b.trained is not None else []:
            pins.append(("weights", model.key, model.sha256))
        for kind, key, pin in pins:
            need = found.setdefault(key, Needed(key, kind, pin))
            if user not in need.used_by:
                need.used_by.append(user)

    for model in list_models(git):
        history = history_of(git, model)
        verdicts = verified.verify_history(git, trust, history)
        path = manifest_path(model)
        ok = [r for r in history.releases if verdicts[r.version].release.ok]
        # Every verified manifest in one `cat-file --batch`, not one git call each.
        for release, text in zip(
            ok, g.read_blobs(git, [f"{r.commit}:{path}" for r in ok]), strict=True
        ):
            if text is not None:
                add(mf.load(text, path, model=model), f"{model} {release.version}")
        try:
            manifest, _ = current(git, model)
        except BadInput:
            continue  # a broken manifest pins nothing; `check` reports it
        add(manifest, f"{model} {manifest.version} (the branch)")
    return list(found.values())


def migrate(
    git: g.Git,
    trust: TrustRoot,
    source: ArtifactStore,
    dest: ArtifactStore,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Migration:
    """Copy every needed artifact from `source` to `dest`, each checked against its pin
    before it is written. One missing from both stores is reported, not a stop: the
    rest is still copied."""
    if source.url == dest.url:
        raise BadInput(f"the artifact store {dest.url} is both the source and the destination")
    dest.reach()
    done: list[Migrated] = []
    for need in needed(git, trust):
        if _present(dest, need):
            done.append(Migrated(need, "present"))
        elif not source.exists(need.key):
            done.append(Migrated(need, "missing"))
        elif dry_run:
            done.append(Migrated(need, "would copy"))
        else:
            with step(progress, f"copying {need.key} ({', '.join(need.used_by)})"):
                _copy(source, dest, need)
            done.append(Migrated(need, "copied"))
    return Migration(source.url, dest.url, dry_run, done)


def _present(store: ArtifactStore, need: Needed) -> bool:
    record = store.record(need.key)
    if record is None or not store.exists(need.key):
        return False
    field_name = "digest" if need.kind == "bundle" else "sha256"
    return record.get(field_name) == need.pin


def _copy(source: ArtifactStore, dest: ArtifactStore, need: Needed) -> None:
    record = source.record(need.key) or {}
    meta = {k: v for k, v in record.items() if isinstance(v, str) and k in _META}
    with tempfile.TemporaryDirectory(prefix="releasectl-migrate-") as tmp:
        if need.kind == "bundle":
            # Re-digested after extracting: what is copied is what the release pins.
            fetch_bundle(source, need.key, Path(tmp), need.pin)
            files = source.files(need.key)
            dest.put(Path(tmp) / "archive.bento", need.key, need.pin, files, meta)
            return
        local = source.get(need.key, Path(tmp) / "weights.bentomodel")
        got = _sha256(local)
        if got != need.pin:
            raise Refused(
                f"the stored weights {source.uri(need.key)} have sha256 {got}, "
                f"but {', '.join(need.used_by)} pins {need.pin}"
            )
        stored = dest.put_weights(local, meta)
        assert stored.key == need.key  # content-addressed: the bytes name the key


_META = ("model", "version", "bento", "tag")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
