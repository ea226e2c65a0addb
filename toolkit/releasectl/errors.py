"""The one exception tree. Each error carries its exit code
(docs/ARCHITECTURE.md, "Exit codes")."""

from __future__ import annotations

from typing import Any, Literal

OK = 0
FAILED = 1
BAD_INPUT = 2
REFUSED = 3
ANALYSIS_FAILED = 4
INTERNAL = 70  # sysexits' EX_SOFTWARE: a bug, not the user's input or the world

Severity = Literal["error", "warning"]


class ReleasectlError(Exception):
    """A user-facing failure: one line of message, an optional hint, an exit code.

    `report` is the result the command had when it failed (a `verify` whose
    checks fail, a `check` with findings): with --json it is printed, with the
    error added, instead of a bare error document. `severity` "warning" marks
    a failure whose main action was done (the Actions annotation's level)."""

    code = FAILED

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        report: Any = None,
        severity: Severity = "error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.report = report
        self.severity: Severity = severity

    def line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class OperationFailed(ReleasectlError):
    code = FAILED


class PushRefused(OperationFailed):
    """The remote did not take a push: refused it, did not answer in time, or
    could not be read while the push was planned. The one failure a watcher
    tries again: planning again on the remote's tip may cure it; nothing else
    that fails would change by waiting (docs/ARCHITECTURE.md, "Errors by kind")."""


class BadInput(ReleasectlError):
    code = BAD_INPUT


class Refused(ReleasectlError):
    """Refused by trust or policy: signature, signer, serial, rejected target."""

    code = REFUSED


class AnalysisFailed(ReleasectlError):
    """The analysis failed, or could not decide and a human must."""

    code = ANALYSIS_FAILED


class InternalError(ReleasectlError):
    """An exception nobody expected: a bug in releasectl."""

    code = INTERNAL


_BY_CODE: dict[int, type[ReleasectlError]] = {
    FAILED: OperationFailed,
    BAD_INPUT: BadInput,
    REFUSED: Refused,
    ANALYSIS_FAILED: AnalysisFailed,
}


def for_code(code: int) -> type[ReleasectlError]:
    """The error class of a library result's exit code (a `check` report's)."""
    return _BY_CODE.get(code, OperationFailed)
