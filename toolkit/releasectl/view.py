"""The one verified view of the files that decide or execute (docs/ARCHITECTURE.md, "Trust").

Two roles hold keys. The release signers (`.releasectl/allowed_signers`, with
`.releasectl/allowed_openpgp`) sign model changes, releases and marks; the
admins (`.releasectl/admins`, the same format) change the rules: everything
under `.releasectl/`, `.github/workflows/` and `deploy/argocd/`. A registry
made before roles has no admins file: its release signers act as admins.

The roles are read from history along the first parent: a change to the
trust files counts only when an admin in force before it signed it (the
first commit that adds them is trusted by its own content). Every other read
of a file the tool obeys comes through `read`: the content is returned only
when every first-parent commit that changed the path since its anchor is
signed by a key of the role that owns the path, judged by the roles in force
before that commit. The anchor is the repository's first commit, or the
newest commit signed by the owning role whose `Releasectl-Adopt:` trailer
names the path (or a folder holding it). Verdicts are kept per (path, commit)
in `.git/releasectl/view/`, and only when every signature could be checked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from releasectl import git as g
from releasectl import trailers
from releasectl.errors import OperationFailed, Refused
from releasectl.files import write_atomic
from releasectl.signing import (
    ENV_OPENPGP,
    ENV_SSH,
    OPENPGP_FILE,
    SSH_FILE,
    TrustRoot,
    commit_verdicts,
    parse_openpgp,
    refresh_signers_copy,
)
from releasectl.verdict import Verdict

ADMINS_FILE = ".releasectl/admins"
ENV_ADMINS = "RELEASECTL_ADMINS"
TRUST_FILES = (SSH_FILE, OPENPGP_FILE, ADMINS_FILE)
ADMIN_PATHS = (".releasectl/", ".github/workflows/", "deploy/argocd/")
ADOPT = trailers.ADOPT
RELEASE, ADMIN = "release", "admin"
_FORMAT = 1
_OBJECT_ID = re.compile(r"[0-9a-f]{40}")


def owner(path: str) -> str:
    """The role whose signatures a change of `path` needs."""
    return ADMIN if path.startswith(ADMIN_PATHS) else RELEASE


@dataclass(frozen=True)
class Roles:
    release: TrustRoot
    admin: TrustRoot
    admins_file: bool  # False: made before roles; the release signers act as admins

    def of(self, role: str) -> TrustRoot:
        return self.admin if role == ADMIN else self.release

    @property
    def key(self) -> str:
        return hashlib.sha256((self.release.key + self.admin.key).encode()).hexdigest()


def _roles(ssh: str | None, pgp: str | None, admins: str | None) -> Roles:
    release = TrustRoot(ssh or "", parse_openpgp(pgp or ""))
    if admins is None:
        return Roles(release, release, admins_file=False)
    return Roles(release, TrustRoot(admins, source=ADMINS_FILE), admins_file=True)


@dataclass(frozen=True)
class Walk:
    """The roles along `rev`'s first-parent line: `steps` holds, oldest first,
    each accepted change of the trust files and the roles in force after it."""

    steps: tuple[tuple[str | None, Roles], ...]  # commit None: an override, for every commit
    reached: bool  # every signature on the way could be checked

    @property
    def roles(self) -> Roles:
        return self.steps[-1][1]


def _override() -> Roles | None:
    ssh = os.environ.get(ENV_SSH)
    if not ssh:
        return None
    pgp = os.environ.get(ENV_OPENPGP)
    admins = os.environ.get(ENV_ADMINS)
    release = TrustRoot(_read_file(ssh), parse_openpgp(_read_file(pgp)) if pgp else {}, source=ssh)
    if not admins:
        return Roles(release, release, admins_file=False)
    return Roles(release, TrustRoot(_read_file(admins), source=admins), admins_file=True)


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise OperationFailed(f"cannot read the trust root {path}: {exc.strerror}") from None


def walk(git: g.Git, rev: str = "HEAD") -> Walk:
    """The roles in force along `rev`'s first parent (an environment override
    replaces them for every commit). Cached per commit, unless a signature on
    the way could not be checked (docs/ARCHITECTURE.md, "What verifies, remembered")."""
    override = _override()
    if override is not None:
        return Walk(((None, override),), reached=True)
    commit = rev if _OBJECT_ID.fullmatch(rev) else g.rev_parse(git, rev)
    cache = g.git_dir(git) / "releasectl" / "roles" / (commit or "none")
    if commit is not None and cache.exists():
        try:
            doc = json.loads(cache.read_text())
            if doc.get("format") == _FORMAT:
                steps = tuple((c, _roles(s, p, a)) for c, s, p, a in doc["steps"])
                return Walk(steps, reached=True)
        except (ValueError, KeyError, TypeError):
            pass
    texts, result = _walk(git, rev)
    if commit is not None and result.reached:
        write_atomic(cache, json.dumps({"format": _FORMAT, "steps": texts}), durable=False)
    return result


def _walk(git: g.Git, rev: str) -> tuple[list[list[str | None]], Walk]:
    # The first parent only: a merge that brings the files in from another
    # history is itself a change, judged like any other.
    changes = g.first_parent_changes(git, rev, list(TRUST_FILES))
    if not changes:
        raise OperationFailed(
            f"no trust root: {SSH_FILE} is not in the repository at {rev}",
            f"run `releasectl init`, or set {ENV_SSH}",
        )

    def at(commit: str) -> list[str | None]:
        return [commit, *g.read_blobs(git, [f"{commit}:{path}" for path in TRUST_FILES])]

    texts = [at(changes[0])]
    roles = _roles(*texts[0][1:])
    steps: list[tuple[str | None, Roles]] = [(changes[0], roles)]
    reached = True
    for commit in changes[1:]:
        # A change counts only if an admin trusted before it signed it.
        verdict = commit_verdicts(git, roles.admin, [commit])[commit]
        if verdict.ok:
            texts.append(at(commit))
            roles = _roles(*texts[-1][1:])
            steps.append((commit, roles))
        elif not verdict.reached:
            reached = False
    return texts, Walk(tuple(steps), reached)


def trust_root(git: g.Git, rev: str = "HEAD") -> TrustRoot:
    """The release signers in force at `rev`. At HEAD, the copy git's own
    `gpg.ssh.allowedSignersFile` reads is kept equal to them."""
    release = walk(git, rev).roles.release
    if rev == "HEAD" and _override() is None:
        refresh_signers_copy(git, release)
    return release


def present(git: g.Git, rev: str, path: str) -> bool:
    """Whether `path` exists at `rev` (its content is not read)."""
    return g.tree_id(git, rev, path) is not None


def roles(git: g.Git, rev: str = "HEAD") -> Roles:
    return walk(git, rev).roles


def roles_warning(git: g.Git, rev: str = "HEAD") -> str | None:
    """One line for `status` and `doctor` while a registry has no admins file."""
    if walk(git, rev).roles.admins_file:
        return None
    return (
        f"no {ADMINS_FILE}: the release signers act as admins; commit one with "
        "`releasectl trust add KEY --email E --role admin`"
    )


# --- the verified read ----------------------------------------------------------


@dataclass(frozen=True)
class Unsigned:
    """A commit that changed a path without the signature of the role owning it:
    the commit, and the verdict on its signature under that role."""

    commit: str
    path: str  # the path (or the first of the paths) it changed
    role: str
    verdict: Verdict  # not ok: why the signature does not count

    def line(self) -> str:
        return (
            f"{self.path} was changed by commit {self.commit[:12]}, which is not signed by "
            f"{_who(self.role)} ({self.verdict.detail})"
        )


def _who(role: str) -> str:
    return "an admin" if role == ADMIN else "a release signer"


def read(git: g.Git, rev: str, path: str, *, since: str | None = None) -> str | None:
    """`path`'s text at `rev` when every change of it since its anchor (or since
    `since`, a commit the caller has verified as vouching for the path) is signed
    by its owning role; else Refused, naming the commit and the path. None
    when the file does not exist (and no unsigned commit removed it)."""
    require(git, rev, [path], since=since)
    return g.read_blob(git, rev, path)


def require(git: g.Git, rev: str, paths: Sequence[str], *, since: str | None = None) -> None:
    """Refused (exit 3) when a change of any of `paths` is not vouched for."""
    bad = unsigned(git, rev, paths, since=since)
    if bad:
        first = bad[0]
        raise Refused(
            first.line(),
            f"{_who(first.role)} signs a commit that restores or re-commits it, or runs "
            f"`releasectl trust adopt {first.path}` after reviewing it",
        )


def unsigned(
    git: g.Git, rev: str, paths: Sequence[str], *, since: str | None = None
) -> list[Unsigned]:
    """Every commit on `rev`'s first-parent line, newest first, that changed
    one of `paths` since its anchor (or since `since`, exclusive) without the
    signature of the path's role. Remembered per (path, commit) when reached."""
    commit = rev if _OBJECT_ID.fullmatch(rev) else g.rev_parse(git, rev)
    if commit is None:
        return []
    the_walk = walk(git, commit)
    cache = _ViewCache.open(git, the_walk, commit, since)
    todo = [p for p in paths if not cache.known(p)]
    if todo:
        for role in (ADMIN, RELEASE):
            group = [p for p in todo if owner(p) == role]
            if group:
                found = _judge(git, the_walk, commit, group, role, since)
                cache.put(group, found, the_walk.reached)
        cache.save()
    return sorted(cache.found(paths), key=lambda u: cache.order.get(u.commit, 0))


