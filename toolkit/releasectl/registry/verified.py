"""What verifies in a model's history, remembered on disk.

A verdict on an immutable object (a tag object, and what it points at) under
one trust root never changes, so it is kept in the repository's git
directory, one file per trust root and model:
`.git/releasectl/verdicts/<trust root key>/<model>.json`. A change of the
trust root changes the key, so nothing judged under the old one is reused;
`git gc` leaves object ids, and so the cache, as they are. A second `history`
therefore costs one small file read instead of a signature check per tag.

A verdict is about a name bound to an object, never the object alone: the
same signed tag object under another ref name is another question (the name
inside the object must equal the ref), so every key holds both
(docs/ARCHITECTURE.md, "Trust").
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from releasectl import git as g
from releasectl import trailers, view
from releasectl.errors import Refused
from releasectl.files import write_atomic
from releasectl.names import manifest_path, model_dir, parse_version
from releasectl.registry.history import (
    History,
    Release,
    RevertRecord,
    TagRef,
    prefetch_tags,
    release_commit,
    revert_records,
    verify_tag,
)
from releasectl.signing import TrustRoot, commit_verdicts
from releasectl.verdict import Verdict

if TYPE_CHECKING:
    from semver import Version

_PARALLEL = 8  # signature checks in flight at once (each is an ssh-keygen run)
# 2: keys bind the ref name to its object; format 1 keyed by the object alone,
# so a genuine tag object copied under another name was "verified" from it.
_FORMAT = 2
# Failures that can come from the machine rather than the object: never remembered.
_TRANSIENT = ("bad signature", "unverifiable", "not found", "not judged")


@dataclass(frozen=True)
class ReleaseVerdict:
    """A release and its marks under one trust root: a verdict on each."""

    release: Verdict
    stable: Verdict | None = None  # None: no stable tag at all
    rejected: Verdict | None = None


@dataclass
class _Cache:
    path: Path
    entries: dict[str, list[object]] = field(default_factory=dict)
    dirty: bool = False
    session: dict[str, Verdict] = field(default_factory=dict)  # not kept on disk

    def get(self, key: str) -> Verdict | None:
        if key in self.session:
            return self.session[key]
        entry = self.entries.get(key)
        if entry is None:
            return None
        ok, problem = entry
        if ok:
            return Verdict.good()
        return Verdict.bad(problem if isinstance(problem, str) else "does not verify")

    def put(self, key: str, judged: Verdict) -> None:
        """Remember a verdict, unless it may say more about this machine than
        about the object (a signature that could not be checked, e.g. a failing
        ssh-keygen): such a failure is judged again next time."""
        transient = any(word in (judged.problem or "") for word in _TRANSIENT)
        if not judged.reached or transient:
            self.session[key] = judged
            return
        self.entries[key] = [judged.ok, judged.problem]
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        doc = {"format": _FORMAT, "verdicts": self.entries}
        write_atomic(self.path, json.dumps(doc), durable=False)  # a cache: judged again if lost


def _open(git: g.Git, trust: TrustRoot, model: str) -> _Cache:
    path = g.git_dir(git) / "releasectl" / "verdicts" / trust.key[:32] / f"{model}.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return _Cache(path)
    entries = doc.get("verdicts") if isinstance(doc, dict) else None
    if doc.get("format") != _FORMAT or not isinstance(entries, dict):
        return _Cache(path)
    return _Cache(path, entries)


def _chunks(items: list[TagRef], size: int) -> Iterable[list[TagRef]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _judge_tags(git: g.Git, trust: TrustRoot, tags: list[TagRef]) -> dict[str, Verdict]:
    """Strict tag checks, a few side by side (two cores; an ssh-keygen run each)."""
    out: dict[str, Verdict] = {}
    for chunk in _chunks(tags, _PARALLEL):
        prefetch_tags(git, trust, chunk)
        for tag in chunk:
            out[tag.name] = verify_tag(git, trust, tag)
    return out


def _release_commits(git: g.Git, history: History, commits: list[str]) -> dict[str, str]:
    """The commit that vouches for the folder at each release commit (see
    registry.release_commit), with one git call for the common case: a
    non-merge release commit that itself changed the folder vouches for itself."""
    parents = g.parent_counts(git, commits)
    changed = set(history.branch_commits)
    out: dict[str, str] = {}
    for commit in commits:
        if parents.get(commit) == 1 and commit in changed:
            out[commit] = commit
        else:
            out[commit] = release_commit(git, history.model, commit)
    return out


def _judge_releases(
    git: g.Git, trust: TrustRoot, history: History, releases: list[Release]
) -> dict[str, Verdict]:
    """Every check of verify_release for many releases, batched: tag signatures
    side by side, commit signatures in one git call, manifests in another."""
    tags = _judge_tags(git, trust, [r.tag for r in releases])
    sources = _release_commits(git, history, [r.commit for r in releases if tags[r.tag.name].ok])
    by_commit = commit_verdicts(git, trust, sorted(set(sources.values())))
    path = manifest_path(history.model)
    texts = g.read_blobs(git, [f"{r.commit}:{path}" for r in releases])
    out: dict[str, Verdict] = {}
    for release, text in zip(releases, texts, strict=True):
        out[release.tag.name] = _judge_one(release, tags, sources, by_commit, text)
    return out


def _judge_one(
    release: Release,
    tags: dict[str, Verdict],
    sources: dict[str, str],
    by_commit: dict[str, Verdict],
    text: str | None,
) -> Verdict:
    tag = tags[release.tag.name]
    if not tag.ok:
        return tag
    source = sources[release.commit]
    verdict = by_commit[source]
    if not verdict.ok:
        return Verdict.bad(f"commit {source[:12]}: {verdict.detail}", reached=verdict.reached)
    if text is None:
        return Verdict.bad("no release.yaml at the tagged commit")
    from releasectl.errors import BadInput
    from releasectl.manifest import schema as mf

    try:
        declared = mf.load(text, manifest_path(release.model), model=release.model)
    except BadInput as exc:
        return Verdict.bad(exc.message)
    if declared.version != release.version:
        return Verdict.bad(f"the manifest declares {declared.version}")
    return Verdict.good()


def _key(kind: str, tag: TagRef, commit: str = "") -> str:
    """A cache key: the ref name bound to its object (and, for a mark, the
    commit of the release it marks)."""
    return " ".join(part for part in (kind, tag.name, tag.object, commit) if part)


def verify_history(
    git: g.Git,
    trust: TrustRoot,
    history: History,
    releases: list[Release] | None = None,
) -> dict[str, ReleaseVerdict]:
    """version -> what verifies of each release (all of `history`'s, or just
    `releases`) and its marks. Remembered on disk: only objects never judged
    under this trust root are checked."""
    wanted = history.releases if releases is None else releases
    cache = _open(git, trust, history.model)
    todo = [r for r in wanted if cache.get(_key("r", r.tag)) is None]
    if todo:
        judged_releases = _judge_releases(git, trust, history, todo)
        for release in todo:
            cache.put(_key("r", release.tag), judged_releases[release.tag.name])
    marks = [
        (release, mark)
        for release in wanted
        for mark in (release.stable, release.rejected)
        if mark is not None and cache.get(_key("m", mark, release.commit)) is None
    ]
    judged_marks = _judge_tags(git, trust, [mark for _, mark in marks]) if marks else {}
    for release, mark in marks:
        judged = judged_marks[mark.name]
        if judged.ok and mark.commit != release.commit:
            judged = Verdict.bad("points at another commit than the release tag")
        cache.put(_key("m", mark, release.commit), judged)
    cache.save()

    def mark_verdict(release: Release, mark: TagRef | None) -> Verdict | None:
        return None if mark is None else cache.get(_key("m", mark, release.commit))

    return {
        r.version: ReleaseVerdict(
            release=cache.get(_key("r", r.tag)) or Verdict.bad("not judged", reached=False),
            stable=mark_verdict(r, r.stable),
            rejected=mark_verdict(r, r.rejected),
        )
        for r in wanted
    }


def highest_verified(git: g.Git, trust: TrustRoot, history: History) -> Version | None:
    """The highest version among releases that verify, checked highest first
    and stopping at the first that holds: a hand-made tag raises no bar."""
    for candidate in sorted(history.releases, key=lambda r: parse_version(r.version), reverse=True):
        if verify_history(git, trust, history, [candidate])[candidate.version].release.ok:
            return parse_version(candidate.version)
    return None


def counts_as_stable(verdict: ReleaseVerdict) -> bool:
    """A rollback target: the release and its stable mark verify, and no
    verified rejected mark stands against it (docs/ARCHITECTURE.md, "Trust")."""
    rejected = verdict.rejected is not None and verdict.rejected.ok
    stable = verdict.stable is not None and verdict.stable.ok
    return verdict.release.ok and stable and not rejected


def last_stable(
    git: g.Git, trust: TrustRoot, history: History
) -> tuple[Release | None, list[tuple[Release, ReleaseVerdict]]]:
    """The newest release on the branch that counts as stable, verifying newest
    first and stopping at the first that holds; also the candidates passed over
    because their marks or release do not verify (to report, never to obey)."""
    passed_over: list[tuple[Release, ReleaseVerdict]] = []
    for release in history.releases:
        if release.position is None or release.stable is None:
            continue
        verdict = verify_history(git, trust, history, [release])[release.version]
        if counts_as_stable(verdict):
            return release, passed_over
        if _ignored_tags(release, verdict) or not verdict.release.ok:
            passed_over.append((release, verdict))
    return None, passed_over


def verify_commits(
    git: g.Git, trust: TrustRoot, model: str, commits: list[str]
) -> dict[str, Verdict]:
    """Signature verdicts on commits (e.g. reverts), remembered like the rest."""
    if not commits:
        return {}  # no cache file to read at all
    cache = _open(git, trust, model)
    todo = [c for c in commits if cache.get(f"c {c}") is None]
    for commit, verdict in commit_verdicts(git, trust, todo).items() if todo else ():
        cache.put(f"c {commit}", verdict)
    cache.save()
    return {c: cache.get(f"c {c}") or Verdict.bad("not judged", reached=False) for c in commits}


@dataclass(frozen=True)
class ReleaseRow:
    """A release in `history`: what verifies of it and its marks."""

    release: Release
    verdict: ReleaseVerdict
    ignored: list[str]  # "tag: why" for each of its marks that exists but does not verify
    live: bool  # the local target serves it

    @property
    def stable(self) -> bool:
        return self.verdict.stable is not None and self.verdict.stable.ok

    @property
    def rejected(self) -> bool:
        return self.verdict.rejected is not None and self.verdict.rejected.ok

    def to_json(self) -> dict[str, object]:
        row = self.release.summary()
        row.update(
            kind="release",
            verified=self.verdict.release.ok,
            problem=self.verdict.release.problem,
            stable=self.stable,
            rejected=self.rejected,
            ignored=self.ignored,
            live=self.live,
        )
        return row


@dataclass(frozen=True)
class RevertRow:
    """A revert commit in `history`, as its message tells it, and its signature's verdict."""

    revert: RevertRecord
    verdict: Verdict

    def to_json(self) -> dict[str, object]:
        r = self.revert
        return {
            "kind": "revert",
            "commit": r.commit,
            "from": r.from_version,
            "to": r.to_version,
            "at": r.at,
            "by": r.by,
            "reason": r.reason,
            "verified": self.verdict.ok,
            "problem": self.verdict.problem,
        }


