"""The release manifest, `model-releases/<model>/release.yaml`.

Validated by pydantic (unknown keys refused); read with ruamel's round-trip
loader so that a command's edit (`releasectl.manifest.edits`) keeps the user's
comments, quoting and key order and changes only the values it must. Aliases
are refused outright: a manifest never needs them and they are the door to the
"billion laughs".
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from releasectl.errors import BadInput
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.manifest.durations import Duration
from releasectl.manifest.kubernetes import KubernetesDeploy, PinnedImage, split_pinned
from releasectl.names import DIGEST_PATTERN, MODEL_RE, SHA256_HEX_PATTERN, check_version
from releasectl.text import one_line

API_VERSION = "releasectl/v1"
MAX_BYTES = 256 * 1024
MAX_DEPTH = 32  # far more than a manifest needs, far less than the parsers' recursion

Str = Annotated[str, StringConstraints(strict=True, min_length=1)]
Digest = Annotated[str, StringConstraints(strict=True, pattern=DIGEST_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


Sha256Hex = Annotated[str, StringConstraints(strict=True, pattern=SHA256_HEX_PATTERN)]
StoreKey = Annotated[
    str,
    StringConstraints(
        strict=True, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$"
    ),
]


class Artifact(Strict):
    """Model weights fetched from a URI and checked against a sha256 before the build."""

    uri: Str
    sha256: Sha256Hex


class TrainedModel(Strict):
    """One model saved by `bundle.train`, exported and kept in the artifact store."""

    tag: Annotated[
        str, StringConstraints(strict=True, pattern=r"^[a-z0-9][-._a-z0-9]*:[-._a-z0-9]+$")
    ]
    sha256: Sha256Hex = Field(description="sha256 of the exported model archive's bytes")
    key: StoreKey = Field(description="Where the archive is, relative to the artifact store")


class Trained(Strict):
    """The weights `bundle.train` produced, pinned: every build imports exactly these."""

    sources: Digest = Field(
        description="The model folder's sources they were trained from (release.yaml left out)"
    )
    models: list[TrainedModel] = Field(min_length=1)


class Bundle(Strict):
    bento: Annotated[
        str, StringConstraints(strict=True, pattern=r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
    ]
    train: list[Str] | None = Field(
        default=None,
        description=(
            "Trains the model's weights: run ONCE, when a release is made (release, propose), "
            "in a clean copy of the sources with an empty BENTOML_HOME; every model it saves "
            "is stored in the artifact store and pinned under `trained`, and every build "
            "(the release's own and CI's rebuild) imports those exact bytes. Training is not "
            "bit-reproducible across machines, so it never runs inside a build."
        ),
    )
    trained: Trained | None = Field(
        default=None, description="Written by releasectl: the weights `train` produced, pinned"
    )
    prepare: list[Str] | None = Field(
        default=None,
        description=(
            "A DETERMINISTIC step run in the clean copy before every build (it must write the "
            "same bytes on every machine, or CI's rebuild check refuses the release); "
            "anything else, training above all, belongs in `train`"
        ),
    )
    artifact: Artifact | None = Field(
        default=None, description="Weights made elsewhere: a URI and the sha256 of its bytes"
    )
    digest: Digest | None = Field(default=None, description="Content digest of the built bento")
    archive: StoreKey | None = Field(
        default=None,
        description="The built archive's key in the artifact store (bundles/<hex>.bento), "
        "relative to the store: never a local path",
    )
    image: PinnedImage | None = None  # kubernetes target only (docs/ARCHITECTURE.md, "Kubernetes")


class Deploy(Strict):
    target: Literal["local", "kubernetes"] = "local"
    port: int = Field(default=3000, ge=1024, le=65535, strict=True)
    standby: Duration = Field(default=600.0, description="How long the previous version stays warm")
    kubernetes: KubernetesDeploy | None = None

    @model_validator(mode="after")
    def _kubernetes_block(self) -> Deploy:
        if self.target == "kubernetes" and self.kubernetes is None:
            raise ValueError("target kubernetes needs a deploy.kubernetes block (image, namespace)")
        if self.target != "kubernetes" and self.kubernetes is not None:
            raise ValueError("deploy.kubernetes is set but target is not kubernetes")
        return self


class Rollback(Strict):
    from_: Str = Field(alias="from")
    to: Str
    reason: Str
    at: datetime
    by: Str


class Manifest(Strict):
    apiVersion: Literal["releasectl/v1"]
    model: Str
    version: Str
    serial: int = Field(ge=0, strict=True)
    bundle: Bundle
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    deploy: Deploy = Field(default_factory=Deploy)
    rollback: Rollback | None = None

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not MODEL_RE.fullmatch(value):
            raise ValueError("must be a lower-case DNS label (a-z, 0-9, '-'; 1-63 characters)")
        return value

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str) -> str:
        try:
            return check_version(value)
        except BadInput as exc:
            raise ValueError(exc.line()) from None

    @model_validator(mode="after")
    def _image_matches(self) -> Manifest:
        if self.bundle.image is None:
            return self
        k8s = self.deploy.kubernetes
        if k8s is None:
            raise ValueError("bundle.image is pinned but deploy.target is not kubernetes")
        repository, _ = split_pinned(self.bundle.image)
        if repository != k8s.image:
            raise ValueError(
                f"bundle.image is in {repository}, but deploy.kubernetes.image is {k8s.image}"
            )
        return self

    @model_validator(mode="after")
    def _rollback_matches(self) -> Manifest:
        if self.rollback is not None and self.rollback.to != self.version:
            raise ValueError(
                f"rollback.to ({self.rollback.to}) differs from version ({self.version})"
            )
        return self


def round_trip_yaml() -> Any:
    """ruamel's round-trip loader/dumper: comments, quoting and key order survive an edit."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        text = f"unknown key {where!r}"
    elif first["type"] == "missing":
        text = f"missing key {where!r}"
    else:
        got = first.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float | bool) else ""
        text = f"{where}: {first['msg']}{shown}"
    more = len(exc.errors()) - 1
    return text + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def parse_document(text: str, source: str) -> Any:
    """The round-trip document (CommentedMap) of a manifest's text."""
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent

    if len(text.encode()) > MAX_BYTES:
        raise BadInput(f"{source}: file is larger than {MAX_BYTES // 1024} KiB")
    yaml = round_trip_yaml()
    try:
        depth = 0
        for event in yaml.parse(io.StringIO(text)):
            if isinstance(event, AliasEvent):
                raise BadInput(f"{source}: YAML aliases are not allowed", "write the values out")
            if isinstance(event, CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise BadInput(
                        f"{source}: YAML nested deeper than {MAX_DEPTH} levels",
                        "a manifest is a few levels deep",
                    )
            elif isinstance(event, CollectionEndEvent):
                depth -= 1
        document = yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInput(f"{source}: malformed YAML{where}: {one_line(problem, 300)}") from None
    except ValueError as exc:
        # e.g. an integer beyond Python's int-str limit (a 5,000-digit serial).
        raise BadInput(f"{source}: a value cannot be read: {one_line(str(exc), 300)}") from None
    except RecursionError:
        raise BadInput(f"{source}: YAML nested too deeply") from None
    if not isinstance(document, dict):
        raise BadInput(f"{source}: expected a mapping of keys at the top level")
    return document


def validate(document: Any, source: str, *, model: str | None = None) -> Manifest:
    try:
        manifest = Manifest.model_validate(_plain(document))
    except ValidationError as exc:
        raise BadInput(f"{source}: {one_line(_describe(exc), 300)}") from None
    except RecursionError:
        raise BadInput(f"{source}: nested too deeply") from None
    if model is not None and manifest.model != model:
        raise BadInput(
            f"{source}: model is {manifest.model!r} but the folder is {model!r}",
            "the model key must equal its folder's name",
        )
    return manifest


def load(text: str, source: str, *, model: str | None = None) -> Manifest:
    return validate(parse_document(text, source), source, model=model)


def _plain(node: Any) -> Any:
    """ruamel's containers and scalar subclasses as plain Python values."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, datetime):
        return node
    return node
