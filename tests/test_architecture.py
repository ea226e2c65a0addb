"""The package's shape, read from its source (docs/ARCHITECTURE.md, "Layers"):
no import cycle between releasectl modules, no library module that imports the
command line, no two public classes with one name, no module too long to read.

Static analysis with `ast` over every `.py` file under toolkit/releasectl: the
modules are found by walking the tree, never listed here, and nothing is
imported or run. Each checker is also run on a small package made in tmp_path
that breaks its rule, so that a green run means the rule holds, not that the
checker saw nothing.

What counts as an import: every `import` and `from ... import` statement in a
module, at module level, inside functions and under `if TYPE_CHECKING:` alike.
An import deferred into a function still runs (the CLI defers its heavy imports
to stay fast, and deferring is also how a cycle is hidden), and a type-only
import still couples the two modules; a rule that ignored them would be one a
deferred import could quietly break. `from pkg.sub import name` names the
module `pkg.sub.name` when that is a module, else `pkg.sub`. The parent
packages that Python initialises on the way (`pkg/__init__.py` before
`pkg.sub`) are not counted: `cli/__init__.py` composes the command modules
beneath it, and that is not a cycle unless a command module names `pkg.cli`
itself.
"""

from __future__ import annotations

import ast
import itertools
import re
import subprocess
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

TOOLKIT = Path(__file__).resolve().parents[1] / "toolkit"
PACKAGE = "releasectl"
CLI = "cli"  # the command-line subpackage: the only code allowed to import it

# The longest a module may be. The issue that split the package aimed at ~400
# lines for a module mixing two concerns; after the split the longest
# single-concern module is registry/landing.py (about 500 lines: one landing
# protocol and its crash journal), so the ceiling is 520: it holds once the
# split has landed and stops any module from growing much past that.
MAX_LINES = 520


@dataclass(frozen=True)
class Import:
    source: str  # the module that imports
    target: str  # the package module it names
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


