"""The unattended rollback on real servers: `deploy --watch` of a bad release,
with nobody at the terminal, while the operator's branch holds unpushed work
and the remote refuses pushes for a while. The stable version serves first;
the revert reaches the remote later, without the unpushed commit; `status`
and the notification hook say what happened."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from releasectl.loopback import free_port
from testing.bentos import iris_registry, set_analysis, set_faults
from testing.calls import count_calls
from testing.processes import state_home
from testing.repos import Repo, git
from testing.traffic import Load

pytestmark = pytest.mark.slow

INTERVAL_S = 3.0
FAST: dict[str, Any] = {
    "interval": f"{INTERVAL_S:g}s",
    "bake": "12s",
    "min_requests": 5,
    "failure_limit": 1,
    "inconclusive_limit": 2,
    "consecutive_error_limit": 2,
    "metrics": {"error_rate": {"max": 0.05}},
}
REFUSED_PUSHES = 3  # three rounds, waiting 1, 2 and 4 s: the backoff is exercised

# Counts the pushes it sees and refuses the first N (a remote in maintenance, a
# flaky proxy): the record must still arrive.
PRE_RECEIVE = """#!/bin/sh
n=$(cat "$GIT_DIR/refused" 2>/dev/null || echo 0)
if [ "$n" -lt {limit} ]; then
  echo $((n + 1)) > "$GIT_DIR/refused"
  echo "remote is read-only for now" >&2
  exit 1
