"""Scoring pipelines, one per model kind; backends supply the model call and their options.

``pair_encoder``: a query and a passage read as one sequence, one or two logits out
(cross-encoders on torch, FlashRank and ``rerankit export`` folders on ONNX Runtime).
"""
