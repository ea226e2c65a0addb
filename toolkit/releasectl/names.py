"""The grammar of model names, versions and tags: one place, one parser
(docs/ARCHITECTURE.md, "The tag grammar").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    import semver

from releasectl.errors import BadInput

MODEL_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
MODEL_RE = re.compile(MODEL_PATTERN)
# A content digest as manifests, stores and bundles write it, and its bare hex.
SHA256_HEX_PATTERN = r"^[0-9a-f]{64}$"
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
REGISTRY_DIR = "model-releases"
MANIFEST = "release.yaml"

Kind = Literal["release", "stable", "rejected"]
KINDS: tuple[Kind, ...] = ("release", "stable", "rejected")


class ModelName(str):
    """A model name that has passed the grammar. Made by `parse` where a name
    enters (a command's argument, a tag, a library entry point) and passed on
    as it is: parsing a `ModelName` again returns it unchecked, so a name is
    checked once however many functions it travels through. ruamel's writer
    represents no str subclass: what goes into YAML is `str(name)`."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> ModelName:
        if isinstance(text, ModelName):
            return text
        if not MODEL_RE.fullmatch(text):
            raise BadInput(
                f"invalid model name {text!r}",
                "use a lower-case DNS label: a-z, 0-9 and '-', 1-63 characters, "
                "starting and ending with a letter or digit",
            )
        return cls(text)


def check_model(name: str) -> ModelName:
    return ModelName.parse(name)


def parse_version(text: str) -> semver.Version:
    """A SemVer 2.0 version without build metadata; a leading 'v' is refused
    here so that the manifest and the tag never disagree about it (the command
    line takes one: `version_arg`)."""
    import semver  # ~20 ms: only when a version is parsed

    try:
        version = semver.Version.parse(text)
    except (ValueError, TypeError):
        raise BadInput(
            f"invalid version {text!r}", "use Semantic Versioning, e.g. 1.4.0 or 1.4.0-rc.1"
        ) from None
    if version.build:
        raise BadInput(f"invalid version {text!r}", "build metadata (+...) is not allowed")
    return version


class ModelVersion(str):
    """A version as the registry writes it (`1.4.0`, never `v1.4.0`) that has
    passed `parse_version`; like `ModelName`, parsed once where it enters."""

    __slots__ = ()

    @classmethod
    def parse(cls, text: str) -> ModelVersion:
        if isinstance(text, ModelVersion):
            return text
        parse_version(text)
        return cls(text)


def version_arg(text: str) -> str:
    """A version as an operator types it on the command line: `v1.4.0` means
    `1.4.0`, as in the tag `release/<m>/v1.4.0`. The 'v' comes off here, at the
    edge; manifests and the library see only the bare version. Text that is not
    a version either way is returned as typed, so the refusal names it."""
    if text.startswith("v") and text[1:2].isdigit():
        try:
            parse_version(text[1:])
        except BadInput:
            return text
        return text[1:]
    return text


MAX_REASON = 500


def check_reason(text: str) -> str:
    """A revert's reason: one line of printable characters, at most MAX_REASON.
    It lands in a commit message, a tag message, the manifest and CI
    annotations, so it can never carry a line break, a control character or
    a line of its own (docs/ARCHITECTURE.md, "Revert")."""
    if not text.strip():
        raise BadInput("the reason is empty", "say why, e.g. --reason 'error rate 12%'")
    if len(text) > MAX_REASON:
        raise BadInput(
            f"the reason is {len(text)} characters long; at most {MAX_REASON} are allowed",
            "one line; put the details in the incident's record",
        )
    bad = next((c for c in text if not c.isprintable()), None)
    if bad is not None:
        raise BadInput(
            f"the reason contains a line break or control character ({bad!r})",
            f"one line of at most {MAX_REASON} printable characters",
        )
    return text


def model_dir(model: str) -> str:
    return f"{REGISTRY_DIR}/{model}"


def manifest_path(model: str) -> str:
    return f"{REGISTRY_DIR}/{model}/{MANIFEST}"


def tag_name(kind: Kind, model: str, version: str) -> str:
    return f"{kind}/{model}/v{version}"


def tag_prefixes(model: str) -> list[str]:
    return [f"refs/tags/{kind}/{model}/" for kind in KINDS]


def listing_patterns(model: str | None) -> list[str]:
    """`git ls-remote` patterns that list every ref under the registry's
    prefixes (one model's, or every model's), the names that break the grammar
    included: `refs/tags/rejected/*` also matches `rejected/m/v1/x`, and the
    bare prefixes catch a ref that sits where a folder must be."""
    if model is None:
        return [p for kind in KINDS for p in (f"refs/tags/{kind}", f"refs/tags/{kind}/*")]
    return [
        p
        for kind in KINDS
        for p in (f"refs/tags/{kind}", f"refs/tags/{kind}/{model}", f"refs/tags/{kind}/{model}/*")
    ]


def ref_in_the_way(name: str, refs: Iterable[str]) -> str | None:
    """The ref among `refs` (full names) that stops a tag `name` from being
    created: the name itself, a ref below it (`rejected/m/v1/x`: git cannot
    hold a ref that is both a file and a folder) or one above it
    (`refs/tags/rejected/m`) (docs/ARCHITECTURE.md, "One registry on every clone")."""
    full = f"refs/tags/{name}"
    parts = full.split("/")
    above = {"/".join(parts[:i]) for i in range(3, len(parts))}
    blocking = (r for r in sorted(refs) if r == full or r.startswith(full + "/") or r in above)
    return next(blocking, None)


class TagName(NamedTuple):
    kind: Kind
    model: ModelName
    version: ModelVersion


def parse_tag(name: str) -> TagName | None:
    """Parse `kind/model/vX.Y.Z` (with or without `refs/tags/`); None if it is not ours."""
    name = name.removeprefix("refs/tags/")
    parts = name.split("/")
    if len(parts) != 3 or parts[0] not in KINDS or not parts[2].startswith("v"):
        return None
    try:
        model, version = ModelName.parse(parts[1]), ModelVersion.parse(parts[2][1:])
    except BadInput:
        return None
    kind: Kind = parts[0]  # one of KINDS, checked above
    return TagName(kind, model, version)


def registry_ref(refname: str) -> TagName | None:
    """A full ref name that is exactly a registry tag (`refs/tags/` + the
    grammar, written as the grammar writes it); None for anything else."""
    if not refname.startswith("refs/tags/"):
        return None
    parsed = parse_tag(refname)
    if parsed is None or f"refs/tags/{tag_name(*parsed)}" != refname:
        return None
    return parsed
