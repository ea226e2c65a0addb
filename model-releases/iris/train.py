"""Train the iris classifier and save it into $BENTOML_HOME as iris_clf:v1.

This is the manifest's `bundle.train` step: releasectl runs it ONCE, when a
release is made (`releasectl release` or `releasectl propose`), in a clean
copy of this folder with an empty BENTOML_HOME. It exports the saved model,
stores it in the artifact store under the sha256 of its bytes and pins it in
release.yaml (`bundle.trained`); every build, CI's rebuild included, imports
those exact bytes. So training need not be bit-reproducible (it is not
across machines: BLAS kernels and thread counts change the floats), and no
pickle is kept in git.
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
    # Saving an existing tag fails in bentoml; re-running must be idempotent.
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
