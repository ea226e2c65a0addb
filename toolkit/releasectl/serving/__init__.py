"""Serving: the deploy gate, the way back to stable, and the deploy targets (`local/`)."""
