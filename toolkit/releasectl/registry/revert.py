"""`releasectl revert MODEL`: one signed commit that brings the model's folder
back to its last stable release, plus a signed `rejected/` tag for the release
it leaves (docs/ARCHITECTURE.md, "Revert"). Only `model-releases/<model>/` changes; the manifest
keeps the stable release's content except `serial` (+1) and a `rollback`
record. `git revert` is not used: over a range it would also undo other
models' releases and it stops at merge commits."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from releasectl import git as g
from releasectl import trailers
from releasectl.errors import BadInput, OperationFailed, Refused
from releasectl.manifest import edits
from releasectl.manifest import schema as mf
from releasectl.names import (
    ModelName,
    ModelVersion,
    check_reason,
    manifest_path,
    model_dir,
    tag_name,
)
from releasectl.registry.history import (
    History,
    Release,
    current,
    history_of,
    release_commit,
    require_verified,
    verify_release,
)
from releasectl.registry.landing import (
    Change,
    Landed,
    NewTag,
    dry_run_base,
    dry_run_landing,
    head,
    land_local,
    land_pushed,
    require_branch,
    require_clean,
)
from releasectl.registry.succession import next_serial
from releasectl.registry.verified import (
    ignored_marks,
    last_stable,
    verify_commits,
    verify_history,
)
from releasectl.render import desired
from releasectl.signing import TrustRoot, commit_verdicts, require_allowed_signer
from releasectl.view import trust_root


@dataclass(frozen=True)
class RevertPlan:
    model: str
    from_version: str
    to_version: str
    base: str
    serial: int
    change: Change | None  # None: nothing to do
    message: str
    note: str = ""  # why nothing is to do
    rendered: tuple[str, ...] = ()  # rendered folders restored too (kubernetes)

    def summary(self) -> dict[str, object]:
        return {
            "model": self.model,
            "from": self.from_version,
            "to": self.to_version,
            "serial": self.serial,
            "base": self.base,
            "message": self.message,
        }


def plan(
    git: g.Git,
    model: str,
    base: str,
    *,
    to: str | None = None,
    reason: str,
    who: str,
    now: datetime | None = None,
    trust: TrustRoot | None = None,
) -> RevertPlan:
    model = ModelName.parse(model)
    check_reason(reason)
    if to is not None:
        to = ModelVersion.parse(to)
    history = history_of(git, model, base)
    trust = trust or trust_root(git, base)
    manifest = _trusted_state(git, trust, history, base)
    target = _target(git, trust, history, to)
    if manifest.version == target.version:
        more = "" if to else "; use --to VERSION to go further back"
        note = f"{model} is already at its last stable release {target.version}{more}"
        if to:
            note = f"{model} is already at {target.version}"
        rejected = history.get(manifest.rollback.from_) if manifest.rollback else None
        if rejected is not None and rejected.rejected is not None:
            note += f" ({rejected.version} was reverted, {rejected.rejected.name} exists)"
        return RevertPlan(
            model, manifest.version, target.version, base, manifest.serial, None, "", note
        )

    require_verified(git, trust, target)
    require_allowed_signer(git, trust)  # as the new commit's check would, before it

    stable_text = g.read_blob(git, target.commit, manifest_path(model))
    assert stable_text is not None  # require_verified read it
    serial = next_serial(manifest.serial)
    record = {
        # Plain strings: the manifest's YAML writer knows no str subclasses.
        "from": str(manifest.version),
        "to": str(target.version),
        "reason": reason,
        "at": (now or datetime.now(UTC)).replace(microsecond=0).isoformat(),
        "by": who,
    }
    path = manifest_path(model)
    new_text = edits.edit(stable_text, path, {"serial": serial, "rollback": record}, model=model)

    leaving = history.get(manifest.version)
    message = _message(model, manifest.version, target, leaving, reason, serial)
    tags: tuple[NewTag, ...] = ()
    # A genuine rejected mark already: nothing to add. A name taken by a tag
    # that does not verify, or blocked, is diagnosed when the change lands and
    # never stops it: the revert commit records the rejection itself
    # (docs/ARCHITECTURE.md, "Trust").
    if leaving is not None and not _genuinely_rejected(git, trust, history, leaving):
        tags = (
            NewTag(
                tag_name("rejected", model, manifest.version),
                f"{model} {manifest.version} rejected: {reason}\n\n"
                f"Rolled back to {target.version}.\n\n{trailers.MODEL}: {model}\n",
                target=leaving.commit,
            ),
        )
    folder_tree = g.tree_id(git, target.commit, model_dir(model))
    # A kubernetes model's rendered folder comes back as the stable release
    # committed it, byte for byte (docs/ARCHITECTURE.md, "Kubernetes").
    stable = mf.load(stable_text, path, model=model)
    rendered = tuple(dict.fromkeys(desired.folders(stable) + desired.folders(manifest)))
    trees = tuple((folder, g.tree_id(git, target.commit, folder)) for folder in rendered)
    change = Change(
        base=base,
        message=message,
        folder=model_dir(model),
        folder_tree=folder_tree,
        files={path: new_text},
        trees=trees,
        tags=tags,
        sync_paths=(model_dir(model), *(folder for folder, tree in trees if tree is not None)),
    )
    return RevertPlan(
        model, manifest.version, target.version, base, serial, change, message, rendered=rendered
    )


def _trusted_state(git: g.Git, trust: TrustRoot, history: History, base: str) -> mf.Manifest:
    """The manifest the revert moves away from: the one at the newest
    first-parent commit that changed the model's folder whose change is
    signed by a release signer, judged as a release commit is (through a
    forge's clean merge, the pull request's commit behind it). A keyless
    branch pusher's unsigned commit (a broken manifest, a version set back,
    the folder removed) can then neither stop the incident's revert nor make
    it a no-op; a signed broken manifest is refused as it is. One signature
    check in the usual case: the incident path stays fast
    (docs/ARCHITECTURE.md, "Trust")."""
    commits = history.branch_commits  # newest first

    def signed(commit: str) -> bool:
        try:
            source = release_commit(git, history.model, commit)
        except OperationFailed:  # the folder removed there
            return False
        return verify_commits(git, trust, history.model, [source])[source].ok

    if not commits or signed(commits[0]):
        return current(git, history.model, base)[0]
    for commit in commits[1:]:
        if signed(commit):
            try:
                return current(git, history.model, commit)[0]
            except BadInput:
                continue
    return current(git, history.model, base)[0]


def _genuinely_rejected(git: g.Git, trust: TrustRoot, history: History, release: Release) -> bool:
    if release.rejected is None:
        return False
    verdict = verify_history(git, trust, history, [release])[release.version].rejected
    return verdict is not None and verdict.ok


def _target(git: g.Git, trust: TrustRoot, history: History, to: str | None) -> Release:
    """The rollback target, decided by marks that verify alone (docs/ARCHITECTURE.md,
    "What verifies, remembered"): a forged or stray mark is never obeyed."""
    if to is None:
        target, passed_over = last_stable(git, trust, history)
        if target is None:
            ignored = ignored_marks(passed_over)
            raise OperationFailed(
                f"{history.model} has no stable release to revert to"
                + (f" (ignored marks that do not verify: {'; '.join(ignored)})" if ignored else ""),
                f"mark one with `releasectl mark-stable {history.model} VERSION`",
            )
        return target
    target = history.get(to)
    if target is None:
        raise BadInput(
            f"{history.model} has no release {to}", f"see `releasectl history {history.model}`"
        )
    verdict = verify_history(git, trust, history, [target])[target.version]
    if verdict.rejected is not None and verdict.rejected.ok:
        raise Refused(f"{target.tag.name} was rejected; it is never a rollback target again")
    if verdict.stable is None or not verdict.stable.ok:
        why = (
            f" (its stable tag does not verify: {verdict.stable.problem})" if verdict.stable else ""
        )
        raise Refused(
            f"{target.tag.name} is not marked stable{why}; only stable releases are "
            "rollback targets"
        )
    if not verdict.release.ok:
        raise Refused(f"{target.tag.name} does not verify: {verdict.release.problem}")
    if target.position is None:
        raise Refused(f"{target.tag.name} is not on this branch's history")
    return target


def _message(
    model: str,
    from_version: str,
    target: Release,
    leaving: Release | None,
    reason: str,
    serial: int,
) -> str:
    undone = f" (commit {leaving.commit[:12]})" if leaving else ""
    # The reason is one line (check_reason) in a paragraph of its own, so it
    # can never start a line: not a trailer, not git's scissors line. The
    # trailers are the final paragraph, which is all git parses as trailers.
    return (
        f'Revert "{model} {from_version}": back to stable {target.version}\n\n'
        f"This restores {model_dir(model)}/ to its content at {target.tag.name}\n"
        f"(commit {target.commit[:12]}), undoing {model} {from_version}{undone}.\n"
        f"Only serial ({serial}) and the rollback record differ from {target.version}.\n\n"
        f"Reason: {reason}\n\n"
        + trailers.block(trailers.revert(model, from_version, target.version, serial))
    )


def diff(git: g.Git, p: RevertPlan) -> str:
    """What the revert would change, without writing any object."""
    assert p.change is not None
    path = manifest_path(p.model)
    target = f"refs/tags/{tag_name('release', p.model, p.to_version)}^{{commit}}"
    others = git.out(
        "diff",
        "--no-color",
        p.base,
        target,
        "--",
        model_dir(p.model),
        *p.rendered,
        f":(exclude){path}",
    )
    old = g.read_blob(git, p.base, path) or ""
    manifest_diff = "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            p.change.files[path].splitlines(keepends=True),
            f"a/{path}",
            f"b/{path}",
        )
    )
    return (others + "\n" if others else "") + manifest_diff


RevertKind = Literal["reverted", "nothing-to-do", "already-on-the-remote"]


@dataclass(frozen=True)
class RevertResult:
    """What a revert did, said once: its kind, its note, and the one document
    that `--json` prints and the text printer reads."""

    plan: RevertPlan
    landed: Landed | None  # None: nothing was written
    pushed: bool = False  # asked to push

    @property
    def kind(self) -> RevertKind:
        if self.landed is None or self.landed.commit is None:  # at most tags were published
            return "nothing-to-do"
        return "already-on-the-remote" if self.landed.already_there else "reverted"

    @property
    def carried(self) -> tuple[str, ...]:
        """Registry tags the remote lacked, published with this run."""
        return self.landed.carried if self.landed else ()

    @property
    def note(self) -> str | None:
        p, landed = self.plan, self.landed
        if self.kind == "already-on-the-remote" and landed is not None:
            return (
                f"{p.model} is already reverted on {landed.pushed_to}: the same revert "
                f"({p.from_version} -> {p.to_version}) landed first"
            )
        if self.kind == "nothing-to-do" and self.pushed:
            return f"{p.note}; already reverted on the remote: run `git pull`"
        return p.note if self.kind == "nothing-to-do" else (landed.note if landed else None)

    @property
    def redeploys(self) -> bool:
        """Whether a deploy after it has something to serve here: not when a push
        found the remote already reverted and this clone has not pulled it."""
        return not (self.pushed and self.kind == "nothing-to-do")

    def to_json(self) -> dict[str, object]:
        if self.kind != "reverted" or self.landed is None:
            return {"changed": False, "note": self.note}
        summary = {k: v for k, v in self.plan.summary().items() if k != "message"}
        return {
            **summary,
            "commit": self.landed.commit,
            "tags": list(self.landed.tags),
            "pushed_to": self.landed.pushed_to,
            "carried": list(self.landed.carried),
            "note": self.landed.note,
        }


def preview(
    git: g.Git,
    model: str,
    *,
    to: str | None = None,
    reason: str = "rollback",
    push: bool = False,
) -> tuple[RevertPlan, str | None]:
    """`revert --dry-run`: the refusals of `revert`, in its order, and its plan;
    returns the plan and a note (see `dry_run_base`). Nothing is written."""
    check_reason(reason)
    branch = require_branch(git)
    who = g.config_get(git, "user.email") or "unknown"
    model = ModelName.parse(model)
    require_clean(git, model_dir(model))
    base, note = dry_run_base(git, branch, model, push=push, carry_local=False, incident=True)
    p = plan(git, model, base, to=to, reason=reason, who=who)
    if p.change is not None:
        dry_run_landing(git, push=push, sync=bool(p.change.sync_paths))
    return p, note


def revert(
    git: g.Git,
    model: str,
    *,
    to: str | None = None,
    reason: str = "rollback",
    push: bool = False,
    leave_local: bool = False,
) -> RevertResult:
    """Plan and land a revert; with `push`, on the remote's tip, retried as it moves.
    With `leave_local` (and `push`), unpushed local commits are neither refused
    nor published: the revert is made on the remote's tip and the local branch
    only fast-forwarded to it when it can be (the unattended watcher)."""
    check_reason(reason)  # before anything is fetched or written
    branch = require_branch(git)
    who = g.config_get(git, "user.email") or "unknown"
    model = ModelName.parse(model)
    if not (push and leave_local):
        # Only a fast-forward touches the working tree then, which git refuses
        # by itself when it would overwrite local edits.
        require_clean(git, model_dir(model))
    if not push:
        base = head(git)
        trust = trust_root(git, base)
        p = plan(git, model, base, to=to, reason=reason, who=who, trust=trust)
        if p.change is None:
            return RevertResult(p, None)
        return RevertResult(p, land_local(git, trust, branch, p.change, incident=True))

    plans: list[RevertPlan] = []
    trusts: dict[str, TrustRoot] = {}

    def trust_at(tip: str) -> TrustRoot:
        if tip not in trusts:
            trusts[tip] = trust_root(git, tip)
        return trusts[tip]

    def planner(tip: str) -> Change | None:
        plans.append(plan(git, model, tip, to=to, reason=reason, who=who, trust=trust_at(tip)))
        return plans[-1].change

    landed = land_pushed(
        git, trust_at, branch, planner, model, leave_local=leave_local, incident=True
    )
    return RevertResult(plans[-1], landed, pushed=True)


def revert_problem(
    git: g.Git, trust: TrustRoot, model: str, commit: str, manifest: mf.Manifest
) -> str | None:
    """None if the model's state at `commit` is a verified revert; else why not.

    A verified revert (docs/ARCHITECTURE.md, "Revert"): the commit that made the
    state is signed by an allowed signer and carries the revert's trailers,
    agreeing with the rollback record, and the folder is a verified stable
    release's, byte for byte, but for `serial` and `rollback` in release.yaml."""
    record = manifest.rollback
    if record is None:
        return "no rollback record"
    source = release_commit(git, model, commit)
    verdict = commit_verdicts(git, trust, [source])[source]
    if not verdict.ok:
        return f"the revert commit {source[:12]} does not verify: {verdict.detail}"
    found = g.trailers(git, source)
    wanted = trailers.revert(model, record.from_, record.to, manifest.serial)
    for key, value in wanted.items():
        if found.get(key) != [value]:
            return f"the revert commit {source[:12]} has no trailer {key}: {value}"
    target = history_of(git, model, commit).get(manifest.version)
    if target is None or target.position is None:
        return f"{model} {manifest.version} is not a release on this branch"
    if target.stable is None or target.rejected is not None:
        return f"{target.tag.name} is not a stable release"
    failed = [c for c in verify_release(git, trust, target) if not c.ok]
    if failed:
        return f"{target.tag.name} does not verify: {failed[0].subject}: {failed[0].detail}"
    path = manifest_path(model)
    ours, theirs = (
        {e for e in g.tree_entries(git, rev, model_dir(model)) if not e.endswith(f"\t{path}")}
        for rev in (commit, target.commit)
    )
    if ours != theirs:
        differ = sorted(e.split("\t", 1)[1] for e in ours ^ theirs)
        return f"the folder differs from {target.tag.name}: {', '.join(differ[:5])}"
    stable, _ = current(git, model, target.commit)
    aside = {"serial", "rollback"}
    if manifest.model_dump(exclude=aside) != stable.model_dump(exclude=aside):
        return f"release.yaml differs from {target.tag.name} beyond serial and rollback"
    return None


@dataclass(frozen=True)
class RevertDryRun:
    """`revert --dry-run`: the plan (its change None: nothing to do, and its
    note says why), the diff it would make, and a note on the base it was
    judged on; `to_json` is its `--json` document."""

    plan: RevertPlan
    diff: str  # empty when there is nothing to do
    note: str | None

    @property
    def changes(self) -> bool:
        return self.plan.change is not None

    def to_json(self) -> dict[str, object]:
        if not self.changes:
            return {"changed": False, "note": self.plan.note}
        return {**self.plan.summary(), "dry_run": True, "diff": self.diff, "note": self.note}


def dry_run(git: g.Git, model: str, *, to: str | None, reason: str, push: bool) -> RevertDryRun:
    """`preview`, with the diff the revert would make."""
    p, note = preview(git, model, to=to, reason=reason, push=push)
    return RevertDryRun(p, diff(git, p) if p.change is not None else "", note)
