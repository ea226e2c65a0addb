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

from releasectl import git as g
from releasectl.errors import OperationFailed, Refused
from releasectl.names import KINDS, tag_prefixes
from releasectl.registry.history import TagRef, prefetch_tags, registry_tags, verify_tag
from releasectl.signing import TrustRoot


def patterns(model: str | None) -> list[str]:
    """ls-remote / fetch patterns of one model's registry tags, or of every model's."""
    if model is None:
        return [f"refs/tags/{kind}/*" for kind in KINDS]
    return [f"{prefix}*" for prefix in tag_prefixes(model)]


def local_tags(git: g.Git, model: str | None) -> list[TagRef]:
    prefixes = tag_prefixes(model) if model else [f"refs/tags/{kind}/" for kind in KINDS]
    return registry_tags(git, prefixes)


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
    an ancestor of `tip`."""
    missing = [
        tag
        for tag in local
        if f"refs/tags/{tag.name}" not in remote_tags and tag.name not in exclude
    ]
    prefetch_tags(git, trust, missing)
    result = Publishable()
    for tag in missing:
        check = verify_tag(git, trust, tag)
        if not check.ok:
            result.skipped.append((tag, f"does not verify: {check.detail}"))
        elif not g.is_ancestor(git, tag.commit, tip):
            result.skipped.append((tag, "its commit is not on the branch being pushed"))
        else:
            result.tags.append(tag)
    return result


def refspecs(tags: list[TagRef]) -> list[str]:
    return [f"refs/tags/{tag.name}:refs/tags/{tag.name}" for tag in tags]


@dataclass(frozen=True)
class SyncReport:
    remote: str
    pulled: list[str]
    pushed: list[str]
    skipped: list[tuple[str, str]]  # tag name, why it was not pushed
    dry_run: bool

    def to_json(self) -> dict[str, object]:
        return {
            "remote": self.remote,
            "pulled": self.pulled,
            "pushed": self.pushed,
            "skipped": [{"tag": name, "reason": why} for name, why in self.skipped],
            "dry_run": self.dry_run,
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
    remote_tags = g.remote_refs(git, remote, patterns(None))
    local = local_tags(git, None)
    refuse_conflicts(remote, local, remote_tags)
    known = {f"refs/tags/{tag.name}" for tag in local}
    pulled = sorted(ref.removeprefix("refs/tags/") for ref in remote_tags if ref not in known)
    if pull and pulled and not dry_run:
        g.fetch(git, remote, [f"{p}:{p}" for p in patterns(None)])
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
        pushed = [tag.name for tag in found.tags]
        if pushed and not dry_run:
            result = g.push(git, remote, refspecs(found.tags))
            if result.returncode != 0:
                last = (result.stderr or result.stdout).strip().splitlines()[-1:]
                raise OperationFailed(f"push to {remote} failed: {' '.join(last)}")
    return SyncReport(remote, pulled if pull else [], pushed, skipped, dry_run)


def _tip_unfetched(git: g.Git, remote: str, remote_branch: str, tracking: str) -> str | None:
    """A dry run's view of the remote branch, fetching nothing (no ref moves):
    its tip as ls-remote names it, or, when this clone lacks that commit, the
    remote-tracking branch as last fetched."""
    found = g.remote_refs(git, remote, [f"refs/heads/{remote_branch}"])
    tip = found.get(f"refs/heads/{remote_branch}")
    if tip is None or g.rev_parse(git, tip) is not None:
        return tip
    return g.rev_parse(git, tracking) or g.rev_parse(git, "HEAD")
