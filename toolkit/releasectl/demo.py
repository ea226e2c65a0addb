"""`releasectl demo`: the registry story, told in a throwaway repository with a
throwaway SSH key and a bare remote, through the real command line."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .errors import OperationFailed

Say = Callable[[str], None]


class Demo:
    def __init__(self, root: Path, say: Say) -> None:
        self.root = root
        self.repo = root / "registry"
        self.say = say
        self.env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": str(root / "gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
        }
        self.env.pop("RELEASECTL_ALLOWED_SIGNERS", None)

    def sh(self, *argv: str, cwd: Path | None = None, show: bool = True) -> str:
        if show:
            self.say(f"$ {shlex.join(argv)}")
        if argv[0] == "releasectl":
            argv = (sys.executable, "-m", "releasectl", *argv[1:])
        proc = subprocess.run(
            argv, cwd=cwd or self.repo, env=self.env, capture_output=True, text=True, check=False
        )
        output = (proc.stdout + proc.stderr).rstrip()
        if show and output:
            self.say(output)
        if proc.returncode != 0:
            raise OperationFailed(f"demo step failed: {shlex.join(argv)}: {output[-500:]}")
        return proc.stdout

    def step(self, title: str) -> None:
        self.say(f"\n== {title}")

    def run(self) -> None:
        start = time.monotonic()
        key = self.root / "demo-key"
        (self.root / "gitconfig").write_text(
            "[user]\n\tname = Demo Operator\n\temail = operator@demo.test\n"
            f"[gpg]\n\tformat = ssh\n[user]\n\tsigningkey = {key}\n[init]\n\tdefaultBranch = main\n"
        )
        self.step("A throwaway signing key, a bare remote and a registry")
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
        self.sh("git", "init", "-q", "--bare", str(self.root / "remote.git"), cwd=self.root)
        self.sh("git", "clone", "-q", str(self.root / "remote.git"), str(self.repo), cwd=self.root)
        self.sh("releasectl", "init")
        self.sh("releasectl", "new", "iris")
        self.sh("git", "add", "-A")
        self.sh("git", "commit", "-q", "-S", "-m", "Add the iris model")
        self.sh("git", "push", "-q", "-u", "origin", "main")

        self.step("Release 1.0.0; it passes its bake and is marked stable")
        self.sh("releasectl", "release", "iris", "1.0.0", "--push")
        self.sh("releasectl", "mark-stable", "iris", "1.0.0", "--push")

        self.step("Release 1.1.0; it misbehaves in production")
        (self.repo / "model-releases/iris/service.py").write_text(
            "# 1.1.0: a retrained model that turns out to be worse\n"
            + (self.repo / "model-releases/iris/service.py").read_text()
        )
        self.sh("git", "commit", "-q", "-S", "-am", "iris: retrained model")
        self.sh("releasectl", "release", "iris", "1.1.0", "--push")

        self.step("The incident: one command back to the last stable release")
        self.sh("releasectl", "revert", "iris", "--dry-run", "--reason", "error rate 20%")
        t0 = time.monotonic()
        self.sh("releasectl", "revert", "iris", "--reason", "error rate 20%", "--push")
        took = time.monotonic() - t0

        self.step("What the registry says now")
        self.sh("releasectl", "history", "iris")
        self.sh("releasectl", "show", "iris")
        self.sh("releasectl", "verify", "iris")
        self.sh("git", "log", "--oneline", "-4")
        self.say(
            f"\nrevert (signed commit + rejected tag, pushed) took {took:.2f} s; "
            f"whole demo {time.monotonic() - start:.1f} s"
        )


def run_demo(say: Say, keep: Path | None = None) -> None:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        Demo(keep, say).run()
        return
    with tempfile.TemporaryDirectory(prefix="releasectl-demo-") as tmp:
        Demo(Path(tmp), say).run()
