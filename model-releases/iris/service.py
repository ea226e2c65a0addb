"""The iris classifier, served by BentoML 1.4.

Endpoints:
- POST /predict  {"features": [4 floats]} -> class, label, prediction id and
  the serving bento version (so a client can tell v1 from v2);
- POST /feedback {"items": [{"id" | "features", "label"}]} -> feeds the rolling
  accuracy gauge `iris_rolling_accuracy` on /metrics (NaN until feedback
  arrives: no data is inconclusive, not a failure) and counts the labels it
  was computed from, `iris_feedback_total` (the gauge's `samples`).

Faults for rollout drills travel with the bundle: an optional `faults.yaml`
next to this file (absent = healthy) with `error_ratio` (that fraction of
predict calls answers HTTP 500, every Nth call, deterministic),
`added_latency_ms`, `degrade` (that fraction of predictions is made wrong
on purpose; `true` = all), and `crash_ratio` (on that fraction of predict calls,
every Nth, the worker process dies at once, `os._exit`: bentoml's own counters
never see those requests, only the endpoint does).
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import bentoml
import joblib
import yaml
from bentoml.exceptions import InternalServerError
from pydantic import BaseModel, Field

# train.py saves this tag and bentofile.yaml pins it; change all three together.
MODEL_TAG = "iris_clf:v1"
CLASS_NAMES = ("setosa", "versicolor", "virginica")
HERE = Path(__file__).resolve().parent
FAULTS_FILE = HERE / "faults.yaml"
ACCURACY_WINDOW = 100
REMEMBERED_PREDICTIONS = 10_000
# The exit status of a worker killed by `crash_ratio` (70: EX_SOFTWARE, a crash).
CRASH_EXIT_CODE = 70

rolling_accuracy = bentoml.metrics.Gauge(
    name="iris_rolling_accuracy",
    documentation=f"Accuracy over the last {ACCURACY_WINDOW} predictions with known labels",
    # Same label as bentoml's own metrics, so one query can compare versions.
    labelnames=["service_version"],
    # bentoml serves with prometheus in multiprocess mode; report the live value.
    multiprocess_mode="livemostrecent",
)
# The samples behind the gauge: with `samples: iris_feedback_total` in
# release.yaml, watch judges the accuracy only once enough labels arrived.
feedback_labels = bentoml.metrics.Counter(
    name="iris_feedback",
    documentation="Labelled predictions received on /feedback: the accuracy's samples",
    labelnames=["service_version"],
)


class Faults(NamedTuple):
    error_ratio: Fraction = Fraction(0)
    added_latency_ms: float = 0.0
    degrade: Fraction = Fraction(0)
    crash_ratio: Fraction = Fraction(0)


def _ratio(value: Any, key: str) -> Fraction:
    ratio = Fraction(int(value)) if isinstance(value, bool) else Fraction(str(value))
    if not 0 <= ratio <= 1:
        raise ValueError(f"{FAULTS_FILE.name}: {key} must be between 0 and 1")
    return ratio


def load_faults(path: Path = FAULTS_FILE) -> Faults:
    if not path.is_file():
        return Faults()
    doc = yaml.safe_load(path.read_text()) or {}
    unknown = set(doc) - set(Faults._fields)
    if unknown:
        raise ValueError(f"{path.name}: unknown keys {sorted(unknown)}")
    return Faults(
        error_ratio=_ratio(doc.get("error_ratio", 0), "error_ratio"),
        added_latency_ms=float(doc.get("added_latency_ms", 0)),
        degrade=_ratio(doc.get("degrade", 0), "degrade"),
        crash_ratio=_ratio(doc.get("crash_ratio", 0), "crash_ratio"),
    )


class EveryNth:
    """Picks exactly `ratio` of the calls, spread evenly: deterministic, no RNG to seed."""

    def __init__(self, ratio: Fraction) -> None:
        self.ratio = ratio
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return math.floor(self.calls * self.ratio) > math.floor((self.calls - 1) * self.ratio)


def bento_version() -> str:
    """The serving bento's version: bentoml's server context, else bento.yaml above src/."""
    version = bentoml.server_context.bento_version
    if version and version != "not available":
        return version
    bento_yaml = HERE.parent / "bento.yaml"
    if bento_yaml.is_file():
        return str(yaml.safe_load(bento_yaml.read_text()).get("version", "unknown"))
    return "dev"


Features = Annotated[list[float], Field(min_length=4, max_length=4)]


class Feedback(BaseModel):
    id: str | None = None
    features: Features | None = None
    label: Annotated[int, Field(ge=0, le=len(CLASS_NAMES) - 1)]


@bentoml.service(name="iris", workers=1, traffic={"timeout": 30})
class Iris:
    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.clf = joblib.load(self.model.path_of("saved_model.pkl"))
        self.version = bento_version()
        self.faults = load_faults()
        self.fail_next = EveryNth(self.faults.error_ratio)
        self.degrade_next = EveryNth(self.faults.degrade)
        self.crash_next = EveryNth(self.faults.crash_ratio)
        self.lock = threading.Lock()
        self.predictions: OrderedDict[str, int] = OrderedDict()
        self.outcomes: deque[bool] = deque(maxlen=ACCURACY_WINDOW)
        self.accuracy = rolling_accuracy.labels(service_version=self.version)
        self.accuracy.set(math.nan)
        self.labelled = feedback_labels.labels(service_version=self.version)

    def _classify(self, features: list[float]) -> int:
        predicted = int(self.clf.predict([features])[0])
        with self.lock:
            degraded = self.degrade_next()
        return (predicted + 1) % len(CLASS_NAMES) if degraded else predicted

    @bentoml.api
    def predict(self, features: Features) -> dict[str, Any]:
        if self.faults.added_latency_ms:
            time.sleep(self.faults.added_latency_ms / 1000)
        with self.lock:
            failing, crashing = self.fail_next(), self.crash_next()
        if crashing:
            os._exit(CRASH_EXIT_CODE)  # no answer, no count: as a segfault in native code
        if failing:
            raise InternalServerError("injected fault (faults.yaml error_ratio)")
        predicted = self._classify(features)
        prediction_id = uuid.uuid4().hex
        with self.lock:
            self.predictions[prediction_id] = predicted
            while len(self.predictions) > REMEMBERED_PREDICTIONS:
                self.predictions.popitem(last=False)
        return {
            "id": prediction_id,
            "class": predicted,
            "label": CLASS_NAMES[predicted],
            "version": self.version,
        }

    @bentoml.api
    def feedback(self, items: list[Feedback]) -> dict[str, Any]:
        accepted = unknown = 0
        for item in items:
            if item.id is not None:
                with self.lock:
                    predicted = self.predictions.get(item.id)
            elif item.features is not None:
                predicted = self._classify(item.features)
            else:
                predicted = None
            if predicted is None:
                unknown += 1
                continue
            accepted += 1
            with self.lock:
                self.outcomes.append(predicted == item.label)
        with self.lock:
            window = len(self.outcomes)
            accuracy = sum(self.outcomes) / window if window else math.nan
        self.accuracy.set(accuracy)
        if accepted:
            self.labelled.inc(accepted)
        return {
            "accepted": accepted,
            "unknown": unknown,
            "window": window,
            "rolling_accuracy": None if math.isnan(accuracy) else accuracy,
            "version": self.version,
        }
