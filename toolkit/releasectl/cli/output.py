"""What every command shares: the options given on either side of it (kept in
`typer.Context.obj`), the option aliases, how results are printed, and the
one error funnel (docs/ARCHITECTURE.md, "Exit codes"). Command modules import
this module, never `releasectl.cli`, so that the app composes them without a
cycle."""

from __future__ import annotations

import functools
import json as json_
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, ParamSpec, cast

import typer

import releasectl.cli.completion as completion
from releasectl.errors import BadInput, InternalError, ReleasectlError

if TYPE_CHECKING:
    from releasectl.git import Git

# pydantic's plugin discovery scans every installed distribution (~30 ms a command).
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "1")


@dataclass
class SharedOptions:
    """The options every command shares, wherever they were given: the root
    context's `obj`, which every subcommand's context inherits."""

    repo: Path = Path(".")
    debug: bool = False
    json: bool = False  # the running command prints one JSON document
    json_asked: bool = False  # --json before the subcommand: `releasectl --json list`
    json_lines: bool = False  # the running command prints JSON lines (`watch --json`)


def shared(ctx: typer.Context) -> SharedOptions:
    """This invocation's shared options: the root context's object, which a
    subcommand's context inherits (made here when the app was called without one)."""
    return ctx.ensure_object(SharedOptions)


# --- the shared options' callbacks: each writes only when given, so the last wins ---------


def store_repo(ctx: typer.Context, value: Path | None) -> Path | None:
    options = shared(ctx)
    if value is not None:
        options.repo = value
    return value


def store_debug(ctx: typer.Context, value: bool) -> bool:
    options = shared(ctx)
    if value:
        options.debug = True
    return value


def store_json(ctx: typer.Context, value: bool) -> bool:
    options = shared(ctx)
    if value:
        options.json_asked = True
    return value


def json_or_global(ctx: typer.Context, value: bool) -> bool:
    """A command's own --json, or the one given before the subcommand."""
    return value or shared(ctx).json_asked


def bare_version(value: str | None) -> str | None:
    """`v1.4.0` and `1.4.0` are the same version on the command line."""
    if value is None:
        return None
    from releasectl.names import version_arg

    return version_arg(value)


