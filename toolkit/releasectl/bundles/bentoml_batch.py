"""Runs inside one bentoml process: the operations `releasectl.bundles.bento` batches,
in order, so that bentoml's import is paid once per build rather than once per
operation (docs/ARCHITECTURE.md, "Bundles").

Started as `python -m releasectl.bundles.bentoml_batch OPS` with BENTOML_HOME set by
the caller; OPS is a JSON list of `[name, *arguments]`, all of them paths and tags
the caller has validated. It imports nothing of releasectl: it is bentoml's side of
the one module that talks to BentoML. Any failure is a traceback and exit 1, which
the caller reports with the output's tail.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _build(ctx: str, name: str, version: str, labels: dict[str, str]) -> None:
    from bentoml.bentos import build_bentofile

    # As `bentoml build -f bentofile.yaml --name N --version V --label k=v CTX` run
    # in CTX: the same call, so a bento is the same whichever way it was built.
    os.chdir(ctx)
    build_bentofile(
        "bentofile.yaml", name=name, version=version, labels=labels or None, build_ctx=ctx
    )


def run(ops: list[list[Any]]) -> None:
    import bentoml

    for op, *args in ops:
        if op == "delete_model":
            bentoml.models.delete(args[0])
        elif op == "import_model":
            bentoml.models.import_model(args[0])
        elif op == "delete_bento":
            bentoml.delete(args[0])
        elif op == "build":
            _build(*args)
        elif op == "export_bento":
            bentoml.export_bento(args[0], args[1])
        else:
            raise ValueError(f"unknown bentoml operation {op!r}")


if __name__ == "__main__":
    run(json.loads(sys.argv[1]))
