"""Roles in the trust root and the one verified view (docs/ARCHITECTURE.md,
"Trust"): the files that decide or execute are obeyed only as the role that
owns them signed them; `trust add|remove|adopt` make the signed commits that
change the roles; a walk the machine could not make is never remembered."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from testing.histories import release
from testing.repos import Repo, assert_refused, clone, git, make_key

CONFIG = ".releasectl/config.yaml"
LOCK = ".releasectl/requirements.lock"
BOB = "bob@example.test"
MALLORY = "mallory@example.test"


def _pub(key: Path) -> str:
    return " ".join(key.with_name(key.name + ".pub").read_text().split()[:2])


def _as(repo: Repo, key: Path | None, email: str) -> None:
    """Sign (or not, without a key) as someone else in this clone."""
    repo.git("config", "user.email", email)
    if key is not None:
        repo.git("config", "user.signingkey", str(key))


def _git(repo: Repo):  # type: ignore[no-untyped-def]
    from releasectl.git import open_repo

    return open_repo(repo.path)


def _remote(tmp_path: Path, registry: Repo) -> Path:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    registry.git("remote", "add", "origin", str(bare))
    registry.git("push", "-q", "-u", "origin", "main")
    return bare


def _keyless_push(tmp_path: Path, bare: Path, files: dict[str, str], message: str) -> None:
    """A keyless branch pusher: an unsigned commit straight onto main."""
    mallory = clone(bare, tmp_path / "mallory", tmp_path / "none", MALLORY)
    for rel, text in files.items():
        mallory.write(rel, text)
    mallory.commit(message, sign=False)
    mallory.git("push", "-q", "origin", "main")


def test_init_writes_the_admins_file_with_the_initialising_key(registry: Repo) -> None:
    admins = (registry.path / ".releasectl/admins").read_text()
    assert admins.split()[0] == registry.email and _pub(registry.key) in admins
    from releasectl import view

    assert view.roles_warning(_git(registry)) is None


def test_unsigned_config_is_refused_its_notify_command_never_runs(
    registry: Repo, tmp_path: Path
) -> None:
    """Root cause 3: `.releasectl/config.yaml` pushed unsigned by a keyless
    branch pusher names a command and a store; neither is obeyed."""
    registry.add_model("iris")
    registry.write(
        "model-releases/iris/release.yaml",
        (registry.path / "model-releases/iris/release.yaml").read_text()
        + "analysis:\n  interval: 10s\n  bake: 1m\n  metrics:\n    error_rate: {max: 0.05}\n",
    )
    registry.commit("iris: analysis")
    release(registry, "iris", "1.0.0")
    bare = _remote(tmp_path, registry)
    pwned = tmp_path / "pwned"
    evil = f"notify:\n  command: [touch, {pwned}]\nstore: {tmp_path / 'attacker-store'}\n"
    _keyless_push(tmp_path, bare, {CONFIG: evil}, "tidy config")
    registry.git("pull", "-q", "--ff-only")

    from releasectl.config import store_url
    from releasectl.errors import Refused
    from releasectl.serving import notify

    env = os.environ.pop("RELEASECTL_STORE", None)
    try:
        with pytest.raises(Refused) as caught:
            store_url(_git(registry))
        assert "not signed by an admin" in caught.value.message
        with pytest.raises(Refused):
            notify.load(_git(registry))
    finally:
        if env is not None:
            os.environ["RELEASECTL_STORE"] = env
    proc = registry.cli("deploy", "iris", "--watch", "--dry-run")
    assert proc.returncode == 3, proc.stderr
    assert CONFIG in proc.stderr and "not signed by an admin" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not pwned.exists()
    assert not (tmp_path / "attacker-store").exists()


def test_a_release_signer_who_is_not_an_admin_cannot_change_the_config(
    registry: Repo, tmp_path: Path
) -> None:
    bob = make_key(tmp_path / "b", "bob")
    registry.ok("trust", "add", f"{bob}.pub", "--email", BOB)
    _as(registry, bob, BOB)
    registry.write(CONFIG, "notify:\n  command: [echo, one]\n")
    registry.commit("bob's config")
    from releasectl import view
    from releasectl.errors import Refused

    with pytest.raises(Refused) as caught:
        view.read(_git(registry), "HEAD", CONFIG)
    assert caught.value.code == 3 and registry.head()[:12] in caught.value.message
    # ... but bob signs model changes: that is his role.
    registry.add_model("iris")
    assert view.unsigned(_git(registry), "HEAD", ["model-releases/iris"]) == []


def test_an_admin_signed_config_is_obeyed_and_adopt_starts_an_unsigned_history(
    registry: Repo, tmp_path: Path
) -> None:
    from releasectl import config, view
    from releasectl.errors import Refused

    registry.write(CONFIG, "notify:\n  command: [echo, one]\n")
    registry.commit("config")
    assert config.settings(_git(registry)) == {"notify": {"command": ["echo", "one"]}}

    registry.write(CONFIG, "notify:\n  command: [echo, two]\n")
    registry.commit("unsigned edit", sign=False)
    with pytest.raises(Refused):
        config.settings(_git(registry))
    # A forged adoption (unsigned, or by a non-admin) anchors nothing.
    registry.git(
        "commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", f"x\n\nReleasectl-Adopt: {CONFIG}"
    )
    with pytest.raises(Refused):
        config.settings(_git(registry))
    proc = registry.cli("trust", "adopt", CONFIG, "--dry-run", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["dry_run"] is True
    with pytest.raises(Refused):
        config.settings(_git(registry))
    registry.ok("trust", "adopt", CONFIG)
    assert config.settings(_git(registry)) == {"notify": {"command": ["echo", "two"]}}
    assert "Releasectl-Adopt: .releasectl/config.yaml" in registry.git("log", "-1", "--format=%B")
    # After the anchor, every change needs an admin again.
    registry.write(CONFIG, "notify:\n  command: [sh, -c, id]\n")
    registry.commit("again", sign=False)
    with pytest.raises(Refused):
        view.read(_git(registry), "HEAD", CONFIG)


def test_the_ci_lock_from_an_unsigned_commit_is_refused_before_any_install(
    registry: Repo, tmp_path: Path
) -> None:
    """Root cause 3: a swapped requirements.lock on the branch is refused by
    `ci setup`'s lock check (exit 3), never compared and installed."""
    registry.write(LOCK, "# releasectl lock\nreleasectl==0.0.1 --hash=sha256:" + "a" * 64 + "\n")
    registry.commit("lock")
    bare = _remote(tmp_path, registry)
    _keyless_push(tmp_path, bare, {LOCK: "evil==6.6.6 --hash=sha256:" + "b" * 64 + "\n"}, "bump")
    registry.git("pull", "-q", "--ff-only")
    proc = registry.cli("ci", "setup", env={"RELEASECTL_LOCK": "", "ALLOWED_SIGNERS": ""})
    assert proc.returncode == 3, proc.stderr
    assert LOCK in proc.stderr and "not signed by an admin" in proc.stderr


