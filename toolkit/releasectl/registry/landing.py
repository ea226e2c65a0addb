"""Landing a change: one signed commit (optional) plus signed tags.

Nothing becomes visible until every signature has been verified: the commit
is built in a private index, signed and verified as a dangling object; tags
are created and verified; only then does the branch move, by compare-and-swap.
Any failure deletes the tags this call made. With `push`, the change is built
on the remote's tip and pushed atomically; if the remote moved meanwhile the
change is planned again on the new tip (never forced).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from releasectl import git as g
from releasectl.errors import OperationFailed, ReleasectlError
from releasectl.names import model_tag_refspecs
from releasectl.registry import history as registry
from releasectl.registry import sharing
from releasectl.signing import TrustRoot, check_commits, check_signing_key, check_tag

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
    verdict = check_commits(git, trust, [commit])[commit]
    if not verdict.ok:
        raise OperationFailed(
            f"the new commit's signature does not verify ({verdict.reason}); nothing was written",
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
            verdict = check_tag(git, trust, f"refs/tags/{tag.name}", email)
            if not verdict.ok:
                raise OperationFailed(
                    f"the new tag {tag.name} does not verify ({verdict.reason}); "
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


def land_local(git: g.Git, trust: TrustRoot, branch: str, change: Change) -> Landed:
    check_signing_key(git)
    if change.sync_paths:
        wait_for_index(git)
    commit = _make_commit(git, trust, change)
    _begin(git, Journal(branch, change.base, commit, _targets(change, commit), change.sync_paths))
    tags = _tags_or_end(git, trust, change, commit)
    note = None
    if commit is not None:
        if not g.update_ref(git, f"refs/heads/{branch}", commit, change.base, "releasectl"):
            for name in tags:
                g.delete_tag(git, name)
            _end(git)
            raise OperationFailed(f"{branch} moved while the change was made; nothing was written")
        note = _sync(git, commit, change.sync_paths)
    _end(git)
    return Landed(commit, tuple(tags), note=note)


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


# --- the landing journal ----------------------------------------------------------
#
# A write is a few steps (commit object, tags, branch, push, working tree), and
# a process can be killed between any two. Before the first visible step the
# plan is written to .git/releasectl/landing.json; it is removed when the
# landing is complete or has been undone. A later write command reads it
# first (`recover`): if the branch (or the remote) has the change, it finishes
# the rest; if not, it deletes the tags the dead run made, which nobody else
# can have seen. Either way it says what it did (docs/ARCHITECTURE.md,
# "Landing a change").


@dataclass(frozen=True)
class Journal:
    branch: str
    base: str
    commit: str | None  # the new commit (None: tags only)
    tags: dict[str, str]  # tag name -> the commit it is made on
    sync_paths: tuple[str, ...] = ()
    remote: str | None = None  # set for a push
    remote_branch: str | None = None


def _targets(change: Change, commit: str | None) -> dict[str, str]:
    return {tag.name: tag.target or commit or "" for tag in change.tags}


def _journal_path(git: g.Git) -> Path:
    return g.git_dir(git) / "releasectl" / "landing.json"


def _begin(git: g.Git, journal: Journal) -> None:
    path = _journal_path(git)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".landing.{os.getpid()}")
    with tmp.open("w") as handle:
        json.dump(asdict(journal), handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def _end(git: g.Git) -> None:
    _journal_path(git).unlink(missing_ok=True)


def pending_recovery(git: g.Git) -> bool:
    return _journal_path(git).exists()


def recover(git: g.Git) -> list[str]:
    """Finish or undo what a killed write left (see the landing journal);
    returns what was done, for the command to say."""
    path = _journal_path(git)
    try:
        raw = json.loads(path.read_text())
        journal = Journal(**{**raw, "sync_paths": tuple(raw.get("sync_paths") or ())})
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError):
        path.unlink(missing_ok=True)
        return ["removed an unreadable landing journal left by an interrupted run"]
    landed = _landed_remotely(git, journal) if journal.remote else _landed_locally(git, journal)
    notes: list[str] = []
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
        removed = [name for name, target in journal.tags.items() if _ours(git, name, target)]
        for name in removed:
            g.delete_tag(git, name)
        notes.append(
            "undid a change an interrupted run had not landed"
            + (f": removed {', '.join(removed)}, never published" if removed else "")
        )
    path.unlink(missing_ok=True)
    return notes


def _ours(git: g.Git, name: str, target: str) -> bool:
    """The tag a dead run made: it exists and points at the journal's target."""
    peeled = g.rev_parse(git, f"refs/tags/{name}^{{commit}}")
    return peeled is not None and peeled == target


