"""The registry: what releases a model has, which are stable or rejected, and
what a branch currently declares (docs/ARCHITECTURE.md, "The registry").

Every answer costs one `git for-each-ref` over the model's three tag prefixes
plus one first-parent `git rev-list` limited to the model's folder; order
comes from the branch's history, never from tag timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from releasectl import git as g
from releasectl.errors import BadInput, OperationFailed, Refused
from releasectl.names import (
    KINDS,
    REGISTRY_DIR,
    ModelName,
    TagName,
    manifest_path,
    model_dir,
    parse_tag,
    parse_version,
    tag_prefixes,
)
from releasectl.signing import TrustRoot, commit_verdicts, start_tag_checks, tag_verdict
from releasectl.verdict import Verdict

if TYPE_CHECKING:
    from releasectl.manifest.schema import Manifest

_REF_FIELDS = (
    "%(refname)",
    "%(objecttype)",
    "%(objectname)",
    "%(*objectname)",
    "%(tag)",
    "%(taggeremail)",
    "%(taggerdate:iso-strict)",
)


@dataclass(frozen=True)
class TagRef:
    name: str  # e.g. release/iris/v1.2.0
    annotated: bool
    object: str  # the tag object (or the commit, for a lightweight tag)
    commit: str  # what it points at
    inner_name: str  # the name written inside the tag object
    tagger: str
    date: str


@dataclass
class Release:
    model: str
    version: str
    tag: TagRef
    stable: TagRef | None = None
    rejected: TagRef | None = None
    position: int | None = None  # 0 = newest release commit on the branch; None = not on it

    @property
    def commit(self) -> str:
        return self.tag.commit

    def summary(self) -> dict[str, object]:
        return {
            "version": self.version,
            "tag": self.tag.name,
            "commit": self.commit,
            "stable": self.stable is not None,
            "rejected": self.rejected is not None,
            "signer": self.tag.tagger or None,
            "date": self.tag.date or None,
            "on_branch": self.position is not None,
        }


@dataclass
class History:
    model: str
    releases: list[Release]  # newest first: branch order, then releases not on the branch
    # The first-parent commits that changed the model's folder, newest first.
    branch_commits: list[str] = field(default_factory=list)
    # Of those, the ones whose trailers say they revert: commit -> (from, to).
    revert_trailers: dict[str, tuple[str, str]] = field(default_factory=dict)

    def get(self, version: str) -> Release | None:
        return next((r for r in self.releases if r.version == version), None)


def _parsed_refs(pending: g.Pending, under: str = "") -> list[tuple[TagName, TagRef]]:
    """The registry tags (ours by name) among a started for-each-ref over
    _REF_FIELDS, each parsed once; `under`: a private namespace the refs were
    fetched into, taken off their names."""
    refs: list[tuple[TagName, TagRef]] = []
    for row in g.rows(pending):
        refname, objtype, obj, peeled, inner, tagger, date = row
        refname = refname.removeprefix(under)
        parsed = parse_tag(refname)
        if parsed is None:
            continue
        annotated = objtype == "tag"
        ref = TagRef(
            name=refname.removeprefix("refs/tags/"),
            annotated=annotated,
            object=obj,
            commit=peeled if annotated else obj,
            inner_name=inner,
            tagger=tagger.strip("<>"),
            date=date,
        )
        refs.append((parsed, ref))
    return refs


def registry_tags(git: g.Git, patterns: list[str], under: str = "") -> list[TagRef]:
    """Every registry tag under `patterns` (e.g. tag_prefixes(model)); with
    `under`, the tags fetched below that namespace, by their own names."""
    pending = g.for_each_ref(git, patterns, _REF_FIELDS)
    return [ref for _, ref in _parsed_refs(pending, under)]


def read_tags(
    git: g.Git, model: str, pending: g.Pending | None = None
) -> dict[str, dict[str, TagRef]]:
    """kind -> version -> tag, from one for-each-ref over the model's prefixes."""
    tags: dict[str, dict[str, TagRef]] = {kind: {} for kind in KINDS}
    pending = pending or g.for_each_ref(git, tag_prefixes(model), _REF_FIELDS)
    for parsed, ref in _parsed_refs(pending):
        if parsed.model == model:
            tags[parsed.kind][parsed.version] = ref
    return tags


