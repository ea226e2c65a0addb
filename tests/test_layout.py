"""The test tree keeps its shape: test files import the `testing` package, never
conftest or one another; test file names are unique across folders; every test
folder mirrors a package that exists; the support modules stay small."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

from testing.paths import ROOT

TESTS = ROOT / "tests"
PACKAGE = ROOT / "toolkit" / "releasectl"
# Folders of tests that are not a releasectl subpackage: the runner stand-in's own
# tests, and the package as users install it.
NOT_A_SUBPACKAGE = {"gha", "packaging", "fixtures"}


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "fixtures" not in p.parts)


def _imported(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_tests_import_neither_conftest_nor_each_other() -> None:
    local = {p.stem for p in TESTS.rglob("*.py")} - {"__init__"}
    offenders = {
        str(p.relative_to(ROOT)): sorted(_imported(p) & local)
        for p in [*_test_files(), TESTS / "conftest.py"]
        if _imported(p) & local
    }
    assert offenders == {}


def test_test_file_names_are_unique_across_folders() -> None:
    twice = [name for name, n in Counter(p.name for p in _test_files()).items() if n > 1]
    assert twice == []


def test_each_test_folder_mirrors_a_package() -> None:
    folders = {p.parent.relative_to(TESTS) for p in _test_files()} - {Path(".")}
    orphans = [
        str(f)
        for f in folders
        if f.parts[0] not in NOT_A_SUBPACKAGE and not (PACKAGE / f / "__init__.py").is_file()
    ]
    assert orphans == []


def test_support_modules_stay_small() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "testing").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert big == {}


def test_the_run_order_names_test_files_that_exist() -> None:
    """testing/schedule.py orders files by their measured time; a renamed file
    would silently drop to the back and unbalance the two workers."""
    from testing.schedule import SECONDS

    missing = [name for name in SECONDS if not (ROOT / name).is_file()]
    assert missing == [], f"testing/schedule.py lists files that are gone: {missing}"
