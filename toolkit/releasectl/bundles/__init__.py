"""Bundles: the BentoML runner, archives and digests, the artifact store, building a bundle."""
