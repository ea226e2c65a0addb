"""`releasectl demo`: the whole story on the local target, through the real
command line, in a throwaway registry (temporary repository, SSH key, bare
remote, state home): release, deploy and watch 1.0.0 until it is stable;
release a faulty 1.1.0 and deploy it with a watcher; the watcher catches the
errors, reverts in git, pushes and switches back; then the timeline. It runs
the command line as a user would, so it is part of `cli/` (docs/ARCHITECTURE.md,
"Layers")."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from releasectl import loopback
from releasectl.errors import OperationFailed

Say = Callable[[str], None]
SETOSA = [5.1, 3.5, 1.4, 0.2]
ANALYSIS = """\
analysis:
  interval: 2s
  bake: 8s
  min_requests: 5
  failure_limit: 1
  inconclusive_limit: 3
  consecutive_error_limit: 3
  metrics:
    error_rate: {max: 0.05}
    latency_ms: {p95: 250}
"""


class Traffic:
    """A client calling the endpoint ~20 times a second, remembering who answered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[float, int, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=5) as client:
            while not self._stop.is_set():
                try:
                    r = client.post(f"{self.url}/predict", json={"features": SETOSA})
                    version = r.json().get("version") if r.status_code == 200 else None
                    self.seen.append((time.monotonic(), r.status_code, version))
                except httpx.HTTPError:
                    self.seen.append((time.monotonic(), 0, None))
                self._stop.wait(0.05)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def first(self, after: float, version: str) -> float | None:
        return next(
            (t for t, code, v in self.seen if t >= after and code == 200 and v == version), None
        )

    def failures(self, start: float, end: float) -> int:
        return sum(1 for t, code, _ in self.seen if start <= t < end and code != 200)

    def total(self, start: float, end: float) -> int:
        return sum(1 for t, _, _ in self.seen if start <= t < end)


