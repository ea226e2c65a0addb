"""The release manifest, `model-releases/<model>/release.yaml`: its schema and
its reading (docs/ARCHITECTURE.md, "The registry").

Validated by pydantic (unknown keys refused); read with ruamel's round-trip
loader so that a command's edit (`releasectl.manifest.edits`) keeps the user's
comments, quoting and key order and changes only the values it must. Aliases
are refused outright: a manifest never needs them and they are the door to the
"billion laughs".
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from releasectl.errors import BadInput
from releasectl.manifest.analysis import AnalysisSpec
from releasectl.manifest.durations import Duration
from releasectl.manifest.kubernetes import (
    KubernetesDeploy,
    PinnedImage,
    check_traffic,
    split_pinned,
)
from releasectl.manifest.strategy import StrategySpec, check_strategy, moved
from releasectl.names import DIGEST_PATTERN, MODEL_RE, SHA256_HEX_PATTERN, ModelVersion
from releasectl.yamldoc import MAX_BYTES as MAX_BYTES
from releasectl.yamldoc import describe, plain
from releasectl.yamldoc import parse_document as parse_document
from releasectl.yamldoc import round_trip_yaml as round_trip_yaml

API_VERSION = "releasectl/v1"

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
    strategy: StrategySpec = Field(default_factory=StrategySpec)
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
    # What to write instead of an old spelling this manifest was read with (`moved`).
    _old_spelling: str | None = PrivateAttr(default=None)

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
            return str(ModelVersion.parse(value))  # plain: ruamel writes no str subclass
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
    def _strategy_fits(self) -> Manifest:
        check_strategy(self.deploy.strategy, self.deploy.target, self.analysis)
        if self.deploy.kubernetes is not None:
            check_traffic(self.deploy.kubernetes, self.deploy.strategy)
        return self

    @model_validator(mode="after")
    def _rollback_matches(self) -> Manifest:
        if self.rollback is not None and self.rollback.to != self.version:
            raise ValueError(
                f"rollback.to ({self.rollback.to}) differs from version ({self.version})"
            )
        return self


def validate(document: Any, source: str, *, model: str | None = None) -> Manifest:
    try:
        data = plain(document)
        old_spelling = moved(data, source)  # the old deploy.kubernetes.strategy, read
        manifest = Manifest.model_validate(data)
        manifest._old_spelling = old_spelling
    except ValidationError as exc:
        raise BadInput(f"{source}: {describe(exc)}") from None
    except RecursionError:
        raise BadInput(f"{source}: nested too deeply") from None
    if model is not None and manifest.model != model:
        raise BadInput(
            f"{source}: model is {manifest.model!r} but the folder is {model!r}",
            "the model key must equal its folder's name",
        )
    return manifest


def refuse_old_spelling(manifest: Manifest) -> None:
    """New content is written in the current form: a release or a pull request with an
    old spelling is refused with what to write instead; old releases still read."""
    if manifest._old_spelling is not None:
        raise BadInput(manifest._old_spelling)


def load(text: str, source: str, *, model: str | None = None) -> Manifest:
    return validate(parse_document(text, source), source, model=model)
