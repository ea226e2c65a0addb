"""How long steps look: plain lines where nobody watches a terminal, a spinner with the
elapsed time where somebody does; a failing step says so."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from releasectl.cli.progress import PlainLines, Spinner
from releasectl.progress import step


def test_plain_lines_say_when_a_step_starts_and_how_it_ended() -> None:
    out = io.StringIO()
    reporter = PlainLines(out)
    with step(reporter, "creating the Python environment of iris 1.0.0 (3 pins)"):
        pass
    with pytest.raises(RuntimeError), step(reporter, "waiting for iris 1.0.0 to go live"):
        raise RuntimeError("no")
    lines = out.getvalue().splitlines()
    assert lines[0] == "releasectl: creating the Python environment of iris 1.0.0 (3 pins) ..."
    assert re.fullmatch(r"releasectl: creating .* \(3 pins\): done after \d+\.\d s", lines[1])
    assert lines[2] == "releasectl: waiting for iris 1.0.0 to go live ..."
    assert re.fullmatch(r"releasectl: waiting for .* live: failed after \d+\.\d s", lines[3])
    assert len(lines) == 4


def test_a_terminal_sees_a_spinner_then_one_line_per_step() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    reporter = Spinner(console)
    with step(reporter, "fetching and extracting the bundle of iris [1.0.0]"):
        pass
    with pytest.raises(RuntimeError), step(reporter, "waiting for iris 1.0.0 to go live"):
        raise RuntimeError("no")
    text = screen.getvalue()
    # The step's text is shown as written (no markup), with its elapsed time.
    fetched = r"✓ fetching and extracting the bundle of iris \[1\.0\.0\] \(\d+\.\d s\)"
    assert re.search(fetched, text)
    assert re.search(r"✗ waiting for iris 1\.0\.0 to go live \(\d+\.\d s\)", text)
