"""The hardened reader of the YAML files the registry commits (a release's
manifest, `.releasectl/config.yaml`): untrusted text in, a document or one
line of bad input out, never a parser's crash (docs/ARCHITECTURE.md,
"Crafted input"). Aliases are refused outright: these files never need them
and they are the door to the "billion laughs"; a key given twice is refused."""

from __future__ import annotations

import io
from typing import Any

from pydantic import ValidationError

from releasectl.errors import BadInput
from releasectl.text import one_line

MAX_BYTES = 256 * 1024
MAX_DEPTH = 32  # far more than a registry file needs, far less than the parsers' recursion


def round_trip_yaml() -> Any:
    """ruamel's round-trip loader/dumper: comments, quoting and key order survive an edit."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def describe(exc: ValidationError) -> str:
    """A pydantic error as one phrase: the first problem, with the key it is at."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        text = f"unknown key {where!r}"
    elif first["type"] == "missing":
        text = f"missing key {where!r}"
    elif not first["loc"]:
        # A rule over several keys (a model's own validator) names its keys itself.
        text = first["msg"].removeprefix("Value error, ")
    else:
        got = first.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float | bool) else ""
        text = f"{where}: {first['msg']}{shown}"
    more = len(exc.errors()) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return one_line(text + tail, 300)  # a value of any size, said in one short line


def parse_document(text: str, source: str, *, empty_ok: bool = False) -> Any:
    """The round-trip document (CommentedMap) of a file's text, or BadInput
    naming `source` and the line: malformed YAML, a key given twice, an alias,
    nesting too deep, a file too large, a value beyond the parsers' limits."""
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
                        "a registry file is a few levels deep",
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
    if document is None and empty_ok:  # nothing but comments
        return {}
    if not isinstance(document, dict):
        raise BadInput(f"{source}: expected a mapping of keys at the top level")
    return document


def plain(node: Any) -> Any:
    """ruamel's containers and scalar subclasses as plain Python values."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node
