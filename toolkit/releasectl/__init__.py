"""releasectl: a Git repository as the registry of ML model releases.

The library API lives in the modules named after their concept (manifest,
registry, revert, ...); the CLI in `cli` is a thin layer over them. Nothing
heavy is imported here so that `releasectl --help` stays fast.
"""

from __future__ import annotations

__version__ = "0.1.0"
