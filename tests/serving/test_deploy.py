"""Bundles and the local target, end to end through the command line: build,
pin, store, deploy, switch and switch back with real bentoml servers."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import psutil
import pytest

from releasectl.loopback import free_port
from testing.bentos import iris_registry, set_faults
from testing.processes import bentoml_processes, state_home
from testing.repos import RELEASECTL, Repo
from testing.traffic import Load

pytestmark = pytest.mark.slow


class World:
    def __init__(self, repo: Repo, home: Path, port: int) -> None:
        self.repo, self.home, self.port = repo, home, port
        self.url = f"http://127.0.0.1:{port}"

    def store_archive(self, version: str) -> Path:
        """Content-addressed: the archive's key comes from the pinned digest."""
        digest = self.pinned(version).removeprefix("sha256:")
        return self.home / "artifacts" / "bundles" / f"{digest}.bento"

    def status(self) -> dict[str, Any]:
        out = json.loads(self.repo.ok("status", "iris", "--json"))
        assert len(out) == 1
        return cast(dict[str, Any], out[0])

    def pinned(self, version: str) -> str:
        text = self.repo.git("show", f"release/iris/v{version}:model-releases/iris/release.yaml")
        return next(line.split()[1] for line in text.splitlines() if "digest:" in line)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("deploy")
    with state_home(root / "state") as home:
        port = free_port()
        repo = iris_registry(root, port)
        repo.ok("release", "iris", "1.0.0")
        repo.ok("mark-stable", "iris", "1.0.0")
        repo.write("model-releases/iris/NOTES.md", "2.0.0: retrained\n")
        repo.commit("iris: notes")
        repo.ok("release", "iris", "2.0.0")
        yield World(repo, home, port)


def test_release_pins_a_digest_that_rebuilds_reproduce(world: World) -> None:
    pinned = world.pinned("1.0.0")
    assert pinned.startswith("sha256:")
    digests = []
    for _ in range(2):
        # Delete the stored archive: the build starts from a fresh BentoML home each time.
        world.store_archive("1.0.0").unlink()
        proc = world.repo.cli("build", "iris", "1.0.0", "--json")
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["reused"] is False
        digests.append(out["digest"])
        built = "releasectl: building the bundle of iris 1.0.0 from its tag: done after "
        assert built in proc.stderr  # the long step, on stderr: stdout is the JSON
    assert digests == [pinned, pinned]
    again = json.loads(world.repo.ok("build", "iris", "1.0.0", "--json"))
    assert again["reused"] is True and again["digest"] == pinned


def test_deploy_switch_and_revert_without_a_failed_request(world: World) -> None:
    r = world.repo
    proc = r.cli("deploy", "iris", "--version", "1.0.0", "--json")
    assert proc.returncode == 0, proc.stderr
    first = json.loads(proc.stdout)  # stdout is one JSON document, and nothing else
    assert first["version"] == "1.0.0" and first["switch"] == "cold"
    # Not a terminal: the long steps are plain lines on stderr, each with its time.
    steps = [line for line in proc.stderr.splitlines() if line.startswith("releasectl: ")]
    fetch = "releasectl: fetching and extracting the bundle of iris 1.0.0"
    wait = "releasectl: waiting for iris 1.0.0 to go live"
    assert steps[0] == f"{fetch} ..." and steps[-2] == f"{wait} ..."
    assert re.fullmatch(re.escape(wait) + r": done after \d+\.\d s", steps[-1]), steps
    assert re.fullmatch(re.escape(fetch) + r": done after \d+\.\d s", steps[1]), steps
    _a_watcher_of_1_0_0_ended(world.home)
    assert world.status()["watcher"]["exit_code"] == 0
    with Load(world.url) as load:
        load.wait_for(20)
        start = load.mark()
        second = json.loads(r.ok("deploy", "iris", "--json"))
        assert second["version"] == "2.0.0"
        # A new state went live: the ended watcher's line is history, as its outcome.
        assert world.status()["watcher"] is None
        switched = load.mark()
        load.wait_for(25)
        assert load.rate_seen(start) >= 20
        assert load.failures(start) == []
        assert set(load.versions(switched + 5)) == {"2.0.0"}

        start = load.mark()
        proc = r.cli("revert", "iris", "--deploy", "--reason", "drill", "--json")
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["to"] == "1.0.0" and out["deploy"]["switch"] == "warm"
        assert out["deploy"]["fast_track"] is True
        switched = load.mark()
        load.wait_for(25)
        assert load.failures(start) == []
        assert set(load.versions(switched + 5)) == {"1.0.0"}
    status = world.status()
    assert status["live"]["version"] == "1.0.0" and status["health"] == "ready"
    assert status["standby"]["version"] == "2.0.0"
    # `history` marks the release the revert's state restored as live.
    rows = json.loads(r.ok("history", "iris", "--json"))
    live = [(row["kind"], row.get("version")) for row in rows if row.get("live")]
    assert live == [("release", "1.0.0")]


