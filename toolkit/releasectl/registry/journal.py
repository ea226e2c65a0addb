"""The landing journal: what a write plans, kept until it has landed or been
undone, so that a later run finishes or undoes what a killed one left
(docs/ARCHITECTURE.md, "Landing a change").

The file lives in `.git`, where anyone with write access to the clone can
edit it, so it is read as the schema it is: every field is checked before any
of it is used, and a file that is not exactly a journal is set aside (kept
for a human to read) and never executed. A tag counts as landed on the remote
only when the remote has that name with the very object this clone made: a
name is bound to its object (docs/ARCHITECTURE.md, "Trust").
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from releasectl import git as g
from releasectl.files import write_atomic
from releasectl.names import registry_ref

_HEX = re.compile(r"^[0-9a-f]{40}$")
# A branch or remote name as git writes it in a config; never an option.
_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./:@+~-]*$")
_FIELDS = {"branch", "base", "commit", "tags", "sync_paths", "remote", "remote_branch"}


@dataclass(frozen=True)
class Journal:
    branch: str
    base: str
    commit: str | None  # the new commit (None: tags only)
    tags: dict[str, str]  # tag name -> the commit it is made on
    sync_paths: tuple[str, ...] = ()
    remote: str | None = None  # set for a push
    remote_branch: str | None = None


class BadJournal(ValueError):
    pass


def _path(git: g.Git) -> Path:
    return g.git_dir(git) / "releasectl" / "landing.json"


def begin(git: g.Git, journal: Journal) -> None:
    write_atomic(_path(git), json.dumps(asdict(journal)))


def end(git: g.Git) -> None:
    _path(git).unlink(missing_ok=True)


def pending(git: g.Git) -> bool:
    return _path(git).exists()


def parse(raw: object) -> Journal:
    """A journal from its JSON, every field checked; BadJournal naming the first
    field that is not what a journal holds."""
    if not isinstance(raw, dict) or set(raw) != _FIELDS:
        raise BadJournal("not the journal's fields")

    def need(ok: bool, field: str) -> None:
        if not ok:
            raise BadJournal(f"bad {field}")

    branch, remote, remote_branch = raw["branch"], raw["remote"], raw["remote_branch"]
    need(_name(branch), "branch")
    need(isinstance(raw["base"], str) and bool(_HEX.match(raw["base"])), "base")
    commit = raw["commit"]
    need(commit is None or (isinstance(commit, str) and bool(_HEX.match(commit))), "commit")
    tags = raw["tags"]
    need(isinstance(tags, dict), "tags")
    for name, target in tags.items():
        need(registry_ref(f"refs/tags/{name}") is not None, "tags")
        need(isinstance(target, str) and bool(_HEX.match(target)), "tags")
    paths = raw["sync_paths"]
    need(isinstance(paths, list) and all(_relative(p) for p in paths), "sync_paths")
    need((remote is None) == (remote_branch is None), "remote")
    need(remote is None or (_name(remote) and _name(remote_branch)), "remote")
    return Journal(branch, raw["base"], commit, dict(tags), tuple(paths), remote, remote_branch)


def _name(value: object) -> bool:
    return isinstance(value, str) and bool(_NAME.match(value)) and ".." not in value


def _relative(value: object) -> bool:
    if not isinstance(value, str) or not value or value.startswith(("/", "-")):
        return False
    return ".." not in value.split("/") and all(c.isprintable() for c in value)


def read(git: g.Git) -> tuple[Journal | None, list[str]]:
    """The journal a killed run left (None: none, or a bad one, set aside and said)."""
    path = _path(git)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None, []
    except OSError as exc:
        return None, [_set_aside(path, f"unreadable: {exc.strerror}")]
    try:
        return parse(json.loads(text)), []
    except (ValueError, RecursionError) as exc:
        return None, [_set_aside(path, str(exc) if isinstance(exc, BadJournal) else "not JSON")]


def _set_aside(path: Path, why: str) -> str:
    kept = path.with_name(f"landing.bad-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json")
    try:
        path.replace(kept)
    except OSError:
        path.unlink(missing_ok=True)
        return f"removed a landing journal that is not valid ({why}); nothing in it was run"
    return f"set aside a landing journal that is not valid ({why}) as {kept}; nothing in it was run"


def ours(git: g.Git, name: str, target: str) -> bool:
    """The tag a dead run made: it exists and points at the journal's target."""
    peeled = g.rev_parse(git, f"refs/tags/{name}^{{commit}}")
    return peeled is not None and peeled == target


def landed_locally(git: g.Git, journal: Journal) -> bool:
    if journal.commit is None:  # tags only: each is one ref write, so all or some
        return all(ours(git, name, target) for name, target in journal.tags.items())
    tip = g.rev_parse(git, f"refs/heads/{journal.branch}")
    return tip is not None and (tip == journal.commit or g.is_ancestor(git, journal.commit, tip))


def landed_remotely(git: g.Git, journal: Journal) -> bool:
    """An atomic push: the remote has all of it or none. Tags alone landed only
    when the remote holds each name with this clone's object for it: the same
    name with another object is someone else's tag, not ours."""
    assert journal.remote is not None and journal.remote_branch is not None
    refs = g.remote_refs(
        git,
        journal.remote,
        [f"refs/heads/{journal.remote_branch}", *(f"refs/tags/{n}" for n in journal.tags)],
    )
    if journal.commit is None:
        return bool(journal.tags) and all(
            ours(git, name, target)
            and refs.get(f"refs/tags/{name}") == g.git_object(git, f"refs/tags/{name}")
            for name, target in journal.tags.items()
        )
    tip = refs.get(f"refs/heads/{journal.remote_branch}")
    if tip is None:
        return False
    if tip != journal.commit:
        tracking = f"refs/remotes/{journal.remote}/{journal.remote_branch}"
        g.fetch(git, journal.remote, [f"+refs/heads/{journal.remote_branch}:{tracking}"])
        return g.is_ancestor(git, journal.commit, tip)
    return True
