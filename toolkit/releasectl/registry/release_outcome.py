"""What `release` did, or with `--dry-run` would do, as typed results, each
with one serialisation (`to_json`, the command's `--json` document); the text
the command line prints reads the same fields
(docs/ARCHITECTURE.md, "The command line")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from releasectl.registry import release as rel

if TYPE_CHECKING:
    from releasectl import git as g
    from releasectl.progress import Progress
    from releasectl.registry.landing import Landed


@dataclass(frozen=True)
class ReleaseDryRun:
    """`release --dry-run`: the plan, the bundle it would pin, and a note on
    the base it was judged on (the remote moved to a commit this clone lacks)."""

    model: str
    version: str
    plan: rel.ReleasePlan
    seen: rel.ReleasePreview
    note: str | None

    @property
    def digest(self) -> str | None:
        """The bundle it would pin (None: no bundle, or known only after training)."""
        return self.seen.pin.digest if self.seen.pin else None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "serial": self.plan.serial,
            "digest": self.digest,
            "trains": self.seen.trains,
            "unsigned_sources": list(self.plan.unsigned_sources),
            "dry_run": True,
        }
        if self.note:
            doc["note"] = self.note
        return doc


def dry_run(
    git: g.Git,
    model: str,
    version: str,
    *,
    push: bool,
    build: bool | None,
    retrain: bool,
    allow_unsigned_sources: bool,
) -> ReleaseDryRun:
    """The real command's refusals first, then the digest it would pin."""
    allow = allow_unsigned_sources
    plan, note = rel.preview_release(
        git, model, version, push=push, build=build, allow_unsigned_sources=allow
    )
    seen = rel.preview(
        git, model, version, build=build, retrain=retrain, allow_unsigned_sources=allow
    )
    return ReleaseDryRun(model, version, plan, seen, note)


@dataclass(frozen=True)
class ReleaseOutcome:
    """What `release` made: the plan it landed and what landed (the commit, or
    none when a merged pull request's commit was only tagged; the tags; where
    it was pushed; the registry tags carried with it)."""

    model: str
    version: str
    plan: rel.ReleasePlan
    landed: Landed

    def to_json(self) -> dict[str, Any]:
        pin, landed = self.plan.pin, self.landed
        return {
            "model": self.model,
            "version": self.version,
            "serial": self.plan.serial,
            "commit": landed.commit,
            "tags": list(landed.tags),
            "pushed_to": landed.pushed_to,
            "carried": list(landed.carried),
            "digest": pin.digest if pin else None,
            "image": self.plan.image,
            "trained": (pin.trained.model_dump(mode="json") if pin and pin.trained else None),
            "unsigned_sources": list(self.plan.unsigned_sources),
        }


def release(
    git: g.Git,
    model: str,
    version: str,
    *,
    push: bool,
    build: bool | None,
    retrain: bool,
    progress: Progress | None,
    allow_unsigned_sources: bool,
) -> ReleaseOutcome:
    """`registry.release.release`, said as its outcome."""
    plan, landed = rel.release(
        git,
        model,
        version,
        push=push,
        build=build,
        retrain=retrain,
        progress=progress,
        allow_unsigned_sources=allow_unsigned_sources,
    )
    return ReleaseOutcome(model, version, plan, landed)
