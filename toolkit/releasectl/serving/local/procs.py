"""Processes: starts a slot server, recognises it later (pid + identity), stops it by PID
(docs/ARCHITECTURE.md, "Deploy targets").

Everything here is synchronous; the agent calls the slow parts through `asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

import psutil

# Set in each slot server's environment, so its whole process tree can be found again after
# the agent died between starting a server and writing its pid down.
SLOT_ENV = "RELEASECTL_SLOT"
STOP_GRACE = 5.0


def spawn_server(
    slot_dir: Path, bento_dir: Path, port: int, python: Path
) -> subprocess.Popen[bytes]:
    """`bentoml serve` of the bento with `python`, its own environment's interpreter."""
    home = slot_dir / "home"
    home.mkdir(parents=True, exist_ok=True)
    # Serving through a link inside the slot puts the slot folder on every command line of
    # the server's process tree, so `ps` shows which slot a process belongs to.
    link = slot_dir / "bento"
    link.unlink(missing_ok=True)
    link.symlink_to(bento_dir.resolve(), target_is_directory=True)
    venv = python.parent.parent
    # Nothing of releasectl's own environment leaks in: what serves is what was released.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(
        BENTOML_HOME=str(home),
        BENTOML_DO_NOT_TRACK="true",
        VIRTUAL_ENV=str(venv),
        PATH=os.pathsep.join([str(venv / "bin"), env.get("PATH", os.defpath)]),
        **{SLOT_ENV: str(slot_dir)},
    )
    # `bentoml serve` wipes `$BENTOML_HOME/prometheus_multiproc_dir` at start: each slot
    # has a home of its own.
    cmd = [
        str(python),
        "-m",
        "bentoml",
        "serve",
        str(link.absolute()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with (slot_dir / "server.log").open("ab") as log:
        return subprocess.Popen(
            cmd,
            cwd=slot_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Own session: a dying agent (or a Ctrl-C at the CLI) does not take servers down.
            start_new_session=True,
        )


def identity(pid: int) -> str | None:
    """What tells this process from any other that ever had its pid: the boot's id and the
    start time in clock ticks since boot (`/proc/<pid>/stat`, field 22). Neither moves when
    the wall clock steps, as psutil's `create_time()` does
    (docs/ARCHITECTURE.md, "Deploy targets")."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        ticks = int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None
    return f"{boot_id()}/{ticks}"


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "-"


def find(pid: int | None, ident: str | None) -> psutil.Process | None:
    """The live process with this pid and identity, or None (gone, zombie, pid reused)."""
    if pid is None or ident is None or identity(pid) != ident:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def alive(pid: int | None, ident: str | None) -> bool:
    return find(pid, ident) is not None


def lock_holders(path: Path) -> list[int]:
    """The pids that hold a `flock` on `path`, from `/proc/locks` (matched by inode)."""
    try:
        inode = path.stat().st_ino
        table = Path("/proc/locks").read_text()
    except OSError:
        return []
    found: list[int] = []
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"; "1: -> FLOCK ..." waits for it.
        if len(fields) < 6 or fields[1] == "->" or fields[1] != "FLOCK":
            continue
        if fields[5].rsplit(":", 1)[-1] == str(inode) and fields[4].isdigit():
            found.append(int(fields[4]))
    return found


def listeners(ports: Iterable[int]) -> list[int]:
    """The pids that listen on any of these TCP ports."""
    wanted = set(ports)
    if not wanted:
        return []
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return []
    return sorted(
        {
            c.pid
            for c in conns
            if c.pid is not None
            and c.status == psutil.CONN_LISTEN
            and c.laddr
            and c.laddr.port in wanted
        }
    )


def slot_of(proc: psutil.Process, root: Path) -> str | None:
    """The slot folder a process belongs to, if it is a slot server (or a worker of one)."""
    prefix = str(root) + os.sep
    try:
        value = proc.environ().get(SLOT_ENV, "")
    except psutil.Error:
        return None
    return value if value.startswith(prefix) else None


def slot_processes(root: Path) -> dict[str, list[psutil.Process]]:
    """Every running process of every slot under `root`, by slot folder."""
    found: dict[str, list[psutil.Process]] = {}
    marker = str(root) + os.sep
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if not any(marker in arg for arg in cmdline):
            continue
        slot = slot_of(proc, root)
        if slot is not None and proc.status() != psutil.STATUS_ZOMBIE:
            found.setdefault(slot, []).append(proc)
    return found


class Workers:
    """The workers of a starting server. bentoml's arbiter starts them as its direct children
    and starts another when one dies, so a service that cannot start (its constructor raises)
    never makes the server itself exit: a worker seen earlier and gone now is that crash."""

    def __init__(self, server: psutil.Process | None) -> None:
        self.server = server
        self.seen: set[int] = set()

    def died(self) -> int | None:
        """The pid of a worker that has exited since the last call, or None."""
        if self.server is None:
            return None
        try:
            children = self.server.children()
        except psutil.Error:
            return None
        running = {c.pid for c in children if _running(c)}
        gone, self.seen = self.seen - running, running
        return min(gone) if gone else None


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return [proc]


def terminate(procs: Iterable[psutil.Process], grace: float = STOP_GRACE) -> None:
    """SIGTERM, wait `grace`, SIGKILL what is left (workers included), wait until all are gone.

    psutil refuses to signal a process whose pid was reused, so this never hits a stranger.
    """
    everything: dict[int, psutil.Process] = {}
    tops = list(procs)
    for proc in tops:
        for p in tree(proc):
            everything[p.pid] = p
    for proc in tops:
        _signal(proc, signal.SIGTERM)
    psutil.wait_procs(tops, timeout=grace)
    # Workers outlive their arbiter only if it was killed hard; catch them as well.
    left_all = [p for p in everything.values() if _running(p)]
    for proc in left_all:
        _signal(proc, signal.SIGKILL)
    psutil.wait_procs(left_all, timeout=grace)


def end(pid: int, grace: float = STOP_GRACE) -> None:
    """Stop this one process (SIGTERM, then SIGKILL after `grace`), not its children: an
    agent's servers outlive it and the next agent adopts them."""
    try:
        proc = psutil.Process(pid)
    except psutil.Error:
        return
    _signal(proc, signal.SIGTERM)
    _, left = psutil.wait_procs([proc], timeout=grace)
    for p in left:
        _signal(p, signal.SIGKILL)
    psutil.wait_procs(left, timeout=grace)


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _signal(proc: psutil.Process, sig: int) -> None:
    with contextlib.suppress(psutil.Error):
        proc.send_signal(sig)