def test_a_forge_merge_of_signed_model_commits_counts_but_not_for_admin_paths(
    registry: Repo,
) -> None:
    """A merge commit the forge makes (no signature) keeps the chain for model
    paths when everything it brings is signed and it adds nothing there; for
    an admin path it does not."""
    from releasectl import view

    registry.add_model("iris")
    registry.git("checkout", "-q", "-b", "pr")
    registry.write("model-releases/iris/service.py", "# signed change\n")
    registry.write(CONFIG, "store: /tmp/x\n")
    registry.commit("signed by a release signer (and admin)")
    registry.git("checkout", "-q", "main")
    registry.git("commit", "-q", "--allow-empty", "-m", "main moves", "-S")
    registry.git("merge", "-q", "--no-ff", "--no-gpg-sign", "-m", "Merge pull request #1", "pr")
    assert view.unsigned(_git(registry), "HEAD", ["model-releases/iris"]) == []
    bad = view.unsigned(_git(registry), "HEAD", [CONFIG])
    assert [u.commit for u in bad] == [registry.head()]

    # A merge that adds something of its own to the model is not clean.
    registry.git("checkout", "-q", "pr")
    registry.write("model-releases/iris/service.py", "# second\n")
    registry.commit("second")
    registry.git("checkout", "-q", "main")
    registry.git("merge", "-q", "--no-ff", "--no-commit", "pr")
    registry.write("model-releases/iris/service.py", "# slipped in by the merge\n")
    registry.git("add", "-A")
    registry.git("commit", "-q", "--no-gpg-sign", "-m", "Merge pull request #2")
    bad = view.unsigned(_git(registry), "HEAD", ["model-releases/iris"])
    assert [u.commit for u in bad] == [registry.head()]