def _a_watcher_of_1_0_0_ended(home: Path) -> None:
    """What a detached watcher leaves when it ends: its record and its exit code."""
    from releasectl.serving.outcomes import record_exit

    proc = subprocess.Popen(["true"])
    proc.wait()
    (home / "watch").mkdir(exist_ok=True)
    record = {"pid": proc.pid, "model": "iris", "version": "1.0.0", "push": False, "log": "-"}
    (home / "watch" / "iris.json").write_text(json.dumps(record))
    record_exit("iris", proc.pid, 0)


def test_replaying_an_older_state_is_refused(world: World) -> None:
    before = world.status()["live"]
    for version in ("2.0.0", "1.0.0"):
        proc = world.repo.cli("deploy", "iris", "--version", version)
        assert proc.returncode == 3, proc.stderr
        assert "not higher than the deployed serial" in proc.stderr
    assert world.status()["live"] == before


def test_a_tampered_stored_archive_is_refused(world: World) -> None:
    r = world.repo
    r.write("model-releases/iris/NOTES.md", "3.0.0\n")
    r.commit("iris: 3.0.0")
    r.ok("release", "iris", "3.0.0")
    archive = world.store_archive("3.0.0")
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    with Load(world.url) as load:
        load.wait_for(10)
        start = load.mark()
        proc = r.cli("deploy", "iris")
        load.wait_for(10)
        assert load.failures(start) == []
        assert set(load.versions(start)) == {"1.0.0"}
    assert proc.returncode == 3, proc.stderr
    assert "damaged" in proc.stderr or "digest" in proc.stderr
    assert world.status()["live"]["version"] == "1.0.0"


def test_a_server_that_cannot_start_fails_the_deploy_at_once(world: World) -> None:
    r = world.repo
    set_faults(r, "error_ratio: 5\n", "iris: a fault file the service refuses at start")
    r.ok("release", "iris", "4.0.0")
    with Load(world.url) as load:
        load.wait_for(10)
        start = load.mark()
        began = time.monotonic()
        proc = r.cli("deploy", "iris")  # the default ready timeout: 120 s
        took = time.monotonic() - began
        load.wait_for(10)
        assert load.failures(start) == []
        assert set(load.versions(start)) == {"1.0.0"}
    assert proc.returncode == 1, proc.stderr
    # Its worker dies while starting and bentoml starts another, forever: the deploy
    # notices the first death instead of waiting out the ready timeout (a generous bound:
    # the release's server starts and crashes in a few seconds).
    assert took < 60, f"the deploy took {took:.0f} s"
    error = proc.stderr[proc.stderr.index("releasectl: iris 4.0.0 did not become ready") :]
    summary, *log = error.splitlines()
    assert "exited while starting" in summary and "1.0.0 stays live" in summary
    assert "(ValueError: faults.yaml: error_ratio must be between 0 and 1)" in summary
    assert log[0].startswith("--- last lines of ") and len(log) <= 21
    assert "ValueError: faults.yaml: error_ratio must be between 0 and 1" in log  # the server's
    status = world.status()
    assert status["live"]["version"] == "1.0.0"
    assert status["last_deploy"]["ok"] is False