_started: dict[tuple[str, str, str], tuple[g.Pending, g.Pending]] = {}


def discard_prefetched() -> None:
    """Forget reads started before a fetch: a plan is made from what was read
    after the last fetch, never from a tag list that predates it."""
    for refs, commits in _started.values():
        for pending in (refs, commits):
            pending.proc.kill()
            pending.proc.communicate()
    _started.clear()


def prefetch(git: g.Git, model: str, rev: str = "HEAD") -> None:
    """Start the two reads `history` needs, so that they run while the caller
    imports what it needs next (pydantic, ruamel: ~100 ms of a command)."""
    model = ModelName.parse(model)
    rev = _commit_id(git, rev)
    key = (str(git.cwd), model, rev)
    if key not in _started:
        _started[key] = (
            g.for_each_ref(git, tag_prefixes(model), _REF_FIELDS),
            g.start_first_parent_log(git, rev, model_dir(model)),
        )


def _commit_id(git: g.Git, rev: str) -> str:
    """Prefetched reads are keyed by commit, however the caller names it."""
    if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
        return rev
    return g.rev_parse(git, rev) or rev


def history_of(git: g.Git, model: str, rev: str = "HEAD") -> History:
    model = ModelName.parse(model)
    rev = _commit_id(git, rev)
    prefetch(git, model, rev)  # the two reads are independent: side by side
    refs, commits = _started.pop((str(git.cwd), model, rev))
    tags = read_tags(git, model, refs)
    walked = [line.split("\0") for line in commits.out().splitlines() if line]
    branch_commits = [fields[0] for fields in walked]
    revert_trailers = {
        fields[0]: (fields[1], fields[2])
        for fields in walked
        if len(fields) == 3 and fields[1] and fields[2]
    }
    order = {c: i for i, c in enumerate(branch_commits)}
    releases = [
        Release(
            model,
            version,
            tag,
            stable=tags["stable"].get(version),
            rejected=tags["rejected"].get(version),
            position=order.get(tag.commit),
        )
        for version, tag in tags["release"].items()
    ]
    # Several releases may tag one commit only by mistake; the version breaks the tie.
    releases.sort(key=lambda r: (r.position is None, r.position or 0, _neg_version_key(r.version)))
    return History(model, releases, branch_commits, revert_trailers)


@dataclass(frozen=True)
class RevertRecord:
    """A revert commit on the branch, as its message tells it (verify before trusting)."""

    commit: str
    from_version: str
    to_version: str
    at: str
    by: str
    reason: str


def revert_records(git: g.Git, history: History) -> list[RevertRecord]:
    """The model's revert commits on the branch, newest first, from the walk
    `history` already made; one more git call reads their dates, committers and
    reasons, and none at all when there is no revert."""
    commits = [c for c in history.branch_commits if c in history.revert_trailers]
    if not commits:
        return []
    out = git.out("log", "--no-walk=unsorted", "--format=%H%x00%cI%x00%ce%x00%b%x1e", *commits)
    found = []
    for record in out.split("\x1e"):
        fields = record.strip("\n").split("\0")
        if len(fields) < 4:
            continue
        commit, at, by, body = fields[:4]
        reason = next(
            (
                line.removeprefix("Reason: ")
                for line in body.splitlines()
                if line.startswith("Reason: ")
            ),
            "",
        )
        from_version, to_version = history.revert_trailers[commit]
        found.append(RevertRecord(commit, from_version, to_version, at, by, reason))
    return found


def _neg_version_key(version: str) -> tuple[int, ...]:
    v = parse_version(version)
    return (-v.major, -v.minor, -v.patch, 0 if v.prerelease is None else 1)


def current(git: g.Git, model: str, rev: str = "HEAD") -> tuple[Manifest, str]:
    """The manifest a branch declares for `model` at `rev`, and its text."""
    model = ModelName.parse(model)
    path = manifest_path(model)
    text = g.read_blob(git, rev, path)
    if text is None:
        unborn = g.unborn_head(git) if rev == "HEAD" else None
        if unborn is not None:
            raise unborn
        raise BadInput(
            f"no model {model!r}: {path} does not exist at {rev}",
            f"run `releasectl new {model}`, or `releasectl list` to see the models",
        )
    # Imported here: pydantic and ruamel cost ~80 ms that `history` never needs.
    from releasectl.manifest import schema as mf

    return mf.load(text, path, model=model), text


