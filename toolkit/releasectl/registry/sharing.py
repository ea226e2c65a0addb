"""One registry on every clone: the registry tags that travel with a push,
and `releasectl sync`.

Tags are immutable (docs/ARCHITECTURE.md, "The registry"): a tag that exists
on both sides with different objects is never overwritten; it is named and
the command stops before anything moves. A clone publishes only tags that
verify strictly and whose commit is on the branch being pushed, so it never
spreads a stray, lightweight or forged tag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

from releasectl import git as g
from releasectl.errors import OperationFailed, Refused
from releasectl.names import (
    KINDS,
    listing_patterns,
    parse_tag,
    ref_in_the_way,
    registry_ref,
    tag_name,
    tag_prefixes,
)
from releasectl.registry.history import TagRef, prefetch_tags, registry_tags, verify_tag
from releasectl.signing import TrustRoot


def local_tags(git: g.Git, model: str | None) -> list[TagRef]:
    prefixes = tag_prefixes(model) if model else [f"refs/tags/{kind}/" for kind in KINDS]
    return registry_tags(git, prefixes)


@dataclass(frozen=True)
class RemoteRegistry:
    """The remote's refs under the registry's prefixes, split by the grammar."""

    tags: dict[str, str]  # full ref name -> object id, for names that are exactly ours
    strays: dict[str, str]  # every other ref there (`rejected/m/v1/x`): reported, never fetched

    def in_the_way(self, name: str) -> str | None:
        """The remote ref that stops the tag `name` from being pushed."""
        return ref_in_the_way(name, [*self.tags, *self.strays])


def remote_registry(git: g.Git, remote: str, model: str | None) -> RemoteRegistry:
    """One `ls-remote` over the registry's prefixes: names are kept by the
    grammar, exactly (docs/ARCHITECTURE.md, "One registry on every clone")."""
    found = g.remote_refs(git, remote, listing_patterns(model))
    # ls-remote matches a pattern against the end of a name: keep tags only.
    found = {ref: oid for ref, oid in found.items() if ref.startswith("refs/tags/")}
    tags = {ref: oid for ref, oid in found.items() if registry_ref(ref) is not None}
    strays = {ref: oid for ref, oid in found.items() if ref not in tags}
    if model is not None:
        tags = {ref: oid for ref, oid in tags.items() if _model_of(ref) == model}
    return RemoteRegistry(tags, strays)


def _model_of(ref: str) -> str | None:
    parsed = registry_ref(ref)
    return None if parsed is None else parsed.model


FETCH_CHUNK = 300  # names per fetch, when fetched by name
FETCH_IDS = 5000  # object ids per fetch: 205 KB of argv


def fetch_names(git: g.Git, remote: str, refs: dict[str, str]) -> list[str]:
    """Fetch these registry tags (name -> the object the remote listed) by their
    exact names, never by wildcard; a name this clone cannot take (a local ref
    in its way) is skipped and said. Returns what could not be fetched, one
    line each.

    First the objects by id in one fetch, then every name in one ref
    transaction, each bound to the object the remote listed; a server that
    refuses a want by id, or a name in the way, falls back to fetching by
    name in chunks: git matches each explicit refspec against every name
    the remote lists, so one fetch of 2,700 names took 5.4 s, chunks 1.2 s,
    the ids 0.03 s."""
    if not refs:
        return []
    ids = sorted(set(refs.values()))
    try:
        for start in range(0, len(ids), FETCH_IDS):  # an argv holds a few thousand ids
            g.fetch(git, remote, ids[start : start + FETCH_IDS])
        lines = "".join(f"create {ref} {oid}\n" for ref, oid in sorted(refs.items()))
        if git.run("update-ref", "--stdin", input=lines, check=False).returncode == 0:
            return []
    except g.GitTimeout:
        raise  # a hung remote is not waited out again per chunk and per name
    except g.GitError:
        pass
    notes = []
    names = sorted(refs)
    for start in range(0, len(names), FETCH_CHUNK):
        chunk = names[start : start + FETCH_CHUNK]
        try:
            g.fetch(git, remote, [f"{ref}:{ref}" for ref in chunk])
            continue
        except g.GitTimeout:
            raise
        except g.GitError:
            pass
        for ref in chunk:  # one by one: a ref in the way of one name stops no other
            try:
                g.fetch(git, remote, [f"{ref}:{ref}"])
            except g.GitTimeout:
                raise
            except g.GitError as exc:
                notes.append(f"{ref} was not fetched: {exc.output.strip().splitlines()[-1:]}")
    return notes


def local_in_the_way(git: g.Git, name: str) -> str | None:
    """The local ref that stops the tag `name` from being created here."""
    kind = name.split("/", 1)[0]
    refs = [row[0] for row in g.rows(g.for_each_ref(git, [f"refs/tags/{kind}"], ["%(refname)"]))]
    return ref_in_the_way(name, refs)


@dataclass(frozen=True)
class InTheWay:
    """A tag the tool needs whose name is taken or blocked, and the one fix."""

    tag: str
    ref: str  # the ref in the way
    remote: str | None  # where it is (None: this clone)

    def fix(self) -> str:
        if self.remote is None:
            return f"git update-ref -d {self.ref}"
        return f"git push {self.remote} :{self.ref}"

    def line(self) -> str:
        where = f"on {self.remote}" if self.remote else "in this clone"
        taken = "holds that name" if self.ref == f"refs/tags/{self.tag}" else "is in the way"
        return f"{self.ref} {taken} {where}"


def in_the_way(
    git: g.Git, names: list[str], there: RemoteRegistry | None, remote: str | None
) -> list[InTheWay]:
    """For each name to create (and push, when `there`), the first ref that stops it."""
    found = []
    for name in names:
        local = local_in_the_way(git, name)
        far = there.in_the_way(name) if there is not None else None
        if far is not None:
            found.append(InTheWay(name, far, remote))
        elif local is not None:
            found.append(InTheWay(name, local, None))
    return found


def differing(local: list[TagRef], remote_tags: dict[str, str]) -> list[str]:
    """Names this clone and the remote both have, with different objects."""
    return [
        tag.name
        for tag in local
        if remote_tags.get(f"refs/tags/{tag.name}") not in (None, tag.object)
    ]


RULESETS_DIR = ".github/rulesets"


def rulesets() -> dict[str, str]:
    """The GitHub tag rulesets that stop squatting at the source, as `init`
    writes them for the team to import: update and deletion of every registry
    name forbidden to everyone, creation only for a bypass list (the
    releasers and the CI bot) (docs/ARCHITECTURE.md, "Trust")."""
    folder = resources.files("releasectl") / "templates" / "rulesets"
    return {
        f"{RULESETS_DIR}/{item.name}": item.read_text()
        for item in sorted(folder.iterdir(), key=lambda i: i.name)
        if item.name.endswith(".json")
    }


def stray_notes(remote: str, strays: dict[str, str]) -> list[str]:
    return [
        f"{remote} has {ref}, which is not a registry name: ignored, never fetched "
        f"(an admin removes it: `git push {remote} :{ref}`)"
        for ref in sorted(strays)
    ]


def refuse_conflicts(remote: str, local: list[TagRef], remote_tags: dict[str, str]) -> None:
    """Refuse (exit 3) when a tag differs between the remote and this clone."""
    differing = [
        tag for tag in local if remote_tags.get(f"refs/tags/{tag.name}") not in (None, tag.object)
    ]
    if differing:
        first = differing[0]
        theirs = remote_tags[f"refs/tags/{first.name}"]
        more = f" (and {len(differing) - 1} more)" if len(differing) > 1 else ""
        raise Refused(
            f"tag {first.name} differs between {remote} ({theirs[:12]}) and this clone "
            f"({first.object[:12]}){more}; registry tags are immutable, nothing was changed",
            f"find out which one is genuine (`git fetch {remote} tag {first.name}` into "
            "another clone, then `releasectl verify`); never move or delete a registry tag",
        )


@dataclass(frozen=True)
class Publishable:
    tags: list[TagRef] = field(default_factory=list)
    skipped: list[tuple[TagRef, str]] = field(default_factory=list)  # tag, why not


def publishable(
    git: g.Git,
    trust: TrustRoot,
    local: list[TagRef],
    remote_tags: dict[str, str],
    tip: str,
    *,
    exclude: frozenset[str] = frozenset(),
) -> Publishable:
    """The local registry tags the remote lacks that may be published with
    `tip` as the remote's branch: each verifies strictly and its commit is
    an ancestor of `tip`; a mark also names the commit of its release, whose
    tag verifies too (docs/ARCHITECTURE.md, "One registry on every clone"): a
    well-signed mark of no release, or of another commit, would squat the
    genuine mark's name."""
    missing = [
        tag
        for tag in local
        if f"refs/tags/{tag.name}" not in remote_tags and tag.name not in exclude
    ]
    releases = {tag.name: tag for tag in local}
    prefetch_tags(git, trust, missing)
    result = Publishable()
    for tag in missing:
        check = verify_tag(git, trust, tag)
        why = None if check.ok else f"does not verify: {check.detail}"
        if why is None and not g.is_ancestor(git, tag.commit, tip):
            why = "its commit is not on the branch being pushed"
        if why is None:
            why = _mark_problem(git, trust, tag, releases)
        if why is None:
            result.tags.append(tag)
        else:
            result.skipped.append((tag, why))
    return result