fi
exit 0
"""

# Appends what it reads on stdin, as one line, to the file it is given.
HOOK = "import sys; open(sys.argv[1], 'a').write(sys.stdin.read().replace(chr(10), ' ') + chr(10))"


class Webhook:
    """A real HTTP endpoint on 127.0.0.1 that keeps every body it is sent."""

    def __init__(self) -> None:
        bodies: list[dict[str, Any]] = []
        self.bodies = bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["content-length"])
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def team(tmp_path: Path) -> Iterator[tuple[Repo, Path, int]]:
    with state_home(tmp_path / "state"):
        port = free_port()
        repo = iris_registry(tmp_path, port)
        bare = tmp_path / "remote.git"
        git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
        repo.git("remote", "add", "origin", str(bare))
        repo.git("push", "-q", "-u", "origin", "main")
        set_analysis(repo, FAST)
        repo.ok("release", "iris", "1.0.0", "--push")
        repo.ok("mark-stable", "iris", "1.0.0", "--push")
        repo.ok("deploy", "iris", "--no-watch")
        yield repo, bare, port


def wait_until(what: str, check, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_bad_release_is_rolled_back_with_nobody_at_the_terminal(
    team: tuple[Repo, Path, int], tmp_path: Path
) -> None:
    repo, bare, port = team
    received = tmp_path / "notified.jsonl"
    with Webhook() as webhook:
        repo.write(
            ".releasectl/config.yaml",
            json.dumps(
                {
                    "notify": {
                        "command": [sys.executable, "-c", HOOK, str(received)],
                        "webhook": webhook.url,
                        "timeout": "5s",
                    }
                }
            ),
        )
        repo.commit("registry: tell on-call about every failed release", ".releasectl")
        set_faults(repo, "error_ratio: 0.5\n", "iris: half the requests fail")
        repo.ok("release", "iris", "2.0.0", "--push")
        remote_tip = git(bare, "rev-parse", "main")
        # The operator's unrelated, unpushed work, and a remote that refuses pushes for a while.
        repo.write("NOTES.md", "work in progress\n")
        unpushed = repo.commit("notes: not for the remote yet", "NOTES.md")
        hook = bare / "hooks" / "pre-receive"
        hook.write_text(PRE_RECEIVE.replace("{limit}", str(REFUSED_PUSHES)))
        hook.chmod(0o755)

        with Load(f"http://127.0.0.1:{port}", rate=40) as load:
            deployed = json.loads(repo.ok("deploy", "iris", "--watch", "--json"))
            watcher = deployed["watcher"]
            assert deployed["version"] == "2.0.0" and watcher["push"] is True
            try:
                wait_until(
                    "the stable version to serve again",
                    lambda: any(r[1] == 200 and r[2] == "1.0.0" for r in _after_bad(load)),
                )
                load.wait_for(40)  # and keep serving it
                psutil.Process(watcher["pid"]).wait(timeout=120)
            finally:
                if psutil.pid_exists(watcher["pid"]):
                    psutil.Process(watcher["pid"]).kill()
        results = list(load.results)

    # Recovery first: the stable version served within (failure_limit + 1) intervals + 1 s
    # of the first bad answer, and never stopped after that.
    first_bad = next(t for t, code, _ in results if code != 200)
    back = next(
        t for t, code, version in results if t > first_bad and code == 200 and version == "1.0.0"
    )
    bound = (FAST["failure_limit"] + 1) * INTERVAL_S + 1.0
    assert back - first_bad <= bound, (back - first_bad, Path(watcher["log"]).read_text())
    assert [r for r in results if r[0] > back and (r[1] != 200 or r[2] != "1.0.0")] == []

    # Record second: the revert reached the remote once it accepted pushes, on the
    # remote's tip and without the operator's unpushed commit.
    assert int((bare / "refused").read_text()) == REFUSED_PUSHES
    head = git(bare, "rev-parse", "main")
    assert git(bare, "rev-parse", f"{head}^") == remote_tip
    message = git(bare, "log", "-1", "--format=%B", head)
    assert "Releasectl-Revert-From: 2.0.0" in message
    assert "Releasectl-Revert-To: 1.0.0" in message
    assert git(bare, "tag", "--list", "rejected/iris/v2.0.0") == "rejected/iris/v2.0.0"
    assert git(bare, "cat-file", "-t", unpushed, check=False) != "commit"
    # The operator's branch is left alone: their commit is still there, unpushed.
    assert repo.head() == unpushed

    # Never silent: status says what happened, and the hook heard it once.
    status = json.loads(repo.ok("status", "iris", "--json"))[0]
    outcome = status["watch_outcome"]
    assert status["live"]["version"] == "1.0.0"
    assert outcome["outcome"] == "failed-recovered" and outcome["recovered"] == "warm"
    assert outcome["record"] == "done" and outcome["revert_commit"] == head
    assert outcome["pushed_to"] == "origin"
    assert status["watcher"]["alive"] is False and status["watcher"]["exit_code"] == 4
    text = repo.ok("status", "iris")
    assert "2.0.0 failed analysis" in text and "reverted to 1.0.0" in text
    assert "exited with code 4" in text
    lines = received.read_text().splitlines()
    assert len(lines) == 1, lines
    assert json.loads(lines[0])["outcome"] == "failed-recovered"
    assert [b["outcome"] for b in webhook.bodies] == ["failed-recovered"]
    assert all(d["ok"] for d in outcome["notified"]) and len(outcome["notified"]) == 2

    # The operator catches up (their notes commit rebased onto the revert) and deploys
    # the branch: the revert's state takes over the server already serving 1.0.0.
    repo.git("pull", "-q", "--rebase")
    assert git(repo.path, "merge-base", "--is-ancestor", head, "HEAD", check=False) == ""
    out = json.loads(repo.ok("deploy", "iris", "--json"))
    assert (out["version"], out["switch"], out["commit"]) == ("1.0.0", "none", head)


def _after_bad(load: Load) -> list[tuple[float, int, str | None]]:
    results = list(load.results)
    first = next((i for i, r in enumerate(results) if r[1] != 200), None)
    return [] if first is None else results[first:]


def test_a_watcher_killed_mid_bake_is_reported_not_silent(
    team: tuple[Repo, Path, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deploy that starts the watcher runs in this process, through the
    library's `deploy_and_watch`, which resolves the deploy state, the trust
    root and the notification hook once each (and checks the key once)."""
    from releasectl import git as g
    from releasectl import signing, view
    from releasectl.pipeline import deploying
    from releasectl.serving import deploy, notify

    repo = team[0]
    set_faults(repo, "error_ratio: 0.5\n", "iris: half the requests fail")
    repo.ok("release", "iris", "2.0.0", "--push")
    counted = {
        "the deploy state": count_calls(monkeypatch, deploy.resolve),
        "the trust root": count_calls(monkeypatch, view.trust_root),
        "the notification hook": count_calls(monkeypatch, notify.load),
        "the signing key": count_calls(monkeypatch, signing.check_signing_key),
    }
    deployed = deploying.deploy_and_watch(g.open_repo(repo.path), "iris", watch=True).to_json()
    assert {what: len(calls) for what, calls in counted.items()} == dict.fromkeys(counted, 1)
    assert deployed["version"] == "2.0.0" and deployed["watcher"]["version"] == "2.0.0"
    pid = deployed["watcher"]["pid"]
    wait_until("the watcher to run", lambda: psutil.pid_exists(pid))
    psutil.Process(pid).kill()
    status = json.loads(repo.ok("status", "iris", "--json"))[0]
    assert status["watcher"]["alive"] is False and status["watcher"]["exit_code"] is None
    assert "DIED without a word" in repo.ok("status", "iris")


def test_a_malformed_hook_is_refused_before_anything_is_watched(registry: Repo) -> None:
    registry.write(".releasectl/config.yaml", "notify:\n  command: page-oncall --team ml\n")
    registry.commit("registry: a hook written as a shell line", ".releasectl")
    before = registry.snapshot()
    proc = registry.cli("watch", "iris")
    assert proc.returncode == 2, proc.stderr
    assert "notify.command" in proc.stderr and "list" in proc.stderr
    assert registry.snapshot() == before
