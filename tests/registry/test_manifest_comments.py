"""The manifest is the user's file: `release` (a retraining one included),
`revert` and `new --from` change the values they own and keep every comment
and the file's own indentation, starting from the scaffold's own manifest with
a comment above and inside every block. The edits are the commands' own
(their planning functions on a real registry); only the bundle build is left
out: its pin is given, as the build would return it."""

from __future__ import annotations

import difflib
import re

from releasectl.git import Git
from releasectl.manifest.schema import Trained
from releasectl.registry.release import Pin, plan_release
from releasectl.registry.revert import plan as plan_revert
from releasectl.registry.scaffold import _template, plan_new
from releasectl.view import trust_root
from testing.repos import Repo

MANIFEST = "model-releases/iris/release.yaml"


def _commented_scaffold() -> str:
    """The scaffold's manifest for iris, with more comments above and inside
    every block, and the custom metrics written with indented sequences."""
    text = _template("iris", 3000)[0]["release.yaml"].decode()
    for anchor, comment in (
        ("apiVersion:", "# above apiVersion\n"),
        ("bundle:\n", "# above bundle\n"),
        ("deploy:\n", "# above deploy: the local target\n"),
    ):
        text = text.replace(anchor, comment + anchor, 1)
    text = text.replace("  bento: iris\n", "  # inside bundle, above bento\n  bento: iris\n", 1)
    text = text.replace("  interval: 10s\n", "  # inside analysis\n  interval: 10s\n", 1)
    text = text.replace("  target: local\n", "  # inside deploy\n  target: local\n", 1)
    text = text.replace("  standby: 10m\n", "  standby: 10m  # the warm window\n", 1)
    metrics = "  metrics:\n"
    assert metrics in text
    text = text.replace(
        metrics,
        metrics + "    # inside metrics, above error_rate\n",
        1,
    )
    deploy = text.index("# above deploy")
    text = (
        text[:deploy]
        + "    custom:\n"
        + "      # inside custom\n"
        + "      - name: accuracy\n"
        + "        metric: iris_rolling_accuracy  # a gauge\n"
        + "        min: 0.9\n"
        + text[deploy:]
    )
    return text + "# the end of the file\n"


def _comments(text: str) -> list[str]:
    """Every comment, with the indentation of its line: the order they come in."""
    return [
        line[: len(line) - len(line.lstrip())] + line.strip()[line.strip().index("#") :]
        if not line.lstrip().startswith("#")
        else line
        for line in text.splitlines()
        if "#" in line
    ]


def _changed(old: str, new: str) -> tuple[list[str], list[str]]:
    """The lines only the old text has, and those only the new one has."""
    diff = list(difflib.ndiff(old.splitlines(), new.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def _pin(n: str) -> Pin:
    trained = Trained.model_validate(
        {
            "sources": "sha256:" + n * 64,
            "models": [
                {"tag": "iris_clf:v1", "sha256": n * 64, "key": f"weights/{n * 64}.bentomodel"}
            ],
        }
    )
    return Pin("sha256:" + n * 64, f"bundles/{n * 64}.bento", trained)


def _release_text(repo: Repo, version: str, pin: Pin) -> str:
    git = Git(repo.path)
    base = repo.head()
    plan = plan_release(
        git, trust_root(git, base), "iris", version, base, lambda _: pin, will_build=True
    )
    assert plan.change is not None
    return plan.change.files[MANIFEST]


def _land(repo: Repo, text: str, version: str) -> None:
    """Commit the planned manifest and tag it as its release (the merged-PR path)."""
    repo.write(MANIFEST, text)
    repo.commit(f"iris {version}")
    repo.ok("release", "iris", version)


def test_release_retrain_revert_and_new_from_keep_every_comment(registry: Repo) -> None:
    scaffold = _commented_scaffold()
    assert "# After a deploy" in scaffold and "    # inside custom" in scaffold
    registry.write(MANIFEST, scaffold)
    registry.write("model-releases/iris/service.py", "# iris\n")
    registry.commit("iris: the scaffold, commented")

    # The first release pins the bundle: the pins go inside `bundle:`, under `train`,
    # and the comment block above `analysis:` stays above it.
    first = _release_text(registry, "1.0.0", _pin("a"))
    assert _comments(first) == _comments(scaffold)
    removed, added = _changed(scaffold, first)
    assert removed == ["version: 0.0.0", "serial: 0"]
    assert added[:2] == ["version: 1.0.0", "serial: 1"]
    assert added[2:4] == ["  digest: sha256:" + "a" * 64, f"  archive: bundles/{'a' * 64}.bento"]
    lines = first.splitlines()
    assert lines[lines.index("analysis:") - 1].startswith("# min_requests")
    assert first.index("  trained:") < first.index("# After a deploy")
    _land(registry, first, "1.0.0")
    registry.ok("mark-stable", "iris", "1.0.0")

    # A retraining release replaces every pin, and only the pins' values.
    registry.write("model-releases/iris/service.py", "# iris, retrained\n")
    registry.commit("iris: retrain")
    second = _release_text(registry, "1.1.0", _pin("b"))
    assert _comments(second) == _comments(first)
    removed, added = _changed(first, second)
    assert removed[:2] == ["version: 1.0.0", "serial: 1"]
    assert added[:2] == ["version: 1.1.0", "serial: 2"]
    assert [line.replace("a" * 64, "b" * 64) for line in removed[2:]] == added[2:]
    assert len(removed) == len(added) == 7  # version, serial, digest, archive, 3 in trained
    _land(registry, second, "1.1.0")

    # The revert restores 1.0.0's text: serial and the rollback record differ, and the
    # last comment stays last.
    git = Git(registry.path)
    planned = plan_revert(git, "iris", registry.head(), reason="bad", who=registry.email)
    assert planned.change is not None
    reverted = planned.change.files[MANIFEST]
    assert _comments(reverted) == _comments(first)
    removed, added = _changed(first, reverted)
    assert removed == ["serial: 1"]
    assert added[0] == "serial: 3" and added[1] == "rollback:"
    assert reverted.endswith("# the end of the file\n")

    # new --from: a never-released copy, renamed; the comments and indentation stay.
    copied = plan_new(registry.path, "wine", source="iris").files["release.yaml"].decode()
    renamed = re.sub(r"\biris", "wine", first)
    assert _comments(copied) == _comments(renamed)
    removed, added = _changed(renamed, copied)
    assert added == ["version: 0.0.0", "serial: 0", "  port: 3001"]
    assert [line.split(":")[0] for line in removed] == [
        "version",
        "serial",
        "  digest",
        "  archive",
        "  trained",
        "    sources",
        "    models",
        "      - tag",  # the file's own style of sequences, as `custom:` has it
        "        sha256",
        "        key",
        "  port",
    ]
