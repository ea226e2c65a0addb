"""`releasectl doctor`: every registry ref on the remote that does not verify,
and why, with the one command an admin runs to remove it.

Anyone who can push a tag can put one under a registry prefix; releasectl
ignores it for every decision, but a taken or blocked name still stops the
genuine tag from being published (docs/ARCHITECTURE.md, "Trust"). The remote's
refs are listed by prefix, their objects fetched by exact name into a private
namespace (never under `refs/tags/`), judged strictly, and the namespace is
removed again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from releasectl import git as g
from releasectl import view
from releasectl.errors import OperationFailed
from releasectl.names import parse_tag, tag_name
from releasectl.registry.history import (
    Release,
    TagRef,
    prefetch_tags,
    registry_tags,
    verify_release,
    verify_tag,
)
from releasectl.registry.sharing import remote_registry
from releasectl.signing import TrustRoot

_NAMESPACE = "refs/releasectl/doctor/"


@dataclass(frozen=True)
class RefFinding:
    ref: str  # the full ref name on the remote
    problem: str
    fix: str

    def to_json(self) -> dict[str, str]:
        return {"ref": self.ref, "problem": self.problem, "fix": self.fix}


@dataclass(frozen=True)
class DoctorReport:
    remote: str
    branch: str
    checked: int  # registry refs judged
    findings: list[RefFinding]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "remote": self.remote,
            "branch": self.branch,
            "checked": self.checked,
            "ok": not self.findings,
            "findings": [f.to_json() for f in self.findings],
            "warnings": self.warnings,
        }


def warnings(git: g.Git, tip: str) -> list[str]:
    """Warnings about how the registry is set up, shown by `doctor` (and
    `status`) without changing the exit code; each check appends its lines
    here (docs/ARCHITECTURE.md, "Roles and the one verified view")."""
    found = []
    roles = view.roles_warning(git, tip)
    if roles is not None:
        found.append(roles)
    return found


def doctor(git: g.Git, trust_at: Callable[[str], TrustRoot]) -> DoctorReport:
    branch = g.current_branch(git)
    if branch is None:
        raise OperationFailed("HEAD is detached", "check out the registry's branch")
    remote, remote_branch = g.upstream(git, branch)
    there = remote_registry(git, remote, None)
    tracking = f"refs/remotes/{remote}/{remote_branch}"
    g.fetch(git, remote, [f"+refs/heads/{remote_branch}:{tracking}"])
    tip = g.rev_parse(git, tracking)
    if tip is None:
        raise OperationFailed(f"{remote} has no branch {remote_branch}")
    findings = [
        RefFinding(
            ref,
            "not a registry name: ignored, and it blocks the names it sits on",
            _fix(remote, ref),
        )
        for ref in sorted(there.strays)
    ]
    tags = _fetch_private(git, remote, sorted(there.tags))
    findings += _judge(git, trust_at(tip), tip, tags, remote)
    return DoctorReport(remote, remote_branch, len(there.tags), findings, warnings(git, tip))


def _fix(remote: str, ref: str) -> str:
    return f"git push {remote} :{ref}"


def _fetch_private(git: g.Git, remote: str, refs: list[str]) -> list[TagRef]:
    """The remote's registry tags as this clone sees their objects, fetched by
    exact name below a private namespace that is removed afterwards."""
    if not refs:
        return []
    stale = [row[0] for row in g.rows(g.for_each_ref(git, [_NAMESPACE], ["%(refname)"]))]
    g.delete_refs(git, stale)
    try:
        g.fetch(git, remote, [f"+{ref}:{_NAMESPACE}{ref}" for ref in refs])
        return registry_tags(git, [_NAMESPACE], under=_NAMESPACE)
    finally:
        g.delete_refs(git, [f"{_NAMESPACE}{ref}" for ref in refs])


def _judge(
    git: g.Git, trust: TrustRoot, tip: str, tags: list[TagRef], remote: str
) -> list[RefFinding]:
    by_name = {tag.name: tag for tag in tags}
    prefetch_tags(git, trust, tags)
    findings = []
    for tag in tags:
        problem = _problem(git, trust, tip, tag, by_name, remote)
        if problem is not None:
            ref = f"refs/tags/{tag.name}"
            findings.append(RefFinding(ref, problem, _fix(remote, ref)))
    return findings


def _problem(
    git: g.Git,
    trust: TrustRoot,
    tip: str,
    tag: TagRef,
    by_name: dict[str, TagRef],
    remote: str,
) -> str | None:
    """Why the remote's tag does not verify strictly (None: it does)."""
    parsed = parse_tag(tag.name)
    assert parsed is not None  # remote_registry kept only grammar names
    check = verify_tag(git, trust, tag)
    if not check.ok:
        return check.detail
    if parsed.kind == "release":
        release = Release(parsed.model, parsed.version, tag)
        for step in verify_release(git, trust, release, marks=False)[1:]:
            if not step.ok:
                return f"{step.subject}: {step.detail}"
    else:
        release_tag = by_name.get(tag_name("release", parsed.model, parsed.version))
        if release_tag is None:
            return f"marks no release: {remote} has no release {parsed.model} {parsed.version}"
        if release_tag.commit != tag.commit:
            return f"points at another commit than {release_tag.name}"
    if not g.is_ancestor(git, tag.commit, tip):
        return f"its commit is not on {remote}'s branch"
    return None
