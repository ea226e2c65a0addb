"""releasectl, a Git repository as the registry of ML model releases: the package
root, which imports nothing heavy so that `releasectl --help` stays fast
(docs/ARCHITECTURE.md, "Layers").

The library API lives in the modules named after their concept (manifest,
registry, revert, ...); the CLI in `cli` is a thin layer over them.
"""

from __future__ import annotations

__version__ = "0.1.0"
