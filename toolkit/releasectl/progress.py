"""Progress of the long steps (fetching a bundle, creating an environment,
waiting for a server), as the library reports it (docs/ARCHITECTURE.md,
"Layers"). The library only says when a step begins and ends; the command
line decides how that looks (cli layer: cli/progress.py), and a caller that
passes nothing sees nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Progress(Protocol):
    def begin(self, step: str) -> None:
        """A long step starts; `step` says what it does, in a few words."""

    def end(self, step: str, seconds: float, ok: bool) -> None:
        """The step started by begin(step) is over: done (ok) or failed."""


@contextmanager
def step(progress: Progress | None, text: str) -> Iterator[None]:
    """Report the block as one step, with its elapsed time; nothing without a reporter."""
    if progress is None:
        yield
        return
    started = time.monotonic()
    progress.begin(text)
    ok = False
    try:
        yield
        ok = True
    finally:
        progress.end(text, time.monotonic() - started, ok)