@dataclass
class _ViewCache:
    path: Path
    entries: dict[str, list[list[object]]]
    session: dict[str, list[Unsigned]]
    dirty: bool = False
    order: dict[str, int] = field(default_factory=dict)

    @classmethod
    def open(cls, git: g.Git, the_walk: Walk, commit: str, since: str | None) -> _ViewCache:
        name = f"{commit}-{since}" if since else commit
        path = g.git_dir(git) / "releasectl" / "view" / the_walk.roles.key[:16] / name
        try:
            doc = json.loads(path.read_text())
            entries = doc["paths"] if doc.get("format") == _FORMAT else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            entries = {}
        return cls(path, entries if isinstance(entries, dict) else {}, {})

    def known(self, path: str) -> bool:
        return path in self.session or path in self.entries

    def put(self, paths: list[str], found: list[Unsigned], reached: bool) -> None:
        for path in paths:
            mine = [u for u in found if u.path == path]
            if reached and all(u.verdict.reached for u in mine):
                self.entries[path] = [[u.commit, u.role, u.verdict.detail] for u in mine]
                self.dirty = True
            else:  # the machine could not judge: decided again next time
                self.session[path] = mine
        for index, u in enumerate(found):
            self.order.setdefault(u.commit, index)

    def found(self, paths: Sequence[str]) -> list[Unsigned]:
        out: list[Unsigned] = []
        for path in paths:
            if path in self.session:
                out += self.session[path]
            else:
                out += [
                    Unsigned(str(c), path, str(role), Verdict.bad(str(why)))
                    for c, role, why in self.entries.get(path, [])
                ]
        return out

    def save(self) -> None:
        if not self.dirty:
            return
        doc = {"format": _FORMAT, "paths": self.entries}
        write_atomic(self.path, json.dumps(doc), durable=False)  # a cache: judged again if lost