# --- option aliases ----------------------------------------------------------------------

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document.", callback=json_or_global)
]
JsonLinesOption = Annotated[
    bool, typer.Option("--json", help="JSON lines.", callback=json_or_global)
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Run every check the command makes and say what it would do; write nothing.",
    ),
]
ModelArg = Annotated[
    str, typer.Argument(metavar="MODEL", help="Model name.", autocompletion=completion.models)
]
VersionArg = Annotated[
    str,
    typer.Argument(
        metavar="VERSION",
        help="Semantic version, e.g. 1.4.0 (or v1.4.0).",
        callback=bare_version,
        autocompletion=completion.versions,
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


# --- printing ----------------------------------------------------------------------------


def shown(value: object) -> str:
    """Untrusted text (anything that came from git or a manifest: names,
    e-mails, messages, reasons, paths) as one line for a terminal: every
    control, format or line-breaking character (ESC, CR, LF, DEL, C1, the
    bidirectional overrides) is shown escaped, so a field can neither move
    the cursor, recolour the screen nor draw a row of its own
    (docs/ARCHITECTURE.md, "Crafted input")."""
    return "".join(c if c.isprintable() else _escaped(c) for c in str(value))


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _lines_shown(text: str) -> str:
    """The net under every human-readable line: `shown` within each line (the
    line breaks the command itself writes stay; a field's own breaks are
    escaped where the command renders it)."""
    return "\n".join(
        "\t".join(shown(part) for part in line.split("\t")) for line in text.split("\n")
    )


def emit(data: Any) -> None:
    """Print one JSON document to stdout."""
    sys.stdout.write(json_.dumps(data, indent=2, default=str) + "\n")


def emit_line(data: Any) -> None:
    """Print one JSON document as one line (a command whose --json prints JSON lines)."""
    sys.stdout.write(json_.dumps(data, default=str) + "\n")


def say(text: str = "") -> None:
    sys.stdout.write(_lines_shown(text) + "\n")


def warn(text: str) -> None:
    """A line on stderr that is not the command's failure."""
    sys.stderr.write(f"releasectl: {_lines_shown(text)}\n")


def ci_summary(markdown: str) -> None:
    """A line for the GitHub Actions job summary, when running there."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from releasectl.pipeline import ci

        ci.summary(markdown)


def repo(ctx: typer.Context) -> Git:
    """The registry's working tree named by -C (default: here)."""
    from releasectl.git import open_repo

    where = shared(ctx).repo
    if not where.is_dir():
        raise BadInput(f"-C {where}: no such directory", "name the registry's working tree")
    return open_repo(where)


# --- the error funnel --------------------------------------------------------------------


def error_document(exc: ReleasectlError) -> Any:
    """The --json document of a failure: the command's report with the error
    added, or the report itself when it is a list whose rows carry their own
    errors (`list`), or the error alone."""
    if isinstance(exc.report, dict):
        return {**exc.report, "error": exc.to_json()}
    if exc.report is not None:
        return exc.report
    return {"error": exc.to_json()}


def fail(exc: ReleasectlError, options: SharedOptions) -> NoReturn:
    """Report a failure every way it is read, then exit with its code: the
    JSON document (with --json), one stderr line, and in GitHub Actions an
    annotation and a line of the job summary."""
    if options.json:
        (emit_line if options.json_lines else emit)(error_document(exc))
    if os.environ.get("GITHUB_ACTIONS") == "true":
        from releasectl.pipeline import ci
        from releasectl.pipeline.check import summary_line

        # The runner reads workflow commands from both streams, so no line we
        # write may start one; every input is escaped (docs/ARCHITECTURE.md,
        # "Crafted input").
        sys.stderr.write(f"releasectl: {_inert(_lines_shown(exc.line()))}\n")
        command = " ".join(["releasectl", *sys.argv[1:]])
        sys.stdout.write(ci.error_annotation(exc.line(), title=command, level=exc.severity) + "\n")
        mark = "⚠️" if exc.severity == "warning" else "❌"
        ci.summary(f"{mark} {ci.code_span(command)} (exit {exc.code}): {summary_line(exc.line())}")
    else:
        # The line, then any lines the error carries (a server's last log lines).
        sys.stderr.write(f"releasectl: {_lines_shown(exc.line())}\n")
    raise typer.Exit(exc.code)


def _inert(text: str) -> str:
    """Lines that would read as a workflow command get a prefix."""
    return "\n".join(
        f"| {line}" if line.lstrip().startswith("::") else line for line in text.splitlines()
    )


def internal_error(exc: BaseException) -> InternalError:
    """A bug, as one line: the exception's name and the first line of what it says."""
    first = next(iter(str(exc).strip().splitlines()), "")
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return InternalError(f"internal error: {what}", "rerun with --debug for the traceback")


def run(
    func: Callable[[], None],
    options: SharedOptions,
    *,
    json_mode: bool | None,
    json_lines: bool = False,
) -> None:
    """The error funnel: every command body runs through here. `json_mode` is
    None for a command that prints no JSON: `releasectl --json` then refuses it."""
    options.json = bool(json_mode)
    options.json_lines = json_lines and options.json
    if json_mode is None and options.json_asked:
        options.json = True
        fail(BadInput("--json: this command prints no JSON", "drop --json"), options)
    try:
        func()
    except ReleasectlError as exc:
        _traceback(options)
        fail(_unborn(exc, options) or exc, options)
    except (UnicodeDecodeError, RecursionError) as exc:
        # The net under the parsers (docs/ARCHITECTURE.md, "Crafted input"):
        # undecodable or absurdly nested input is bad input, not a bug.
        _traceback(options)
        what = "not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else "nested too deeply"
        fail(BadInput(f"unreadable input: {what}", "rerun with --debug to see where"), options)
    except KeyboardInterrupt:
        sys.stderr.write("releasectl: interrupted\n")
        raise typer.Exit(130) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: one line, the traceback only with --debug
        _traceback(options)
        fail(internal_error(exc), options)


def _unborn(exc: ReleasectlError, options: SharedOptions) -> ReleasectlError | None:
    """A git command that failed on a HEAD without a commit (an empty
    repository, a clone that checked nothing out): one line saying so, not
    git's own words."""
    from releasectl import git as g

    if not isinstance(exc, g.GitError) or "HEAD" not in exc.output:
        return None
    try:
        return g.unborn_head(g.open_repo(options.repo))
    except ReleasectlError:
        return None


def _traceback(options: SharedOptions) -> None:
    if options.debug:
        traceback.print_exc()


Output = Literal["option", "always", "lines"]
P = ParamSpec("P")


def funnel(*, json: Output = "option") -> Callable[[Callable[P, None]], Callable[P, None]]:
    """A command whose failures go through the funnel; it takes the typer
    context as `ctx`. `json`: "option" when the command's own `json` parameter
    says whether it prints JSON (a command without one prints none); "always"
    for a command that only prints JSON; "lines" for one whose --json prints
    JSON lines."""

    def decorate(command: Callable[P, None]) -> Callable[P, None]:
        @functools.wraps(command)
        def funnelled(*args: P.args, **kwargs: P.kwargs) -> None:
            # Typer hands over its click context (typer.Context only names the parameter).
            ctx = cast("typer.Context | None", kwargs.get("ctx"))
            if ctx is None:
                raise TypeError(f"{command.__name__}: a funnelled command takes ctx: typer.Context")
            json_mode = True if json == "always" else kwargs.get("json")
            run(
                lambda: command(*args, **kwargs),
                shared(ctx),
                json_mode=None if json_mode is None else bool(json_mode),
                json_lines=json == "lines",
            )

        return funnelled

    return decorate
