"""The registry in Git: history, verified releases, signed landings, release, revert, new models."""
