"""The succession policy: how a model's next manifest follows the one before
it (docs/ARCHITECTURE.md, "The registry"). A release raises the version, and
every change of the release state, a revert included, raises the serial by
exactly one; a revert is the one change whose version goes back.

`check` (a pull request against its base) and the pre-commit hook (staged
against HEAD) judge with `Succession`; `release`, `propose` and `revert` write
the next state with `version_rises` and `next_serial`."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from releasectl.names import parse_version

if TYPE_CHECKING:
    from releasectl.manifest.schema import Manifest


def next_serial(serial: int) -> int:
    return serial + 1


def version_rises(before: str, after: str) -> bool:
    return parse_version(after) > parse_version(before)


class Succession(NamedTuple):
    """One manifest following another: what the policy says about the step."""

    before_version: str
    before_serial: int
    version: str
    serial: int

    @classmethod
    def between(cls, before: Manifest, after: Manifest) -> Succession:
        return cls(before.version, before.serial, after.version, after.serial)

    @property
    def unchanged(self) -> bool:
        """Neither version nor serial moved: the change is not a release."""
        return (self.version, self.serial) == (self.before_version, self.before_serial)

    @property
    def version_rises(self) -> bool:
        return version_rises(self.before_version, self.version)

    @property
    def expected_serial(self) -> int:
        return next_serial(self.before_serial)

    @property
    def serial_follows(self) -> bool:
        return self.serial == self.expected_serial
