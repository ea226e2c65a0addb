"""The manifest layer: `release.yaml`, its schema and edits (docs/ARCHITECTURE.md, "Layers")."""