@dataclass(frozen=True)
class HistoryReport:
    model: str
    rows: list[ReleaseRow | RevertRow]  # newest first: releases and reverts, in branch order
    ignored: list[str]  # "tag: why" for every mark that exists but does not verify
    live: dict[str, object] | None  # what the local target serves, when it knows

    def to_json(self) -> list[dict[str, object]]:
        return [row.to_json() for row in self.rows]


def history_report(
    git: g.Git, trust: TrustRoot, history: History, live: dict[str, object] | None
) -> HistoryReport:
    """`releasectl history`: every release with what verifies of it, and the
    reverts on the branch, newest first."""
    verdicts = verify_history(git, trust, history)
    reverts = revert_records(git, history)
    revert_verdicts = verify_commits(git, trust, history.model, [r.commit for r in reverts])
    order = {commit: i for i, commit in enumerate(history.branch_commits)}
    keyed: list[tuple[tuple[int, int], ReleaseRow | RevertRow]] = []
    ignored: list[str] = []
    for index, release in enumerate(history.releases):
        verdict = verdicts[release.version]
        passed_over = [f"{tag}: {why}" for tag, why in _ignored_tags(release, verdict)]
        ignored += passed_over
        position = release.position if release.position is not None else len(order) + index
        row = ReleaseRow(release, verdict, passed_over, _serves(live, release))
        keyed.append(((position, 1), row))
    for revert in reverts:
        place = (order.get(revert.commit, len(order)), 0)
        keyed.append((place, RevertRow(revert, revert_verdicts[revert.commit])))
    keyed.sort(key=lambda item: item[0])
    return HistoryReport(history.model, [row for _, row in keyed], ignored, live)


