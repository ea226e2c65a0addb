"""The rendered state of a manifest: the folder a kubernetes-target release commit
carries for Argo CD, its AnalysisTemplates, the example Application and the rules
a kubernetes manifest must follow; functions of the manifest, below the registry
that commits them (docs/ARCHITECTURE.md, "Layers")."""