def list_models(git: g.Git, rev: str = "HEAD") -> list[str]:
    result = git.run("ls-tree", "--name-only", "-d", f"{rev}:{REGISTRY_DIR}", check=False)
    return sorted(name for name in result.stdout.splitlines() if name)


def prefetch_tags(git: g.Git, trust: TrustRoot, tags: list[TagRef]) -> None:
    start_tag_checks(git, trust, [(t.object, t.tagger) for t in tags if t.annotated])


def verify_tag(git: g.Git, trust: TrustRoot, tag: TagRef) -> Verdict:
    """Strict: annotated, the name inside equals the ref, good signature by an
    allowed principal that is the tagger. The verdict is about the tag's name."""
    if not tag.annotated:
        return Verdict.bad("lightweight tag (not annotated, not signed)", subject=tag.name)
    if tag.inner_name != tag.name:
        return Verdict.bad(
            f"the tag object is named {tag.inner_name!r}, not {tag.name!r}", subject=tag.name
        )
    return tag_verdict(git, trust, tag.object, tag.tagger).about(tag.name)


def release_commit(git: g.Git, model: str, commit: str) -> str:
    """The commit whose signature vouches for the model's folder at `commit`:
    the commit that last changed the folder (the PR commit behind a merge)."""
    last = g.last_change(git, commit, model_dir(model))
    if last is None:
        raise OperationFailed(f"{model_dir(model)} does not exist at {commit[:12]}")
    return last


def verify_commit(git: g.Git, trust: TrustRoot, model: str, commit: str) -> Verdict:
    """The signature of the commit that vouches for the folder at `commit`."""
    source = release_commit(git, model, commit)
    verdict = commit_verdicts(git, trust, [source])[source]
    behind = "" if source == commit else f" (the change behind {commit[:12]})"
    return replace(verdict, detail=verdict.detail + behind, subject=f"commit {source[:12]}")


def _manifest_verdict(release: Release, text: str | None) -> Verdict:
    if text is None:
        return Verdict.bad("no release.yaml at the tagged commit", subject="manifest")
    from releasectl.manifest import schema as mf

    try:
        declared = mf.load(text, manifest_path(release.model), model=release.model)
    except BadInput as exc:
        return Verdict.bad(exc.message, subject="manifest")
    said = f"declares version {declared.version}"
    if declared.version != release.version:
        return Verdict.bad(f"{said}, but the tag says {release.version}", subject="manifest")
    return Verdict.good(said, subject="manifest")


def verify_release(
    git: g.Git, trust: TrustRoot, release: Release, *, marks: bool = True
) -> list[Verdict]:
    """Every check of one release, each a verdict about what it checked: its
    tag, its commit, the manifest at the tag, and (when `marks`) its stable and
    rejected tags."""
    mark_tags = [m for m in (release.stable, release.rejected) if m is not None] if marks else []
    # Each signature costs an ssh-keygen run: start the tags' together.
    prefetch_tags(git, trust, [release.tag, *mark_tags])
    checks = [verify_tag(git, trust, release.tag)]
    checks.append(verify_commit(git, trust, release.model, release.commit))
    text = g.read_blob(git, release.commit, manifest_path(release.model))
    checks.append(_manifest_verdict(release, text))
    for mark in mark_tags:
        check = verify_tag(git, trust, mark)
        if check.ok and mark.commit != release.commit:
            check = Verdict.bad("points at another commit than the release tag", subject=mark.name)
        checks.append(check)
    return checks


def require_verified(git: g.Git, trust: TrustRoot, release: Release) -> None:
    """Raise Refused (exit 3) unless every check of `release` itself holds. Its
    marks are judged apart, where a decision needs them: a mark that does not
    verify is ignored, never a reason to refuse."""
    for check in verify_release(git, trust, release, marks=False):
        if not check.ok:
            raise Refused(f"{release.tag.name} does not verify: {check.subject}: {check.detail}")
