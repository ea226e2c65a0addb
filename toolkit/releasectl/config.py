"""Says where things live outside the repository and reads the registry's settings
(docs/ARCHITECTURE.md, "The artifact store").

`$RELEASECTL_HOME` (default `~/.local/state/releasectl`) holds the local
target's state, extracted bundles and, unless configured otherwise, the
artifact store. The store is set by RELEASECTL_STORE or by `store:` in
`.releasectl/config.yaml` (a folder or any fsspec URL)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from releasectl import git as g
from releasectl.errors import BadInput

CONFIG = ".releasectl/config.yaml"


def home() -> Path:
    env = os.environ.get("RELEASECTL_HOME")
    return Path(env) if env else Path.home() / ".local" / "state" / "releasectl"


class RegistryConfig(BaseModel):
    """`.releasectl/config.yaml`: every key it may hold, nothing else. A key
    this schema does not know (a misspelt `stor:`) is bad input, never
    ignored (docs/ARCHITECTURE.md, "Errors by kind")."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    store: str | None = None  # the artifact store: a folder or an fsspec URL
    # The watcher's hook, as `serving.notify.NotifySpec` reads it (a layer up).
    notify: dict[str, Any] | None = None


def registry_config(git: g.Git, rev: str = "HEAD") -> RegistryConfig:
    """`.releasectl/config.yaml` as committed at `rev` (reviewed like code; an
    uncommitted edit does not count), or the defaults. Read through the verified view:
    a version that an admin did not sign is refused, never obeyed
    (docs/ARCHITECTURE.md, "Trust"). Malformed YAML or a key it cannot hold
    is bad input (exit 2), one line naming the file and the line or key."""
    from releasectl import view
    from releasectl.yamldoc import describe, parse_document, plain

    text = view.read(git, rev, CONFIG)
    if not text:
        return RegistryConfig()
    fix = f"fix {CONFIG} (the keys are store and notify) and commit it"
    try:
        return RegistryConfig.model_validate(plain(parse_document(text, CONFIG, empty_ok=True)))
    except BadInput as exc:
        raise BadInput(exc.message, exc.hint or fix) from None
    except ValidationError as exc:
        raise BadInput(f"{CONFIG}: {describe(exc)}", fix) from None


def settings(git: g.Git, rev: str = "HEAD") -> dict[str, Any]:
    """`registry_config` as plain values: the keys the file sets."""
    return registry_config(git, rev).model_dump(exclude_unset=True)


def store_url(git: g.Git) -> str:
    env = os.environ.get("RELEASECTL_STORE")
    if env:
        return env
    url = registry_config(git).store
    if url:
        return os.path.expanduser(url)
    return str(home() / "artifacts")


def bundles_dir() -> Path:
    """Extracted bundles ready to serve, one folder per content digest."""
    return home() / "bundles"
