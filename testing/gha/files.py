"""The two file formats a run reads: the workflow file (YAML 1.2, as GitHub parses it) and the
`$GITHUB_OUTPUT`/`$GITHUB_ENV` file commands a step writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from testing.gha.errors import WorkflowError


def load_workflow(path: Path) -> dict[str, Any]:
    """The workflow as GitHub reads it: YAML 1.2, where `on` is a key and `yes`
    a string (ruamel's pure-Python loader; the C one implements YAML 1.1)."""
    doc = YAML(typ="safe", pure=True).load(path.read_text())
    if not isinstance(doc, dict) or "jobs" not in doc:
        raise WorkflowError(f"{path}: not a workflow (no jobs:)")
    return doc


def parse_file_command(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT / $GITHUB_ENV content: `name=value` and `name<<DELIM`…`DELIM`."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body = []
            for body_line in lines:
                if body_line == delim:
                    break
                body.append(body_line)
            else:
                raise WorkflowError(f"file command: heredoc {delim!r} for {name!r} never closed")
            out[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
        else:
            raise WorkflowError(f"file command: cannot parse line {line!r}")
    return out
