"""What a watcher concluded, kept where `status` reads it (docs/ARCHITECTURE.md,
"Unattended rollback"): never silent.

One file per model under the target's state home, `watch/<model>.outcome.json`,
written atomically at each step of acting on a verdict (so a watcher killed
half-way still leaves what it had done), and kept until the next deploy of a
new state. The detached watcher's own exit is recorded beside it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from releasectl.analysis.steps import StepTag
from releasectl.config import home
from releasectl.files import write_atomic

Kind = Literal[
    "passed",  # marked stable
    "failed-recovered",  # the stable release serves again (the record may still be pending)
    "failed-unrecovered",  # failed, and the target could not be switched back
    "needs-human",  # inconclusive: nothing changed
    "crashed",  # the watcher itself failed before it could conclude
]


class Delivery(BaseModel):
    """One notification sent (or not)."""

    via: Literal["command", "webhook"]
    ok: bool
    detail: str


class WatchOutcome(BaseModel):
    # Its kind is "outcome" in every document (the outcome file, --json, the hook).
    model_config = ConfigDict(validate_by_name=True, serialize_by_alias=True)

    model: str
    version: str  # the version judged
    kind: Kind = Field(alias="outcome")
    message: str  # the verdict's message, or what went wrong
    serving: str | None = None  # what the target serves after acting
    recovered: str | None = None  # "warm" / "cold": how the stable release came back
    recovery_seconds: float | None = None  # from the verdict to the stable release serving
    revert_commit: str | None = None
    pushed_to: str | None = None
    record: Literal["done", "pending", "failed", "none"] = "none"  # the git record
    record_error: str | None = None
    note: str | None = None
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    notified: list[Delivery] = Field(default_factory=list)
    # Who stopped it with `releasectl abort` (a failed canary by hand, not by a verdict).
    aborted_by: str | None = Field(default=None, exclude_if=lambda v: v is None)
    # A canary the watch stepped (docs/ARCHITECTURE.md, "Steps and the bake"): the steps
    # it saw, in order, and whether someone promoted it to 100%. Absent without steps.
    steps: list[StepTag] | None = Field(default=None, exclude_if=lambda v: v is None)
    promoted: bool | None = Field(default=None, exclude_if=lambda v: v is None)

    def line(self) -> str:
        """One line for `status`, logs and the failing exit."""
        how = {"warm": "the warm standby", "cold": "a cold start"}.get(self.recovered or "", "")
        took = f" in {self.recovery_seconds:.1f} s" if self.recovery_seconds is not None else ""
        failed = "stopped by releasectl abort" if self.aborted_by else "failed analysis"
        text = {
            "passed": f"{self.version} passed: marked stable",
            "failed-recovered": f"{self.version} {failed}: {self.message}; "
            f"reverted to {self.serving}" + (f" ({how}{took})" if how else ""),
            "failed-unrecovered": f"{self.version} {failed}: {self.message}; "
            "it was NOT rolled back",
            "needs-human": f"{self.version} needs a human: {self.message}; nothing changed",
            "crashed": f"the watcher of {self.version} crashed: {self.message}",
        }[self.kind]
        pushed = f", pushed to {self.pushed_to}" if self.pushed_to else ""
        record = {
            "done": f"; revert commit {self.revert_commit[:12]}{pushed}"
            if self.revert_commit
            else "",
            "pending": "; the revert commit is not written yet",
            "failed": f"; the revert was NOT recorded: {self.record_error}",
            "none": "",
        }[self.record]
        return text + record + (f" ({self.note})" if self.note else "")


_R = TypeVar("_R", bound=BaseModel)


def _path(model: str) -> Path:
    return home() / "watch" / f"{model}.outcome.json"


def _write(path: Path, record: BaseModel) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, record.model_dump_json(indent=2))


def _read(path: Path, kind: type[_R]) -> _R | None:
    try:
        return kind.model_validate_json(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def save(outcome: WatchOutcome) -> None:
    _write(_path(outcome.model), outcome)


def load(model: str) -> WatchOutcome | None:
    return _read(_path(model), WatchOutcome)


def clear(model: str) -> None:
    """A new state was deployed: the last watcher's outcome is history."""
    _path(model).unlink(missing_ok=True)
    _promoted_path(model).unlink(missing_ok=True)


class Promoted(BaseModel):
    """`releasectl promote`: a canary's candidate took 100% before its steps ran out.
    Kept beside the outcome, which the watcher writes whole when it concludes."""

    model: str
    version: str
    by: str
    from_step: int  # the step it was at; the steps' count is 100%
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def _promoted_path(model: str) -> Path:
    return home() / "watch" / f"{model}.promoted.json"


def save_promoted(promoted: Promoted) -> None:
    _write(_promoted_path(promoted.model), promoted)


def load_promoted(model: str) -> Promoted | None:
    return _read(_promoted_path(model), Promoted)


def exit_path(model: str) -> Path:
    return home() / "watch" / f"{model}.exit.json"


def record_exit(model: str, pid: int, code: int) -> None:
    """The detached watcher's last act: its exit code, for `status`."""
    path = exit_path(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"pid": pid, "code": code, "at": _now()}))


def load_exit(model: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(exit_path(model).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
