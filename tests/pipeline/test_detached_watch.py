"""The detached watcher's entry point (docs/ARCHITECTURE.md, "Layers"): a library
module run with `python -m`, taking one typed request, never the CLI's argument
list. In-process here; the process itself is what `deploy --watch` starts in
test_watch.py and test_unattended.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from releasectl.pipeline.detached_watch import ENTRY, WatchRequest, main, run
from releasectl.serving import outcomes
from testing.repos import git


@pytest.fixture(autouse=True)
def _state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELEASECTL_HOME", str(tmp_path / "state"))


def _request(tmp_path: Path, **fields: object) -> str:
    document = {
        "repo": str(tmp_path),
        "model": "iris",
        "version": "1.0.0",
        "push": False,
        "log": str(tmp_path / "iris.log"),
        **fields,
    }
    return json.dumps(document)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(lambda _: [], id="no-request"),
        pytest.param(lambda _: ["watch", "iris", "--push"], id="the-cli-s-arguments"),
        pytest.param(lambda _: ["{}"], id="fields-missing"),
        pytest.param(lambda tmp: [_request(tmp, extra=1)], id="an-unknown-field"),
        pytest.param(lambda tmp: [_request(tmp, model="../iris")], id="a-model-that-is-a-path"),
    ],
)
def test_anything_but_one_watch_request_is_bad_input_and_records_nothing(
    tmp_path: Path, argv: Callable[[Path], list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv(tmp_path)) == 2
    assert f"{ENTRY}: expected one WatchRequest as JSON" in capsys.readouterr().err
    assert not (tmp_path / "iris.log").exists()
    assert not (tmp_path / "state").exists()  # no exit recorded, for any name


def test_a_watch_that_fails_leaves_its_error_in_the_log_and_its_exit_for_status(
    tmp_path: Path,
) -> None:
    # A repository without a signing key: the watch refuses before any target is asked.
    git(tmp_path, "init", "-q", "-b", "main")
    code = run(WatchRequest.model_validate_json(_request(tmp_path)))
    [line] = (tmp_path / "iris.log").read_text().splitlines()
    error = json.loads(line)["error"]
    assert code == error["code"] and code in (1, 2, 3), error
    recorded = outcomes.load_exit("iris")  # what `status` shows
    assert recorded is not None and (recorded["pid"], recorded["code"]) == (os.getpid(), code)
