"""{{model}}: a BentoML service. Replace the body of `predict` with your model."""

from __future__ import annotations

import bentoml


@bentoml.service
class Model:
    @bentoml.api
    def predict(self, features: list[float]) -> dict[str, object]:
        return {"prediction": sum(features)}