def _mark_problem(
    git: g.Git, trust: TrustRoot, tag: TagRef, local: dict[str, TagRef]
) -> str | None:
    """Why a mark is not a valid mark (None: it is, or `tag` is a release)."""
    parsed = parse_tag(tag.name)
    if parsed is None or parsed.kind == "release":
        return None
    release = local.get(tag_name("release", parsed.model, parsed.version))
    if release is None:
        return f"no release {parsed.model} {parsed.version} to mark"
    if release.commit != tag.commit:
        return f"points at another commit than {release.name}"
    if not verify_tag(git, trust, release).ok:
        return f"{release.name} does not verify"
    return None


def refspecs(tags: list[TagRef]) -> list[str]:
    return [f"refs/tags/{tag.name}:refs/tags/{tag.name}" for tag in tags]


@dataclass(frozen=True)
class SyncReport:
    remote: str
    pulled: list[str]
    pushed: list[str]
    skipped: list[tuple[str, str]]  # tag name, why it was not pushed
    dry_run: bool
    notes: list[str] = field(default_factory=list)  # refs ignored or not fetched, and why

    def to_json(self) -> dict[str, object]:
        return {
            "remote": self.remote,
            "pulled": self.pulled,
            "pushed": self.pushed,
            "skipped": [{"tag": name, "reason": why} for name, why in self.skipped],
            "dry_run": self.dry_run,
            "notes": self.notes,
        }


