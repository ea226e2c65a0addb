"""Where things live outside the repository, and the registry's settings.

`$RELEASECTL_HOME` (default `~/.local/state/releasectl`) holds the local
target's state, extracted bundles and, unless configured otherwise, the
artifact store. The store is set by RELEASECTL_STORE or by `store:` in
`.releasectl/config.yaml` (a folder or any fsspec URL)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from releasectl import git as g

CONFIG = ".releasectl/config.yaml"


def home() -> Path:
    env = os.environ.get("RELEASECTL_HOME")
    return Path(env) if env else Path.home() / ".local" / "state" / "releasectl"


def settings(git: g.Git, rev: str = "HEAD") -> dict[str, Any]:
    """`.releasectl/config.yaml` as committed at `rev` (reviewed like code; an
    uncommitted edit does not count), or {}. Read through the verified view:
    a version that an admin did not sign is refused, never obeyed
    (docs/ARCHITECTURE.md, "Trust")."""
    from releasectl import view

    text = view.read(git, rev, CONFIG)
    if not text:
        return {}
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(text)
    return doc if isinstance(doc, dict) else {}


def store_url(git: g.Git) -> str:
    env = os.environ.get("RELEASECTL_STORE")
    if env:
        return env
    url = settings(git).get("store")
    if isinstance(url, str) and url:
        return os.path.expanduser(url)
    return str(home() / "artifacts")


def bundles_dir() -> Path:
    """Extracted bundles ready to serve, one folder per content digest."""
    return home() / "bundles"
