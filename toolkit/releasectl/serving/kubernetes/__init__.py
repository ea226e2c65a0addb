"""The Kubernetes target: what a release renders into Git for Argo CD and Argo Rollouts."""
