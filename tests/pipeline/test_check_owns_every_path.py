"""`check` owns every path a pull request can change (docs/ARCHITECTURE.md,
"Trust"): the rules (lock, workflows, config, trust files, Argo CD
Applications) change only by an admin's commit; a rendered folder whose owner
moved goes, with its index entry, in the same pull request. And `release`
does not sign over source commits no release signer signed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from testing.histories import release
from testing.kubernetes import FOLDER, kubernetes_iris
from testing.repos import Repo, make_key

INDEX = "deploy/production/kustomization.yaml"
MANIFEST = "model-releases/iris/release.yaml"
BOB = "bob@example.test"


def _check(repo: Repo, base: str) -> tuple[int, dict[tuple[str, str], dict[str, Any]]]:
    proc = repo.cli("check", "--base", base, "--no-build", "--json")
    findings = json.loads(proc.stdout)["findings"]
    return proc.returncode, {(f["subject"], f["check"]): f for f in findings}


def _as(repo: Repo, key: Path, email: str) -> None:
    repo.git("config", "user.email", email)
    repo.git("config", "user.signingkey", str(key))


@pytest.mark.parametrize(
    ("path", "text"),
    [
        (".releasectl/requirements.lock", "evil==6.6.6 --hash=sha256:" + "b" * 64 + "\n"),
        (".github/workflows/pr-check.yml", "on: push\njobs: {}\n"),
        (".releasectl/config.yaml", "notify:\n  command: [sh, -c, id]\n"),
        ("deploy/argocd/application.yaml", "kind: Application\n"),
    ],
    ids=["lock", "workflow", "config", "argocd"],
)
def test_a_pull_request_that_changes_an_admin_path_without_an_admin_is_refused(
    registry: Repo, tmp_path: Path, path: str, text: str
) -> None:
    """Root cause 3: a swapped lock or an edited workflow passed `check`; now
    exit 3, whether the commit is unsigned or signed by a release signer who
    is not an admin. An admin's own change passes the admin check."""
    operator = (registry.key, registry.email)
    bob = make_key(tmp_path / "b", "bob")
    signers = registry.path / ".releasectl/allowed_signers"
    key = " ".join(Path(f"{bob}.pub").read_text().split()[:2])
    signers.write_text(signers.read_text() + f'{BOB} namespaces="git" {key}\n')
    registry.commit("bob signs releases")
    base = registry.head()

    _as(registry, bob, BOB)
    registry.write(path, text)
    registry.commit("signed by a release signer who is not an admin")
    code, findings = _check(registry, base)
    assert code == 3, findings
    assert findings[("admin", "signed")]["ok"] is False
    assert registry.head()[:12] in findings[("admin", "signed")]["detail"]

    registry.git("reset", "-q", "--hard", base)
    registry.write(path, text)
    registry.commit("unsigned", sign=False)
    code, findings = _check(registry, base)
    assert code == 3 and findings[("admin", "signed")]["ok"] is False
    assert path in findings[("admin", "signed")]["detail"]

    registry.git("reset", "-q", "--hard", base)
    _as(registry, *operator)
    registry.write(path, text)
    registry.commit("signed by the admin")
    code, findings = _check(registry, base)
    assert findings[("admin", "signed")]["ok"] is True, findings


def _moved(registry: Repo, new_path: str | None) -> None:
    """iris's manifest moves its folder (or leaves the kubernetes target);
    the version rises and the serial follows, as a release's pull request."""
    text = (registry.path / MANIFEST).read_text()
    text = text.replace("version: 0.0.0", "version: 0.1.0").replace("serial: 0", "serial: 1")
    if new_path is None:
        text = text.replace("  target: kubernetes\n", "  target: local\n")
        start = text.index("  kubernetes:\n")
        end = text.index("analysis:")
        text = text[:start] + text[end:]
    else:
        text = text.replace(
            "    namespace: models\n", f"    namespace: models\n    path: {new_path}\n"
        )
    registry.write(MANIFEST, text)


@pytest.mark.parametrize("new_path", ["deploy/production/iris-v2", None], ids=["moved", "local"])
def test_a_folder_left_behind_by_its_owner_is_refused(registry: Repo, new_path: str | None) -> None:
    """Root cause 3: a pull request moves deploy.kubernetes.path (or switches
    the target to local) and hand-edits the OLD folder, still listed in the
    index that Argo CD applies: refused. Removing it with its entry passes."""
    kubernetes_iris(registry)
    registry.ok("render", "iris")
    registry.commit("render iris", "deploy")
    base = registry.head()
    assert "version: 0.0.0" in (registry.path / MANIFEST).read_text()

    _moved(registry, new_path)
    if new_path is not None:
        registry.ok("render", "iris")
    old = registry.path / FOLDER / "kustomization.yaml"
    old.write_text(old.read_text().replace("replicas", "replicas") + "# hand edit\n")
    registry.commit("move iris, and a hand edit of the old folder")
    code, findings = _check(registry, base)
    assert code == 3
    assert findings[("deploy", "owner moved")]["ok"] is False
    assert FOLDER in findings[("deploy", "owner moved")]["detail"]

    # Done properly: the old folder and its index entry go in the same pull request.
    registry.git("rm", "-r", "-q", FOLDER)
    index = registry.path / INDEX
    index.write_text(index.read_text().replace("  - iris\n", ""))
    if "resources:\n" in index.read_text() and "  - " not in index.read_text():
        index.write_text(index.read_text().replace("resources:\n", "resources: []\n"))
    registry.commit("remove the old folder")
    code, findings = _check(registry, base)
    assert ("deploy", "owner moved") not in findings, findings
    assert findings.get(("deploy", "index"), {"ok": True})["ok"] is True, findings


def test_release_refuses_unsigned_source_commits_unless_allowed(registry: Repo) -> None:
    """Root cause 3: `release` signed over commits nobody trusted that changed
    the model since its last verified release. Now refused, naming them;
    `--allow-unsigned-sources` records their ids in the commit and `show`."""
    registry.add_model("iris")
    release(registry, "iris", "1.0.0")
    registry.write("model-releases/iris/service.py", "# nobody signed this\n")
    unsigned = registry.commit("iris: faster", sign=False)
    registry.write("docs/x.md", "unrelated\n")
    registry.commit("docs", sign=False)  # not the model's: does not count

    proc = registry.cli("release", "iris", "1.1.0", "--no-build")
    assert proc.returncode == 3, proc.stderr
    assert unsigned[:12] in proc.stderr and "model-releases/iris" in proc.stderr
    assert registry.git("tag", "-l", "release/iris/v1.1.0") == ""
    dry = registry.cli("release", "iris", "1.1.0", "--no-build", "--dry-run")
    assert dry.returncode == 3

    doc = json.loads(
        registry.ok("release", "iris", "1.1.0", "--no-build", "--allow-unsigned-sources", "--json")
    )
    assert doc["unsigned_sources"] == [unsigned]
    body = registry.git("log", "-1", "--format=%B", doc["commit"])
    assert f"Releasectl-Unsigned-Sources: {unsigned}" in body
    shown = json.loads(registry.ok("show", "iris", "--json"))
    assert shown["unsigned_sources"] == [unsigned] and shown["verified"] is True

    # The next release starts from this verified one: nothing unsigned since.
    registry.write("model-releases/iris/service.py", "# signed\n")
    registry.commit("iris: signed change")
    registry.ok("release", "iris", "1.2.0", "--no-build")
