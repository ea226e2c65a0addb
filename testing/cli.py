"""`releasectl` run by the tests: in this process where the process boundary is
not what a test is about, as a subprocess where it is.

A subprocess start costs ~0.3-0.5 s of imports; the in-process run calls the
console script's own entry point (`releasectl.cli.main`) with what a process
would have: the arguments in `sys.argv`, the environment, the working
directory, an empty stdin, file descriptors 1 and 2 captured (so that what a
child git or ssh-keygen writes is caught as well), and the exit code from
`SystemExit`. Everything is restored afterwards, and the caches that live for
a process's lifetime are emptied, so one run never sees another's.

A command runs as a subprocess when it starts or manages processes that outlive
it (an agent, a detached watcher, a deploy's servers hold the caller's PID in
their locks), when the environment carries a switch releasectl reads once, at
import (`READ_AT_IMPORT`), or when the caller asks for one (`process=True`).
`RELEASECTL_TEST_CLI=process` makes every run a subprocess: the way to check
that a test means the same both ways.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

RELEASECTL = str(Path(sys.executable).with_name("releasectl"))

# Words of an argument list whose command starts or manages processes that outlive
# it, or holds a lock by this process's PID: those runs stay subprocesses.
PROCESS_WORDS = frozenset({"deploy", "--deploy", "agent", "watch", "--watch", "demo", "ci"})

# Settings releasectl reads once, when imported: a run given one is a new process.
READ_AT_IMPORT = ("RELEASECTL_TEST_CRASH_AFTER_GIT", "RELEASECTL_TEST_GIT_TRACE")

# How many runs of each kind this process made (read by the count in the report
# of a run: `RELEASECTL_TEST_CLI_COUNT=<file>` appends one line per run).
_COUNT_FILE = os.environ.get("RELEASECTL_TEST_CLI_COUNT")


def _store_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The settings fsspec and the S3 client read (FSSPEC_*, AWS_*)."""
    return {k: v for k, v in env.items() if k.startswith(("FSSPEC_", "AWS_"))}


# The store settings of the machine this process started on (a CA bundle, say),
# before any test set its own: runs that keep them stay in this process.
_STORE_SETTINGS = _store_settings(os.environ)


