"""The command line: Typer wiring only. Each command lives in `commands/`,
fetches a result from the library and renders it here-or-there as a table or
one JSON document. Heavy modules are imported inside commands so that
`releasectl --help` stays fast."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from .errors import BadInput, ReleasectlError

# pydantic's plugin discovery scans every installed distribution (~30 ms a command).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")

app = typer.Typer(
    name="releasectl",
    help="A Git repository as the registry of ML model releases.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Context:
    repo: Path = Path(".")
    debug: bool = False
    json: bool = False


ctx = Context()

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would be written; write nothing.")
]
ModelArg = Annotated[str, typer.Argument(metavar="MODEL", help="Model name.")]
VersionArg = Annotated[str, typer.Argument(metavar="VERSION", help="Semantic version, e.g. 1.4.0.")]
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
        Path, typer.Option("-C", "--repo", help="Run as if started in this directory.")
    ] = Path("."),
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    ctx.repo = repo
    ctx.debug = debug


def emit(data: Any) -> None:
    """Print one JSON document to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def say(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def fail(exc: ReleasectlError) -> NoReturn:
    if ctx.json:
        emit({"error": {"code": exc.code, "message": exc.message, "hint": exc.hint}})
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from . import ci

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
        from . import ci

        ci.summary(markdown)


def run(func: Callable[[], int | None], *, json_mode: bool = False) -> None:
    """The error funnel: every command body runs through here."""
    ctx.json = json_mode
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


def repo():  # type: ignore[no-untyped-def]
    from .git import open_repo

    return open_repo(ctx.repo)


def _register() -> None:
    from .commands import pipeline, reading, releasing, serving, setup

    for module in (setup, releasing, reading, serving, pipeline):
        module.register(app)


_register()


def main() -> None:
    app()
