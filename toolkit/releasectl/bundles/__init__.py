"""The bundles layer: BentoML, archives, digests, store, build (docs/ARCHITECTURE.md, "Layers")."""
