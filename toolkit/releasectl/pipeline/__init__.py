"""The pipeline layer: check, proposals, watch, workflows (docs/ARCHITECTURE.md, "Layers")."""
