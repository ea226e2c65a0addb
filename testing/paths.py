"""Where things are in this checkout (one home for each path the tests read)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout: toolkit/, tests/, testing/
FIXTURES = ROOT / "tests" / "fixtures"  # the small fixture bentos and metrics scrapes
WORKFLOWS = ROOT / ".github" / "workflows"  # the project's shipped workflows
