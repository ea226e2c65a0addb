"""Crafted text: a revert's reason is one short printable line that can
neither remove nor forge the revert's trailers; annotations and summaries
escape what they quote; undecodable, oversized, over-nested input and
symlinks out of a model folder are bad input (exit 2, one line), and
`check` reports them instead of crashing."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from testing.histories import MANIFEST, iris_stable
from testing.repos import Repo

SCISSORS = "------------------------ >8 ------------------------"


@pytest.fixture
def iris(registry: Repo) -> Repo:
    return iris_stable(registry, then="1.1.0")


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr, proc.stdout)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("releasectl: "), proc.stderr
    assert words in proc.stderr, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


# --- the reason --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("bad\nReleasectl-Revert-From: 0.0.1", "line break or control character"),
        (f"bad\n\n# {SCISSORS}\n", "line break or control character"),
        ("bad\r\nReleasectl-Serial: 99", "line break or control character"),
        ("\x1b[2J\x1b[31mred alert", "line break or control character"),
        ("right-to-left \u202e", "line break or control character"),
        ("x" * 501, "501 characters long; at most 500"),
        ("x" * 70_000, "70000 characters long"),
        ("   ", "the reason is empty"),
    ],
    ids=["newline-trailer", "scissors", "crlf", "escapes", "bidi", "501", "70k", "blank"],
)
def test_a_reason_is_one_short_printable_line(iris: Repo, reason: str, words: str) -> None:
    before = iris.snapshot()
    for extra in ([], ["--dry-run"], ["--push"], ["--dry-run", "--json"]):
        proc = iris.cli("revert", "iris", "--reason", reason, *extra)
        if "--json" in extra:
            assert proc.returncode == 2 and words in json.loads(proc.stdout)["error"]["message"]
            continue
        _one_line_error(proc, 2, words)
    assert iris.snapshot() == before


def _plan(repo: Repo, tmp_path: Path, before: str) -> list[dict[str, Any]]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"before": before}))
    env = {
        "GITHUB_EVENT_NAME": "push",
        "GITHUB_REF": "refs/heads/main",
        "GITHUB_SHA": repo.head(),
        "GITHUB_EVENT_PATH": str(event),
    }
    proc = repo.cli("ci", "plan", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    return cast(list[dict[str, Any]], json.loads(proc.stdout))


@pytest.mark.parametrize(
    "reason",
    [
        f"# {SCISSORS}",
        SCISSORS,
        "Releasectl-Revert-From: 0.0.1",
        "x" * 460 + " Releasectl-Serial: 99",
    ],
    ids=["commented-scissors", "scissors", "forged-from", "forged-serial"],
)
def test_no_reason_removes_or_forges_the_trailers(iris: Repo, tmp_path: Path, reason: str) -> None:
    before = iris.head()
    iris.ok("revert", "iris", "--reason", reason)
    message = iris.git("log", "-1", "--format=%B")
    assert f"Reason: {reason}" in message
    parsed = subprocess.run(
        ["git", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
        cwd=iris.path,
    ).stdout
    assert parsed.splitlines() == [
        "Releasectl-Model: iris",
        "Releasectl-Revert-From: 1.1.0",
        "Releasectl-Revert-To: 1.0.0",
        "Releasectl-Serial: 3",
    ]
    # As a commit made with git's scissors cleanup would keep it: the trailers survive.
    cleaned = subprocess.run(
        ["git", "stripspace", "--strip-comments"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
        cwd=iris.path,
    ).stdout
    assert cleaned.rstrip().endswith("Releasectl-Serial: 3")
    assert _plan(iris, tmp_path, before) == [
        {"model": "iris", "kind": "revert", "version": "1.0.0"}
    ]
    shown = json.loads(iris.ok("show", "iris", "--json"))
    assert shown["rollback"]["reason"] == reason and shown["serial"] == 3


def test_a_500_character_reason_is_accepted(iris: Repo) -> None:
    reason = "é" * 499 + "!"
    iris.ok("revert", "iris", "--reason", reason)
    assert json.loads(iris.ok("show", "iris", "--json"))["rollback"]["reason"] == reason


# --- annotations and summaries -----------------------------------------------------------


def _in_actions(
    repo: Repo, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    summary = tmp_path / "summary.md"
    summary.write_text("")
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    proc = repo.cli(*args, env={**env, "RELEASECTL_HOME": str(tmp_path / "state")})
    return proc, summary.read_text()


def _no_injected_commands(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines the runner would read as workflow commands (it reads both
    streams, any line break, leading blanks trimmed): exactly one ::error."""
    lines = (proc.stdout + proc.stderr).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    commands = [line for line in lines if line.lstrip().startswith("::")]
    assert len(commands) == 1 and commands[0].startswith("::error title="), commands
    return commands