def run(
    args: Sequence[str],
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    *,
    process: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`releasectl *args` in `cwd` with `env` added to this process's environment:
    the result a `subprocess.run(..., capture_output=True, text=True)` gives."""
    args = [str(a) for a in args]
    where = Path(cwd) if cwd is not None else Path.cwd()
    full_env = {**os.environ, **(env or {})}
    if process or needs_process(args, env or {}, full_env):
        _count("process")
        return subprocess.run(
            [RELEASECTL, *args],
            cwd=where,
            capture_output=True,
            text=True,
            env=full_env,
            check=False,
        )
    _count("in-process")
    return _in_process(args, where, full_env)


def run_here(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`releasectl *args` in this process even when a word of it would make it a
    process (`watch`): for a test whose target is a test double, which starts nothing
    that outlives the run."""
    _count("in-process")
    return _in_process([str(a) for a in args], cwd, dict(os.environ))


def watch(cwd: Path, model: str, *args: str) -> tuple[int, list[dict[str, Any]], str]:
    """`releasectl watch MODEL --json *args` in `cwd`, as a process of its own (a
    watch switches the target's servers back, whose locks hold its PID), given
    at most 3 minutes: its exit code, the JSON lines it printed, its stderr."""
    _count("process")
    proc = subprocess.run(
        [RELEASECTL, "watch", model, "--json", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, lines, proc.stderr


def needs_process(args: Sequence[str], given: Mapping[str, str], env: Mapping[str, str]) -> bool:
    """Whether `releasectl *args`, with `given` added to the environment (making
    `env`), must be a process of its own."""
    if env.get("RELEASECTL_TEST_CLI") == "process":
        return True
    if any(env.get(name) for name in READ_AT_IMPORT):
        return True
    if any(name.startswith("PYTHON") for name in given):  # read as the interpreter starts
        return True
    # fsspec reads its FSSPEC_* settings when imported and caches each store's
    # client with the credentials it found: a store's settings other than the
    # ones this process started with need a new process.
    if _store_settings(env) != _STORE_SETTINGS:
        return True
    return any(a in PROCESS_WORDS for a in args)


def _count(kind: str) -> None:
    if _COUNT_FILE:
        with open(_COUNT_FILE, "a") as sink:
            sink.write(f"{kind}\n")


def _in_process(
    args: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    with _captured() as (out, err), _process_state(args, cwd, env):
        # Imported here, the first time under the run's environment (what a module
        # sets in it on import is undone with the rest).
        from releasectl import cli

        code = _exit_code(cli.main)
    return subprocess.CompletedProcess([RELEASECTL, *args], code, out.read(), err.read())


def _exit_code(main: object) -> int:
    """Run the entry point as the interpreter would: its SystemExit's code, or a
    traceback on stderr and 1 for an exception that escapes it."""
    try:
        main()  # type: ignore[operator]
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        sys.stderr.write(f"{exc.code}\n")
        return 1
    except BaseException:  # what the interpreter does at the top level
        traceback.print_exc()
        return 1
    return 0


class _Text:
    """What one stream got, decoded once its run is over."""

    def __init__(self, raw: io.BufferedRandom, errors: str) -> None:
        self.raw = raw
        self.errors = errors
        self.text = ""

    def read(self) -> str:
        return self.text


@contextlib.contextmanager
def _captured() -> Iterator[tuple[_Text, _Text]]:
    """File descriptors 1 and 2 (and sys.stdout/err over them) into temporary
    files: the Python-level writes and a child's inherited ones both land there."""
    with tempfile.TemporaryFile() as out_raw, tempfile.TemporaryFile() as err_raw:
        # strict stdout, backslashreplace stderr: what Python gives a process's streams
        out, err = _Text(out_raw, "strict"), _Text(err_raw, "backslashreplace")
        saved_streams = sys.stdin, sys.stdout, sys.stderr
        for stream in saved_streams[1:]:
            with contextlib.suppress(Exception):
                stream.flush()
        saved_fds = os.dup(1), os.dup(2)
        try:
            os.dup2(out_raw.fileno(), 1)
            os.dup2(err_raw.fileno(), 2)
            sys.stdin = io.StringIO("")
            sys.stdout = _stream(1, "strict")
            sys.stderr = _stream(2, "backslashreplace")
            try:
                yield out, err
            finally:
                for stream in (sys.stdout, sys.stderr):
                    with contextlib.suppress(Exception):
                        stream.flush()
        finally:
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0])
            os.close(saved_fds[1])
            sys.stdin, sys.stdout, sys.stderr = saved_streams
        for text in (out, err):
            text.raw.seek(0)
            text.text = text.raw.read().decode("utf-8", "replace").replace("\r\n", "\n")


def _stream(fd: int, errors: str) -> io.TextIOWrapper:
    binary = open(fd, "wb", closefd=False, buffering=0)  # noqa: SIM115 - closed with the run
    return io.TextIOWrapper(binary, encoding="utf-8", errors=errors, write_through=True)


@contextlib.contextmanager
def _process_state(args: list[str], cwd: Path, env: dict[str, str]) -> Iterator[None]:
    """argv, environment and working directory as a process would have them, all
    restored afterwards; the caches that live as long as a process are emptied
    before and after."""
    saved_env, saved_cwd, saved_argv = dict(os.environ), os.getcwd(), sys.argv
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.argv = ["releasectl", *args]
    try:
        _forget_process_caches()  # what the test's own library calls remembered
        yield
    finally:
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        _forget_process_caches()


def _forget_process_caches() -> None:
    """The module-level state a process holds for its lifetime (remembered
    verdicts, started reads, a counter, cached git folders)."""
    from releasectl import git, signing
    from releasectl.registry import history

    with contextlib.suppress(Exception):
        history.discard_prefetched()
    for pending in signing._running.values():
        with contextlib.suppress(Exception):
            pending.proc.kill()
            pending.proc.communicate()
    signing._running.clear()
    signing._verified.clear()
    git.git_dir.cache_clear()
    git._calls = 0
