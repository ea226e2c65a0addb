"""Where things live outside the repository, and the registry's settings.

`$RELEASECTL_HOME` (default `~/.local/state/releasectl`) holds the local
target's state, extracted bundles and, unless configured otherwise, the
artifact store. The store is set by RELEASECTL_STORE or by `store:` in
`.releasectl/config.yaml` (a folder or any fsspec URL)."""

from __future__ import annotations

import os
from pathlib import Path

from . import git as g

CONFIG = ".releasectl/config.yaml"


def home() -> Path:
    env = os.environ.get("RELEASECTL_HOME")
    return Path(env) if env else Path.home() / ".local" / "state" / "releasectl"


def store_url(git: g.Git) -> str:
    env = os.environ.get("RELEASECTL_STORE")
    if env:
        return env
    text = g.read_blob(git, "HEAD", CONFIG)
    if text:
        from ruamel.yaml import YAML

        doc = YAML(typ="safe").load(text) or {}
        url = doc.get("store") if isinstance(doc, dict) else None
        if isinstance(url, str) and url:
            return os.path.expanduser(url)
    return str(home() / "artifacts")


def bundles_dir() -> Path:
    """Extracted bundles ready to serve, one folder per content digest."""
    return home() / "bundles"
