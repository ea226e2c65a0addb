"""The analysis layer: the engine and its metric sources (docs/ARCHITECTURE.md, "Layers")."""
