"""Counting the calls of a library function, wherever the package bound it."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import pytest


def count_calls(monkeypatch: pytest.MonkeyPatch, func: Callable[..., Any]) -> list[tuple[Any, ...]]:
    """Replace every module-level binding of `func` in the loaded `releasectl`
    modules (its own module's and every `from ... import`) with a wrapper that
    records its arguments; returns the record. Import the modules a flow uses
    before calling this: a module loaded later binds the original."""
    calls: list[tuple[Any, ...]] = []

    @functools.wraps(func)
    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return func(*args, **kwargs)

    for name, module in list(sys.modules.items()):
        if name != "releasectl" and not name.startswith("releasectl."):
            continue
        for attr, value in list(vars(module).items()):
            if value is func:
                monkeypatch.setattr(module, attr, counted)
    return calls
