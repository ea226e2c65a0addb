"""Landing a change: one signed commit (optional) plus signed tags
(docs/ARCHITECTURE.md, "Landing a change").

Nothing becomes visible until every signature has been verified: the commit
is built in a private index, signed and verified as a dangling object; tags
are created and verified; only then does the branch move, by compare-and-swap.
Any failure deletes the tags this call made. With `push`, the change is built
on the remote's tip and pushed atomically; if the remote moved meanwhile the
change is planned again on the new tip (never forced).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from releasectl import git as g
from releasectl.errors import OperationFailed, PushRefused, Refused, ReleasectlError
from releasectl.registry import journal as jr
from releasectl.registry import sharing
from releasectl.registry.history import TagRef, discard_prefetched
from releasectl.signing import TrustRoot, check_signing_key, commit_verdicts, tag_verdict

MAX_PUSH_ATTEMPTS = 5
INDEX_LOCK_WAIT_S = 5.0


@dataclass(frozen=True)
class NewTag:
    name: str
    message: str
    target: str | None = None  # None: the change's new commit


@dataclass(frozen=True)
class Change:
    """What a command wants to land on top of `base`."""

    base: str
    message: str | None = None  # None: no commit, tags only
    folder: str | None = None  # replaced by `folder_tree` when given
    folder_tree: str | None = None
    files: dict[str, str] = field(default_factory=dict)  # path -> new text
    # More folders replaced by a tree (None: emptied) before `files` are written:
    # a kubernetes model's rendered state (docs/ARCHITECTURE.md, "Kubernetes").
    trees: tuple[tuple[str, str | None], ...] = ()
    tags: tuple[NewTag, ...] = ()
    sync_paths: tuple[str, ...] = ()  # working-tree paths to refresh afterwards


@dataclass(frozen=True)
class Landed:
    commit: str | None
    tags: tuple[str, ...]
    pushed_to: str | None = None
    note: str | None = None  # e.g. that the local branch could not be fast-forwarded
    # The remote already had every ref exactly so: another run made the very
    # same signed objects (SSH signatures are deterministic) and pushed first.
    already_there: bool = False
    # Registry tags this clone had and the remote lacked, pushed with the change.
    carried: tuple[str, ...] = ()


Planner = Callable[[str], Change | None]  # base commit -> change, or None when nothing is to do


def head(git: g.Git) -> str:
    base = g.rev_parse(git, "HEAD")
    if base is None:
        raise g.unborn_head(git) or OperationFailed("HEAD has no commit")
    return base


def require_clean(git: g.Git, path: str) -> None:
    dirty = g.dirty_paths(git, path)
    if dirty:
        raise OperationFailed(
            f"{path} has uncommitted changes ({', '.join(dirty[:3])})",
            "commit or stash them first",
        )


def require_branch(git: g.Git) -> str:
    branch = g.current_branch(git)
    if branch is None:
        raise OperationFailed("HEAD is detached", "check out the branch to release on")
    return branch


def _make_commit(git: g.Git, trust: TrustRoot, change: Change) -> str | None:
    if change.message is None:
        return None
    tree = g.write_tree_with(
        git, change.base, change.folder or "", change.folder_tree, change.files, change.trees
    )
    try:
        commit = g.commit_tree(git, tree, [change.base], change.message, sign=True)
    except g.GitError as exc:
        raise OperationFailed(
            f"signing the commit failed: {_last_line(exc.output)}; nothing was written",
            "check user.signingkey",
        ) from None
    verdict = commit_verdicts(git, trust, [commit])[commit]
    if not verdict.ok:
        raise OperationFailed(
            f"the new commit's signature does not verify ({verdict.detail}); nothing was written",
            "check user.signingkey and that its key is in the allowed signers",
        )
    return commit


def _make_tags(git: g.Git, trust: TrustRoot, change: Change, commit: str | None) -> list[str]:
    made: list[str] = []
    email = g.config_get(git, "user.email") or ""
    try:
        for tag in change.tags:
            target = tag.target or commit
            assert target is not None, "a tag on the new commit needs a commit"
            try:
                g.create_signed_tag(git, tag.name, target, tag.message)
            except g.GitError as exc:
                raise OperationFailed(
                    f"signing the tag {tag.name} failed: {_last_line(exc.output)}; "
                    "nothing was written",
                    "check user.signingkey",
                ) from None
            made.append(tag.name)
            # git can exit 0 and leave an unsigned tag when ssh-keygen fails.
            verdict = tag_verdict(git, trust, f"refs/tags/{tag.name}", email)
            if not verdict.ok:
                raise OperationFailed(
                    f"the new tag {tag.name} does not verify ({verdict.detail}); "
                    "nothing was written",
                    "check user.signingkey, user.email and the allowed signers",
                )
    except BaseException:
        for name in made:
            g.delete_tag(git, name)
        raise
    return made


def wait_for_index(git: g.Git, timeout: float = INDEX_LOCK_WAIT_S) -> None:
    """Another git process holds the index: wait briefly, then refuse with
    nothing written (a branch that moved while its working tree could not
    follow would leave the index holding the reverse change)."""
    lock = g.git_dir(git) / "index.lock"
    deadline = time.monotonic() + timeout
    while lock.exists():
        if time.monotonic() >= deadline:
            raise OperationFailed(
                f"another git process holds {lock} (waited {timeout:.0f} s); nothing was written",
                "let it finish and run again; remove the file only if no git process is running",
            )
        time.sleep(0.05)


def land_local(
    git: g.Git, trust: TrustRoot, branch: str, change: Change, *, incident: bool = False
) -> Landed:
    check_signing_key(git)
    change, notes = _clear(git, change, None, None, incident)
    if change.sync_paths:
        wait_for_index(git)
    commit = _make_commit(git, trust, change)
    _begin(git, Journal(branch, change.base, commit, _targets(change, commit), change.sync_paths))
    tags = _tags_or_end(git, trust, change, commit)
    note: str | None = None
    if commit is not None:
        if not g.update_ref(git, f"refs/heads/{branch}", commit, change.base, "releasectl"):
            for name in tags:
                g.delete_tag(git, name)
            _end(git)
            raise OperationFailed(f"{branch} moved while the change was made; nothing was written")
        note = _sync(git, commit, change.sync_paths)
    _end(git)
    notes += [note] if note else []
    return Landed(commit, tuple(tags), note="; ".join(notes) or None)


def _tags_or_end(git: g.Git, trust: TrustRoot, change: Change, commit: str | None) -> list[str]:
    """Make the change's tags; a failure has already removed them, so the
    journal goes too (nothing is left to recover)."""
    try:
        return _make_tags(git, trust, change, commit)
    except ReleasectlError:
        _end(git)
        raise


def _sync(git: g.Git, commit: str, paths: tuple[str, ...]) -> str | None:
    """Bring the working tree of `paths` to `commit`; a note when it cannot."""
    try:
        for path in paths:
            g.sync_worktree(git, commit, path)
    except g.GitError as exc:
        # The change has landed; only the working copy lags (a lock taken meanwhile).
        return (
            f"landed, but the working tree could not follow ({exc}): "
            f"run `git checkout -- {' '.join(paths)}`"
        )
    return None


# --- the landing journal (registry/journal.py) ---------------------------------------
#
# A write is a few steps (commit object, tags, branch, push, working tree), and
# a process can be killed between any two. Before the first visible step the
# plan is written to .git/releasectl/landing.json; it is removed when the
# landing is complete or has been undone. A later write command reads it
# first (`recover`): if the branch (or the remote) has the change, it finishes
# the rest; if not, it deletes the tags the dead run made, which nobody else
# can have seen. Either way it says what it did (docs/ARCHITECTURE.md,
# "Landing a change").

Journal = jr.Journal
_begin, _end, pending_recovery = jr.begin, jr.end, jr.pending


def _targets(change: Change, commit: str | None) -> dict[str, str]:
    return {tag.name: tag.target or commit or "" for tag in change.tags}


def recover(git: g.Git) -> list[str]:
    """Finish or undo what a killed write left (see the landing journal);
    returns what was done, for the command to say. A journal that is not
    valid is set aside and nothing in it is run."""
    journal, notes = jr.read(git)
    if journal is None:
        return notes
    landed = jr.landed_remotely(git, journal) if journal.remote else jr.landed_locally(git, journal)
    if landed:
        on_branch = journal.commit is not None and g.current_branch(git) == journal.branch
        if on_branch and journal.remote:
            # As a push does after it succeeds: bring the local branch along.
            git.run("merge", "--ff-only", "--quiet", str(journal.commit), check=False)
        elif on_branch and g.rev_parse(git, f"refs/heads/{journal.branch}") == journal.commit:
            _sync(git, str(journal.commit), journal.sync_paths)
        notes.append(
            "finished a change an interrupted run had landed"
            + (f" ({', '.join(journal.tags)})" if journal.tags else "")
        )
    else:
        removed = [name for name, target in journal.tags.items() if jr.ours(git, name, target)]
        for name in removed:
            g.delete_tag(git, name)
        notes.append(
            "undid a change an interrupted run had not landed"
            + (f": removed {', '.join(removed)}, never published" if removed else "")
        )
    _end(git)
    return notes


def land_on_new_branch(git: g.Git, trust: TrustRoot, branch: str, change: Change) -> Landed:
    """The change's commit on a new branch; the current branch and the working
    tree are not touched."""
    check_signing_key(git)
    commit = _make_commit(git, trust, change)
    assert commit is not None, "a new branch needs a commit"
    if not g.update_ref(git, f"refs/heads/{branch}", commit, g.ZERO, "releasectl propose"):
        raise OperationFailed(f"branch {branch} already exists", "delete it or pick a version")
    return Landed(commit, ())


def land_pushed(
    git: g.Git,
    trust_at: Callable[[str], TrustRoot],
    branch: str,
    plan: Planner,
    model: str,
    *,
    carry_local: bool = False,
    leave_local: bool = False,
    incident: bool = False,
) -> Landed | None:
    """Plan on the remote's tip, push atomically, re-plan when the remote moved.
    Returns None when, on the remote's current state, there is nothing to do
    and no registry tag to publish.

    Every push also carries the model's registry tags that the remote lacks
    (verified, on the pushed branch), atomically with the branch, so that
    every clone sees one registry (docs/ARCHITECTURE.md, "The registry").
    With `carry_local`, a branch ahead of the remote is planned on (and its
    commits pushed with the change); with `leave_local`, the change is planned
    on the remote's tip whatever the local branch holds, and the branch is
    fast-forwarded only when it can be (the unattended watcher: its record must
    reach the remote without anyone's unpushed work, docs/ARCHITECTURE.md,
    "Revert"); otherwise unpushed commits are refused, so that an incident's
    revert never publishes unrelated work.

    With `incident` (a revert), nobody without a trusted key can stop the
    change: a tag that differs on the remote, or a new tag whose name is
    taken or blocked there, is named in the landing's note with the command
    that removes it, and the commit lands without that tag (it records the
    rejection in its trailers). Otherwise they refuse (docs/ARCHITECTURE.md,
    "Trust")."""
    check_signing_key(git)
    remote, remote_branch = g.upstream(git, branch)
    tracking = f"refs/remotes/{remote}/{remote_branch}"
    for _ in range(MAX_PUSH_ATTEMPTS):
        local = sharing.local_tags(git, model)  # a local failure is not the remote's
        # A remote that fails or hangs here did not take the push: PushRefused,
        # which the watcher retries (docs/ARCHITECTURE.md, "Errors by kind").
        try:
            there = sharing.remote_registry(git, remote, model)
            remote_tags = there.tags
            notes = _conflicts(remote, local, remote_tags, incident)
            g.fetch(git, remote, [f"+refs/heads/{remote_branch}:{tracking}"])
            known = {f"refs/tags/{tag.name}" for tag in local}
            # By exact name, never by wildcard
            # (docs/ARCHITECTURE.md, "One registry on every clone").
            sharing.fetch_names(
                git, remote, {r: o for r, o in remote_tags.items() if r not in known}
            )
        except g.GitError as exc:
            raise PushRefused(f"{remote} could not be read: {exc.line()}") from None
        discard_prefetched()  # plan from what this fetch brought
        tip = g.rev_parse(git, tracking)
        if tip is None:
            raise OperationFailed(f"{remote} has no branch {remote_branch}")
        base = _push_base(git, branch, remote, remote_branch, tip, carry_local, leave_local)
        change = plan(base)
        if change is not None:
            change, blocked = _clear(git, change, there, remote, incident)
            notes += blocked
        trust = trust_at(base)
        commit = _make_commit(git, trust, change) if change is not None else None
        if change is not None:
            targets = _targets(change, commit)
            _begin(git, Journal(branch, base, commit, targets, (), remote, remote_branch))
        tags = _tags_or_end(git, trust, change, commit) if change is not None else []
        # The branch moves when there is a commit, or when local commits are carried.
        new_tip = commit or base
        refspecs = [f"refs/tags/{name}:refs/tags/{name}" for name in tags]
        if new_tip != tip:
            refspecs.insert(0, f"{new_tip}:refs/heads/{remote_branch}")
        carried = [
            tag
            for tag in sharing.publishable(
                git,
                trust,
                sharing.local_tags(git, model),
                remote_tags,
                new_tip,
                exclude=frozenset(tags),
            ).tags
            if there.in_the_way(tag.name) is None
        ]
        if not refspecs and not carried:
            return None
        try:  # a push that hangs is one refused (docs/ARCHITECTURE.md, "Errors by kind")
            result = g.push(git, remote, refspecs + sharing.refspecs(carried))
        except g.GitTimeout as exc:
            result = g.Result(exc.returncode, "", exc.line())
        if result.returncode == 0:
            _end(git)
            if commit is not None and g.current_branch(git) == branch:
                local_tip = g.rev_parse(git, branch)
                merged = (
                    git.run("merge", "--ff-only", "--quiet", commit, check=False)
                    if local_tip is None or g.is_ancestor(git, local_tip, commit)
                    else None
                )
                if merged is None or merged.returncode != 0:
                    notes.append(
                        f"pushed, but {branch} could not be fast-forwarded: run `git pull`"
                    )
            already = _all_up_to_date(result.stdout)
            return Landed(
                commit,
                tuple(tags),
                pushed_to=remote,
                note="; ".join(notes) or None,
                already_there=already,
                carried=tuple(tag.name for tag in carried),
            )
        for name in tags:
            g.delete_tag(git, name)
        _end(git)
        if not _rejected(result.stdout + result.stderr):
            last = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise PushRefused(f"push to {remote} failed: {' '.join(last)}")
    raise PushRefused(
        f"{remote} kept moving: gave up after {MAX_PUSH_ATTEMPTS} attempts; nothing was pushed"
    )


def _push_base(
    git: g.Git,
    branch: str,
    remote: str,
    remote_branch: str,
    tip: str,
    carry_local: bool,
    leave_local: bool = False,
) -> str:
    """The commit a push plans on: the remote's tip, or the local branch when it
    carries local commits on top of it (a release carries its sources). With
    `leave_local`, always the remote's tip, whatever the branch holds."""
    local = g.rev_parse(git, branch)
    if leave_local or local is None or g.is_ancestor(git, local, tip):
        return tip
    if not (carry_local and g.is_ancestor(git, tip, local)):
        raise OperationFailed(
            f"{branch} has commits that {remote}/{remote_branch} does not have",
            "push or drop them first, or run without --push"
            if not carry_local
            else "pull (rebase) first",
        )
    return local


