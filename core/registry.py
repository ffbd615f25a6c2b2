"""Backend registry: names -> import paths and extras, and inference of a backend from a model.

Order of choice: an explicit ``backend=`` always wins; else what a local model folder holds;
else patterns in the model name; else :class:`UnknownBackendError` listing the valid names.
Only the chosen backend's module is imported.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from rerankit._optional import require
from rerankit.errors import UnknownBackendError

if TYPE_CHECKING:
    from rerankit.backends.base import Backend


@dataclass(frozen=True, slots=True)
class BackendSpec:
    """Where a backend lives and which extra installs what it needs."""

    name: str
    module: str
    attribute: str
    extra: str
    requires: tuple[str, ...]
    aliases: tuple[str, ...] = ()


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            name="cross-encoder",
            module="rerankit.backends.cross_encoder",
            attribute="CrossEncoderBackend",
            extra="transformers",
            requires=("torch", "transformers"),
            aliases=("cross_encoder", "crossencoder", "transformers"),
        ),
        BackendSpec(
            name="colbert",
            module="rerankit.backends.colbert",
            attribute="ColBERTBackend",
            extra="colbert",
            requires=("torch", "transformers"),
            aliases=("late-interaction", "maxsim"),
        ),
        BackendSpec(
            name="flashrank",
            module="rerankit.backends.flashrank",
            attribute="FlashRankBackend",
            extra="flashrank",
            requires=("onnxruntime", "tokenizers", "numpy"),
            aliases=("onnx",),
        ),
        BackendSpec(
            name="jina",
            module="rerankit.backends.jina",
            attribute="JinaBackend",
            extra="jina",
            requires=("httpx", "tenacity"),
            aliases=("api", "remote", "http"),
        ),
    )
}

# FlashRank's published folders and the ONNX file each holds (as in flashrank.Config).
FLASHRANK_FILES = {
    "ms-marco-TinyBERT-L-2-v2": "flashrank-TinyBERT-L-2-v2.onnx",
    "ms-marco-MiniLM-L-12-v2": "flashrank-MiniLM-L-12-v2_Q.onnx",
    "ms-marco-MultiBERT-L-12": "flashrank-MultiBERT-L12_Q.onnx",
    "ce-esci-MiniLM-L12-v2": "flashrank-ce-esci-MiniLM-L12-v2_Q.onnx",
    "miniReranker_arabic_v1": "miniReranker_arabic_v1.onnx",
}

# Checked in order; the first match names the backend.
NAME_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"colbert"), "colbert"),
    (re.compile(r"jina-reranker"), "jina"),
    (re.compile(r"bge-reranker|ms-marco|mxbai-rerank|cross-encoder|reranker"), "cross-encoder"),
)


def canonical_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases."""
    key = name.strip().lower()
    for spec in BACKENDS.values():
        if key == spec.name or key in spec.aliases:
            return spec.name
    raise UnknownBackendError(
        f"unknown backend {name!r}; valid backends are {sorted(BACKENDS)} "
        f"(aliases: {sorted(a for s in BACKENDS.values() for a in s.aliases)})"
    )


def infer_backend(model: str) -> str:
    """Pick a backend for ``model`` from its local folder, else from its name."""
    folder = Path(model).expanduser()
    guess = _infer_from_folder(folder) if folder.is_dir() else _infer_from_name(model)
    if guess is None:
        raise UnknownBackendError(
            f"cannot tell which backend serves {model!r}; pass backend= one of {sorted(BACKENDS)}"
        )
    if guess not in BACKENDS:
        raise UnknownBackendError(
            f"{model!r} looks like a {guess!r} model, but no {guess!r} backend is available; "
            f"pass backend= one of {sorted(BACKENDS)} if the model fits one of them"
        )
    return guess


def load_backend_class(name: str) -> type[Backend]:
    """Import and return the backend class registered as ``name`` (or an alias)."""
    spec = BACKENDS[canonical_name(name)]
    for module in spec.requires:
        require(module, extra=spec.extra, purpose=f"The {spec.name!r} backend")
    return cast("type[Backend]", getattr(importlib.import_module(spec.module), spec.attribute))


def _infer_from_name(model: str) -> str | None:
    name = model.strip().lower()
    if name in {known.lower() for known in FLASHRANK_FILES}:
        return "flashrank"
    for pattern, backend in NAME_PATTERNS:
        if pattern.search(name):
            return backend
    return None


def _infer_from_folder(folder: Path) -> str | None:
    if any(folder.glob("*.onnx")) or any(folder.glob("onnx/*.onnx")):
        return "flashrank"
    if (folder / "artifact.metadata").exists() or _has_dense_module(folder):
        return "colbert"
    architectures = _architectures(folder)
    if any("colbert" in arch.lower() for arch in architectures):
        return "colbert"
    if any(arch.endswith("ForSequenceClassification") for arch in architectures):
        return "cross-encoder"
    return _infer_from_name(folder.name)


def _architectures(folder: Path) -> list[str]:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return [a for a in architectures or [] if isinstance(a, str)]


def _has_dense_module(folder: Path) -> bool:
    """A sentence-transformers / PyLate folder whose modules include a Dense projection."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(modules, list) and any(
        isinstance(m, dict) and str(m.get("type", "")).endswith("Dense") for m in modules
    )
