"""Writing manifests: a command's edit of `release.yaml` that keeps everything
else as the user wrote it, the minimal manifest of a new model, and the JSON
Schema that `releasectl schema` prints (docs/ARCHITECTURE.md, "The registry").
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
    """Apply top-level `changes` (None deletes a key; a mapping updates the
    keys it names one level down) to the manifest text, keep everything else
    as written (comments, key order, indentation), validate the result and
    return the new text (docs/ARCHITECTURE.md, "The registry")."""
    document = parse_document(text, source)
    for key, value in changes.items():
        if value is None:
            _delete(document, key)
        elif isinstance(value, dict) and isinstance(document.get(key), dict):
            for sub, subvalue in value.items():
                if subvalue is None:
                    _delete(document[key], sub)
                else:
                    _assign(document[key], sub, subvalue)
        else:
            _assign(document, key, value)
    out = io.StringIO()
    yaml = round_trip_yaml()
    mapping, sequence, offset = _indentation(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    yaml.dump(document, out)
    new_text = out.getvalue()
    validate(document, source, model=model)
    return new_text


# --- keeping the comments ----------------------------------------------------------
# ruamel hangs the comment lines that follow a block on that block's deepest last
# entry: the comment above `deploy:` belongs, in its model, to the last line of the
# `bundle:` block before it. An edit that replaces or deletes that block would take
# the comment with it; these helpers edit in place and move such lines along.


def _assign(parent: Any, key: Any, value: Any) -> None:
    """parent[key] = value, editing the old value in place where the shapes
    match, so that the comments in and around it stay where they were."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    old = parent[key] if _has(parent, key) else None
    if isinstance(old, CommentedMap) and isinstance(value, dict):
        for sub in [k for k in old if k not in value]:
            _delete(old, sub)
        for sub, subvalue in value.items():
            _assign(old, sub, subvalue)
        return
    if isinstance(old, CommentedSeq) and isinstance(value, list):
        while len(old) > len(value):
            _delete(old, len(old) - 1)
        for index, item in enumerate(value):
            _assign(old, index, item)
        return
    if _has(parent, key):
        trailing = _pop_entry_trailing(parent, key)
        parent[key] = _commented(value)
        _put_trailing(parent, key, trailing)
        return
    # A new last entry: the lines that followed the old last one follow it now.
    last = _last_key(parent)
    trailing = _pop_entry_trailing(parent, last) if last is not None else ""
    if isinstance(parent, list):
        parent.append(_commented(value))
    else:
        parent[key] = _commented(value)
    _put_trailing(parent, key, trailing)


def _delete(parent: Any, key: Any) -> None:
    """Remove parent[key]; the comment lines that followed it (above the next
    entry) move to the entry before it."""
    if not _has(parent, key):
        return
    # Its own end-of-line comment goes with it; the lines below it stay.
    kept = _pop_entry_trailing(parent, key)
    before = _key_before(parent, key)
    if isinstance(parent, list):
        del parent[key]
        _shift_seq_comments(parent, key)
    else:
        parent.pop(key)
        parent.ca.items.pop(key, None)
    if before is not None:
        _put_trailing(parent, before, kept)


def _has(parent: Any, key: Any) -> bool:
    if isinstance(parent, list):
        return isinstance(key, int) and 0 <= key < len(parent)
    return key in parent


def _is_collection(node: Any) -> bool:
    return isinstance(node, dict | list)


def _flow(node: Any) -> bool:
    return bool(getattr(getattr(node, "fa", None), "flow_style", lambda: False)())


def _last_key(parent: Any) -> Any:
    if isinstance(parent, list):
        return len(parent) - 1 if parent else None
    return next(reversed(parent), None) if parent else None


def _key_before(parent: Any, key: Any) -> Any:
    if isinstance(parent, list):
        return key - 1 if key > 0 else None
    keys = list(parent)
    at = keys.index(key)
    return keys[at - 1] if at > 0 else None


def _after(parent: Any) -> int:
    """Where a comment after an entry sits in its slot of `ca.items`."""
    return 0 if isinstance(parent, list) else 2


def _pop_entry_trailing(parent: Any, key: Any) -> str:
    """Take the comment lines below parent[key] (its end-of-line comment stays)."""
    value, at, taken = parent[key], _after(parent), ""
    slot = parent.ca.items.get(key) if hasattr(parent, "ca") else None
    if slot is not None and len(slot) > at and slot[at] is not None:
        text = str(slot[at].value)
        eol, _, below = text.partition("\n")
        taken = below
        slot[at] = _token(eol + "\n", slot[at]) if eol else None
    if _is_collection(value) and not _flow(value):
        taken += _pop_trailing(value)
    elif _is_collection(value):
        taken += _pop_end(value)
    return taken


def _pop_trailing(node: Any) -> str:
    """Take the comment lines below a block collection's last line."""
    last = _last_key(node)
    taken = _pop_entry_trailing(node, last) if last is not None else ""
    return taken + _pop_end(node)


def _pop_end(node: Any) -> str:
    if not hasattr(node, "ca") or not node.ca.end:
        return ""
    text = "".join(
        " " * token.start_mark.column + str(token.value).lstrip(" ") for token in node.ca.end
    )
    node.ca.end = []
    return text


def _put_trailing(parent: Any, key: Any, text: str) -> None:
    """Hang comment lines below parent[key] (below its deepest last line)."""
    if not text:
        return
    value = parent[key]
    if _is_collection(value) and not _flow(value) and value:
        _put_trailing(value, _last_key(value), text)
        return
    items, at = parent.ca.items, _after(parent)
    slot = items.setdefault(key, [None, None] if isinstance(parent, list) else [None] * 4)
    old = str(slot[at].value) if slot[at] is not None else "\n"
    slot[at] = _token(old + text, None)


def _token(text: str, like: Any) -> Any:
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    mark = like.start_mark if like is not None else CommentMark(0)
    return CommentToken(text, mark, None)


def _shift_seq_comments(seq: Any, removed: int) -> None:
    items = seq.ca.items
    for index in sorted(k for k in items if k > removed):
        items[index - 1] = items.pop(index)


def _commented(value: Any) -> Any:
    """A plain dict or list as ruamel's own types, which can carry comments."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, dict) and not isinstance(value, CommentedMap):
        return CommentedMap((k, _commented(v)) for k, v in value.items())
    if isinstance(value, list) and not isinstance(value, CommentedSeq):
        return CommentedSeq(_commented(v) for v in value)
    return value


def _indentation(text: str) -> tuple[int, int, int]:
    """The file's own indentation (mapping, sequence, dash offset), so that an
    edit re-indents nothing: ruamel writes 2, 2, 0 unless told."""
    mapping = sequence = offset = None
    previous_indent, previous_key = 0, False
    for line in text.splitlines():
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if previous_key and indent > previous_indent:
            if stripped.startswith("- "):
                if offset is None:
                    offset = indent - previous_indent
                    dash_body = len(stripped) - len(stripped[2:].lstrip(" "))
                    sequence = offset + dash_body
            elif mapping is None:
                mapping = indent - previous_indent
        previous_indent = indent
        body = stripped[2:].lstrip(" ") if stripped.startswith("- ") else stripped
        previous_key = body.rstrip().endswith(":") or ": #" in body or body.rstrip().endswith(": |")
        if stripped.startswith("- ") and previous_key:
            previous_indent = indent + (len(stripped) - len(body))
    mapping = mapping or 2
    offset = 0 if offset is None else offset
    sequence = sequence if sequence is not None else mapping
    return mapping, max(sequence, offset + 2), offset


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