def _landed_locally(git: g.Git, journal: Journal) -> bool:
    if journal.commit is None:  # tags only: each is one ref write, so all or some
        return all(_ours(git, name, target) for name, target in journal.tags.items())
    tip = g.rev_parse(git, f"refs/heads/{journal.branch}")
    return tip is not None and (tip == journal.commit or g.is_ancestor(git, journal.commit, tip))


def _landed_remotely(git: g.Git, journal: Journal) -> bool:
    """An atomic push: the remote has all of it or none."""
    assert journal.remote is not None and journal.remote_branch is not None
    refs = g.remote_refs(
        git,
        journal.remote,
        [f"refs/heads/{journal.remote_branch}", *(f"refs/tags/{n}" for n in journal.tags)],
    )
    if journal.commit is None:
        return bool(journal.tags) and all(f"refs/tags/{n}" in refs for n in journal.tags)
    tip = refs.get(f"refs/heads/{journal.remote_branch}")
    if tip is None:
        return False
    if tip != journal.commit:
        tracking = f"refs/remotes/{journal.remote}/{journal.remote_branch}"
        g.fetch(git, journal.remote, [f"+refs/heads/{journal.remote_branch}:{tracking}"])
        return g.is_ancestor(git, journal.commit, tip)
    return True


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
    revert never publishes unrelated work."""
    check_signing_key(git)
    remote, remote_branch = g.upstream(git, branch)
    tracking = f"refs/remotes/{remote}/{remote_branch}"
    for _ in range(MAX_PUSH_ATTEMPTS):
        remote_tags = g.remote_refs(git, remote, sharing.patterns(model))
        sharing.refuse_conflicts(remote, sharing.local_tags(git, model), remote_tags)
        g.fetch(
            git, remote, [f"+refs/heads/{remote_branch}:{tracking}", *model_tag_refspecs(model)]
        )
        registry.discard_prefetched()  # plan from what this fetch brought
        tip = g.rev_parse(git, tracking)
        if tip is None:
            raise OperationFailed(f"{remote} has no branch {remote_branch}")
        base = _push_base(git, branch, remote, remote_branch, tip, carry_local, leave_local)
        change = plan(base)
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
        carried = sharing.publishable(
            git,
            trust,
            sharing.local_tags(git, model),
            remote_tags,
            new_tip,
            exclude=frozenset(tags),
        ).tags
        if not refspecs and not carried:
            return None
        result = g.push(git, remote, refspecs + sharing.refspecs(carried))
        if result.returncode == 0:
            _end(git)
            note = None
            if commit is not None and g.current_branch(git) == branch:
                local = g.rev_parse(git, branch)
                merged = (
                    git.run("merge", "--ff-only", "--quiet", commit, check=False)
                    if local is None or g.is_ancestor(git, local, commit)
                    else None
                )
                if merged is None or merged.returncode != 0:
                    note = f"pushed, but {branch} could not be fast-forwarded: run `git pull`"
            already = _all_up_to_date(result.stdout)
            return Landed(
                commit,
                tuple(tags),
                pushed_to=remote,
                note=note,
                already_there=already,
                carried=tuple(tag.name for tag in carried),
            )
        for name in tags:
            g.delete_tag(git, name)
        _end(git)
        if not _rejected(result.stdout + result.stderr):
            last = (result.stderr or result.stdout).strip().splitlines()[-1:]
            raise OperationFailed(f"push to {remote} failed: {' '.join(last)}")
    raise OperationFailed(
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


# --- dry runs: the same refusals, nothing written ---------------------------------


def dry_run_base(
    git: g.Git, branch: str, model: str, *, push: bool, carry_local: bool
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
    remote_tags = g.remote_refs(git, remote, sharing.patterns(model))
    sharing.refuse_conflicts(remote, sharing.local_tags(git, model), remote_tags)
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
