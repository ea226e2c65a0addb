"""The one answer to "does it verify", whatever is asked about: a signature, a
tag, the commit or manifest behind a release, a mark, a pinned image
(docs/ARCHITECTURE.md, "What verifies, remembered").

Every check returns a `Verdict`; what holds several (a release and its marks,
a commit that changed a path unsigned) is a composition of them, never a
shape of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str  # why not, or how it holds: one line for a report
    subject: str = ""  # what it is about ("release/iris/v1.4.0", "manifest"), when said
    signer: str | None = None  # the principal a signature proves, when it proves one
    # False when the machine could not check it (ssh-keygen missing or failing,
    # an object not found): such a verdict is never remembered.
    reached: bool = True

    @classmethod
    def good(cls, how: str = "", *, subject: str = "", signer: str | None = None) -> Verdict:
        return cls(True, how, subject, signer)

    @classmethod
    def bad(
        cls, problem: str, *, subject: str = "", signer: str | None = None, reached: bool = True
    ) -> Verdict:
        return cls(False, problem, subject, signer, reached)

    @property
    def problem(self) -> str | None:
        """Why it does not verify; None when it does."""
        return None if self.ok else self.detail

    def about(self, subject: str) -> Verdict:
        """The same verdict, said of `subject`."""
        return replace(self, subject=subject)