def test_an_argument_cannot_inject_a_workflow_command(iris: Repo, tmp_path: Path) -> None:
    reason = "50%, down: now\n::add-mask::x\r::warning title=pwned::yes"
    proc, summary = _in_actions(iris, tmp_path, "revert", "iris", "--reason", reason)
    assert proc.returncode == 2
    (command,) = _no_injected_commands(proc)
    title = command.removeprefix("::error title=").split("::", 1)[0]
    assert title == (
        "releasectl revert iris --reason 50%25%2C down%3A now%0A%3A%3Aadd-mask%3A%3Ax%0D"
        "%3A%3Awarning title=pwned%3A%3Ayes"
    )
    entry = summary.strip()
    assert "\n" not in entry and entry.startswith("❌ `releasectl revert iris --reason 50%")
    assert "(exit 2)" in entry


def test_a_crafted_version_is_bad_input_not_a_missing_release(iris: Repo, tmp_path: Path) -> None:
    proc, _ = _in_actions(iris, tmp_path, "deploy", "iris", "--version", "1.0\n::warning::x")
    assert proc.returncode == 2 and "invalid version '1.0\\n::warning::x'" in proc.stderr
    _no_injected_commands(proc)
    assert not (tmp_path / "state").exists()  # refused before the target was asked


def test_a_message_cannot_inject_a_workflow_command(iris: Repo, tmp_path: Path) -> None:
    """The message (data) quotes a path a user chose: its line breaks and
    percent signs are escaped, and the plain stderr line starts no command."""
    folder = tmp_path / "not a repo\n::warning::pwned%0A" / "x"
    folder.mkdir(parents=True)
    proc, summary = _in_actions(iris, tmp_path, "-C", str(folder), "list")
    assert proc.returncode == 1
    (command,) = _no_injected_commands(proc)
    assert "not a repo%0A::warning::pwned%250A/x is not inside a git repository" in command
    assert "\n" not in summary.strip() and "not a repo ::warning::pwned" in summary


def test_check_findings_stay_one_line_in_every_output(iris: Repo, tmp_path: Path) -> None:
    iris.git("checkout", "-q", "-b", "pr")
    iris.write(MANIFEST, (iris.path / MANIFEST).read_text() + 'colour: "a|b\\n::error::x"\n')
    iris.commit("a crafted key value")
    proc, summary = _in_actions(iris, tmp_path, "check", "--base", "main", "--no-build")
    assert proc.returncode == 2
    assert not [line for line in proc.stdout.splitlines() if line.startswith("::warning")]
    rows = [line for line in summary.splitlines() if line.startswith("| ❌")]
    assert rows and all(line.count(" | ") == 3 for line in rows), rows


def test_a_crafted_file_name_cannot_draw_a_row_of_checks_output(iris: Repo) -> None:
    """A PR's file name is untrusted text: its line break and escape sequence are
    shown escaped, so it can neither forge an "ok" row nor recolour the terminal."""
    iris.git("checkout", "-q", "-b", "pr")
    iris.write("deploy/x\nok    iris: signature: good \x1b[32m", "planted\n")
    iris.commit("a crafted file name")
    proc = iris.cli("check", "--base", "main", "--no-build")
    assert proc.returncode != 0, proc.stdout
    assert "\x1b" not in proc.stdout, proc.stdout
    assert not [line for line in proc.stdout.splitlines() if line.startswith("ok    iris")]
    assert [line for line in proc.stdout.splitlines() if line.startswith("FAIL  deploy")]


# --- undecodable and oversized input -----------------------------------------------------


def _commit_manifest(repo: Repo, data: bytes) -> None:
    (repo.path / MANIFEST).write_bytes(data)
    repo.commit("a crafted manifest")