class Demo:
    def __init__(self, root: Path, say: Say) -> None:
        self.root = root
        self.repo = root / "registry"
        self.remote = root / "remote.git"
        self.say = say
        self.start = time.monotonic()
        self.env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": str(root / "gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "RELEASECTL_HOME": str(root / "state"),
        }
        for variable in ("RELEASECTL_ALLOWED_SIGNERS", "RELEASECTL_STORE"):
            self.env.pop(variable, None)

    def sh(self, *argv: str, show: bool = True, cwd: Path | None = None) -> str:
        if show:
            self.say(f"$ {shlex.join(argv)}")
        if argv[0] == "releasectl":
            argv = (sys.executable, "-m", "releasectl", *argv[1:])
        proc = subprocess.run(
            argv, cwd=cwd or self.repo, env=self.env, capture_output=True, text=True, check=False
        )
        output = (proc.stdout + proc.stderr).rstrip()
        if show and output:
            self.say("  " + output.replace("\n", "\n  "))
        if proc.returncode not in (0, 4):
            raise OperationFailed(f"demo step failed: {shlex.join(argv)}: {output[-800:]}")
        return proc.stdout

    def step(self, title: str) -> None:
        self.say(f"\n[{time.monotonic() - self.start:5.1f}s] == {title}")

    def setup(self, port: int) -> None:
        key = self.root / "demo-key"
        (self.root / "gitconfig").write_text(
            "[user]\n\tname = Demo Operator\n\temail = operator@demo.test\n"
            f"\tsigningkey = {key}\n[gpg]\n\tformat = ssh\n[init]\n\tdefaultBranch = main\n"
        )
        self.sh(
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "demo",
            "-f",
            str(key),
            cwd=self.root,
            show=False,
        )
        self.sh("git", "init", "-q", "--bare", str(self.remote), cwd=self.root, show=False)
        self.sh("git", "clone", "-q", str(self.remote), str(self.repo), cwd=self.root, show=False)
        self.sh("releasectl", "init")
        self.sh("releasectl", "new", "iris", "--port", str(port))
        from ruamel.yaml import YAML

        from releasectl.manifest.edits import edit

        manifest = self.repo / "model-releases/iris/release.yaml"
        fast = {"analysis": YAML(typ="safe").load(ANALYSIS)["analysis"]}
        manifest.write_text(edit(manifest.read_text(), "release.yaml", fast))
        self.sh("git", "add", "-A", show=False)
        self.sh("git", "commit", "-q", "-S", "-m", "Add the iris model", show=False)
        self.sh("git", "push", "-q", "-u", "origin", "main", show=False)

    def run(self) -> None:
        port = loopback.free_port()
        url = loopback.url(port)
        try:
            self.step("A registry: throwaway SSH key, bare remote, `releasectl new iris`")
            self.setup(port)

            self.step("Release 1.0.0 (builds the bundle, pins its digest), deploy, watch")
            self.sh("releasectl", "release", "iris", "1.0.0", "--push")
            self.sh("releasectl", "deploy", "iris")
            with Traffic(url):
                self.sh("releasectl", "watch", "iris", "--push")

            self.step("Release 1.1.0 with a fault: 20% of predictions fail")
            (self.repo / "model-releases/iris/faults.yaml").write_text("error_ratio: 0.2\n")
            self.sh("git", "add", "-A", show=False)
            self.sh("git", "commit", "-q", "-S", "-m", "iris: retrained (secretly broken)")
            self.sh("releasectl", "release", "iris", "1.1.0", "--push")
            with Traffic(url) as traffic:
                t_deploy = time.monotonic()
                self.sh("releasectl", "deploy", "iris", "--watch")
                self.say("  (nobody at the keyboard: the watcher decides)")
                t_detect = self._wait_for_revert()
                t_bad = traffic.first(t_deploy, "1.1.0")
                end = time.monotonic() + 30
                while traffic.first(t_detect, "1.0.0") is None and time.monotonic() < end:
                    time.sleep(0.05)
                t_back = traffic.first(t_detect, "1.0.0")
                time.sleep(1.0)
                t_end = time.monotonic()

            self.step("What git and the target say now")
            self.sh("releasectl", "history", "iris")
            self.sh("git", "--git-dir", str(self.remote), "log", "--oneline", "-3", "main")
            self.sh("releasectl", "status", "iris")
            self._timeline(traffic, t_deploy, t_bad, t_detect, t_back, t_end)
        finally:
            self.sh("releasectl", "agent", "stop", show=False)

    def _wait_for_revert(self) -> float:
        end = time.monotonic() + 120
        while time.monotonic() < end:
            tags = self.sh(
                "git", "--git-dir", str(self.remote), "tag", "--list", "rejected/iris/*", show=False
            )
            if tags.strip():
                self.say(f"  the watcher pushed a revert: {tags.strip()}")
                return time.monotonic()
            time.sleep(0.1)
        log = self.root / "state" / "watch" / "iris.log"
        raise OperationFailed(
            "the watcher did not revert in time: "
            + (log.read_text()[-800:] if log.exists() else "no log")
        )

    def _timeline(
        self,
        traffic: Traffic,
        t_deploy: float,
        t_bad: float | None,
        t_detect: float,
        t_back: float | None,
        t_end: float,
    ) -> None:
        self.say("\n== Timeline of the bad release (client's view)")
        bad = t_bad or t_deploy
        rows = [
            ("deploy of 1.1.0 started", t_deploy),
            ("first answer from 1.1.0", t_bad),
            ("revert pushed (detected)", t_detect),
            ("first answer from 1.0.0 again", t_back),
        ]
        for label, at in rows:
            self.say(f"  {label:32} " + (f"+{at - t_deploy:6.2f}s" if at else "   never"))
        if t_back:
            self.say(f"  time to detect:  {t_detect - bad:5.2f} s after 1.1.0 went live")
            self.say(f"  time to recover: {t_back - bad:5.2f} s after 1.1.0 went live")
            self.say(
                f"  failed requests while 1.1.0 served: {traffic.failures(bad, t_back)}"
                f" of {traffic.total(bad, t_back)}; after the switch: "
                f"{traffic.failures(t_back, t_end)} of {traffic.total(t_back, t_end)}"
            )
        self.say(f"\ndemo finished in {time.monotonic() - self.start:.0f} s")


def run_demo(say: Say, keep: Path | None = None) -> None:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        Demo(keep, say).run()
        return
    with tempfile.TemporaryDirectory(prefix="releasectl-demo-") as tmp:
        Demo(Path(tmp), say).run()
