"""Evaluation harness: first stage, rerankers, quality metrics and serving cost side by side."""