def sync(
    git: g.Git,
    trust_at: Callable[[str], TrustRoot],
    *,
    pull: bool = True,
    push: bool = True,
    dry_run: bool = False,
) -> SyncReport:
    """Fetch the registry tags this clone lacks (`pull`) and publish the
    verified ones the remote lacks (`push`), for every model. A differing tag
    stops everything before anything moves."""
    branch = g.current_branch(git)
    if branch is None:
        raise OperationFailed("HEAD is detached", "check out the registry's branch")
    remote, remote_branch = g.upstream(git, branch)
    there = remote_registry(git, remote, None)
    remote_tags = there.tags
    local = local_tags(git, None)
    refuse_conflicts(remote, local, remote_tags)
    known = {f"refs/tags/{tag.name}" for tag in local}
    missing = sorted(ref for ref in remote_tags if ref not in known)
    notes = stray_notes(remote, there.strays)
    if pull and missing and not dry_run:
        notes += fetch_names(git, remote, {ref: remote_tags[ref] for ref in missing})
    pulled = [ref.removeprefix("refs/tags/") for ref in missing]
    pushed: list[str] = []
    skipped: list[tuple[str, str]] = []
    if push:
        tracking = f"refs/remotes/{remote}/{remote_branch}"
        if dry_run:
            tip = _tip_unfetched(git, remote, remote_branch, tracking)
        else:
            g.fetch(git, remote, [f"+refs/heads/{remote_branch}:{tracking}"])
            tip = g.rev_parse(git, tracking)
        if tip is None:
            raise OperationFailed(f"{remote} has no branch {remote_branch}")
        found = publishable(git, trust_at(tip), local, remote_tags, tip)
        skipped = [(tag.name, why) for tag, why in found.skipped]
        blocked = [(tag, there.in_the_way(tag.name)) for tag in found.tags]
        skipped += [(tag.name, f"{ref} is in the way on {remote}") for tag, ref in blocked if ref]
        pushed = [tag.name for tag, ref in blocked if ref is None]
        if pushed and not dry_run:
            result = g.push(git, remote, refspecs([t for t, ref in blocked if ref is None]))
            if result.returncode != 0:
                last = (result.stderr or result.stdout).strip().splitlines()[-1:]
                raise OperationFailed(f"push to {remote} failed: {' '.join(last)}")
    return SyncReport(remote, pulled if pull else [], pushed, skipped, dry_run, notes)


def _tip_unfetched(git: g.Git, remote: str, remote_branch: str, tracking: str) -> str | None:
    """A dry run's view of the remote branch, fetching nothing (no ref moves):
    its tip as ls-remote names it, or, when this clone lacks that commit, the
    remote-tracking branch as last fetched."""
    found = g.remote_refs(git, remote, [f"refs/heads/{remote_branch}"])
    tip = found.get(f"refs/heads/{remote_branch}")
    if tip is None or g.rev_parse(git, tip) is not None:
        return tip
    return g.rev_parse(git, tracking) or g.rev_parse(git, "HEAD")
