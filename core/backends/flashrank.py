"""FlashRank backend: FlashRank's ONNX model folders on ONNX Runtime, no torch at run time.

Unlike FlashRank's own ``Ranker``: length-sorted batches (it runs every passage in one pass),
a choice of execution providers and thread counts, inputs never mutated, truncation reported.
Scores follow FlashRank: the sigmoid of one-logit models (the raw logit with
``normalize=False``), the softmax positive class of two-logit models.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
from tokenizers import AddedToken, Tokenizer

from rerankit.backends.base import Backend, int_option, query_token_cap
from rerankit.backends.pairs import Request, flatten, split
from rerankit.batching import length_sorted_batches
from rerankit.config import RerankerConfig
from rerankit.errors import BackendError, ConfigurationError
from rerankit.registry import FLASHRANK_FILES
from rerankit.types import Scores

logger = logging.getLogger("rerankit")

FLASHRANK_URL = "https://huggingface.co/prithivida/flashrank/resolve/main/{}.zip"
DEFAULT_CACHE = (
    Path(os.environ.get("RERANKIT_CACHE", Path.home() / ".cache" / "rerankit")) / "flashrank"
)
DEFAULT_MAX_BATCH_TOKENS = 8192


class FlashRankBackend(Backend):
    """Score pairs with an ONNX cross-encoder folder (FlashRank's, or one ``rerankit export`` made).

    ``model`` is a folder, or a FlashRank model name looked up in ``cache_dir`` (and downloaded
    there when the network allows). Options: ``cache_dir``, ``model_file``, ``providers``,
    ``intra_op_num_threads``, ``inter_op_num_threads``, ``max_query_length``, ``max_batch_tokens``.
    """

    name: ClassVar[str] = "flashrank"
    option_names: ClassVar[frozenset[str]] = frozenset(
        {
            "cache_dir",
            "model_file",
            "providers",
            "intra_op_num_threads",
            "inter_op_num_threads",
            "max_query_length",
            "max_batch_tokens",
        }
    )

    def __init__(self, config: RerankerConfig) -> None:
        super().__init__(config)
        options = config.options
        self.folder = _locate(config.model, Path(options.get("cache_dir") or DEFAULT_CACHE))
        model_file = self.folder / _model_file(self.folder, config.model, options.get("model_file"))
        self.session = ort.InferenceSession(
            str(model_file), sess_options=_session_options(options), providers=_providers(options)
        )
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.tokenizer, self.pad_id, limit = _tokenizer(self.folder)
        self.max_length = min(config.max_length, limit)
        self.special_tokens = len(self.tokenizer.encode("", "").ids)
        self.max_query_length = query_token_cap(options, self.max_length, self.special_tokens)
        self.tokenizer.enable_truncation(self.max_length, strategy="only_second")
        self.max_batch_tokens = int_option(options, "max_batch_tokens", DEFAULT_MAX_BATCH_TOKENS)
        self._lock = threading.Lock()  # one tokenizer, whose truncation state is shared

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[Request]) -> list[Scores]:
        with self._lock:
            pairs = flatten([(self._cap_query(query), texts) for query, texts in requests])
            encodings = self.tokenizer.encode_batch(
                list(zip(pairs.queries, pairs.texts, strict=True))
            )
        lengths = [len(e.ids) for e in encodings]
        values = [0.0] * len(encodings)
        for batch in length_sorted_batches(
            lengths, max_batch_size=self.config.batch_size, max_batch_tokens=self.max_batch_tokens
        ):
            for position, value in zip(
                batch, self._run([encodings[i] for i in batch]), strict=True
            ):
                values[position] = value
        truncated = [bool(e.overflowing) for e in encodings]
        return split(pairs, values, truncated, lengths, self.max_length)

    def _run(self, encodings: list[Any]) -> list[float]:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        types = np.zeros((len(encodings), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
            types[row, : len(e.ids)] = e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        logits = np.asarray(
            self.session.run(None, {k: v for k, v in feed.items() if k in self.input_names})[0],
            dtype=np.float64,
        )
        if logits.ndim == 1 or logits.shape[1] == 1:
            scores = logits.reshape(-1)
            if self.config.normalize is not False:  # FlashRank's convention: the sigmoid
                scores = 1 / (1 + np.exp(-scores))
        elif logits.shape[1] == 2:
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores = shifted[:, 1] / shifted.sum(axis=1)
        else:
            raise BackendError(
                f"{self.folder}: the ONNX model returns {logits.shape[1]} logits per pair; "
                "a reranker needs one or two"
            )
        return [float(s) for s in scores]

    def _cap_query(self, query: str) -> str:
        encoding = self.tokenizer.encode(query, add_special_tokens=False)
        if len(encoding.ids) <= self.max_query_length:
            return query
        logger.warning("query truncated to max_query_length=%d tokens", self.max_query_length)
        return query[: encoding.offsets[self.max_query_length - 1][1]]


def _locate(model: str, cache_dir: Path) -> Path:
    """The model folder: a path as given, or ``cache_dir/<name>`` (downloaded if allowed)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    folder = cache_dir / model
    if folder.is_dir():
        return folder
    where = (
        f"put the model folder at {folder} (FlashRank publishes it as "
        f"{FLASHRANK_URL.format(model)}, a zip of that folder), or pass the folder's path"
    )
    if model not in FLASHRANK_FILES:
        raise BackendError(f"no FlashRank model folder {model!r} found; {where}")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise BackendError(f"{model!r} is not in {cache_dir} and HF_HUB_OFFLINE=1; {where}")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        archive, _ = urllib.request.urlretrieve(FLASHRANK_URL.format(model))
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(cache_dir)
    except (OSError, urllib.error.URLError, zipfile.BadZipFile) as exc:
        raise BackendError(f"could not download {model!r} ({exc}); {where}") from exc
    return folder


def _model_file(folder: Path, model: str, chosen: str | None) -> str:
    if chosen is not None:
        if not (folder / chosen).is_file():
            raise ConfigurationError(f"model_file {chosen!r} is not in {folder}")
        return chosen
    known = FLASHRANK_FILES.get(folder.name) or FLASHRANK_FILES.get(model)
    if known is not None and (folder / known).is_file():
        return known
    candidates = sorted(p.name for p in folder.glob("*.onnx"))
    if len(candidates) != 1:
        raise ConfigurationError(
            f"{folder} holds {len(candidates)} ONNX files {candidates}; choose one with model_file="
        )
    return candidates[0]


def _tokenizer(folder: Path) -> tuple[Tokenizer, int, int]:
    """The folder's tokenizer set up as FlashRank does; also the pad id and the length limit."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        tokenizer_config = json.loads(
            (folder / "tokenizer_config.json").read_text(encoding="utf-8")
        )
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:  # tokenizers raises plain Exception for a bad tokenizer.json
        raise BackendError(
            f"{folder} is not a complete FlashRank folder (needs config.json, tokenizer.json, "
            f"tokenizer_config.json, special_tokens_map.json and an .onnx file): {exc}"
        ) from exc
    special_map = folder / "special_tokens_map.json"
    if special_map.is_file():
        for token in json.loads(special_map.read_text(encoding="utf-8")).values():
            if isinstance(token, str):
                tokenizer.add_special_tokens([token])
            elif isinstance(token, dict):
                tokenizer.add_special_tokens([AddedToken(**token)])
    tokenizer.no_padding()
    limit = tokenizer_config.get("model_max_length")
    pad_id = config.get("pad_token_id")
    return (
        tokenizer,
        0 if pad_id is None else int(pad_id),
        512 if limit is None else min(int(limit), 100_000),
    )


def _providers(options: Any) -> list[str]:
    providers = options.get("providers") or ["CPUExecutionProvider"]
    available = set(ort.get_available_providers())
    missing = [p for p in providers if p not in available]
    if missing:
        raise ConfigurationError(
            f"ONNX Runtime providers {missing} are not available here; "
            f"available: {sorted(available)}"
        )
    return list(providers)


def _session_options(options: Any) -> ort.SessionOptions:
    session = ort.SessionOptions()
    for name in ("intra_op_num_threads", "inter_op_num_threads"):
        if options.get(name) is not None:
            setattr(session, name, int_option(options, name, 0, minimum=0))
    return session
