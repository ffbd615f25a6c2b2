"""FlashRank backend: FlashRank's ONNX model folders on ONNX Runtime, no torch at run time.

Tokenizing, truncation, batching and the score head are the pair-encoder pipeline's
(:mod:`rerankit.pipelines.pair_encoder`), shared with the cross-encoder backend, so a
cross-encoder folder and its ``rerankit export`` score the same pairs on the same scale.
Unlike FlashRank's own ``Ranker``: length-sorted batches (it runs every passage in one pass),
a query cap, passage-side truncation that is reported, a choice of execution providers and
thread counts, and inputs never mutated.

Scores are the raw relevance log-odds by default, like every backend (one-logit models: the
logit; two-logit models: ``logit[1] - logit[0]``); ``normalize=True`` gives the probability
FlashRank's ``Ranker`` reports (the sigmoid, equal to the softmax of the positive class).
FlashRank's published folders used to default to that probability here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import AddedToken, Tokenizer

from rerankit.backends.base import WINDOW_OPTIONS, Backend, Request, position_limit
from rerankit.config import RerankerConfig
from rerankit.errors import BackendError, ConfigurationError
from rerankit.options import Option, OptionSchema
from rerankit.pipelines.pair_encoder import (
    INPUT_NAMES,
    Batch,
    PairEncoderPipeline,
    check_head_size,
)
from rerankit.registry import FLASHRANK_FILES
from rerankit.types import Scores

logger = logging.getLogger("rerankit")

FLASHRANK_URL = "https://huggingface.co/prithivida/flashrank/resolve/main/{}.zip"
# Either variable, spelled as huggingface_hub accepts it, forbids the download.
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
TRUTHY = frozenset({"1", "true", "yes", "on"})
DEFAULT_CACHE = (
    Path(os.environ.get("RERANKIT_CACHE", Path.home() / ".cache" / "rerankit")) / "flashrank"
)
# Seconds a download may wait for the server to answer or send more (not for the whole file).
DOWNLOAD_TIMEOUT = 60.0
MAX_TOKENS = 100_000  # the length cap when a folder's config and tokenizer name none smaller
# ONNX Runtime load-time fusions left off on CPU. Its SkipLayerNormalization (a residual Add
# fused into the LayerNorm after it; it forms in rerankit's int8 exports) ran the int8 MiniLM
# export ~10% slower than the Add and LayerNorm it replaces (benchmarks/int8_export.py). Other
# providers keep ONNX Runtime's defaults: unmeasured there.
UNFUSED = ("SkipLayerNormFusion",)


class FlashRankBackend(Backend):
    """Score pairs with an ONNX cross-encoder folder (FlashRank's, or one ``rerankit export`` made).

    ``model`` is a folder, or a FlashRank model name looked up in ``cache_dir`` (and downloaded
    there when the network allows).

    >>> from rerankit import Reranker
    >>> rr = Reranker("ms-marco-TinyBERT-L-2-v2", backend="flashrank")  # doctest: +SKIP
    >>> rr.score("what is DNA?", ["DNA is a molecule", "a cat"])  # doctest: +SKIP
    """

    name: ClassVar[str] = "flashrank"
    options_schema: ClassVar[OptionSchema] = {
        "cache_dir": Option(
            "str",
            None,
            "where FlashRank folders are looked up and downloaded to; "
            "$RERANKIT_CACHE/flashrank (~/.cache/rerankit/flashrank) when unset",
        ),
        "model_file": Option(
            "str", None, "the .onnx file to run; the folder's only one when unset"
        ),
        "providers": Option(
            "list", None, 'ONNX Runtime execution providers; ["CPUExecutionProvider"] when unset'
        ),
        "intra_op_num_threads": Option(
            "int",
            None,
            "ONNX Runtime threads within an operator; its default when unset",
            minimum=0,
        ),
        "inter_op_num_threads": Option(
            "int", None, "ONNX Runtime threads across operators; its default when unset", minimum=0
        ),
        "max_query_length": Option(
            "int", None, "query tokens at most; max_length // 2 when unset", minimum=1
        ),
        "max_batch_tokens": Option("int", 8192, "padded tokens per batch", minimum=1),
        **WINDOW_OPTIONS,
    }

    def __init__(self, config: RerankerConfig) -> None:
        super().__init__(config)
        cache_dir = self.options["cache_dir"]
        self.folder = _locate(
            config.model, DEFAULT_CACHE if cache_dir is None else Path(cache_dir).expanduser()
        )
        model_file = self.folder / _model_file(
            self.folder, config.model, self.options["model_file"]
        )
        providers = _providers(self.options["providers"])
        self.session = ort.InferenceSession(
            str(model_file),
            sess_options=_session_options(self.options),
            providers=providers,
            disabled_optimizers=UNFUSED if providers == ["CPUExecutionProvider"] else (),
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        unknown = sorted(set(self.input_names) - set(INPUT_NAMES))
        if unknown:
            raise BackendError(
                f"{model_file} takes inputs {unknown}; a pair encoder takes {INPUT_NAMES}"
            )
        shape = self.session.get_outputs()[0].shape
        if shape and isinstance(shape[-1], int):  # a symbolic size is checked on the first batch
            check_head_size(shape[-1], str(model_file))
        tokenizer, pad_id, limit = _tokenizer(self.folder)
        self.pipeline = PairEncoderPipeline(
            tokenizer,
            self._forward,
            max_length=min(config.max_length, limit),
            max_query_length=self.options["max_query_length"],
            batch_size=config.batch_size,
            max_batch_tokens=self.options["max_batch_tokens"],
            pad_id=pad_id,
            normalize=config.normalize,
            name=str(model_file),
            max_windows=self.options["max_windows"],
        )
        self.scale = self.pipeline.scale

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return self.pipeline.score_many([(query, texts)])[0]

    def score_many(self, requests: Sequence[Request], *, top_k: int | None = None) -> list[Scores]:
        return self.pipeline.score_many(requests)

    def _forward(self, batch: Batch) -> npt.NDArray[np.float32]:
        feed = {name: batch[name] for name in self.input_names}
        logits: npt.NDArray[np.float32] = self.session.run(None, feed)[0]
        return logits


def _locate(model: str, cache_dir: Path) -> Path:
    """The model folder: a path as given, or ``cache_dir/<name>`` (downloaded if allowed).

    A download is unpacked in a temporary folder inside ``cache_dir`` and renamed into place
    in one step, so a folder in the cache is always complete; when several processes download
    the same model at once, the first rename wins and the others use its folder.
    """
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
    offline = [v for v in OFFLINE_VARIABLES if os.environ.get(v, "").strip().lower() in TRUTHY]
    if offline:
        raise BackendError(f"{model!r} is not in {cache_dir} and {offline[0]} is set; {where}")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{model}.") as scratch:
            archive = Path(scratch) / "model.zip"
            url = FLASHRANK_URL.format(model)
            with (
                urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response,
                archive.open("wb") as out,
            ):
                shutil.copyfileobj(response, out, 1 << 20)
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(Path(scratch) / "unpacked")
            unpacked = Path(scratch) / "unpacked" / model
            if not unpacked.is_dir():
                raise BackendError(f"{url} holds no {model}/ folder; {where}")
            try:
                unpacked.rename(folder)
            except OSError:
                if not folder.is_dir():
                    raise
                logger.info("%s was downloaded by another process meanwhile; using it", folder)
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
    """The folder's tokenizer with FlashRank's special tokens; also the pad id and length limit."""
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
    limits = [tokenizer_config.get("model_max_length"), position_limit(config)]
    known = [int(limit) for limit in limits if isinstance(limit, int | float) and limit > 0]
    pad_id = config.get("pad_token_id")
    limit = min(known, default=512)
    return tokenizer, 0 if pad_id is None else int(pad_id), min(limit, MAX_TOKENS)


def _providers(chosen: list[str] | None) -> list[str]:
    providers = chosen or ["CPUExecutionProvider"]  # none given: ONNX Runtime's CPU
    available = set(ort.get_available_providers())
    missing = [p for p in providers if p not in available]
    if missing:
        raise ConfigurationError(
            f"ONNX Runtime providers {missing} are not available here; "
            f"available: {sorted(available)}"
        )
    return providers


def _session_options(options: Mapping[str, Any]) -> ort.SessionOptions:
    session = ort.SessionOptions()
    for name in ("intra_op_num_threads", "inter_op_num_threads"):
        if options[name] is not None:
            setattr(session, name, options[name])
    return session
