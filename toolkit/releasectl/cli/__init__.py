"""The command line: the Typer app, composed from one module per command
group (each owns its `typer.Typer()`), which fetch a result from the library
and print it as text or one JSON document (docs/ARCHITECTURE.md, "The command line");
`cli.output` holds what they share and the error funnel. Heavy modules are
imported inside commands so that `releasectl --help` stays fast.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup
from typer.main import get_command_name
from typer.models import CommandInfo, TyperInfo

from releasectl.cli import (
    kubernetes,
    output,
    pipeline,
    reading,
    releasing,
    serving,
    setup,
    store,
    traffic,
    trust,
    watching,
)


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
    Each copy writes into the shared options only when given, so the last one
    given wins."""

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


def _descendants(group: TyperGroup) -> list[TyperCommand | TyperGroup]:
    found: list[TyperCommand | TyperGroup] = []
    for command in group.commands.values():
        if isinstance(command, TyperGroup):
            found += [command, *_descendants(command)]
        elif isinstance(command, TyperCommand):
            found.append(command)
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
# Unnamed: their commands join the root's (`releasectl list`, not `releasectl reading list`).
for _group in (setup, releasing, reading, serving, watching, traffic, pipeline, kubernetes):
    app.add_typer(_group.app)
# The groups of subcommands after the commands, as `--help` lists them.
app.add_typer(serving.agent, name="agent")
app.add_typer(pipeline.ci, name="ci")
app.add_typer(store.store, name="store")
app.add_typer(trust.app, name="trust")


@app.callback()
def _main(
    repo: Annotated[
        Path | None,
        typer.Option(
            "-C",
            "--repo",
            help="Run as if started in this directory (before or after the command).",
            callback=output.store_repo,
            show_default=False,
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks.", callback=output.store_debug)
    ] = False,
    json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON document (commands that report).",
            callback=output.store_json,
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
    # The options' callbacks have stored them in the context's SharedOptions.


# The root's own options that take a value: the token after them is not a command.
_ROOT_VALUED = ("-C", "--repo")
# Root options that describe the app: its help and version need only a listing of it.
_ROOT_LISTING = ("-h", "--help", "--version")
# Shell completion's own options: the whole app.
_ROOT_WHOLE = ("--install-completion", "--show-completion")


def _command_app(argv: list[str]) -> typer.Typer:
    """The app with only the command that `argv` runs (docs/ARCHITECTURE.md,
    "The command line"): Typer turns every command's signature into Click
    parameters before it parses, a cost paid on every run for every command,
    so a run builds only its own; the root's help and version, a listing
    (`_listing`). The whole app whenever the command is not plainly one of
    ours (a typo: Click's message lists them all), and for shell completion."""
    if "_RELEASECTL_COMPLETE" in os.environ:
        return app
    if not argv:
        return _listing()  # no arguments: the root's help
    name, args = None, iter(argv)
    for arg in args:
        if arg in _ROOT_LISTING:
            return _listing()
        if arg in _ROOT_WHOLE:
            return app
        if arg in _ROOT_VALUED:
            next(args, None)
        elif not arg.startswith("-"):
            name = arg
            break
    for group in app.registered_groups:
        if group.name == name:  # a group of subcommands (`trust`, `ci`, ...): all of it
            return _with(commands=[], groups=[group])
        instance = group.typer_instance  # an unnamed group: its commands join the root's
        if isinstance(group.name, str) or instance is None:
            continue
        for command in instance.registered_commands:
            callback = command.callback
            given = command.name or (callback and get_command_name(callback.__name__))
            if given == name:
                only, holder = copy.copy(instance), copy.copy(group)
                only.registered_commands, holder.typer_instance = [command], only
                return _with(commands=[], groups=[holder])
    return app


def _listing() -> typer.Typer:
    """The app as its root help lists it: every command's name and help, with
    stubs in place of the commands, so that no signature is converted; a
    group of subcommands is listed by its own help, without its commands."""
    groups = []
    for group in app.registered_groups:
        instance, holder = group.typer_instance, copy.copy(group)
        if instance is not None:
            listed = copy.copy(instance)
            if isinstance(group.name, str):
                listed.registered_commands, listed.registered_groups = [], []
            else:  # an unnamed group: its commands are the root's
                listed.registered_commands = [_stub(c) for c in instance.registered_commands]
            holder.typer_instance = listed
        groups.append(holder)
    return _with(commands=[_stub(c) for c in app.registered_commands], groups=groups)


def _stub(command: CommandInfo) -> CommandInfo:
    """A command as a listing shows it: its name and help, no parameters."""
    callback = command.callback

    def listed() -> None:  # never run: a listing only prints
        raise AssertionError("a stub of a listed command ran")

    listed.__doc__ = callback.__doc__ if callback else None
    stub = copy.copy(command)
    stub.callback = listed
    stub.name = command.name or (callback and get_command_name(callback.__name__))
    return stub


def _with(commands: list[CommandInfo], groups: list[TyperInfo]) -> typer.Typer:
    subset = copy.copy(app)
    subset.registered_commands, subset.registered_groups = commands, groups
    return subset


def main() -> None:
    # One name in help, errors and completion scripts, however it was started.
    _command_app(sys.argv[1:])(prog_name="releasectl", obj=output.SharedOptions())
