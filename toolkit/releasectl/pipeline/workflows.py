"""The GitHub Actions workflows releasectl ships (templates/workflows), and
upgrading a registry's copies to this version's (docs/ARCHITECTURE.md,
"Supply chain").

A workflow is the user's file: only the blocks between
`# >>> releasectl:<id>` and `# <<< releasectl:<id>` are releasectl's. An upgrade
replaces those blocks and keeps every line outside them as the user has it; a
file whose blocks are missing or out of order is refused, never overwritten
(unless forced), so nobody's edits are lost to an upgrade."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from releasectl.errors import Refused
from releasectl.pipeline.lock import LOCK_FILE, Source, compile_lock, read_source

WORKFLOWS_DIR = ".github/workflows"
_MARK = re.compile(r"^[ \t]*# (>>>|<<<) releasectl:([a-z-]+)\b.*$", re.M)


def templates() -> dict[str, str]:
    """`.github/workflows/<name>` -> text, as this version ships them."""
    folder = resources.files("releasectl") / "templates" / "workflows"
    return {
        f"{WORKFLOWS_DIR}/{item.name}": item.read_text()
        for item in sorted(folder.iterdir(), key=lambda i: i.name)
        if item.name.endswith(".yml")
    }


def split(text: str) -> tuple[list[str], list[tuple[str, str]]] | None:
    """(the text outside blocks, [(id, block text)]): len(outside) == len(blocks) + 1.
    None when the markers do not pair up."""
    outside, blocks, pos, opened = [], [], 0, None
    for m in _MARK.finditer(text):
        kind, ident = m.group(1), m.group(2)
        if kind == ">>>" and opened is None:
            outside.append(text[pos : m.start()])
            opened, pos = (ident, m.start()), m.start()
        elif kind == "<<<" and opened is not None and opened[0] == ident:
            end = m.end() + 1 if text[m.end() : m.end() + 1] == "\n" else m.end()
            blocks.append((ident, text[opened[1] : end]))
            opened, pos = None, end
        else:
            return None
    if opened is not None:
        return None
    outside.append(text[pos:])
    return outside, blocks


@dataclass(frozen=True)
class FileChange:
    path: str
    old: str | None  # None: the file does not exist yet
    new: str
    kept_edits: bool = False  # lines outside releasectl's blocks kept as the user has them

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "changed": self.changed,
            "created": self.old is None,
            "kept_edits": self.kept_edits,
            "diff": self.diff() if self.changed else "",
        }

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                (self.old or "").splitlines(keepends=True),
                self.new.splitlines(keepends=True),
                f"a/{self.path}" if self.old is not None else "/dev/null",
                f"b/{self.path}",
            )
        )


def merge(path: str, current: str | None, template: str, *, force: bool = False) -> FileChange:
    """The upgraded text of one workflow: the template's blocks inside the user's file."""
    if current is None or current == template or force:
        return FileChange(path, current, template)
    mine, theirs = split(current), split(template)
    assert theirs is not None, f"the template {path} has unpaired releasectl markers"
    if mine is None or [i for i, _ in mine[1]] != [i for i, _ in theirs[1]]:
        want = ", ".join(dict.fromkeys(i for i, _ in theirs[1]))  # each block name once
        raise Refused(
            f"{path}: its releasectl blocks ({want}) are missing, unpaired or out of order, "
            "so an upgrade could overwrite your edits",
            "put the blocks back, or run again with --force to replace the whole file",
        )
    outside, _ = mine
    merged = "".join(
        part
        for index, text in enumerate(outside)
        for part in (text, theirs[1][index][1] if index < len(theirs[1]) else "")
    )
    return FileChange(path, current, merged, kept_edits=merged != template)


def plan_upgrade(root: Path, lock_text: str | None, *, force: bool = False) -> list[FileChange]:
    """Every file an upgrade writes: each shipped workflow and the lock. Raises
    before anything is written if any workflow would lose the user's edits."""
    changes = []
    for path, template in templates().items():
        target = root / path
        current = target.read_text() if target.is_file() else None
        changes.append(merge(path, current, template, force=force))
    if lock_text is not None:
        target = root / LOCK_FILE
        changes.append(
            FileChange(LOCK_FILE, target.read_text() if target.is_file() else None, lock_text)
        )
    return changes


def write(root: Path, changes: list[FileChange]) -> None:
    for change in changes:
        if change.changed:
            target = root / change.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(change.new)


@dataclass(frozen=True)
class WorkflowUpgrade:
    """What `upgrade-workflows` changed, or with `dry_run` would change; `to_json`
    is its `--json` document."""

    changes: list[FileChange]
    dry_run: bool

    def to_json(self) -> dict[str, object]:
        return {"dry_run": self.dry_run, "files": [c.to_json() for c in self.changes]}


def upgrade(
    root: Path, source: Source | None = None, *, force: bool = False, dry_run: bool = False
) -> WorkflowUpgrade:
    """Rewrite the workflows and the lock for this version of releasectl. The
    lock's source is the one named, else the one the current lock records."""
    current = root / LOCK_FILE
    if source is None or not source.named:
        source = read_source(current.read_text()) if current.is_file() else Source()
    changes = plan_upgrade(root, compile_lock(source), force=force)
    if not dry_run:
        write(root, changes)
    return WorkflowUpgrade(changes, dry_run)