def _agent_pid(home: Path) -> int:
    return int(json.loads((home / "local" / "agent.json").read_text())["pid"])


def test_kill_9_of_the_agent_mid_deploy_converges(world: World) -> None:
    r = world.repo
    set_faults(r, None, "iris: healthy again")
    r.ok("release", "iris", "5.0.0")
    r.ok("build", "iris", "5.0.0")
    agent = _agent_pid(world.home)
    deploying = subprocess.Popen(
        [RELEASECTL, "deploy", "iris"],
        cwd=r.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Wait (with a deadline) until the new slot's server exists, then kill the agent.
        end = time.monotonic() + 60
        state = world.home / "local" / "state.json"
        while time.monotonic() < end:
            doc = json.loads(state.read_text()) if state.exists() else {}
            slot = (doc.get("models", {}).get("iris") or {}).get("pending")
            if slot and slot.get("pid"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the deploy never started a slot")
        os.kill(agent, signal.SIGKILL)
        psutil.Process(agent).wait(timeout=10) if psutil.pid_exists(agent) else None
        code = deploying.wait(timeout=120)
        assert code != 0
    finally:
        if deploying.poll() is None:
            deploying.kill()
        deploying.communicate()
    r.ok("agent", "start")  # a new agent reconciles (status only reads: it starts none)
    status = world.status()
    assert status["live"]["version"] == "1.0.0" and status["health"] == "ready"
    again = json.loads(r.ok("deploy", "iris", "--json"))
    assert again["version"] == "5.0.0"
    status = world.status()
    assert status["live"]["version"] == "5.0.0" and status["health"] == "ready"
    expected = {status["live"]["pid"], (status["standby"] or {}).get("pid")} - {None}
    # The standby it replaced is retired in the background once drained: wait for it.
    end = time.monotonic() + 60
    while True:
        running = {p.pid for p in bentoml_processes(world.home) if _is_server_root(p)}
        if running == expected or time.monotonic() > end:
            break
        time.sleep(0.2)
    assert running == expected, (running, expected)


def _is_server_root(proc: psutil.Process) -> bool:
    """The `bentoml serve` process itself, not its workers."""
    try:
        parent = proc.parent()
        return not (parent and "bentoml" in " ".join(parent.cmdline()))
    except psutil.Error:
        return False


def test_two_deploys_of_one_model_do_not_interleave(world: World, tmp_path: Path) -> None:
    """As two workflow runs would, were their concurrency group missing: the
    later waits for the first, and the newest manifest wins."""
    r = world.repo
    r.write("model-releases/iris/NOTES.md", "6.0.0\n")
    r.commit("iris: 6.0.0")
    r.ok("release", "iris", "6.0.0")
    older = r.head()
    r.write("model-releases/iris/NOTES.md", "7.0.0\n")
    r.commit("iris: 7.0.0")
    r.ok("release", "iris", "7.0.0")
    checkouts = []
    for name, rev in (("old", older), ("new", r.head())):
        path = tmp_path / name
        r.git("worktree", "add", "-q", "--detach", str(path), rev)
        checkouts.append(path)
    journal = world.home / "locks" / "iris.jsonl"
    seen = len(journal.read_text().splitlines())
    procs = [
        subprocess.Popen(
            [RELEASECTL, "deploy", "iris", "--json"],
            cwd=path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in checkouts
    ]
    codes = [p.wait(timeout=300) for p in procs]
    errs = [p.communicate()[1] for p in procs]
    entries = [json.loads(line) for line in journal.read_text().splitlines()[seen:]]
    assert len(entries) == 2, entries
    first, second = sorted(entries, key=lambda e: e["acquired"])
    assert first["released"] <= second["acquired"]  # no overlap
    assert world.status()["live"]["version"] == "7.0.0"
    # whichever ran second: the old state after the new one is refused by the gate
    if first["version"] == "7.0.0":
        assert second["outcome"] == "refused" and codes[0] == 3, errs
    else:
        assert [e["outcome"] for e in (first, second)] == ["deployed", "deployed"], errs
