"""Shows the long steps that releasectl.progress reports (docs/ARCHITECTURE.md,
"Layers"): on a terminal a spinner with the elapsed time, then one line per
finished step; otherwise (CI logs, pipes) a plain line when a step starts and
one when it ends. Always on stderr: stdout carries the result, one JSON
document with --json.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from releasectl.progress import Progress


class PlainLines:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr

    def begin(self, step: str) -> None:
        self.out.write(f"releasectl: {step} ...\n")
        self.out.flush()

    def end(self, step: str, seconds: float, ok: bool) -> None:
        self.out.write(f"releasectl: {step}: {'done' if ok else 'failed'} after {seconds:.1f} s\n")
        self.out.flush()


class Spinner:
    """rich's live display (bentoml depends on rich), imported only on a terminal."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console

        self.console = console or Console(stderr=True, highlight=False)
        self.live: Any = None

    def begin(self, step: str) -> None:
        from rich.progress import Progress as Bar
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self.live = Bar(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.live.start()
        self.live.add_task(step, total=None)

    def end(self, step: str, seconds: float, ok: bool) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        mark = "✓" if ok else "✗"
        self.console.print(f"{mark} {step} ({seconds:.1f} s)", markup=False)


def terminal_progress() -> Progress:
    return Spinner() if sys.stderr.isatty() else PlainLines()