def _without_ssh_keygen(tmp_path: Path) -> str:
    """A PATH on which git runs and ssh-keygen does not exist."""
    bin_dir = tmp_path / "bin-without-ssh-keygen"
    bin_dir.mkdir()
    found = shutil.which("git")
    assert found is not None
    (bin_dir / "git").symlink_to(found)
    return str(bin_dir)


def test_a_walk_made_without_ssh_keygen_is_not_remembered(registry: Repo, tmp_path: Path) -> None:
    """Root cause 4: the admin removes bob's key; bob then marks a release
    stable. A command run while ssh-keygen is missing cannot check that
    removal; once ssh-keygen is back, bob's mark is not obeyed (the walk that
    could not be made was not cached)."""
    signers = registry.path / ".releasectl/allowed_signers"
    bob = make_key(tmp_path / "b", "bob")
    operator = signers.read_text()
    # Bob is in the trust root from the start (the registry's first commit).
    signers.write_text(operator + f'{BOB} namespaces="git" {_pub(bob)}\n')
    registry.git("commit", "-q", "--amend", "-S", "-a", "--no-edit")
    registry.add_model("iris")
    release(registry, "iris", "1.0.0")
    signers.write_text(operator)
    registry.commit("revoke bob")
    _as(registry, bob, BOB)
    registry.git(
        "tag", "-s", "-m", "iris 1.0.0 is stable", "stable/iris/v1.0.0", "release/iris/v1.0.0^{}"
    )

    blind = registry.cli("history", "iris", "--json", env={"PATH": _without_ssh_keygen(tmp_path)})
    assert "Traceback" not in blind.stderr
    proc = registry.cli("history", "iris", "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = [r for r in json.loads(proc.stdout) if r.get("version") == "1.0.0"]
    assert row["verified"] is True
    assert row["stable"] is False, "a revoked key's mark was obeyed"


def test_a_view_verdict_made_without_ssh_keygen_is_not_remembered(
    registry: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from releasectl import view

    registry.write(CONFIG, "store: /tmp/s\n")
    registry.commit("config")
    monkeypatch.setenv("PATH", _without_ssh_keygen(tmp_path))
    blind = view.unsigned(_git(registry), "HEAD", [CONFIG])
    assert blind and not blind[0].verdict.reached
    monkeypatch.undo()
    assert view.unsigned(_git(registry), "HEAD", [CONFIG]) == []


def test_trust_add_and_remove_need_an_admin_and_push_to_the_remote(
    registry: Repo, tmp_path: Path
) -> None:
    bob = make_key(tmp_path / "b", "bob")
    carol = make_key(tmp_path / "c", "carol")
    bare = _remote(tmp_path, registry)

    proc = registry.cli("trust", "add", f"{bob}.pub", "--email", BOB, "--dry-run", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["changed"] is True
    assert _pub(bob) not in (registry.path / ".releasectl/allowed_signers").read_text()

    doc = json.loads(registry.ok("trust", "add", f"{bob}.pub", "--email", BOB, "--push", "--json"))
    assert doc["pushed_to"] == "origin"
    assert git(bare, "rev-parse", "main") == doc["commit"]
    assert _pub(bob) in (registry.path / ".releasectl/allowed_signers").read_text()

    # Bob is a release signer, not an admin: he may not add carol, nor himself as admin.
    operator_key, operator = registry.key, registry.email
    _as(registry, bob, BOB)
    assert_refused(
        registry,
        "trust",
        "add",
        f"{carol}.pub",
        "--email",
        "c@example.test",
        code=3,
        words="may not change .releasectl/allowed_signers",
    )
    assert_refused(
        registry,
        "trust",
        "add",
        f"{bob}.pub",
        "--email",
        BOB,
        "--role",
        "admin",
        code=3,
        words="not an admin",
    )
    # Rotating the admin key: the old admin adds the new one, which removes the old.
    _as(registry, operator_key, operator)
    registry.ok("trust", "add", f"{carol}.pub", "--email", "carol@example.test", "--role", "admin")
    _as(registry, carol, "carol@example.test")
    registry.ok("trust", "remove", operator, "--role", "admin")
    from releasectl import view

    admins = view.roles(_git(registry)).admin.ssh
    assert _pub(carol) in admins and _pub(operator_key) not in admins
    assert_refused(
        registry,
        "trust",
        "remove",
        "carol@example.test",
        "--role",
        "admin",
        code=3,
        words="without an admin",
    )
    assert_refused(
        registry, "trust", "add", "not a key", "--email", BOB, code=2, words="not an SSH public key"
    )


def test_a_registry_made_before_roles_warns_and_its_signers_act_as_admins(
    registry: Repo, tmp_path: Path
) -> None:
    from releasectl import config, view

    # An older registry: no admins file in its history at all.
    old = tmp_path / "old"
    shutil.copytree(registry.path, old, symlinks=True)
    repo = Repo(old, registry.key, registry.email)
    repo.git("rm", "-q", ".releasectl/admins")
    repo.git("commit", "-q", "--amend", "-S", "-m", "Set up the releasectl registry (before roles)")
    warning = view.roles_warning(_git(repo))
    assert warning is not None and ".releasectl/admins" in warning
    proc = repo.cli("status", env={"RELEASECTL_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0 and ".releasectl/admins" in proc.stderr
    repo.write(CONFIG, "store: /tmp/s\n")
    repo.commit("config by a release signer")
    assert config.settings(_git(repo)) == {"store": "/tmp/s"}
    repo.ok("trust", "add", f"{registry.key}.pub", "--email", registry.email, "--role", "admin")
    assert view.roles_warning(_git(repo)) is None


def test_adopting_a_folder_covers_the_files_under_it(registry: Repo) -> None:
    """An existing repository whose workflows have unsigned history: one
    adoption of the folder, by an admin, is the start; a later unsigned edit
    is refused again, naming the commit and the file."""
    from releasectl import view
    from releasectl.errors import Refused

    flow = ".github/workflows/extra.yml"
    registry.write(flow, "on: push\n")
    registry.commit("a workflow from before", sign=False)
    assert [u.path for u in view.unsigned(_git(registry), "HEAD", [flow])] == [flow]
    registry.ok("trust", "adopt", ".github/workflows/")
    assert view.read(_git(registry), "HEAD", flow) == "on: push\n"
    registry.write(flow, "on: pull_request_target\n")
    edit = registry.commit("unsigned edit", sign=False)
    with pytest.raises(Refused) as caught:
        view.read(_git(registry), "HEAD", flow)
    assert edit[:12] in caught.value.message and flow in caught.value.message


def test_a_keyless_push_of_the_role_files_changes_no_role(registry: Repo, tmp_path: Path) -> None:
    """A keyless branch pusher writes herself into both role files and
    pushes unsigned: the roles stay as the admins left them, and her key
    can neither sign releases nor change the rules."""
    from releasectl import view

    mallory = make_key(tmp_path / "m", "mallory")
    line = f'{MALLORY} namespaces="git" {_pub(mallory)}\n'
    bare = _remote(tmp_path, registry)
    signers = (registry.path / ".releasectl/allowed_signers").read_text()
    admins = (registry.path / ".releasectl/admins").read_text()
    files = {".releasectl/allowed_signers": signers + line, ".releasectl/admins": admins + line}
    _keyless_push(tmp_path, bare, files, "onboard mallory")
    registry.git("pull", "-q", "--ff-only")
    roles = view.roles(_git(registry))
    assert _pub(mallory) not in roles.release.ssh and _pub(mallory) not in roles.admin.ssh
    _as(registry, mallory, MALLORY)
    assert_refused(
        registry, "trust", "add", f"{mallory}.pub", "--email", MALLORY,
        code=3, words="may not change",
    )  # fmt: skip
    registry.write(CONFIG, "store: /tmp/mallory\n")
    registry.commit("mallory's store")
    assert view.unsigned(_git(registry), "HEAD", [CONFIG])[0].commit == registry.head()