def _conflicts(
    remote: str, local: list[TagRef], remote_tags: dict[str, str], incident: bool
) -> list[str]:
    """Tags that differ between this clone and the remote: refused, or for an
    incident named and left alone."""
    if not incident:
        sharing.refuse_conflicts(remote, local, remote_tags)
        return []
    return [
        f"{name} differs on {remote} and is left alone (see `releasectl doctor`)"
        for name in sharing.differing(local, remote_tags)
    ]


def _clear(
    git: g.Git,
    change: Change,
    there: sharing.RemoteRegistry | None,
    remote: str | None,
    incident: bool,
) -> tuple[Change, list[str]]:
    """The change without the tags whose names are taken or blocked (incident),
    or a one-line refusal naming the ref in the way and the fix."""
    blocked = sharing.in_the_way(git, [tag.name for tag in change.tags], there, remote)
    if not blocked:
        return change, []
    if not incident or change.message is None:
        first = blocked[0]
        raise Refused(
            f"{first.tag} cannot be made: {first.line()}; nothing was written",
            f"an admin removes it: `{first.fix()}`",
        )
    names = {b.tag for b in blocked}
    notes = [
        f"{b.tag} was not made: {b.line()}; the revert commit records the rejection "
        f"(an admin removes it: `{b.fix()}`)"
        for b in blocked
    ]
    return replace(change, tags=tuple(t for t in change.tags if t.name not in names)), notes


