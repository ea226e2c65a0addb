"""The trailers releasectl writes at the end of its commit and tag messages,
and reads back: the one home of their spelling (docs/ARCHITECTURE.md,
"Revert"). git parses only the message's final paragraph as trailers, so
`block` is always written last, after a blank line."""

from __future__ import annotations

MODEL = "Releasectl-Model"
VERSION = "Releasectl-Version"
SERIAL = "Releasectl-Serial"
REVERT_FROM = "Releasectl-Revert-From"
REVERT_TO = "Releasectl-Revert-To"
UNSIGNED_SOURCES = "Releasectl-Unsigned-Sources"
ADOPT = "Releasectl-Adopt"
TRUST_ROOT = "Releasectl-Trust-Root"  # the commit that sets the registry up


def revert(model: str, from_version: str, to_version: str, serial: int) -> dict[str, str]:
    """A revert commit's trailers, in the order it writes them; a state is a
    verified revert only when its commit carries exactly these."""
    return {
        MODEL: model,
        REVERT_FROM: from_version,
        REVERT_TO: to_version,
        SERIAL: str(serial),
    }


def block(trailers: dict[str, str]) -> str:
    """`Key: value` lines, one per trailer."""
    return "".join(f"{key}: {value}\n" for key, value in trailers.items())
