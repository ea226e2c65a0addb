"""`.releasectl/config.yaml` is a strict schema read by the one hardened YAML
reader (docs/ARCHITECTURE.md, "Errors by kind"): a key it does not know or
malformed YAML is bad input, one line naming the file and the key or line,
before anything is written. A misspelt key used to be ignored, and a
malformed file was a crash (exit 70)."""

from __future__ import annotations

import pytest

from releasectl import config
from releasectl import git as g
from releasectl.errors import BadInput
from testing.repos import Repo, new_repo

CONFIG = ".releasectl/config.yaml"

BAD = {
    "unknown-key": ("stor: s3://team-bucket/releasectl\n", "unknown key 'stor'"),
    "malformed": ("store: s3://team-bucket\nnotify: [page-oncall\n", "malformed YAML at line 3"),
    "key-twice": (
        "store: /srv/a\nstore: /srv/b\n",
        'malformed YAML at line 2: found duplicate key "store"',
    ),
    "alias": ("store: &s /srv/a\nnotify: {command: [*s]}\n", "YAML aliases are not allowed"),
    "wrong-type": ("store: 3\n", "store: Input should be a valid string (got 3)"),
    "not-a-mapping": ("- store\n", "expected a mapping of keys at the top level"),
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    """One registry for the module: each test commits the config it reads."""
    return new_repo(tmp_path_factory.mktemp("config"))


def _committed(registry: Repo, text: str) -> None:
    registry.write(CONFIG, text)
    registry.commit("registry: settings", ".releasectl")


@pytest.mark.parametrize("case", list(BAD))
def test_a_config_it_cannot_hold_is_bad_input_naming_the_file_and_the_key(
    registry: Repo, case: str
) -> None:
    text, words = BAD[case]
    _committed(registry, text)
    with pytest.raises(BadInput) as raised:
        config.registry_config(g.Git(registry.path))
    line = raised.value.line()
    assert line.startswith(f"{CONFIG}: ") and words in line, line
    assert "\n" not in line and raised.value.hint, line  # and how to fix it


@pytest.mark.parametrize(
    ("text", "store", "notify"),
    [
        ("# settings come later\n", None, None),
        ("store: s3://team-bucket/releasectl\n", "s3://team-bucket/releasectl", None),
        ('{"notify": {"command": ["page-oncall"], "timeout": "5s"}}', None, "page-oncall"),
    ],
    ids=["comments-only", "store", "json-notify"],
)
def test_a_config_it_can_hold_is_read(
    registry: Repo, text: str, store: str | None, notify: str | None
) -> None:
    _committed(registry, text)
    read = config.registry_config(g.Git(registry.path))
    assert read.store == store
    assert (read.notify or {}).get("command", [None])[0] == notify


@pytest.mark.parametrize("case", ["unknown-key", "malformed"])
def test_a_command_given_a_bad_config_exits_2_with_one_line_and_writes_nothing(
    registry: Repo, case: str
) -> None:
    text, words = BAD[case]
    _committed(registry, text)
    before = registry.snapshot()

    proc = registry.cli("watch", "iris")

    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert CONFIG in line and words in line and f"fix {CONFIG}" in line, line
    assert registry.snapshot() == before