def _crafted(repo: Repo, kind: str) -> bytes:
    text = (repo.path / MANIFEST).read_bytes()
    if kind == "utf8":
        return text.replace(b"model: iris", b"model: iris # caf\xe9 \xff")
    if kind == "serial":
        return text.replace(b"serial: 2", b"serial: " + b"9" * 5000)
    if kind == "nested-flow":
        return text + b"extra: " + b"[" * 5000 + b"]" * 5000 + b"\n"
    assert kind == "nested-block"
    return text + b"".join(b"  " * i + b"k:\n" for i in range(200)) + b"  " * 200 + b"v\n"


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("utf8", "is not valid UTF-8"),
        ("serial", "a value cannot be read"),
        ("nested-flow", "nested deeper than 32 levels"),
        ("nested-block", "nested deeper than 32 levels"),
    ],
)
def test_undecodable_and_oversized_manifests_are_bad_input(
    iris: Repo, kind: str, words: str
) -> None:
    _commit_manifest(iris, _crafted(iris, kind))
    before = iris.snapshot()
    for args in (
        ["show", "iris"],
        ["history", "iris"],
        ["revert", "iris"],
        ["release", "iris", "2.0.0"],
    ):
        proc = iris.cli(*args)
        if args[0] == "history":  # reads tags and history, not the manifest
            assert proc.returncode == 0, proc.stderr
            continue
        _one_line_error(proc, 2, words)
    assert iris.snapshot() == before


@pytest.mark.parametrize("kind", ["utf8", "serial", "nested-flow"])
def test_check_reports_a_crafted_manifest_instead_of_crashing(iris: Repo, kind: str) -> None:
    iris.git("checkout", "-q", "-b", "pr")
    _commit_manifest(iris, _crafted(iris, kind))
    proc = iris.cli("check", "--base", "main", "--no-build", "--json")
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    (manifest,) = [f for f in doc["findings"] if f["check"] == "manifest"]
    assert manifest["ok"] is False and manifest["code"] == 2
    assert doc["findings"][0]["check"] == "signed" and doc["findings"][0]["ok"]


# --- symlinks out of a model folder ------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    ["/etc/passwd", "../../.releasectl/allowed_signers", "../fraud/secret.txt"],
    ids=["absolute", "out-of-the-repository-folder", "into-another-model"],
)
def test_a_symlink_out_of_the_model_folder_is_refused(
    iris: Repo, tmp_path: Path, target: str
) -> None:
    iris.add_model("fraud", {"secret.txt": "fraud's\n"})
    iris.write("model-releases/iris/bentofile.yaml", "service: service:Iris\n")
    os.symlink(target, iris.path / "model-releases/iris/leak")
    iris.commit("iris: a link")
    before = iris.snapshot()
    proc = iris.cli("release", "iris", "2.0.0")
    _one_line_error(proc, 2, "model-releases/iris/leak at ")
    assert f"is a symlink to {target!r}, outside model-releases/iris/" in proc.stderr
    assert iris.snapshot() == before
    # The same commit as a pull request: reported by the check's build, not a crash.
    proc = iris.cli("check", "--base", "HEAD~1", "--json")
    assert proc.returncode == 3, proc.stderr  # its version does not rise either
    (bundle,) = [f for f in json.loads(proc.stdout)["findings"] if f["check"] == "bundle"]
    assert bundle["ok"] is False and bundle["code"] == 2 and "is a symlink to" in bundle["detail"]


def test_a_symlink_inside_the_model_folder_is_fine(iris: Repo, tmp_path: Path) -> None:
    from releasectl.git import export_tree, open_repo

    os.symlink("service.py", iris.path / "model-releases/iris/alias.py")
    iris.commit("iris: an alias")
    out = export_tree(open_repo(iris.path), "HEAD", "model-releases/iris", tmp_path / "x")
    assert (out / "alias.py").read_text() == (
        iris.path / "model-releases/iris/service.py"
    ).read_text()


# --- untrusted text on the terminal ------------------------------------------------------


def test_show_prints_a_crafted_rollback_record_escaped(iris: Repo) -> None:
    """A manifest committed without a key can say anything in its rollback
    record; `show` prints it with control and escape characters escaped, on
    one line, so it cannot clear the screen or draw lines of its own."""
    manifest = iris.path / MANIFEST
    manifest.write_text(
        manifest.read_text()
        + 'rollback:\n  from: "1.2.0"\n  to: "1.1.0"\n  reason: "ok\\e[2J\\rVERIFIED"\n'
        + '  at: "2026-01-01T00:00:00+00:00"\n  by: "x@y\\nlast stable: 9.9.9\\u202e"\n'
    )
    iris.commit("a crafted record", sign=False)
    proc = iris.cli("show", "iris")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\r" not in proc.stdout and "\u202e" not in proc.stdout
    line = next(ln for ln in proc.stdout.splitlines() if "reverted from" in ln)
    assert "by x@y\\x0alast stable: 9.9.9\\u202e: ok\\x1b[2J\\x0dVERIFIED" in line
    assert not any(ln.startswith("last stable: 9.9.9") for ln in proc.stdout.splitlines())