def find_modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of `package` under `root`, by dotted name (a package by its
    `__init__.py`)."""
    found: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    if not found:
        raise AssertionError(f"no module of {package} under {root}")
    return found


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    """`from ..x import y` in `module`, as an absolute dotted name (ruff bans the
    form, but the checker must not miss an import that slipped in)."""
    base = module.split(".")
    if not is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(module: str, path: Path, modules: dict[str, Path], package: str) -> list[Import]:
    """The package modules `module` imports, wherever the import statement is."""
    found: list[Import] = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.append(submodule if submodule in modules else base)
        else:
            continue
        for target in targets:
            if target == package or target.startswith(package + "."):
                found.append(Import(module, target, node.lineno))
    return found


@dataclass(frozen=True)
class Cycle:
    modules: list[str]  # every module in the group that import each other
    chain: list[Import]  # one chain of imports that closes a circle

    def __str__(self) -> str:
        return f"{', '.join(self.modules)}\n    e.g. " + ", ".join(str(e) for e in self.chain)


def import_graph(root: Path, package: str) -> dict[str, list[Import]]:
    modules = find_modules(root, package)
    return {name: imports_of(name, path, modules, package) for name, path in modules.items()}


def import_cycles(graph: dict[str, list[Import]]) -> list[Cycle]:
    """Every group of modules that import each other, directly or through
    others (the strongly connected components, Tarjan's algorithm), each with
    one chain of imports that closes a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in graph.get(node, []):
            if edge.target not in index:
                visit(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            self_import = any(e.target == node for e in graph.get(node, []))
            if len(component) > 1 or self_import:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [Cycle(sorted(c), _cycle_in(c, graph)) for c in components]


def _cycle_in(component: set[str], graph: dict[str, list[Import]]) -> list[Import]:
    """A shortest chain of imports from the component's first module back to
    itself (breadth first, staying inside the component)."""
    start = min(component)
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for edge in graph.get(node, []):
            if edge.target == start:
                return [*paths[node], edge]
            if edge.target in component and edge.target not in paths:
                paths[edge.target] = [*paths[node], edge]
                queue.append(edge.target)
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def cli_imports_from_the_library(graph: dict[str, list[Import]], package: str) -> list[Import]:
    """Imports of the command line by modules outside it. `__main__` is the
    `python -m` entry point, which is the command line's to start."""
    cli = f"{package}.{CLI}"

    def in_cli(name: str) -> bool:
        return name == cli or name.startswith(cli + ".")

    return [
        edge
        for source, edges in graph.items()
        if not in_cli(source) and source != f"{package}.__main__"
        for edge in edges
        if in_cli(edge.target)
    ]


# The layers from the bottom (docs/ARCHITECTURE.md, "Layers"): a module in a
# subpackage belongs to that layer, a top-level module to the base.
LAYERS = (
    "base",
    "manifest",
    "bundles",
    "analysis",
    "render",
    "registry",
    "serving",
    "pipeline",
    "cli",
)
# An import that goes up a layer, allowed by name: (importing module, imported
# module) -> why. Each entry is one pair, so a second upward import from the same
# module is a decision of its own. None is allowed, and an entry whose import has
# gone fails too (test_every_allowed_upward_import_still_exists).
UPWARD_ALLOWED: dict[tuple[str, str], str] = {}


def layer_of(module: str, package: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "base"


def upward_imports(
    graph: dict[str, list[Import]],
    package: str,
    allowed: dict[tuple[str, str], str] | None = None,
) -> list[Import]:
    """Imports from a lower layer into a higher one, beyond the allowed pairs
    (UPWARD_ALLOWED unless given)."""
    allowed = UPWARD_ALLOWED if allowed is None else allowed
    found = []
    for source, edges in graph.items():
        if source == f"{package}.__main__":
            continue
        low = LAYERS.index(layer_of(source, package))
        for edge in edges:
            up = LAYERS.index(layer_of(edge.target, package)) > low
            if up and (source, edge.target) not in allowed:
                found.append(edge)
    return found


# Starting the command line from the library is an import of it by another name:
# `python -m releasectl`, the console script `releasectl` as a program, or the
# program this one was started as (`sys.argv[0]`). A library module that runs a
# process of its own names the module it runs (`python -m
# releasectl.pipeline.detached_watch`), never the CLI's argument list.
CONSOLE_SCRIPT = "releasectl"
# `-m releasectl` anywhere (not `-m releasectl.some.module`), and a shell command
# line run through a shell (`shell=True`, `os.system`) that begins with the script.
_DASH_M = r"(?:^|\s)-m\s+{}(?![\w.])"
_SHELLS = {"system", "popen"}


def cli_starts_from_the_library(root: Path, package: str) -> list[str]:
    """`module:line` of every start of the command line outside `cli/` and
    `__main__`: a literal argv (list or tuple) whose program is the console script
    or that holds `"-m", "<package>"`; `-m <package>` in any string; a command
    line run through a shell that begins with the console script; a lookup of the
    console script on PATH; and any use of `sys.argv[0]`."""
    cli = f"{package}.{CLI}"
    found: list[tuple[str, int]] = []
    for name, path in find_modules(root, package).items():
        if name == cli or name.startswith(cli + ".") or name == f"{package}.__main__":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.expr) and _starts_the_cli(node, package):
                found.append((name, node.lineno))
    return [f"{name}:{line}" for name, line in sorted(set(found))]


def _text(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _runs_a_shell(call: ast.Call) -> bool:
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    shell = any(k.arg == "shell" and _truthy(k.value) for k in call.keywords)
    return shell or called in _SHELLS


def _truthy(node: ast.expr) -> bool:
    return not (isinstance(node, ast.Constant) and not node.value)


def _starts_the_cli(node: ast.expr, package: str) -> bool:
    if isinstance(node, ast.List | ast.Tuple):
        words = [_text(e) for e in node.elts]
        if words and words[0] == CONSOLE_SCRIPT:
            return True
        return any(a == "-m" and b == package for a, b in itertools.pairwise(words))
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return re.search(_DASH_M.format(re.escape(package)), node.value) is not None
    if isinstance(node, ast.Call):
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        first = _text(node.args[0]) if node.args else None
        if called == "which":
            return first == CONSOLE_SCRIPT
        return _runs_a_shell(node) and (first or "").split()[:1] == [CONSOLE_SCRIPT]
    if isinstance(node, ast.Subscript):
        argv, index = node.value, node.slice
        return (
            isinstance(argv, ast.Attribute)
            and argv.attr == "argv"
            and isinstance(argv.value, ast.Name)
            and argv.value.id == "sys"
            and isinstance(index, ast.Constant)
            and index.value == 0
        )
    return False


def shared_class_names(root: Path, package: str) -> dict[str, list[str]]:
    """Public classes (module level, no leading underscore) whose name more than
    one module defines, with the modules."""
    where: dict[str, list[str]] = defaultdict(list)
    for name, path in find_modules(root, package).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                where[node.name].append(name)
    return {cls: modules for cls, modules in sorted(where.items()) if len(modules) > 1}


def long_modules(root: Path, package: str, limit: int) -> dict[str, int]:
    """Modules longer than `limit` lines, with their length."""
    lengths = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in find_modules(root, package).items()
    }
    return {name: n for name, n in lengths.items() if n > limit}


# Code cites the architecture as (docs/ARCHITECTURE.md, "Section"), a comment
# possibly wrapped over lines; it never cites documents the repository lacks.
CITATION = re.compile(r'ARCHITECTURE\.md,(?:\s|#)*"([^"]+)"')
FOREIGN_CITATION = re.compile(r"DESIGN *§|§ *\d|\bissues? +#?\d+", re.IGNORECASE)


def architecture_sections(doc: str) -> set[str]:
    return {line.lstrip("#").strip() for line in doc.splitlines() if line.startswith("#")}


def bad_citations(text: str, sections: set[str]) -> list[str]:
    """Sections `text` cites that the architecture lacks, and foreign citations."""
    unknown = [f'"{name}"' for name in CITATION.findall(text) if name not in sections]
    return unknown + FOREIGN_CITATION.findall(text)


def uncited_modules(root: Path, package: str, sections: set[str]) -> dict[str, str]:
    """Modules whose docstring cites no section of the architecture that exists,
    with what is wrong; a citation in a comment does not count, since the
    docstring is what says what a module does and why."""
    found: dict[str, str] = {}
    for name, path in find_modules(root, package).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        doc = ast.get_docstring(tree)
        cited = CITATION.findall(doc or "")
        if doc is None:
            found[name] = "no docstring"
        elif not cited:
            found[name] = "its docstring cites no section"
        elif not set(cited) & sections:
            found[name] = "its docstring cites only missing sections: " + ", ".join(cited)
    return found


def source_files(repo: Path) -> list[Path]:
    """The repository's files (committed or new) that hold code or its settings;
    not the change log, a history that may name old issues, nor this file, whose
    examples are wrong on purpose."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    code = (".py", ".toml", ".yaml", ".yml", ".sh")
    return [
        repo / name
        for name in listed
        if (name.endswith(code) or name.startswith("scripts/"))
        and repo / name != Path(__file__).resolve()
    ]


# --- the package as it is -----------------------------------------------------


def test_the_walk_reaches_every_module_and_the_entry_point_imports_the_library() -> None:
    # Guards the checks below against passing on an empty or half-read tree.
    graph = import_graph(TOOLKIT, PACKAGE)
    files = list((TOOLKIT / PACKAGE).rglob("*.py"))
    assert len(graph) == len(files)
    pyproject = tomllib.loads((TOOLKIT.parent / "pyproject.toml").read_text(encoding="utf-8"))
    entry = pyproject["project"]["scripts"]["releasectl"].split(":")[0]
    library = [e for e in graph[entry] if not e.target.startswith(entry)]
    assert library, f"{entry} imports no library module"


def test_no_import_cycle_between_modules() -> None:
    cycles = import_cycles(import_graph(TOOLKIT, PACKAGE))
    assert not cycles, "modules that import each other:\n" + "\n".join(f"  {c}" for c in cycles)


def test_no_library_module_imports_the_command_line() -> None:
    found = cli_imports_from_the_library(import_graph(TOOLKIT, PACKAGE), PACKAGE)
    assert not found, "the library imports the CLI:\n" + "\n".join(f"  {e}" for e in found)


def test_every_import_goes_down_the_layers() -> None:
    assert UPWARD_ALLOWED == {}, "the layers hold without exceptions"
    found = upward_imports(import_graph(TOOLKIT, PACKAGE), PACKAGE)
    assert not found, "imports that go up a layer:\n" + "\n".join(f"  {e}" for e in found)


def test_every_allowed_upward_import_still_exists() -> None:
    # An allowance outliving its import would let the next one in unseen.
    graph = import_graph(TOOLKIT, PACKAGE)
    real = {(e.source, e.target) for e in upward_imports(graph, PACKAGE, allowed={})}
    assert set(UPWARD_ALLOWED) <= real, set(UPWARD_ALLOWED) - real


def test_no_library_module_starts_the_command_line() -> None:
    found = cli_starts_from_the_library(TOOLKIT, PACKAGE)
    assert not found, "the library starts the CLI:\n  " + "\n  ".join(found)


def test_an_import_up_a_layer_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "names.py": "",
            "manifest/schema.py": "from pkg import names\n",  # down: allowed
            "analysis/promql.py": "from pkg.manifest import schema\n",  # down: allowed
            "render/kubernetes.py": "from pkg.analysis import promql\n",  # down: allowed
            "registry/history.py": "def f():\n    from pkg.serving import deploy\n",
            "serving/deploy.py": "from pkg.registry import history\n",
            "bundles/build.py": "from pkg.registry import history\n",  # bundles are below
        },
    )
    found = upward_imports(import_graph(root, "pkg"), "pkg")
    assert sorted(str(e) for e in found) == [
        "pkg.bundles.build -> pkg.registry.history (line 1)",
        "pkg.registry.history -> pkg.serving.deploy (line 2)",
    ]


def test_an_allowance_names_one_pair_of_modules(tmp_path: Path) -> None:
    # Allowing registry.release -> serving.deploy lets nothing else into serving.
    root = _package(
        tmp_path,
        {
            "registry/release.py": "from pkg.serving import deploy, watcher\n",
            "serving/deploy.py": "",
            "serving/watcher.py": "",
        },
    )
    allowed = {("pkg.registry.release", "pkg.serving.deploy"): "a reason"}
    found = upward_imports(import_graph(root, "pkg"), "pkg", allowed=allowed)
    assert [str(e) for e in found] == ["pkg.registry.release -> pkg.serving.watcher (line 1)"]


def test_a_planted_start_of_the_command_line_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "serving/watcher.py": "import subprocess, sys\n"
            "def start(model):\n"
            "    subprocess.Popen([sys.executable, '-m', 'pkg', 'watch', model])\n",
            "serving/script.py": "def argv(model):\n    return ('releasectl', 'watch', model)\n",
            "pipeline/again.py": "import sys\ndef again(args):\n    return [sys.argv[0], *args]\n",
            "pipeline/which.py": "import shutil\nPROGRAM = shutil.which('releasectl')\n",
            "pipeline/shell.py": "import os, subprocess\n"
            "subprocess.run('releasectl watch iris --push', shell=True)\n"
            "os.system('releasectl agent stop')\n",
            "serving/python_m.py": "LINE = 'python3 -m pkg watch iris'\n",
            # Allowed: the CLI itself, the entry point, a library module run by its
            # own name, the console script named in a message, a label or a spec.
            "cli/demo.py": "import sys\nARGV = [sys.executable, '-m', 'pkg', 'list']\n",
            "__main__.py": "import sys\nPROG = sys.argv[0]\n",
            "serving/agent.py": "import sys\n"
            "CMD = [sys.executable, '-m', 'pkg.serving.agent', '--home', 'h']\n"
            "ARGS = sys.argv[1:]\n",
            "registry/release.py": "HINT = 'see `releasectl history iris`'\n"
            "import subprocess\nsubprocess.run(['git', 'log'], shell=False)\n"
            "NEXT = 'run releasectl init first'\n"
            "SPEC = 'releasectl[example]'\n"
            "LABEL = {'app.kubernetes.io/managed-by': 'releasectl'}\n",
        },
    )
    assert cli_starts_from_the_library(root, "pkg") == [
        "pkg.pipeline.again:3",
        "pkg.pipeline.shell:2",
        "pkg.pipeline.shell:3",
        "pkg.pipeline.which:2",
        "pkg.serving.python_m:1",
        "pkg.serving.script:2",
        "pkg.serving.watcher:3",
    ]


# The one verified view (docs/ARCHITECTURE.md, "Trust"): only it reads the
# files under .releasectl/. A read is a call of a git or file reader whose
# arguments (or receiver) name such a path, as a literal or by one of the
# names the package gives those paths.
VIEW = "view"
_READERS = {"read_blob", "read_blobs", "read_text", "read_bytes", "open", "out", "run", "start"}
_TRUST_PATH_NAMES = {
    "SSH_FILE",
    "OPENPGP_FILE",
    "ADMINS_FILE",
    "TRUST_FILES",
    "CONFIG",
    "LOCK_FILE",
}


def trust_path_reads(root: Path, package: str) -> list[str]:
    """`module:line` of every read of a `.releasectl/` path outside the view."""
    found = []
    for name, path in find_modules(root, package).items():
        if name == f"{package}.{VIEW}":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called not in _READERS:
                continue
            for part in ast.walk(node):
                literal = part.value if isinstance(part, ast.Constant) else None
                if (isinstance(literal, str) and ".releasectl/" in literal) or (
                    (isinstance(part, ast.Name) and part.id in _TRUST_PATH_NAMES)
                    or (isinstance(part, ast.Attribute) and part.attr in _TRUST_PATH_NAMES)
                ):
                    found.append(f"{name}:{node.lineno}")
                    break
    return found


def test_only_the_verified_view_reads_the_trust_root_and_settings() -> None:
    found = trust_path_reads(TOOLKIT, PACKAGE)
    assert not found, "reads of .releasectl/ outside releasectl.view:\n  " + "\n  ".join(found)


def test_a_planted_read_of_the_trust_root_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "view.py": "def read(git):\n    return g.read_blob(git, 'HEAD', '.releasectl/x')\n",
            "config.py": "CONFIG = '.releasectl/config.yaml'\n"
            "def settings(git):\n    return g.read_blob(git, 'HEAD', CONFIG)\n",
            "serving/notify.py": "def load(root):\n"
            "    return (root / '.releasectl/config.yaml').read_text()\n",
            "pipeline/ci.py": "def lock(git):\n"
            "    return git.out('show', f'HEAD:.releasectl/requirements.lock')\n",
        },
    )
    assert sorted(trust_path_reads(root, "pkg")) == [
        "pkg.config:3",
        "pkg.pipeline.ci:2",
        "pkg.serving.notify:2",
    ]


def test_no_two_public_classes_share_a_name() -> None:
    shared = shared_class_names(TOOLKIT, PACKAGE)
    assert not shared, "one class name, several meanings:\n" + "\n".join(
        f"  {cls}: {', '.join(modules)}" for cls, modules in shared.items()
    )


def test_no_module_is_longer_than_the_limit() -> None:
    found = long_modules(TOOLKIT, PACKAGE, MAX_LINES)
    assert not found, f"modules over {MAX_LINES} lines:\n" + "\n".join(
        f"  {name}: {n}" for name, n in sorted(found.items())
    )


def test_code_cites_only_sections_the_architecture_has() -> None:
    repo = TOOLKIT.parent
    sections = architecture_sections((repo / "docs" / "ARCHITECTURE.md").read_text("utf-8"))
    files = source_files(repo)
    assert any(CITATION.search(p.read_text("utf-8")) for p in files if p.suffix == ".py")
    found = {
        str(p.relative_to(repo)): bad
        for p in files
        if p.is_file() and (bad := bad_citations(p.read_text("utf-8"), sections))
    }
    assert not found, f"citations of what docs/ARCHITECTURE.md does not hold: {found}"


def test_every_module_says_in_its_docstring_which_section_it_follows() -> None:
    sections = architecture_sections(
        (TOOLKIT.parent / "docs" / "ARCHITECTURE.md").read_text("utf-8")
    )
    found = uncited_modules(TOOLKIT, PACKAGE, sections)
    assert not found, "modules whose docstring cites no docs/ARCHITECTURE.md section:\n" + (
        "\n".join(f"  {name}: {why}" for name, why in sorted(found.items()))
    )


# --- each checker finds what it is for ---------------------------------------


def _package(root: Path, files: dict[str, str]) -> Path:
    """A package `pkg` under `root` from {relative path: source}; every folder
    gets an `__init__.py` (empty unless given)."""
    for relative, source in files.items():
        path = root / "pkg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    for folder in [root / "pkg", *(p for p in (root / "pkg").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return root


def _cycle_names(root: Path) -> list[list[str]]:
    cycles = import_cycles(import_graph(root, "pkg"))
    for cycle in cycles:  # the chain closes: each import starts where the last one ended
        assert [e.target for e in cycle.chain] == [e.source for e in cycle.chain[1:]] + [
            cycle.chain[0].source
        ]
    return [cycle.modules for cycle in cycles]


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        pytest.param(
            {"a.py": "from pkg import b\n", "b.py": "from pkg.a import thing\n"},
            ["pkg.a", "pkg.b"],
            id="module-level",
        ),
        pytest.param(
            {
                "a.py": "import pkg.sub.b\n",
                "sub/b.py": "from pkg.sub import c\n",
                "sub/c.py": "def late():\n    from pkg import a\n",
            },
            ["pkg.a", "pkg.sub.b", "pkg.sub.c"],
            id="three-modules-closed-by-an-import-inside-a-function",
        ),
        pytest.param(
            {
                "a.py": "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from pkg.b import B\n",
                "b.py": "from pkg import a\n",
            },
            ["pkg.a", "pkg.b"],
            id="type-only",
        ),
        pytest.param(
            {"a.py": "from . import b\n", "b.py": "from .a import thing\n"},
            ["pkg.a", "pkg.b"],
            id="relative",
        ),
        pytest.param(
            # The circle the old CLI had: the app imports its commands, which import the app.
            {
                "cli/__init__.py": "from pkg.cli import reading\n",
                "cli/reading.py": "from pkg.cli import app\n",
            },
            ["pkg.cli", "pkg.cli.reading"],
            id="app-and-its-commands",
        ),
    ],
)
def test_a_cycle_is_found_and_named(
    tmp_path: Path, files: dict[str, str], cycle: list[str]
) -> None:
    assert _cycle_names(_package(tmp_path, files)) == [cycle]


def test_an_app_that_composes_its_commands_is_not_a_cycle(tmp_path: Path) -> None:
    # The CLI's layout: the app imports the command modules, which import a sibling
    # (output) and the library, never the app; a child is not an import of its parent.
    root = _package(
        tmp_path,
        {
            "cli/__init__.py": "from pkg.cli import output, reading\n",
            "cli/output.py": "import json\n",
            "cli/reading.py": "from pkg.cli.output import say\nfrom pkg import history\n",
            "history.py": "from pkg.errors import BadInput\n",
            "errors.py": "class BadInput(Exception): ...\n",
        },
    )
    assert _cycle_names(root) == []


def test_a_library_module_that_imports_the_cli_is_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "cli/__init__.py": "from pkg import history\n",
            "cli/output.py": "from pkg.cli import app\n",  # inside the CLI: allowed
            "history.py": "def show():\n    from pkg.cli.output import say\n",
            "serving/deploy.py": "import pkg.cli\n",
            "__main__.py": "from pkg.cli import main\n",  # the entry point: allowed
        },
    )
    found = cli_imports_from_the_library(import_graph(root, "pkg"), "pkg")
    assert sorted(str(e) for e in found) == [
        "pkg.history -> pkg.cli.output (line 2)",
        "pkg.serving.deploy -> pkg.cli (line 1)",
    ]


def test_public_classes_sharing_a_name_are_found(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "registry/revert.py": "class Plan: ...\nclass _Step: ...\n",
            "registry/release.py": "class Plan: ...\nclass _Step: ...\n",
            "serving/deploy.py": "def f():\n    class Plan: ...\nclass State: ...\n",
        },
    )
    assert shared_class_names(root, "pkg") == {
        "Plan": ["pkg.registry.release", "pkg.registry.revert"]
    }


def test_a_module_over_the_limit_is_found(tmp_path: Path) -> None:
    root = _package(tmp_path, {"at.py": "x = 1\n" * 10, "over.py": "x = 1\n" * 11})
    assert long_modules(root, "pkg", 10) == {"pkg.over": 11}


def test_a_citation_of_a_missing_section_or_another_document_is_found() -> None:
    sections = architecture_sections("# title\n## Revert\n### The deploy gate\n")
    text = (
        '# kept (docs/ARCHITECTURE.md,\n# "The deploy gate"), '
        '(docs/ARCHITECTURE.md, "Revert")\n'
        '"""a rule (docs/ARCHITECTURE.md, "Reverts"), DESIGN §3, issue 14, issues 9"""\n'
    )
    assert bad_citations(text, sections) == ['"Reverts"', "DESIGN §", "issue 14", "issues 9"]


def test_a_module_whose_docstring_cites_no_section_is_found(tmp_path: Path) -> None:
    cites = '"""Does a thing (docs/ARCHITECTURE.md, "Revert")."""\n'
    root = _package(
        tmp_path,
        {
            "__init__.py": '"""The package (docs/ARCHITECTURE.md,\n"Layers")."""\n',
            "registry/__init__.py": cites,
            "registry/revert.py": cites,
            "registry/bare.py": "x = 1\n",
            "registry/vague.py": '"""Does a thing, as the architecture says."""\n',
            "registry/comment.py": '"""Does a thing."""\n# (docs/ARCHITECTURE.md, "Revert")\n',
            "registry/gone.py": '"""Does a thing (docs/ARCHITECTURE.md, "Reverts")."""\n',
        },
    )
    assert uncited_modules(root, "pkg", {"Layers", "Revert"}) == {
        "pkg.registry.bare": "no docstring",
        "pkg.registry.vague": "its docstring cites no section",
        "pkg.registry.comment": "its docstring cites no section",
        "pkg.registry.gone": "its docstring cites only missing sections: Reverts",
    }