# --- dry runs: the same refusals, nothing written ---------------------------------


def dry_run_base(
    git: g.Git, branch: str, model: str, *, push: bool, carry_local: bool, incident: bool = False
) -> tuple[str, str | None]:
    """The base a landing would plan its change on, with the refusals a push
    makes before planning, in its order; nothing is fetched or written (the
    remote is asked with ls-remote). Returns (base, note): the note says when
    the remote has moved to a commit this clone lacks, which the real run
    plans on instead."""
    if not push:
        return head(git), None
    check_signing_key(git)
    remote, remote_branch = g.upstream(git, branch)
    remote_tags = sharing.remote_registry(git, remote, model).tags
    _conflicts(remote, sharing.local_tags(git, model), remote_tags, incident)
    found = g.remote_refs(git, remote, [f"refs/heads/{remote_branch}"])
    tip = found.get(f"refs/heads/{remote_branch}")
    if tip is None:
        raise OperationFailed(f"{remote} has no branch {remote_branch}")
    if g.rev_parse(git, tip) is None:
        note = (
            f"{remote}/{remote_branch} is at {tip[:12]}, which this clone has not fetched: "
            "the real run plans on it"
        )
        return head(git), note
    return _push_base(git, branch, remote, remote_branch, tip, carry_local), None


def dry_run_landing(git: g.Git, *, push: bool, sync: bool) -> None:
    """The refusals a local landing makes after planning, before it writes: a
    usable signing key, and an index that no other git process holds."""
    if push:
        return  # land_pushed checked the key before planning (dry_run_base)
    check_signing_key(git)
    if sync:
        wait_for_index(git)


def _all_up_to_date(porcelain: str) -> bool:
    flags = [line[0] for line in porcelain.splitlines() if "\t" in line and line[:1] in "=*+-!"]
    return bool(flags) and all(flag == "=" for flag in flags)


def _rejected(output: str) -> bool:
    """A rejection we can cure by planning again (the remote moved), as
    opposed to a network or permission failure."""
    return any(
        word in output
        for word in ("[rejected]", "non-fast-forward", "fetch first", "already exists", "atomic")
    )


def _last_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("error: ").removeprefix("fatal: ") if lines else "no output"
