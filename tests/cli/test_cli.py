"""The command line behaves like the tools operators already use: --version,
-h, shell completion, shared options on either side of the subcommand, `v`
on versions, dry runs that refuse exactly as the real command does, read
commands that start nothing, and messages that name the right things.
Real git, real SSH keys, the real `releasectl` executable."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from releasectl.loopback import free_port
from testing.cli import run as run_cli
from testing.histories import iris_released, release
from testing.repos import RELEASECTL, Repo, clone, git, make_key

MANIFEST = "model-releases/iris/release.yaml"


def _in(home: Path) -> dict[str, str]:
    """The environment of a command whose local target lives in `home`."""
    return {"RELEASECTL_HOME": str(home)}


def _ok(repo: Repo, home: Path, *args: str) -> str:
    proc = repo.cli(*args, env=_in(home))
    assert proc.returncode == 0, (args, proc.stderr, proc.stdout)
    return proc.stdout


def _one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def _files(folder: Path) -> dict[str, bytes]:
    """Everything under `folder` (the local target's state), by path."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _target_processes(home: Path) -> set[int]:
    """Local agents and bentoml servers of the target living in `home`: the
    agent is started with `--home <home>`, its servers run under it."""
    needle = str(home)
    found = set()
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            env = proc.environ() if "bentoml" in cmd else {}
        except psutil.Error:
            continue
        agent = "releasectl.serving.local.agent" in cmd and needle in cmd
        server = "bentoml" in cmd and (needle in cmd or needle in env.get("BENTOML_HOME", ""))
        if agent or server:
            found.add(proc.pid)
    return found


# --- 1. version, -h, completion -----------------------------------------------------------


def test_version_is_the_installed_distributions(tmp_path: Path) -> None:
    proc = subprocess.run([RELEASECTL, "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"releasectl {importlib.metadata.version('releasectl')}\n"


@pytest.mark.parametrize(
    "argv", [[], ["list"], ["deploy"], ["agent"], ["agent", "stop"], ["ci", "plan"]]
)
def test_h_is_help_everywhere(tmp_path: Path, argv: list[str]) -> None:
    short, long = (run_cli([*argv, flag], cwd=tmp_path) for flag in ("-h", "--help"))
    assert short.returncode == long.returncode == 0, short.stderr
    assert short.stdout == long.stdout and short.stdout.startswith("Usage: releasectl")


def test_the_bash_completion_script_completes_commands_and_options(tmp_path: Path) -> None:
    # --show-completion takes no shell name: it detects the shell it was started from,
    # so it is started from bash, as a user would (`; true` keeps bash as its parent
    # instead of exec'ing it; under pytest-xdist the parent is otherwise Python).
    shown = subprocess.run(
        ["bash", "-c", f"{shlex.quote(RELEASECTL)} --show-completion; true"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    script = shown.stdout
    assert "complete -o default -F _releasectl_completion releasectl" in script
    (tmp_path / "completion.bash").write_text(script)

    def complete(*words: str) -> list[str]:
        # What bash does on TAB: set COMP_WORDS/COMP_CWORD and call the function.
        line = " ".join(f"'{w}'" for w in words)
        program = (
            f"source {tmp_path / 'completion.bash'}\n"
            f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}\n"
            f"_releasectl_completion {RELEASECTL}\n"
            'printf "%s\\n" "${COMPREPLY[@]}"\n'
        )
        out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
        return out.stdout.split()

    assert complete("releasectl", "sta") == ["status"]
    assert set(complete("releasectl", "agent", "st")) == {"status", "start", "stop"}
    assert "--dry-run" in complete("releasectl", "deploy", "iris", "--d")


def _completions(repo: Repo, *words: str) -> list[str]:
    """What the completion script asks the program for on TAB after `words`
    (bash's protocol: COMP_WORDS / COMP_CWORD, the last word being typed)."""
    proc = subprocess.run(
        [RELEASECTL],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=False,
        env={
            **os.environ,
            "_RELEASECTL_COMPLETE": "complete_bash",
            "COMP_WORDS": " ".join(["releasectl", *words]),
            "COMP_CWORD": str(len(words)),
        },
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_completion_offers_models_and_versions(registry: Repo) -> None:
    registry.add_model("iris")
    registry.add_model("fraud")
    release(registry, "iris", "1.0.0", stable=True)
    registry.write("model-releases/iris/service.py", "# 1.1\n")
    registry.commit("iris: 1.1")
    release(registry, "iris", "1.1.0")
    registry.ok("revert", "iris")  # 1.1.0 rejected
    registry.write("model-releases/iris/service.py", "# 1.2\n")
    registry.commit("iris: 1.2")
    release(registry, "iris", "1.2.0", stable=True)

    assert _completions(registry, "deploy", "") == ["fraud", "iris"]
    assert _completions(registry, "status", "i") == ["iris"]
    assert _completions(registry, "new", "wine", "--from", "f") == ["fraud"]
    released = ["1.2.0", "1.1.0", "1.0.0"]  # newest first
    assert _completions(registry, "mark-stable", "iris", "") == released
    assert _completions(registry, "build", "iris", "v1.1") == ["v1.1.0"]  # as typed
    assert _completions(registry, "show", "iris", "--version", "1.") == released
    # --to: the rollback targets only: stable, never rejected.
    assert _completions(registry, "revert", "iris", "--to", "") == ["1.2.0", "1.0.0"]
    assert _completions(registry, "verify", "fraud", "") == []
    # It runs on every TAB, so its time matters; a benchmark measures it, a test never does.


# --- 2. shared options after the subcommand ----------------------------------------------


@pytest.fixture
def iris(registry: Repo) -> Repo:
    return iris_released(registry, "1.0.0")


def test_shared_options_after_the_subcommand(iris: Repo, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    home = tmp_path / "state"
    repo = str(iris.path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(args, cwd=elsewhere, env=_in(home))

    for command in (["status"], ["list"], ["show", "iris"], ["history", "iris"]):
        before, after = cli("-C", repo, *command, "--json"), cli(*command, "-C", repo, "--json")
        assert before.returncode == after.returncode == 0, (command, after.stderr)
        assert json.loads(after.stdout) == json.loads(before.stdout)
        # --json before the subcommand is the same request.
        assert json.loads(cli("--json", "-C", repo, *command).stdout) == json.loads(after.stdout)
    assert json.loads(cli("list", "-C", repo, "--json").stdout)[0]["model"] == "iris"

    # --debug after the subcommand: the traceback behind a refusal.
    plain, debug = cli("show", "nosuch", "-C", repo), cli("show", "nosuch", "-C", repo, "--debug")
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr and "Traceback" in debug.stderr

    # A command that prints no JSON says so, whichever side --json is on.
    refused = cli("--json", "demo")
    assert refused.returncode == 2 and "prints no JSON" in _one_line(refused)
    assert json.loads(refused.stdout)["error"]["code"] == 2


def test_a_missing_repo_directory_is_bad_input(tmp_path: Path) -> None:
    proc = run_cli(["list", "-C", str(tmp_path / "nope")])
    assert proc.returncode == 2 and "no such directory" in _one_line(proc)


# --- 3. `v1.4.0` is `1.4.0` ---------------------------------------------------------------


def test_a_v_prefix_names_the_same_version(registry: Repo) -> None:
    registry.add_model("iris")
    registry.ok("release", "iris", "v1.0.0")
    registry.ok("mark-stable", "iris", "v1.0.0")
    assert registry.git("tag", "--list") == "release/iris/v1.0.0\nstable/iris/v1.0.0"
    assert "version: 1.0.0\n" in (registry.path / MANIFEST).read_text()  # no 'v' in the manifest
    shown = [registry.ok("show", "iris", "--version", v, "--json") for v in ("v1.0.0", "1.0.0")]
    assert shown[0] == shown[1] and json.loads(shown[0])["version"] == "1.0.0"
    assert "verified" in registry.ok("verify", "iris", "v1.0.0")
    registry.write("model-releases/iris/service.py", "# iris 1.1\n")
    registry.commit("iris: 1.1")
    registry.ok("release", "iris", "1.1.0")
    out = json.loads(registry.ok("revert", "iris", "--to", "v1.0.0", "--dry-run", "--json"))
    assert (out["from"], out["to"]) == ("1.1.0", "1.0.0")
    # What is not a version with or without the 'v' is refused as typed.
    proc = registry.cli("release", "iris", "v2")
    assert proc.returncode == 2 and "invalid version 'v2'" in _one_line(proc)


# --- 6. a broken manifest is one row, not a failed listing -------------------------------


def test_list_reports_a_broken_manifest_in_its_row(registry: Repo) -> None:
    registry.add_model("iris")
    registry.add_model("fraud")
    release(registry, "iris", "1.0.0", stable=True)
    path = "model-releases/fraud/release.yaml"
    registry.write(path, (registry.path / path).read_text() + "colour: blue\n")
    registry.commit("fraud: a key the schema does not know")

    proc = registry.cli("list")
    assert proc.returncode == 2  # every model listed, then the error's exit code
    assert "fraud" in _one_line(proc) and "unknown key 'colour'" in proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert rows["iris"].split()[:4] == ["iris", "1.0.0", "1", "1.0.0"]
    assert "ERROR: " in rows["fraud"] and "unknown key 'colour'" in rows["fraud"]

    proc = registry.cli("list", "--json")
    assert proc.returncode == 2
    by_model = {row["model"]: row for row in json.loads(proc.stdout)}
    assert by_model["iris"]["version"] == "1.0.0" and "error" not in by_model["iris"]
    assert by_model["fraud"]["version"] is None
    assert by_model["fraud"]["error"]["code"] == 2
    assert "unknown key 'colour'" in by_model["fraud"]["error"]["message"]


# --- 6b. tables sized to their columns, every column headed, words said once -------------


def test_history_and_list_tables_fit_their_columns(registry: Repo) -> None:
    registry.add_model("iris")
    release(registry, "iris", "1.0.0", stable=True)
    registry.write("model-releases/iris/service.py", "# 1.1\n")
    registry.commit("iris: 1.1")
    release(registry, "iris", "1.1.0")
    reason = "the accuracy gauge fell below its threshold on the feedback labels " * 3
    registry.ok("revert", "iris", "--reason", reason.strip())

    table = registry.ok("history", "iris").splitlines()
    header = table[0].split()
    assert header == ["VERSION", "MARK", "COMMIT", "DATE", "SIGNER", "VERIFIED", "NOTE"]
    # VERSION is as wide as its widest version (or its heading), not the reason.
    assert table[0].index("MARK") == len("VERSION  ")
    revert = next(line for line in table if "revert from 1.1.0" in line)
    assert revert.startswith("1.0.0 ") and revert.endswith("…")
    assert max(len(line) for line in table) < 160
    rows = json.loads(registry.ok("history", "iris", "--json"))
    assert next(r for r in rows if r["kind"] == "revert")["reason"] == reason.strip()

    listed = registry.ok("list").splitlines()
    assert listed[0].split() == ["MODEL", "VERSION", "SERIAL", "LAST", "STABLE", "NOTE"]
    assert listed[1].split() == ["iris", "1.0.0", "3", "1.0.0", "reverted"]


def test_status_says_the_last_deploy_s_version_once() -> None:
    from releasectl.cli.serving import last_deploy_line
    from releasectl.serving.local.models import DeployOutcome

    def line(ok: bool, message: str) -> str:
        outcome = DeployOutcome(
            ok=ok,
            version="0.1.0",
            digest="sha256:" + "0" * 64,
            serial=1,
            fast_track=False,
            at=datetime.now(UTC),
            message=message,
        )
        return last_deploy_line(outcome)

    assert line(True, "0.1.0 is live") == "  last deploy ok: 0.1.0 is live"
    assert line(False, "/readyz never answered") == (
        "  last deploy FAILED: 0.1.0 /readyz never answered"
    )


# --- 7. messages name the right things ----------------------------------------------------


def test_uncommitted_paths_are_named_whole(iris: Repo) -> None:
    """Paths with spaces and renames, as `git status --porcelain` lists them,
    are named in full (the first one used to lose its first character)."""
    iris.write("model-releases/iris/old notes.txt", "notes\n")
    iris.commit("iris: notes")
    iris.write("model-releases/iris/service.py", "# changed, not committed\n")
    iris.git("mv", "model-releases/iris/old notes.txt", "model-releases/iris/new notes.txt")
    proc = iris.cli("release", "iris", "1.1.0")
    assert proc.returncode == 1
    line = _one_line(proc)
    for path in ("service.py", "new notes.txt", "old notes.txt"):
        assert f"model-releases/iris/{path}" in line, line
    assert '"' not in line and "->" not in line


def _deploy_result(**changes: object):  # type: ignore[no-untyped-def]
    from releasectl.serving.local import DeployResult

    fields = {
        "model": "iris",
        "version": "2.0.0",
        "digest": "sha256:" + "0" * 64,
        "commit": "c" * 40,
        "serial": 2,
        "fast_track": False,
        "endpoint": "http://127.0.0.1:3000",
        "slot": "2.0.0-abc",
        "switch": "cold",
        "previous_version": "1.0.0",
        "standby_until": datetime.now(UTC) + timedelta(minutes=10),
        "seconds": 1.5,
    }
    return DeployResult.model_validate({**fields, **changes})


def test_the_standby_named_is_the_version_kept_warm(capsys: pytest.CaptureFixture[str]) -> None:
    from releasectl.cli.serving import app, print_deploy

    assert any(c.callback and c.callback.__name__ == "deploy" for c in app.registered_commands)

    def printed(**changes: object) -> list[str]:
        print_deploy(_deploy_result(**changes))
        return capsys.readouterr().out.splitlines()

    # A new version: the one live before is the standby.
    head, standby = printed()
    assert head.startswith("iris 2.0.0 live at http://127.0.0.1:3000 (started")
    assert standby.startswith("  standby: 1.0.0, live before, stays warm until ")
    # Already live: the supervisor reports the live version as "previous";
    # it is not a standby and no line may say it stays warm.
    assert printed(switch="none", previous_version="2.0.0") == [
        "iris 2.0.0 live at http://127.0.0.1:3000 (already live, 1.50 s)"
    ]
    # No standby window: the previous version is retired, not kept warm.
    assert printed(standby_until=None)[1] == "  1.0.0, live before, was retired (no standby window)"


# --- 4. a dry run refuses exactly as the real command does -------------------------------


def _break_key(repo: Repo) -> None:
    repo.git("config", "user.signingkey", str(repo.path.parent / "no-such-key"))


def _init_without_key(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    git(fresh, "init", "-q", "-b", "main")
    git(
        fresh,
        "commit",
        "-q",
        "--allow-empty",
        "--no-gpg-sign",
        "-m",
        "a repository, not a registry",
    )
    other = Repo(fresh, repo.key, repo.email)
    git(fresh, "config", "gpg.format", "ssh")
    _break_key(other)
    return other, ["init"]


def _new_existing(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    return repo, ["new", "iris"]


def _upgrade_without_source(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    return repo, ["upgrade-workflows"]


def _release_dirty(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    repo.write("model-releases/iris/a b.txt", "not committed\n")
    return repo, ["release", "iris", "v1.1.0"]


def _sync_without_remote(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    return repo, ["sync"]


def _mark_stable_without_key(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    repo.write("model-releases/iris/service.py", "# 1.1\n")
    repo.commit("iris: 1.1")
    release(repo, "iris", "1.1.0")
    _break_key(repo)
    return repo, ["mark-stable", "iris", "1.1.0"]


def _revert_push_with_unpushed_work(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    repo.git("remote", "add", "origin", str(bare))
    repo.write("model-releases/iris/service.py", "# 1.1\n")
    repo.commit("iris: 1.1")
    release(repo, "iris", "1.1.0")
    repo.git("push", "-q", "-u", "origin", "main", "--tags")
    repo.write("docs/notes.md", "unpushed\n")
    repo.commit("docs: unpushed")
    return repo, ["revert", "iris", "--push"]


def _deploy_unsigned_state(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    repo.write("model-releases/iris/service.py", "# nobody signed this\n")
    repo.commit("iris: unsigned", sign=False)
    return repo, ["deploy", "iris"]


def _propose_lower(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    return repo, ["propose", "iris", "v0.9.0"]


def _watch_without_key(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    _break_key(repo)
    return repo, ["watch", "iris"]


def _release_by_an_untrusted_signer(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    repo.write("model-releases/iris/service.py", "# 1.1\n")
    repo.commit("iris: 1.1")
    repo.git("config", "user.signingkey", str(make_key(tmp_path / "keys", "stranger")))
    return repo, ["release", "iris", "1.1.0"]


def _revert_by_an_untrusted_signer(repo: Repo, tmp_path: Path) -> tuple[Repo, list[str]]:
    repo.write("model-releases/iris/service.py", "# 1.1\n")
    repo.commit("iris: 1.1")
    release(repo, "iris", "1.1.0")
    repo.git("config", "user.signingkey", str(make_key(tmp_path / "keys", "stranger")))
    return repo, ["revert", "iris"]


def _kubernetes_bundle(repo: Repo, registry: str) -> None:
    """iris as a kubernetes model whose release builds a bundle and its image
    (the refusals come before the sources are ever read: they build nothing)."""
    from releasectl.manifest.edits import edit

    block = {"image": f"{registry}/ml/iris", "namespace": "ml", "base_image": f"{registry}/py:3"}
    path = repo.path / MANIFEST
    source = {"kind": "prometheus", "url": "http://prometheus.monitoring.svc:9090"}
    changes = {
        "deploy": {"target": "kubernetes", "kubernetes": block},
        "analysis": {"source": source},  # a kubernetes model is judged through Prometheus
    }
    path.write_text(edit(path.read_text(), MANIFEST, changes))
    repo.write("model-releases/iris/bentofile.yaml", "service: 'service:Iris'\n")
    repo.commit("iris: served by the cluster")


def _release_without_image_builder(repo: Repo, tmp_path: Path) -> Case:
    _kubernetes_bundle(repo, f"127.0.0.1:{free_port()}")
    tools = tmp_path / "bin"  # a PATH with git and ssh-keygen, and no buildah or podman
    tools.mkdir()
    for tool in ("git", "ssh-keygen"):
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    return repo, ["release", "iris", "1.1.0"], {"PATH": str(tools)}


def _release_to_an_unreachable_registry(repo: Repo, tmp_path: Path) -> Case:
    _kubernetes_bundle(repo, f"127.0.0.1:{free_port()}")  # nothing listens there
    return repo, ["release", "iris", "1.1.0"]


def _release_to_a_store_without_credentials(repo: Repo, tmp_path: Path) -> Case:
    repo.write("model-releases/iris/bentofile.yaml", "service: 'service:Iris'\n")
    repo.write(".releasectl/config.yaml", "store: s3://team-bucket/releasectl\n")
    repo.commit("the team's store is on S3")
    no_credentials = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata probe off this machine
    }
    return repo, ["release", "iris", "1.1.0"], no_credentials


# A setup returns the repository, the command, and (optionally) its environment.
Case = tuple[Repo, list[str]] | tuple[Repo, list[str], dict[str, str]]

REFUSED: dict[str, tuple[Callable[[Repo, Path], Case], int, str]] = {
    "init": (_init_without_key, 1, "cannot be read"),
    "upgrade-workflows": (_upgrade_without_source, 2, "no source to lock releasectl from"),
    "new": (_new_existing, 2, "model-releases/iris already exists"),
    "release": (_release_dirty, 1, "model-releases/iris/a b.txt"),
    "sync": (_sync_without_remote, 1, "git ls-remote"),
    "mark-stable": (_mark_stable_without_key, 1, "cannot be read"),
    "revert": (_revert_push_with_unpushed_work, 1, "has commits that origin/main does not have"),
    "deploy": (_deploy_unsigned_state, 3, "does not verify"),
    "propose": (_propose_lower, 3, "is not greater than the highest release 1.0.0"),
    # Refusals the real run reaches only after a build or at its signature, the dry run too:
    "release-signer": (_release_by_an_untrusted_signer, 3, "is not in the trust root for"),
    "revert-signer": (_revert_by_an_untrusted_signer, 3, "is not in the trust root for"),
    "release-builder": (_release_without_image_builder, 1, "no image builder found"),
    "release-registry": (_release_to_an_unreachable_registry, 1, "cannot ask the registry"),
    "release-store": (_release_to_a_store_without_credentials, 1, "no credentials"),
    "watch": (_watch_without_key, 1, "cannot be read"),
}


@pytest.mark.parametrize("command", sorted(REFUSED))
def test_a_dry_run_is_refused_as_the_real_command_is(
    iris: Repo, tmp_path: Path, command: str
) -> None:
    setup, code, words = REFUSED[command]
    case = setup(iris, tmp_path)
    repo, args = case[0], case[1]
    home = tmp_path / "state"
    env = {**_in(home), **(case[2] if len(case) == 3 else {})}
    before, state = repo.snapshot(), _files(home)

    dry = repo.cli(*args, "--dry-run", env=env)
    assert dry.returncode == code, (dry.stdout, dry.stderr)
    assert words in _one_line(dry)
    assert repo.snapshot() == before and _files(home) == state  # nothing written
    assert _target_processes(home) == set()

    real = repo.cli(*args, env=env)
    assert (real.returncode, real.stderr) == (dry.returncode, dry.stderr)
    assert repo.snapshot() == before


def test_deploy_dry_run_refuses_a_missing_bundle_and_starts_nothing(
    iris: Repo, tmp_path: Path
) -> None:
    """The real deploy asks the target (starting its agent) before it finds
    that the release pins no bundle; the dry run reads the target's record."""
    home = tmp_path / "state"
    dry = iris.cli("deploy", "iris", "--dry-run", env=_in(home))
    assert dry.returncode == 1 and "iris 1.0.0 pins no bundle digest" in _one_line(dry)
    assert _files(home) == {} and _target_processes(home) == set()
    try:
        real = iris.cli("deploy", "iris", env=_in(home))
        assert (real.returncode, real.stderr) == (dry.returncode, dry.stderr)
    finally:
        stopped = iris.cli("agent", "stop", "--json", env=_in(home))
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["agent"] is not None
    assert _target_processes(home) == set()


def test_watch_dry_run_refuses_a_model_that_is_not_live(iris: Repo, tmp_path: Path) -> None:
    home = tmp_path / "state"
    dry = iris.cli("watch", "iris", "--dry-run", env=_in(home))
    assert dry.returncode == 1
    assert _one_line(dry) == "releasectl: iris is not live on the local target (deploy it first)"
    assert _files(home) == {} and _target_processes(home) == set()
    try:
        real = iris.cli("watch", "iris", env=_in(home))
        assert (real.returncode, real.stderr) == (dry.returncode, dry.stderr)
    finally:
        iris.cli("agent", "stop", env=_in(home))
    assert _target_processes(home) == set()


def test_dry_runs_that_pass_say_what_would_happen(iris: Repo, tmp_path: Path) -> None:
    home = tmp_path / "state"
    before = iris.snapshot()
    out = json.loads(iris.ok("propose", "iris", "1.1.0", "--dry-run", "--json"))
    assert out["branch"] == "propose/iris/v1.1.0" and out["serial"] == 2
    assert out["commit"] is None and out["dry_run"] is True
    assert "would make branch propose/iris/v1.1.0" in iris.ok(
        "propose", "iris", "1.1.0", "--dry-run"
    )
    assert iris.ok("new", "fraud", "--dry-run").splitlines() == [
        "would create model-releases/fraud/ from the model template:",
        *(f"  {name}" for name in ("bentofile.yaml", "release.yaml", "service.py", "train.py")),
    ]
    planned = json.loads(iris.ok("new", "fraud", "--dry-run", "--json"))
    assert planned["dry_run"] is True and "model-releases/fraud/train.py" in planned["would_create"]
    marked = json.loads(iris.ok("mark-stable", "iris", "1.0.0", "--dry-run", "--json"))
    assert marked["created"] is False  # it is stable already
    assert iris.snapshot() == before and _files(home) == {}


def test_sync_dry_run_moves_no_ref(with_remote: tuple[Repo, Path], tmp_path: Path) -> None:
    """The remote moved on (another clone pushed): a dry run asks it with
    ls-remote and leaves the remote-tracking branch where it was."""
    repo, bare = with_remote
    repo.add_model("iris")
    release(repo, "iris", "1.0.0")
    other = clone(bare, tmp_path / "other", repo.key, repo.email)
    other.write("docs/notes.md", "from another clone\n")
    other.commit("docs: notes")
    other.git("push", "-q", "origin", "main")
    before = repo.snapshot()
    out = json.loads(repo.ok("sync", "--dry-run", "--json"))
    assert out["dry_run"] is True and out["remote"] == "origin"
    assert repo.snapshot() == before


# --- 5. read commands start nothing; agent start/status/stop say what they do -------------


def test_read_commands_start_no_agent(iris: Repo, tmp_path: Path) -> None:
    home = tmp_path / "state"
    assert _target_processes(home) == set()
    for args in (
        ["status"],
        ["status", "--json"],
        ["list"],
        ["history", "iris"],
        ["show", "iris"],
        ["verify", "iris"],
        ["agent", "status"],
    ):
        proc = iris.cli(*args, env=_in(home))
        assert proc.returncode == 0, (args, proc.stderr)
        assert _target_processes(home) == set(), args
    assert _files(home) == {}
    status = iris.cli("status", env=_in(home)).stdout
    assert status.startswith("the agent is not running")
    assert iris.cli("agent", "status", env=_in(home)).stdout == "the agent is not running\n"
    assert json.loads(iris.cli("agent", "status", "--json", env=_in(home)).stdout) == {
        "running": False
    }
    stop = iris.cli("agent", "stop", env=_in(home))
    assert stop.stdout == "nothing was running: no agent, no servers, no watchers\n"


def test_agent_start_status_stop(iris: Repo, tmp_path: Path) -> None:
    home = tmp_path / "state"
    try:
        started = json.loads(_ok(iris, home, "agent", "start", "--json"))
        assert started["started_now"] is True and _target_processes(home) == {started["pid"]}
        again = iris.cli("agent", "start", env=_in(home)).stdout
        assert again == f"the agent is already running: pid {started['pid']} at {started['url']}\n"
        status = json.loads(_ok(iris, home, "agent", "status", "--json"))
        assert status["running"] is True and status["pid"] == started["pid"]
        assert status["models"] == []
    finally:
        stopped = iris.cli("agent", "stop", env=_in(home))
    assert stopped.stdout == f"stopped the agent (pid {started['pid']})\n"
    assert _target_processes(home) == set()


@pytest.mark.slow
def test_a_stopped_agent_is_reported_from_its_record_and_not_restarted(tmp_path: Path) -> None:
    """A real iris server keeps running after its agent got SIGTERM (the next
    agent adopts it). Read commands and dry runs report it from the record and
    start nothing; `agent start` adopts it; `agent stop` names what it stops."""
    from releasectl.loopback import free_port
    from testing.bentos import iris_registry
    from testing.processes import bentoml_processes, state_home

    with state_home(tmp_path / "state") as home:
        r = iris_registry(tmp_path, free_port())
        release(r, "iris", "1.0.0", stable=True)
        r.ok("deploy", "iris")
        live_pid = json.loads(r.ok("status", "--json"))[0]["live"]["pid"]
        agent = psutil.Process(json.loads((home / "local" / "agent.json").read_text())["pid"])
        agent.terminate()  # SIGTERM stops the agent only; its servers keep serving
        agent.wait(timeout=60)
        running = _target_processes(home)
        assert live_pid in running

        said = r.ok("status")
        assert said.startswith("the agent is not running: nothing is served")
        assert "  live     1.0.0 " in said
        assert "  last deploy ok: 1.0.0 is live" in said.splitlines()  # the version once
        [status] = json.loads(r.ok("status", "--json"))
        assert status["live"]["version"] == "1.0.0" and status["health"] == "down"
        dry = r.ok("deploy", "iris", "--dry-run").splitlines()
        assert dry[0].endswith(": nothing to switch: it is live")
        assert "  the agent is not running: the deploy would start it" in dry
        watch = r.ok("watch", "iris", "--dry-run").splitlines()
        assert watch[0] == "would watch iris 1.0.0 for 1m, then if it"
        assert watch[1] == "  passes: nothing: iris 1.0.0 is already stable"

        # A new release: the dry run would start it cold, 1.0.0 becoming the standby.
        r.write("model-releases/iris/NOTES.md", "1.1.0\n")
        r.commit("iris: notes")
        r.ok("release", "iris", "1.1.0")
        dry = r.ok("deploy", "iris", "--dry-run").splitlines()
        assert dry[0].startswith("would deploy iris 1.1.0 ")
        assert dry[0].endswith(": start a new server")
        assert dry[1].startswith("  bundle from ") and dry[1].endswith(".bento)")  # the store
        assert "  live now: 1.0.0; it would become the standby, kept warm for 10m" in dry
        # --watch asked for the watcher: the manifest's analysis.auto is not the reason.
        watched = r.ok("deploy", "iris", "--dry-run", "--watch").splitlines()
        assert watched[-1] == "  then watch 1.1.0 detached and act on the verdict (--watch)"
        refused = r.cli("watch", "iris", "--dry-run")
        assert refused.returncode == 1
        assert "the branch declares iris 1.1.0, but 1.0.0 is live" in _one_line(refused)
        assert _target_processes(home) == running  # nothing was started

        started = r.ok("agent", "start")
        assert started.startswith("started the agent: pid ")
        [status] = json.loads(r.ok("status", "--json"))
        assert status["live"]["pid"] == live_pid and status["health"] == "ready"  # adopted
        agent_pid = json.loads(r.ok("agent", "status", "--json"))["pid"]

        stopped = r.ok("agent", "stop").splitlines()
        assert stopped == [
            f"stopped iris 1.0.0, the live server (pid {live_pid})",
            f"stopped the agent (pid {agent_pid})",
        ]
        assert bentoml_processes(home) == [] and _target_processes(home) == set()
        assert r.ok("agent", "stop") == "nothing was running: no agent, no servers, no watchers\n"
