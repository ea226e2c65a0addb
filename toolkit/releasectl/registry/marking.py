"""`releasectl mark-stable`: a release that passed its bake gets its signed
`stable/` mark, the only thing that makes it a rollback target
(docs/ARCHITECTURE.md, "Trust")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from releasectl import git as g
from releasectl import trailers
from releasectl.errors import BadInput, Refused
from releasectl.names import ModelName, ModelVersion, tag_name
from releasectl.registry.history import Release, history_of, require_verified
from releasectl.registry.landing import (
    Change,
    Landed,
    NewTag,
    dry_run_base,
    dry_run_landing,
    head,
    land_local,
    require_branch,
)
from releasectl.registry.release import push_change
from releasectl.registry.verified import verify_history
from releasectl.signing import TrustRoot, require_allowed_signer
from releasectl.view import trust_root


def plan_mark_stable(
    git: g.Git, trust: TrustRoot, model: str, version: str, base: str
) -> tuple[Release, Change | None]:
    model = ModelName.parse(model)
    version = ModelVersion.parse(version)
    history = history_of(git, model, base)
    target = history.get(version)
    if target is None:
        raise BadInput(f"{model} has no release {version}", f"see `releasectl history {model}`")
    # Marks decide only when they verify (docs/ARCHITECTURE.md, "Trust").
    verdict = verify_history(git, trust, history, [target])[version]
    if verdict.rejected is not None and verdict.rejected.ok:
        raise Refused(f"{target.tag.name} was rejected; it cannot be marked stable")
    require_verified(git, trust, target)
    if verdict.stable is not None:
        if verdict.stable.ok:
            return target, None
        assert target.stable is not None
        ref = f"refs/tags/{target.stable.name}"
        branch = g.current_branch(git)
        remote = g.upstream(git, branch)[0] if branch else "origin"
        raise Refused(
            f"{target.stable.name} exists but does not verify ({verdict.stable.problem}): "
            "the name is taken, and a genuine mark cannot be made under it",
            f"an admin removes it: `git push {remote} :{ref}`, then `git tag -d "
            f"{target.stable.name}` here; see `releasectl doctor`",
        )
    require_allowed_signer(git, trust)
    tag = NewTag(
        tag_name("stable", model, version),
        f"{model} {version} is stable\n\n{trailers.MODEL}: {model}\n",
        target=target.commit,
    )
    return target, Change(base=base, tags=(tag,))


def mark_stable(
    git: g.Git, model: str, version: str, *, push: bool = False, leave_local: bool = False
) -> tuple[Release, Landed | None]:
    """Returns the release and what was landed (None when it already was stable).
    With `leave_local` (and `push`) the mark is planned on the remote's tip and
    no unpushed local commit goes with it (the unattended watcher)."""
    if push:
        found: list[Release] = []

        def planner(tip: str) -> Change | None:
            release, change = plan_mark_stable(git, trust_root(git, tip), model, version, tip)
            found.append(release)
            return change

        branch = require_branch(git)
        landed = push_change(git, branch, model, planner, leave_local=leave_local)
        return found[-1], landed
    base = head(git)
    trust = trust_root(git, base)
    release_, change = plan_mark_stable(git, trust, model, version, base)
    if change is None:
        return release_, None
    return release_, land_local(git, trust, require_branch(git), change)


def preview_mark_stable(
    git: g.Git, model: str, version: str, *, push: bool = False
) -> tuple[Release, Change | None, str | None]:
    """`mark-stable --dry-run`: the refusals of `mark_stable`, in its order;
    returns the release, the change (None: already stable) and a note."""
    note = None
    if push:
        base, note = dry_run_base(git, require_branch(git), model, push=True, carry_local=True)
    else:
        base = head(git)
    release_, change = plan_mark_stable(git, trust_root(git, base), model, version, base)
    if change is not None and not push:
        require_branch(git)
        dry_run_landing(git, push=False, sync=False)
    return release_, change, note


@dataclass(frozen=True)
class MarkStableOutcome:
    """What `mark-stable` did, or with `dry_run` would do; `to_json` is its
    `--json` document."""

    model: str
    version: str
    release: Release
    created: bool  # the mark was (or would be) made; False: it was already there
    landed: Landed | None = None  # None: nothing landed at all (or a dry run)
    push: bool = False
    note: str | None = None  # a dry run's note on the base it judged
    dry_run: bool = False

    @property
    def tag(self) -> str:
        return tag_name("stable", self.model, self.version)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "model": self.model,
            "version": self.version,
            "tag": self.tag,
            "created": self.created,
        }
        if self.dry_run:
            return {**doc, "push": self.push, "note": self.note, "dry_run": True}
        landed = self.landed
        return {
            **doc,
            "pushed_to": landed.pushed_to if landed else None,
            "carried": list(landed.carried) if landed else [],
        }


def mark_stable_outcome(
    git: g.Git, model: str, version: str, *, push: bool, dry_run: bool
) -> MarkStableOutcome:
    """`mark-stable` (or its dry run), said as its outcome."""
    if dry_run:
        release_, change, note = preview_mark_stable(git, model, version, push=push)
        return MarkStableOutcome(
            model, version, release_, change is not None, None, push, note, dry_run=True
        )
    release_, landed = mark_stable(git, model, version, push=push)
    return MarkStableOutcome(model, version, release_, bool(landed and landed.tags), landed, push)
