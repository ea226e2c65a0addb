"""Bad input: one line naming the problem, exit 2, nothing written, no traceback."""

from __future__ import annotations

import json

import pytest

from testing.histories import iris_released
from testing.repos import Repo, assert_refused

MANIFEST = "model-releases/iris/release.yaml"


@pytest.fixture
def iris(registry: Repo) -> Repo:
    return iris_released(registry, "1.0.0", "1.1.0")


def _break_manifest(repo: Repo, text: str) -> None:
    repo.write(MANIFEST, text)
    repo.commit("break the manifest")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("apiVersion: releasectl/v1\nmodel: [iris\n", "malformed YAML at line"),
        (None, "unknown key 'colour'"),
        (None, "version: "),
        ("- just\n- a list\n", "expected a mapping"),
        (None, "model is 'fraud' but the folder is 'iris'"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
            "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c]\n",
            "YAML aliases are not allowed",
        ),
    ],
    ids=["malformed", "unknown-key", "bad-semver", "not-a-mapping", "wrong-model", "alias-bomb"],
)
def test_a_broken_manifest_is_refused(iris: Repo, text: str | None, words: str) -> None:
    current = (iris.path / MANIFEST).read_text()
    if text is None:
        text = {
            "unknown key 'colour'": current + "colour: blue\n",
            "version: ": current.replace("version: 1.1.0", "version: 1.1"),
            "model is 'fraud' but the folder is 'iris'": current.replace(
                "model: iris", "model: fraud"
            ),
        }[words]
    _break_manifest(iris, text)
    for args in (["revert", "iris"], ["release", "iris", "2.0.0"], ["show", "iris"]):
        assert_refused(iris, *args, code=2, words=words)


@pytest.mark.parametrize("name", ["../x", "Iris", "a" * 64, "iris-", "iris_2", "a/b"])
def test_bad_model_names(iris: Repo, name: str) -> None:
    for args in (["revert", name], ["release", name, "1.0.0"], ["history", name], ["new", name]):
        assert_refused(iris, *args, code=2, words="invalid model name")


@pytest.mark.parametrize("version", ["1.2", "v1.2", "V1.2.0", "1.2.0+build.5", "01.2.0", "latest"])
def test_bad_versions(iris: Repo, version: str) -> None:
    assert_refused(iris, "release", "iris", version, code=2, words="invalid version")
    assert_refused(iris, "revert", "iris", "--to", version, code=2, words="invalid version")


def test_unknown_model(iris: Repo) -> None:
    assert_refused(iris, "revert", "nosuch", code=2, words="no model 'nosuch'")


def test_json_mode_prints_the_error_as_one_document(iris: Repo) -> None:
    proc = iris.cli("show", "Iris", "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["error"]["code"] == 2 and "invalid model name" in doc["error"]["message"]


def test_debug_shows_the_traceback(iris: Repo) -> None:
    proc = iris.cli("--debug", "show", "Iris")
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_outside_a_git_repository(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from testing.cli import run

    proc = run(["list"], cwd=tmp_path)
    assert proc.returncode == 1
    assert "not inside a git repository" in proc.stderr
