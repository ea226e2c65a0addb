"""The registry histories the tests need, built with the real commands on a scratch Repo."""

from __future__ import annotations

from pathlib import Path

from releasectl import trailers
from testing.repos import Repo


def release(repo: Repo, model: str, version: str, *, stable: bool = False) -> None:
    repo.ok("release", model, version)
    if stable:
        repo.ok("mark-stable", model, version)


def revert_message(model: str, frm: str, to: str, serial: int, reason: str = "it is bad") -> str:
    """A revert commit's message as one written by hand would be: the subject and
    reason `releasectl revert` writes, then its trailers (`releasectl.trailers`)."""
    head = f'Revert "{model} {frm}": back to stable {to}\n\nReason: {reason}\n\n'
    return head + trailers.block(trailers.revert(model, frm, to, serial))


def iris_and_fraud(repo: Repo) -> dict[str, str]:
    """The acceptance history: iris 1.0.0 and 1.1.0 stable, then unrelated
    commits (code, docs, a fraud release), then iris 1.2.0 with changed and
    added files. Returns the HEAD before each step."""
    repo.add_model("iris", {"service.py": "# iris v1\n", "notes.txt": "v1 notes\n"})
    repo.add_model("fraud", {"service.py": "# fraud v1\n"})
    release(repo, "iris", "1.0.0", stable=True)
    repo.write("model-releases/iris/service.py", "# iris v1.1\n")
    repo.commit("iris: better model")
    release(repo, "iris", "1.1.0", stable=True)
    repo.write("toolkit/app.py", "print('code')\n")
    repo.commit("some code")
    repo.write("docs/guide.md", "# guide\n")
    repo.commit("docs")
    release(repo, "fraud", "2.0.0")
    repo.write("model-releases/iris/service.py", "# iris v1.2 (bad)\n")
    repo.write("model-releases/iris/extra/new.txt", "new in 1.2\n")
    repo.git("rm", "-q", "model-releases/iris/notes.txt")
    repo.commit("iris: new features")
    release(repo, "iris", "1.2.0")
    return {"head": repo.head()}


MANIFEST = "model-releases/iris/release.yaml"
ANALYSIS = "analysis:\n  interval: 10s\n  bake: 1m\n  metrics:\n    error_rate: {max: 0.05}\n"


def iris_stable(repo: Repo, then: str | None = None) -> Repo:
    """iris with an analysis block, 1.0.0 released and stable; with `then`, a
    changed service released as that version on top."""
    repo.add_model("iris")
    repo.write(MANIFEST, (repo.path / MANIFEST).read_text() + ANALYSIS)
    repo.commit("iris: analysis")
    release(repo, "iris", "1.0.0", stable=True)
    if then is not None:
        repo.write("model-releases/iris/service.py", f"# iris {then}\n")
        repo.commit(f"iris: {then}")
        release(repo, "iris", then)
    return repo


def stable_pair(
    repo: Repo, version: str, *, sign_key: Path | None, email: str | None = None
) -> None:
    """A release + stable tag pair for `version` on the last iris commit, made
    by hand: unsigned (sign_key None) or signed with another key."""
    target = repo.git("rev-list", "-1", "HEAD", "--", "model-releases/iris")
    env = {}
    config: list[str] = []
    if sign_key is not None:
        config = ["-c", f"user.signingkey={sign_key}"]
    if email:
        env = {"GIT_COMMITTER_EMAIL": email}
    for kind in ("release", "stable"):
        name = f"{kind}/iris/v{version}"
        flag = "-s" if sign_key is not None else "-a"
        repo.git(*config, "tag", flag, "-m", name, name, target, env=env)
