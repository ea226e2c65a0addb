"""Train the iris classifier and save it into $BENTOML_HOME as iris_clf:v1.

Deterministic on purpose: fixed data, fixed random_state, fixed model version,
so that two runs give byte-identical model files and the bundle's content
digest (releasectl.bundle.content_digest) is reproducible. No pickle is kept in
git: `releasectl build` runs this script before `bentoml build`.
"""

from __future__ import annotations

import contextlib

import bentoml
from bentoml.exceptions import NotFound
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

# bentofile.yaml and service.py pin this tag; change all three together.
MODEL_TAG = "iris_clf:v1"


def train() -> LogisticRegression:
    features, target = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000, random_state=0).fit(features, target)


def main() -> None:
    # Saving an existing tag fails in bentoml; re-running prepare must be idempotent.
    with contextlib.suppress(NotFound):
        bentoml.models.delete(MODEL_TAG)
    model = bentoml.sklearn.save_model(
        MODEL_TAG,
        train(),
        signatures={"predict": {"batchable": False}},
        metadata={"dataset": "sklearn.datasets.load_iris", "estimator": "LogisticRegression"},
    )
    print(model.tag)


if __name__ == "__main__":
    main()