def _serves(live: dict[str, object] | None, release: Release) -> bool:
    """Whether the target serves this release: its own state, or a later state that
    declares its version, such as a revert that restored it (the deploy gate makes a
    state that declares a released version pin that release's bundle)."""
    if not live:
        return False
    return live.get("commit") == release.commit or live.get("version") == release.version


def ignored_marks(judged: list[tuple[Release, ReleaseVerdict]]) -> list[str]:
    """ "tag: why" for every mark among `judged` that exists but does not verify."""
    return sorted({f"{tag}: {why}" for r, v in judged for tag, why in _ignored_tags(r, v)})


def _ignored_tags(release: Release, verdict: ReleaseVerdict) -> list[tuple[str, str]]:
    out = []
    for mark, judged in ((release.stable, verdict.stable), (release.rejected, verdict.rejected)):
        if mark is not None and judged is not None and not judged.ok:
            out.append((mark.name, judged.problem or "does not verify"))
    return out


UNSIGNED_TRAILER = trailers.UNSIGNED_SOURCES


def unsigned_sources(
    git: g.Git, trust: TrustRoot, history: History, base: str
) -> list[view.Unsigned]:
    """The commits on `base`'s first-parent line that changed the model's
    folder since its newest verified release (or ever) and that no release
    signer signed; a forge's clean merge of signed commits counts as signed."""
    since = None
    for candidate in history.releases:  # newest first
        if candidate.position is None:
            continue
        if verify_history(git, trust, history, [candidate])[candidate.version].release.ok:
            since = candidate.commit
            break
    return view.unsigned(git, base, [model_dir(history.model)], since=since)


def allowed_unsigned_sources(
    git: g.Git, trust: TrustRoot, history: History, base: str, allow: bool
) -> tuple[str, ...]:
    """The unsigned source commits a release goes over: refused (exit 3) and
    named unless the operator allows them, and then recorded in the release
    commit's trailer (docs/ARCHITECTURE.md, "Trust")."""
    unsigned = unsigned_sources(git, trust, history, base)
    if unsigned and not allow:
        shown = ", ".join(f"{u.commit[:12]} ({u.verdict.detail})" for u in unsigned[:5])
        raise Refused(
            f"{model_dir(history.model)} was changed by commits not signed by a release signer "
            f"since the last verified release: {shown}",
            "re-commit the change signed, or review it and pass --allow-unsigned-sources "
            "(the release commit records their ids)",
        )
    return tuple(dict.fromkeys(u.commit for u in unsigned))