def _judge(
    git: g.Git, the_walk: Walk, rev: str, paths: list[str], role: str, since: str | None
) -> list[Unsigned]:
    # One path-limited log over the paths and the trust files: their changes
    # and the roles' steps, in first-parent order (a step outside the range is
    # older than every change in it).
    span = [f"{since}..{rev}"] if since else [rev]
    log = git.out(
        "log",
        "--first-parent",
        "--name-only",
        "-z",
        "--format=%x01%H %P",
        "--end-of-options",
        *span,
        "--",
        *paths,
        *TRUST_FILES,
    )
    records = log.split("\x01")[1:]
    position: dict[str, int] = {}
    changes: list[tuple[str, list[str], list[str]]] = []  # commit, parents, paths it changed
    for index, record in enumerate(records):
        head, _, names = record.partition("\0")
        ids = head.split()
        position[ids[0]] = len(records) - index  # oldest is 1
        listed = names.strip("\n\0").split("\0")
        changed = [n for n in listed if n in paths or _under(n, paths)]
        if changed:
            changes.append((ids[0], ids[1:], changed))
    anchors = _anchors(git, the_walk, rev, paths, role, position)
    found: list[Unsigned] = []
    by_roles: dict[int, list[tuple[str, list[str], list[str]]]] = {}
    for commit, parents, changed in changes:
        pos = position.get(commit, 0)
        if not parents:
            continue  # the repository's first commit is the anchor of every path
        asked = sorted({_path_of(name, paths) for name in changed})
        mine = [p for p in asked if pos > anchors.get(p, 0)]
        if mine:
            by_roles.setdefault(_step_before(the_walk, commit, position), []).append(
                (commit, parents, mine)
            )
    for step, group in by_roles.items():
        trust = the_walk.steps[step][1].of(role)
        verdicts = commit_verdicts(git, trust, [c for c, _, _ in group])
        for commit, parents, mine in group:
            verdict = verdicts[commit]
            if verdict.ok:
                continue
            if (
                role == RELEASE
                and len(parents) == 2
                and _clean_merge(git, trust, commit, parents, mine)
            ):
                continue
            found += [Unsigned(commit, p, role, verdict) for p in mine]
    return found


