"""Text from outside as one line: the table of what `one_line` does."""

from __future__ import annotations

import pytest

from releasectl.text import one_line


@pytest.mark.parametrize(
    ("text", "limit", "line"),
    [
        ("plain", None, "plain"),
        ("two\nlines\r\n", None, "two lines"),
        ("a\x1b[2Jb", None, "a [2Jb"),  # an escape sequence cannot clear a screen
        ("tab\tand  spaces ", None, "tab and spaces"),
        ("\u202eevil", None, "evil"),  # a bidirectional override is not printable
        ("x" * 10, 5, "xxxx…"),
        ("x" * 5, 5, "xxxxx"),
    ],
)
def test_one_line(text: str, limit: int | None, line: str) -> None:
    assert one_line(text, limit) == line
