"""The example Argo CD Application `releasectl init --kubernetes` writes: it
syncs one environment's index, `deploy/<environment>/kustomization.yaml`,
which lists every model's rendered folder (docs/ARCHITECTURE.md, "Kubernetes")."""

from __future__ import annotations

from typing import Any

from releasectl.render.kubernetes import dump

ENVIRONMENT = "production"
NAMESPACE = "models"  # the scaffold's namespace (README, "Kubernetes with Argo CD")
PLACEHOLDER_URL = "https://github.com/OWNER/REPOSITORY.git"


def path(environment: str = ENVIRONMENT) -> str:
    return f"deploy/argocd/{environment}.yaml"


def application(
    repo_url: str, branch: str, environment: str = ENVIRONMENT, namespace: str = NAMESPACE
) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": f"releasectl-{environment}",
            "namespace": "argocd",
            # Deleting the Application deletes what it deployed.
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": repo_url,
                "targetRevision": branch,
                "path": f"deploy/{environment}",
            },
            # Every model's folder sets its own namespace and renders its Namespace;
            # this one is where an object without a namespace would go, and the one
            # CreateNamespace makes before the first sync (docs/ARCHITECTURE.md, "Kubernetes").
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            # Auto-sync: the cluster follows Git, a revert commit included;
            # selfHeal undoes changes made around Git.
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true"],
            },
        },
    }


def text(repo_url: str | None, branch: str, environment: str = ENVIRONMENT) -> str:
    header = (
        "# An example Argo CD Application (written by `releasectl init --kubernetes`):\n"
        f"# it syncs deploy/{environment}/, where every release commit renders its model.\n"
        "# Apply it once: kubectl apply -n argocd -f " + path(environment) + "\n"
    )
    if repo_url is None:
        header += "# Set spec.source.repoURL to this repository's URL as Argo CD reaches it.\n"
    return dump(application(repo_url or PLACEHOLDER_URL, branch, environment), header)
