"""Shell completion of model names and versions
(docs/ARCHITECTURE.md, "The command line"). It runs on every TAB, so it
imports nothing heavy, reads the registry's folder names and asks git for one
ref listing: a suggestion, never a decision, so nothing here is verified."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import typer

REGISTRY_DIR = "model-releases"  # names.REGISTRY_DIR, without importing the grammar
MANIFEST = "release.yaml"


def _root(ctx: typer.Context) -> Path | None:
    """The working tree the command would run in (-C, else here)."""
    start = Path(".")
    obj = ctx.find_root().obj
    repo = getattr(obj, "repo", None)
    if isinstance(repo, Path):
        start = repo
    given = ctx.find_root().params.get("repo")
    if isinstance(given, Path):
        start = given
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def models(ctx: typer.Context, incomplete: str) -> list[str]:
    """The models of the registry (its folders that hold a manifest)."""
    root = _root(ctx)
    if root is None or not (root / REGISTRY_DIR).is_dir():
        return []
    return sorted(
        entry.name
        for entry in (root / REGISTRY_DIR).iterdir()
        if entry.name.startswith(incomplete) and (entry / MANIFEST).is_file()
    )


def _tagged(ctx: typer.Context, incomplete: str, kinds: tuple[str, ...]) -> list[str]:
    """The versions of the command's MODEL that have a tag of one of `kinds`
    (less those with a rejected/ tag when `stable` is asked), newest first."""
    root, model = _root(ctx), _model(ctx)
    if root is None or model is None or "/" in model:
        return []
    wanted = ("release", "stable", "rejected") if "stable" in kinds else kinds
    from releasectl.git import Git, GitError

    prefixes = (f"refs/tags/{kind}/{model}/" for kind in wanted)
    try:  # git's one wrapper (docs/ARCHITECTURE.md, "Layers"); a hung git costs 5 s at most
        listing = Git(root).run(
            "for-each-ref", "--format=%(refname)", "--", *prefixes, check=False, timeout=5
        )
    except (OSError, GitError):
        return []
    out = listing.stdout
    found: dict[str, set[str]] = {}
    for ref in out.split():
        _, _, kind, _, version = ref.split("/", 4)
        found.setdefault(kind, set()).add(version.removeprefix("v"))
    versions = set().union(*(found.get(kind, set()) for kind in kinds))
    if "stable" in kinds:
        versions -= found.get("rejected", set())
    # `v1.4.0` names `1.4.0` too: offered as typed, since the shell keeps only
    # what starts with the word being completed.
    prefix = "v" if incomplete.startswith("v") else ""
    matching = [v for v in versions if (prefix + v).startswith(incomplete)]
    return [prefix + v for v in sorted(matching, key=_order, reverse=True)]


def _model(ctx: typer.Context) -> str | None:
    """The command's MODEL: parsed, or, when completing an option's value
    (click then parses nothing), the first word after the command that is
    neither an option nor a value of -C."""
    model = ctx.params.get("model")
    if isinstance(model, str) and model:
        return model
    try:
        words = shlex.split(os.environ.get("COMP_WORDS", ""))
    except ValueError:
        return None
    if ctx.info_name not in words:
        return None
    after = words[words.index(ctx.info_name) + 1 :]
    for before, word in zip(["", *after], after, strict=False):
        if not word.startswith("-") and before not in ("-C", "--repo"):
            return word
    return None


def _order(version: str) -> tuple[tuple[int, ...], int, str]:
    core, _, pre = version.partition("-")
    numbers = tuple(int(part) if part.isdigit() else -1 for part in core.split("."))
    return numbers, 0 if pre else 1, pre


def versions(ctx: typer.Context, incomplete: str) -> list[str]:
    """The released versions of the command's MODEL."""
    return _tagged(ctx, incomplete, ("release",))


def stable_versions(ctx: typer.Context, incomplete: str) -> list[str]:
    """The versions a revert may go back to: stable, never rejected."""
    return _tagged(ctx, incomplete, ("stable",))
