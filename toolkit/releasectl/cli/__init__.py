"""The command line: Typer wiring only. Each command lives in `commands/`,
fetches a result from the library and renders it here-or-there as a table or
one JSON document. Heavy modules are imported inside commands so that
`releasectl --help` stays fast."""

from __future__ import annotations

import copy
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from releasectl.errors import BadInput, ReleasectlError

if TYPE_CHECKING:
    from releasectl.git import Git

# pydantic's plugin discovery scans every installed distribution (~30 ms a command).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")


class Context:
    """The options every command shares, wherever they were given."""

    repo: Path = Path(".")
    debug: bool = False
    json: bool = False  # the running command prints one JSON document
    json_asked: bool = False  # --json before the subcommand: `releasectl --json list`


ctx = Context()


def _store_repo(value: Path | None) -> Path | None:
    if value is not None:
        ctx.repo = value
    return value


def _store_debug(value: bool) -> bool:
    if value:
        ctx.debug = True
    return value


def _store_json(value: bool) -> bool:
    if value:
        ctx.json_asked = True
    return value


def json_or_global(value: bool) -> bool:
    """A command's own --json, or the one given before the subcommand."""
    return value or ctx.json_asked


def package_version() -> str:
    """The installed distribution's version (what pip and the lock see), or the
    source tree's when releasectl runs without being installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("releasectl")
    except PackageNotFoundError:
        from releasectl import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"releasectl {package_version()}\n")
        raise typer.Exit()


class _Root(TyperGroup):
    """The root command. The shared options (-C/--repo, --debug) are also given
    to every subcommand, so that they may follow it as well as precede it, as
    in git and kubectl: `releasectl status -C repo` = `releasectl -C repo status`.
    Each copy writes into `ctx` only when given, so the last one given wins."""

    SHARED = ("repo", "debug")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        shared = [p for p in self.params if p.name in self.SHARED]
        for command in _descendants(self):
            taken = {p.name for p in command.params}
            for param in shared:
                if param.name not in taken:
                    mine = copy.copy(param)
                    mine.expose_value = False  # the callback stores it; the command never sees it
                    command.params.append(mine)


def _descendants(group: Any) -> list[Any]:
    found = []
    for command in getattr(group, "commands", {}).values():
        found += [command, *_descendants(command)]
    return found


app = typer.Typer(
    name="releasectl",
    cls=_Root,
    help="A Git repository as the registry of ML model releases.",
    no_args_is_help=True,
    # `--install-completion` / `--show-completion`: typer imports its completion
    # module whatever this says, so it costs `--help` nothing measurable.
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document.", callback=json_or_global)
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Run every check the command makes and say what it would do; write nothing.",
    ),
]
ModelArg = Annotated[str, typer.Argument(metavar="MODEL", help="Model name.")]


def bare_version(value: str | None) -> str | None:
    """`v1.4.0` and `1.4.0` are the same version on the command line."""
    if value is None:
        return None
    from releasectl.names import version_arg

    return version_arg(value)


VersionArg = Annotated[
    str,
    typer.Argument(
        metavar="VERSION", help="Semantic version, e.g. 1.4.0 (or v1.4.0).", callback=bare_version
    ),
]
PushOption = Annotated[
    bool, typer.Option("--push", help="Push to the branch's remote (atomic, never forced).")
]
RetrainOption = Annotated[
    bool,
    typer.Option(
        "--retrain",
        help="Run bundle.train even when the pinned weights were trained from these sources.",
    ),
]


@app.callback()
def _main(
    repo: Annotated[
        Path | None,
        typer.Option(
            "-C",
            "--repo",
            help="Run as if started in this directory (before or after the command).",
            callback=_store_repo,
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks.", callback=_store_debug)
    ] = False,
    json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print one JSON document (commands that report).", callback=_store_json
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """A Git repository as the registry of ML model releases."""
    # The options' callbacks have stored them in `ctx`.


def emit(data: Any) -> None:
    """Print one JSON document to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def fail(exc: ReleasectlError) -> NoReturn:
    if ctx.json:
        emit({"error": {"code": exc.code, "message": exc.message, "hint": exc.hint}})
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from releasectl.pipeline import ci

        # The runner reads workflow commands from both streams, so no line we
        # write may start one; every input is escaped (docs/ARCHITECTURE.md,
        # "Crafted input").
        sys.stderr.write(f"releasectl: {_inert(exc.line())}\n")
        command = " ".join(["releasectl", *sys.argv[1:]])
        sys.stdout.write(ci.error_annotation(exc.line(), title=command) + "\n")
        ci.summary(f"❌ {ci.code_span(command)} (exit {exc.code}): {ci.summary_line(exc.line())}")
    else:
        sys.stderr.write(f"releasectl: {exc.line()}\n")
    raise typer.Exit(exc.code)


def _inert(text: str) -> str:
    """Lines that would read as a workflow command get a prefix."""
    return "\n".join(
        f"| {line}" if line.lstrip().startswith("::") else line for line in text.splitlines()
    )


def ci_summary(markdown: str) -> None:
    """A line for the GitHub Actions job summary, when running there."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from releasectl.pipeline import ci

        ci.summary(markdown)


def run(func: Callable[[], int | None], *, json_mode: bool | None = None) -> None:
    """The error funnel: every command body runs through here. `json_mode` is
    None for a command that prints no JSON: `releasectl --json` then refuses it."""
    ctx.json = bool(json_mode)
    if json_mode is None and ctx.json_asked:
        ctx.json = True
        fail(BadInput("--json: this command prints no JSON", "drop --json"))
    try:
        code = func() or 0
    except ReleasectlError as exc:
        if ctx.debug:
            traceback.print_exc()
        fail(exc)
    except (UnicodeDecodeError, RecursionError) as exc:
        # The net under the parsers (docs/ARCHITECTURE.md, "Crafted input"):
        # undecodable or absurdly nested input is bad input, not a bug.
        if ctx.debug:
            traceback.print_exc()
        what = "not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else "nested too deeply"
        fail(BadInput(f"unreadable input: {what}", "rerun with --debug to see where"))
    except KeyboardInterrupt:
        sys.stderr.write("releasectl: interrupted\n")
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: one line, the traceback only with --debug
        if ctx.debug:
            traceback.print_exc()
        sys.stderr.write(
            f"releasectl: internal error: {type(exc).__name__}: {exc} (rerun with --debug)\n"
        )
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def repo() -> Git:
    from releasectl.git import open_repo

    if not ctx.repo.is_dir():
        raise BadInput(f"-C {ctx.repo}: no such directory", "name the registry's working tree")
    return open_repo(ctx.repo)


def _register() -> None:
    from releasectl.cli import kubernetes, pipeline, reading, releasing, serving, setup

    for module in (setup, releasing, reading, serving, pipeline, kubernetes):
        module.register(app)


_register()


def main() -> None:
    # One name in help, errors and completion scripts, however it was started.
    app(prog_name="releasectl")
