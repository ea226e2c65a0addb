"""The detached watcher (docs/ARCHITECTURE.md, "Unattended rollback"): after a
deploy, the watch runs in its own session, so a bad version is rolled back with
nobody at a terminal.

`start_detached` spawns `python -m releasectl.pipeline.detached_watch REQUEST`,
REQUEST one JSON document of a `WatchRequest`: a library entry point with a typed
request, not the command line's argument list (docs/ARCHITECTURE.md, "Layers").
The process runs `pipeline.watch.watch`, appends each measurement, event, the
result or the error as one JSON line to the request's log, and leaves its exit
code (the one `releasectl watch` would exit with) for `status`.
`releasectl.serving.watcher` finds and stops it through its pid file."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from releasectl import git as g
from releasectl.errors import (
    BAD_INPUT,
    INTERNAL,
    ReleasectlError,
)
from releasectl.names import check_model
from releasectl.pipeline.watch import RECORD_TIMEOUT_S, watch
from releasectl.serving import outcomes, watcher

ENTRY = "releasectl.pipeline.detached_watch"  # this module, as `python -m` names it


class WatchRequest(BaseModel):
    """What a detached watcher is asked to do."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repo: Path  # the registry's working tree
    model: str
    version: str
    push: bool
    log: Path  # where its JSON lines go
    record_timeout: float = RECORD_TIMEOUT_S


@dataclass(frozen=True)
class Watcher:
    """A detached watcher, as started."""

    pid: int
    model: str
    version: str
    push: bool  # it pushes what it records
    log: str  # its JSON lines

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def start_detached(git: g.Git, model: str, version: str) -> Watcher:
    """Start the watch in its own session, logging to the state home; it pushes
    when the branch has an upstream. A newer watcher replaces an older one for
    the same model. The caller has found the signing key and the notification
    hook usable (`pipeline.deploying`), at the terminal, before the deploy."""
    watcher.stop_detached(model)
    outcomes.exit_path(model).unlink(missing_ok=True)
    branch = g.current_branch(git)
    push = branch is not None and g.config_get(git, f"branch.{branch}.remote") is not None
    path = watcher.watch_file(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    log = path.with_suffix(".log")
    request = WatchRequest(repo=git.cwd, model=model, version=version, push=push, log=log)
    argv = [sys.executable, "-m", ENTRY, request.model_dump_json()]
    with log.open("ab") as sink:  # what the process itself cannot write (a crash)
        proc = subprocess.Popen(
            argv,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=git.cwd,
        )
    started = Watcher(proc.pid, model, version, push, str(log))
    path.write_text(json.dumps(started.to_json()))
    return started


def run(request: WatchRequest) -> int:
    """Watch and act as `releasectl watch --push` does; returns its exit code,
    which is also recorded for `status` whatever it is."""
    code = INTERNAL  # unless the watch concludes or fails as expected
    try:
        with request.log.open("a", encoding="utf-8") as log:
            code = _watch(request, log)
    finally:
        outcomes.record_exit(request.model, os.getpid(), code)
    return code


def _watch(request: WatchRequest, log: IO[str]) -> int:
    def line(document: Any) -> None:
        log.write(json.dumps(document, default=str) + "\n")
        log.flush()

    try:
        model = check_model(request.model)
        result = watch(
            g.open_repo(request.repo),
            model,
            version=request.version,
            push=request.push,
            on_measurement=lambda m: line(m.model_dump(mode="json")),
            on_event=lambda text: line({"event": text}),
            record_timeout=request.record_timeout,
        )
    except ReleasectlError as exc:
        report = exc.report if isinstance(exc.report, dict) else {}
        line({**report, "error": exc.to_json()})
        return exc.code
    except (UnicodeDecodeError, RecursionError) as exc:
        # Undecodable or absurdly nested input is bad input, as the CLI's funnel says.
        line({"error": {"code": BAD_INPUT, "message": f"unreadable input: {exc}", "hint": None}})
        return BAD_INPUT
    except Exception:
        log.write(traceback.format_exc())
        return INTERNAL
    line(result.to_json())
    return result.exit_code


def main(argv: list[str]) -> int:
    """Run the one `WatchRequest` (JSON) in `argv`; exit 2, writing nothing, when
    it is not one or names no valid model (its name becomes a file name)."""
    try:
        [document] = argv
        request = WatchRequest.model_validate_json(document)
        check_model(request.model)
    except (ValueError, ValidationError, ReleasectlError) as exc:
        sys.stderr.write(f"{ENTRY}: expected one WatchRequest as JSON: {exc}\n")
        return BAD_INPUT
    return run(request)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
