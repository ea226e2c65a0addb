"""Files written whole or not at all: the one home of the atomic write
(docs/ARCHITECTURE.md, "Landing a change").

A reader sees the old content or the new, never half, whatever `kill -9`
interrupts: the text goes to a temporary file in the same folder, which is
renamed over the old one. A `durable` write (a journal, the deploy gate's
memory, an outcome) also reaches the disk before it returns: the file's data
and then the folder's entry are fsynced, so a power cut after the return
cannot bring back the old state. A cache (a verdict computed again when lost)
skips the fsyncs, which cost milliseconds on a read command's path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, *, durable: bool = True) -> None:
    """`path` holds exactly `text`, or what it held before this call."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
