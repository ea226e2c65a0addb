"""The registry layer: the registry in Git and its writes (docs/ARCHITECTURE.md, "Layers")."""
