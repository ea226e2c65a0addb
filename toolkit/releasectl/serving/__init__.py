"""The serving layer: the deploy gate, recovery, targets (docs/ARCHITECTURE.md, "Layers")."""
