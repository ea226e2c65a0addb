"""Every failure leaves through one funnel: for each exit code (docs/ARCHITECTURE.md,
"Exit codes") a real command path that produces it, read the three ways a
failure is read: one stderr line, the --json error document, and the GitHub
Actions annotation (plus its job-summary line). Real git, real SSH keys, the
real `releasectl` executable; exit 4 on a real bentoml server."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from releasectl.loopback import free_port
from testing.bentos import iris_registry, set_analysis
from testing.cli import run as run_cli
from testing.histories import release
from testing.processes import state_home
from testing.repos import Repo, make_key

CLI_PACKAGE = Path(__file__).resolve().parents[2] / "toolkit" / "releasectl" / "cli"
SIGNERS = ".releasectl/allowed_signers"


@dataclass
class Failure:
    """One failing command, run plain, with --json and under GitHub Actions."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    json_lines: bool = False  # its --json prints JSON lines, the failure last

    def run(
        self, *extra: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli([*self.argv, *extra], cwd=self.cwd, env={**self.env, **(env or {})})


def _through_the_funnel(failure: Failure, code: int, words: str, tmp_path: Path) -> dict[str, Any]:
    """The failure read three ways; returns the --json document (its last line
    for a command that prints JSON lines)."""
    plain = failure.run()
    assert plain.returncode == code, (plain.returncode, plain.stderr, plain.stdout)
    lines = plain.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("releasectl: "), plain.stderr
    assert words in lines[0] and "Traceback" not in plain.stderr

    as_json = failure.run("--json")
    assert as_json.returncode == code, as_json.stderr
    out = as_json.stdout
    doc = json.loads(out.strip().splitlines()[-1] if failure.json_lines else out)
    assert doc["error"]["code"] == code and words in doc["error"]["message"], doc

    summary = tmp_path / f"summary-{code}.md"
    summary.write_text("")
    actions = failure.run(env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert actions.returncode == code, actions.stderr
    command = " ".join(["releasectl", *failure.argv])
    annotations = [
        line
        for line in actions.stdout.splitlines()
        if line.startswith(f"::error title={command}::")
    ]
    assert len(annotations) == 1 and words in annotations[0], actions.stdout
    assert f"(exit {code}): " in summary.read_text() and words in summary.read_text()
    return cast(dict[str, Any], doc)


# --- 1: the operation failed -------------------------------------------------------------


def test_exit_1_outside_a_git_repository(tmp_path: Path) -> None:
    elsewhere = tmp_path / "not-a-repo"
    elsewhere.mkdir()
    failure = Failure(["list"], elsewhere, {})
    _through_the_funnel(failure, 1, "is not inside a git repository", tmp_path)


# --- 2: bad input ------------------------------------------------------------------------


def test_exit_2_a_bad_model_name(registry: Repo, tmp_path: Path) -> None:
    before = registry.snapshot()
    failure = Failure(["show", "Iris"], registry.path, {})
    doc = _through_the_funnel(failure, 2, "invalid model name 'Iris'", tmp_path)
    assert doc["error"]["hint"].startswith("use a lower-case DNS label")
    assert registry.snapshot() == before


# --- 3: refused by trust -----------------------------------------------------------------


def test_exit_3_a_release_whose_signer_is_no_longer_trusted(registry: Repo, tmp_path: Path) -> None:
    """`verify` reports its checks, then refuses through the funnel: the --json
    document is the report with the error added."""
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    bob = make_key(tmp_path / "b", "bob")
    pub = Path(f"{bob}.pub").read_text().split()
    (registry.path / SIGNERS).write_text(f"bob@example.test {pub[0]} {pub[1]}\n")
    registry.commit("rotate: bob replaces the operator")

    failure = Failure(["verify", "iris", "1.0.0"], registry.path, {})
    doc = _through_the_funnel(failure, 3, "release/iris/v1.0.0 does not verify", tmp_path)
    assert doc["ok"] is False and not doc["checks"][0]["ok"]
    assert "FAIL" in failure.run().stdout  # the checks are still printed, one per line


# --- 4: the analysis needs a human -------------------------------------------------------

NO_TRAFFIC_ANALYSIS = {
    "interval": "2s",
    "bake": "6s",
    "min_requests": 5,
    "failure_limit": 1,
    "inconclusive_limit": 1,
    "consecutive_error_limit": 2,
    "metrics": {"error_rate": {"max": 0.05}},
}


@pytest.fixture
def deployed_iris(tmp_path: Path) -> Iterator[Repo]:
    """The real iris model released and deployed on the local target, and no traffic."""
    with state_home(tmp_path / "state"):
        repo = iris_registry(tmp_path, free_port())
        set_analysis(repo, NO_TRAFFIC_ANALYSIS)
        repo.ok("release", "iris", "1.0.0")
        repo.ok("deploy", "iris", "--no-watch")
        yield repo


@pytest.mark.slow
def test_exit_4_no_traffic_is_inconclusive(deployed_iris: Repo, tmp_path: Path) -> None:
    """`watch --judge-only` with nothing measured: a human decides. Its --json
    prints JSON lines; the last is the result with the error added."""
    before = deployed_iris.snapshot()
    failure = Failure(["watch", "iris", "--judge-only"], deployed_iris.path, {}, json_lines=True)
    doc = _through_the_funnel(failure, 4, "iris 1.0.0 needs a human", tmp_path)
    assert doc["verdict"]["outcome"] == "inconclusive" and doc["action"] == "judged"
    assert deployed_iris.snapshot() == before


# --- 70: a bug -------------------------------------------------------------------------


def test_exit_70_a_bug_is_one_line_and_the_traceback_is_behind_debug(
    registry: Repo, tmp_path: Path
) -> None:
    """A corrupt state file of the local target is something the library does
    not handle today (it parses the file without catching what a torn or
    hand-edited file raises): a genuine unexpected exception in `status`. If
    the library learns to report it, this test needs another such path."""
    home = tmp_path / "state"
    (home / "local").mkdir(parents=True)
    (home / "local" / "state.json").write_text("{not json\n")
    failure = Failure(["status"], registry.path, {"RELEASECTL_HOME": str(home)})
    doc = _through_the_funnel(failure, 70, "internal error: ValidationError", tmp_path)
    assert doc["error"]["hint"] == "rerun with --debug for the traceback"

    debug = failure.run("--debug")
    assert debug.returncode == 70 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1].startswith("releasectl: internal error: ")


# --- the app composes without a cycle ----------------------------------------------------


def _command_modules() -> list[str]:
    return sorted(p.stem for p in CLI_PACKAGE.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", _command_modules())
def test_a_command_module_imports_on_its_own(module: str) -> None:
    """Imported first, before `releasectl.cli` itself is, each module loads and
    the app it joins is complete."""
    program = (
        f"import releasectl.cli.{module}\n"
        "from typer.main import get_command\n"
        "from releasectl.cli import app\n"
        "import json; print(json.dumps(sorted(get_command(app).commands)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert {"agent", "ci", "deploy", "list", "release", "watch"} <= set(json.loads(proc.stdout))


def test_command_modules_never_import_the_cli_package_itself() -> None:
    """Command modules import `releasectl.cli.output` (and each other), never a
    name from `releasectl.cli`: that import is the circle the package had."""
    offenders = []
    for module in _command_modules():
        tree = ast.parse((CLI_PACKAGE / f"{module}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "releasectl.cli":
                offenders.append(f"{module}: from releasectl.cli import ...")
            if isinstance(node, ast.Import) and any(a.name == "releasectl.cli" for a in node.names):
                offenders.append(f"{module}: import releasectl.cli")
    assert offenders == []


Shape = tuple[list[tuple[Any, ...]], dict[str, Any]]


def _shape(command: object) -> Shape:
    """What a run can meet of a command: its parameters (with the copied
    shared options) and, for a group, its subcommands' shapes."""
    params: list[tuple[Any, ...]] = [
        (p.name, tuple(p.opts), tuple(p.secondary_opts), p.required, p.nargs, repr(p.default))
        for p in command.params  # type: ignore[attr-defined]
    ]
    subcommands = getattr(command, "commands", {})
    return params, {name: _shape(sub) for name, sub in subcommands.items()}


def _commands(command: object) -> dict[str, Any]:
    found: dict[str, Any] = getattr(command, "commands", {})
    return found


def test_a_run_builds_only_its_own_command_and_the_same_one() -> None:
    """`main` builds only the command its arguments name (docs/ARCHITECTURE.md,
    "The command line"), with the same parameters and help as in the whole
    app, wherever the root's options stand; the whole app when no command is
    plainly named (root help, version, a typo, `-C` eating the name)."""
    from typer.main import get_command
    from typer.testing import CliRunner

    from releasectl.cli import _command_app, app

    whole = get_command(app)
    runner = CliRunner()
    for name, command in _commands(whole).items():
        for argv in ([name, "m"], ["-C", name, "--debug", name], ["--json", name, "--json"]):
            built = get_command(_command_app(argv))
            assert list(_commands(built)) == [name], argv
            assert _shape(_commands(built)[name]) == _shape(command), argv
            assert _shape(built)[0] == _shape(whole)[0]
        pruned = runner.invoke(_command_app([name, "--help"]), [name, "--help"])
        full = runner.invoke(app, [name, "--help"])
        assert (pruned.exit_code, pruned.output) == (full.exit_code, full.output), name
    for argv in (["histroy"], ["-C", "show"], ["--show-completion"]):
        assert _command_app(argv) is app, argv
    # The root's help and version come from a listing: the same words, no signatures.
    for argv in ([], ["--help"], ["-h", "show"], ["--version", "show"], ["-C", ".", "--help"]):
        listing = _command_app(argv)
        assert listing is not app, argv
        listed, full = runner.invoke(listing, argv), runner.invoke(app, argv)
        assert (listed.exit_code, listed.output) == (full.exit_code, full.output), argv
        assert "Commands" in full.output or "releasectl" in full.output, argv
