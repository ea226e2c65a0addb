"""The signature verdict as a table, in-process: what git's `%G?`, `%GS` and
fingerprints say, and what releasectl concludes (docs/ARCHITECTURE.md,
"Trust"). Real signatures drive the same decision in tests/registry; this names
each case once, including the ones that must never be remembered."""

from __future__ import annotations

import pytest

from releasectl.signing import TrustRoot, _judge

ME = "operator@example.test"
SSH_FPR = "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
PGP_FPR = "0123456789ABCDEF0123456789ABCDEF01234567"
TRUST = TrustRoot("", {ME: frozenset({PGP_FPR})})


@pytest.mark.parametrize(
    ("status", "signer", "fpr", "ok", "reached", "why"),
    [
        ("G", ME, SSH_FPR, True, True, "good SSH signature"),
        ("N", "", "", False, True, "not signed"),
        ("G", "mallory@example.test", SSH_FPR, False, True, "not by its committer"),
        ("U", "", SSH_FPR, False, True, "not in the allowed signers"),
        ("B", "", SSH_FPR, False, False, "bad or unverifiable"),  # never remembered
        ("E", "", SSH_FPR, False, False, "bad or unverifiable"),  # ssh-keygen missing
        ("X", ME, SSH_FPR, False, True, "bad or unverifiable"),
        ("R", ME, SSH_FPR, False, True, "bad or unverifiable"),
        ("G", ME, PGP_FPR, True, True, "OpenPGP signature by an allowed key"),
        ("U", ME, PGP_FPR, True, True, "OpenPGP signature by an allowed key"),
        # An OpenPGP user id is whatever its maker chose: only the fingerprint counts.
        ("G", ME, "F" * 40, False, True, "OpenPGP key not allowed"),
    ],
)
def test_a_signature_verdict(
    status: str, signer: str, fpr: str, ok: bool, reached: bool, why: str
) -> None:
    verdict = _judge(TRUST, status, signer, ME, [fpr, ""])
    assert (verdict.ok, verdict.reached) == (ok, reached)
    assert why in verdict.detail
