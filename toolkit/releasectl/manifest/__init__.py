"""The release manifest, `model-releases/<model>/release.yaml`: schema and edits."""
