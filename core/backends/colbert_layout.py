"""Reading a late-interaction checkpoint: which format it is, its projection and its settings.

Three layouts are understood:

* original ColBERT / ``HF_ColBERT`` (``colbert-ir/colbertv2.0``,
  ``answerdotai/answerai-colbert-small-v1``): a BERT whose weights also hold ``linear.weight``,
  settings in ``artifact.metadata``;
* PyLate / sentence-transformers: ``modules.json`` with a ``Dense`` module, settings in
  ``config_sentence_transformers.json``;
* a plain encoder (e.g. all-MiniLM-L6-v2): raw token embeddings, no markers, no projection.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from rerankit.errors import BackendError

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class ColBERTLayout:
    """Where the encoder is, the projection, and the checkpoint's own tokenization settings."""

    format: str
    encoder_dir: Path
    projection_weight: torch.Tensor | None
    projection_bias: torch.Tensor | None
    query_prefix: str | None
    document_prefix: str | None
    query_length: int
    document_length: int
    query_augmentation: bool
    attend_to_expansion_tokens: bool
    skiplist: tuple[str, ...]


def read_layout(folder: Path) -> ColBERTLayout:
    """Detect the checkpoint format of ``folder`` and read what scoring needs from it."""
    modules = _json(folder / "modules.json")
    if isinstance(modules, list):
        dense = [m for m in modules if str(m.get("type", "")).endswith("Dense")]
        if dense:
            return _pylate(folder, modules, dense[0])
    weights = _weights(folder, ("linear.weight", "linear.bias"))
    if "linear.weight" in weights:
        return _colbert(folder, weights)
    return ColBERTLayout(
        format="plain-encoder",
        encoder_dir=folder,
        projection_weight=None,
        projection_bias=None,
        query_prefix=None,
        document_prefix=None,
        query_length=64,
        document_length=256,
        query_augmentation=False,
        attend_to_expansion_tokens=False,
        skiplist=(),
    )


def _colbert(folder: Path, weights: dict[str, torch.Tensor]) -> ColBERTLayout:
    meta = _json(folder / "artifact.metadata") or {}
    return ColBERTLayout(
        format="colbert",
        encoder_dir=folder,
        projection_weight=weights["linear.weight"],
        projection_bias=weights.get("linear.bias"),
        query_prefix=str(meta.get("query_token_id", "[unused0]")),
        document_prefix=str(meta.get("doc_token_id", "[unused1]")),
        query_length=int(meta.get("query_maxlen", 32)),
        document_length=int(meta.get("doc_maxlen", 180)),
        query_augmentation=True,
        attend_to_expansion_tokens=bool(meta.get("attend_to_mask_tokens", False)),
        skiplist=tuple(string.punctuation) if meta.get("mask_punctuation", True) else (),
    )


def _pylate(folder: Path, modules: list[Any], dense: dict[str, Any]) -> ColBERTLayout:
    transformer = next((m for m in modules if str(m.get("type", "")).endswith("Transformer")), None)
    encoder_dir = folder / str(transformer.get("path", "")) if transformer else folder
    dense_dir = folder / str(dense.get("path", ""))
    dense_weights = _weights(dense_dir, ("linear.weight", "linear.bias"))
    if "linear.weight" not in dense_weights:
        raise BackendError(f"{dense_dir} holds no linear.weight for the Dense projection")
    settings = _json(folder / "config_sentence_transformers.json") or {}
    return ColBERTLayout(
        format="pylate",
        encoder_dir=encoder_dir,
        projection_weight=dense_weights["linear.weight"],
        projection_bias=dense_weights.get("linear.bias"),
        query_prefix=settings.get("query_prefix", "[Q] "),
        document_prefix=settings.get("document_prefix", "[D] "),
        query_length=int(settings.get("query_length", 32)),
        document_length=int(settings.get("document_length", 180)),
        query_augmentation=bool(settings.get("do_query_expansion", True)),
        attend_to_expansion_tokens=bool(settings.get("attend_to_expansion_tokens", False)),
        skiplist=tuple(settings.get("skiplist_words", string.punctuation)),
    )


def _weights(folder: Path, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The tensors named ``keys`` that the folder's weights hold (read lazily from safetensors)."""
    for name in WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if name.endswith(".safetensors"):
            with safe_open(str(path), framework="pt") as weights:
                return {k: weights.get_tensor(k) for k in keys if k in weights.keys()}  # noqa: SIM118
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
        return {k: loaded[k] for k in keys if isinstance(loaded, dict) and k in loaded}
    return {}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
