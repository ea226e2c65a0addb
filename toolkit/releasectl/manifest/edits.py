"""Writing manifests: a command's edit of `release.yaml` that keeps everything else as
the user wrote it, the minimal manifest of a new model, and the JSON Schema that
`releasectl schema` prints.
"""

from __future__ import annotations

import io
from typing import Any

from releasectl.manifest.schema import (
    API_VERSION,
    Manifest,
    parse_document,
    round_trip_yaml,
    validate,
)


def edit(text: str, source: str, changes: dict[str, Any], *, model: str | None = None) -> str:
    """Apply top-level `changes` (None deletes a key) to the manifest text, keep
    everything else as written, validate the result and return the new text."""
    document = parse_document(text, source)
    for key, value in changes.items():
        if value is None:
            document.pop(key, None)
        elif isinstance(value, dict) and isinstance(document.get(key), dict):
            for sub, subvalue in value.items():
                if subvalue is None:
                    document[key].pop(sub, None)
                else:
                    document[key][sub] = subvalue
        else:
            document[key] = value
    out = io.StringIO()
    round_trip_yaml().dump(document, out)
    new_text = out.getvalue()
    validate(document, source, model=model)
    return new_text


def json_schema() -> dict[str, Any]:
    schema = Manifest.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "releasectl release manifest (release.yaml)"
    return schema


def render_new(model: str, *, port: int = 3000) -> str:
    """A minimal manifest, without an analysis block (`releasectl new` writes
    the template's, templates/model/release.yaml.tmpl): version 0.0.0 is
    "never released"."""
    return f"""\
# The release manifest of {model}. releasectl edits version, serial, bundle.digest
# and rollback; everything else is yours. Schema: `releasectl schema`.
apiVersion: {API_VERSION}
model: {model}
version: 0.0.0
serial: 0
bundle:
  bento: {model}
  # Trains once, when a release is made; the weights are stored and pinned under
  # bundle.trained, and every build (CI's rebuild too) imports those exact bytes.
  train: [python, train.py]
deploy:
  target: local
  port: {port}
  standby: 10m
"""