def _under(name: str, paths: list[str]) -> bool:
    return any(name.startswith(p.rstrip("/") + "/") for p in paths)


def _path_of(name: str, paths: list[str]) -> str:
    """The asked-for path that `name` (a changed file) is, or lies under."""
    for path in paths:
        if name == path or name.startswith(path.rstrip("/") + "/"):
            return path
    return name


def _step_before(the_walk: Walk, commit: str, position: dict[str, int]) -> int:
    """The roles in force before `commit`: after the newest accepted trust
    change older than it (the first one is trusted by its own content)."""
    pos = position.get(commit, 0)
    chosen = 0
    for index, (step_commit, _) in enumerate(the_walk.steps):
        if step_commit is None:
            return index
        step_pos = position.get(step_commit, 0)
        if step_pos < pos or (index == 0 and step_pos == pos):
            chosen = index
    return chosen


def _anchors(
    git: g.Git, the_walk: Walk, rev: str, paths: list[str], role: str, position: dict[str, int]
) -> dict[str, int]:
    """path -> position of its newest adopting commit signed by `role`. With
    adoptions about, `position` is completed with the whole first-parent line
    (adopting commits change no path, so the path log does not order them)."""
    out = git.out(
        "log",
        "--first-parent",
        f"--grep=^{ADOPT}:",
        f"--format=%H%x00%(trailers:key={ADOPT},valueonly,separator=%x02)%x00",
        "--end-of-options",
        rev,
    )
    candidates: list[tuple[str, list[str]]] = []
    for record in out.split("\0\n"):
        commit, _, values = record.strip("\n").partition("\0")
        adopted = [v.strip() for v in values.strip("\0").split("\x02") if v.strip()]
        covered = [p for p in paths if any(p == a or _under(p, [a]) for a in adopted)]
        if commit and covered:
            candidates.append((commit, covered))
    if not candidates:
        return {}
    line = git.out("rev-list", "--first-parent", "--end-of-options", rev).split()
    position.clear()
    position.update({c: len(line) - i for i, c in enumerate(line)})
    anchors: dict[str, int] = {}
    for commit, covered in candidates:  # newest first
        covered = [p for p in covered if p not in anchors]
        if not covered:
            continue
        trust = the_walk.steps[_step_before(the_walk, commit, position)][1].of(role)
        if commit_verdicts(git, trust, [commit])[commit].ok:
            for path in covered:
                anchors[path] = position.get(commit, 0)
    return anchors


def _clean_merge(
    git: g.Git, trust: TrustRoot, commit: str, parents: list[str], paths: list[str]
) -> bool:
    """A forge's merge counts for model paths when it adds nothing of its own
    there (the paths are as its second parent has them) and every commit it
    brings that changed them is signed by a release signer."""
    first, side = parents[0], parents[1]
    if git.run("diff", "--quiet", side, commit, "--", *paths, check=False).returncode:
        return False
    brought = git.out("rev-list", f"{first}..{side}", "--", *paths).split()
    verdicts: dict[str, Verdict] = commit_verdicts(git, trust, brought)
    return all(v.ok for v in verdicts.values())
