"""Scoring backends, one module each; imported only when chosen (see ``rerankit.registry``)."""
