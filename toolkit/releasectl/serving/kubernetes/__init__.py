"""The Kubernetes target: which pull requests change a model's rendered state
(docs/ARCHITECTURE.md, "Kubernetes"); the render itself is `releasectl.render`."""
