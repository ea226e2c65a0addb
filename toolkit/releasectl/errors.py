"""The one exception tree. Each error carries its exit code
(docs/ARCHITECTURE.md, "Exit codes")."""

from __future__ import annotations

OK = 0
FAILED = 1
BAD_INPUT = 2
REFUSED = 3
ANALYSIS_FAILED = 4


class ReleasectlError(Exception):
    """A user-facing failure: one line of message, an optional hint, an exit code."""

    code = FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def line(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class OperationFailed(ReleasectlError):
    code = FAILED


class BadInput(ReleasectlError):
    code = BAD_INPUT


class Refused(ReleasectlError):
    """Refused by trust or policy: signature, signer, serial, rejected target."""

    code = REFUSED


class AnalysisFailed(ReleasectlError):
    code = ANALYSIS_FAILED
