"""The Kubernetes target: the desired state rendered into Git for Argo CD to
sync and Argo Rollouts to analyse (docs/ARCHITECTURE.md, "Kubernetes")."""
