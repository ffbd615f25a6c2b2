"""Generative rerankers: a causal LM read at its last token, or one T5 decoder step.

A :class:`Family` is a small frozen preset, data rather than code: the prompt's pieces, the
answer tokens, the query cap, how ``max_length`` is counted and the padding side. It becomes a
:class:`~rerankit.pipelines.pair_encoder.PairTemplate`, so the pair-encoder pipeline does the
rest (each unique query and passage tokenized once, query cap, passage-side truncation, length-
sorted batches under a token budget, scores scattered back in input order).
:class:`GenerativeModel` loads the model and runs one padded batch: a causal LM with left
padding, position ids counted over real tokens and ``logits_to_keep=1`` (never a
full-vocabulary tensor per position); a T5 model with right padding, its attention mask and one
decoder step. Only the answer tokens' logits leave the model. Weights are float32 on CPU and
bfloat16 on CUDA (float16 overflows in some LLMs) unless ``dtype=`` says otherwise.

Scores: with two answer tokens (negative, positive), ``logit(positive) - logit(negative)``;
with one, its logit; ``normalize=True`` gives the sigmoid of that (for two answers, the softmax
probability of the positive one). BAAI's layer-wise rerankers (``bge-layerwise``,
``bge-lightweight``) have no answer token: a score head reads a chosen layer
(``cutoff_layer``), and their models are built from stock transformers classes by
:mod:`rerankit.pipelines.bge_layerwise` (no remote code runs); the score is that head's output.

The prompts are built from token ids, never from a chat template (rendering one drops a
trailing newline). Each family's pieces are tokenized as its authors tokenize them; where the
authors tokenize one string (Qwen3-Reranker's body, monoT5's input), the joints between pieces
are boundaries of the tokenizer's pre-tokenizer, so the ids are the same.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from tokenizers import Tokenizer
from torch.nn.attention import SDPBackend, sdpa_kernel
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedConfig,
)

from rerankit.backends._device import resolve_device, resolve_dtype
from rerankit.backends.base import HUB_OPTIONS
from rerankit.config import RerankerConfig
from rerankit.errors import BackendError, ConfigurationError
from rerankit.pipelines.bge_layerwise import Kind, load_layerwise, read_config
from rerankit.pipelines.pair_encoder import Batch, PairEncoderPipeline, PairTemplate

logger = logging.getLogger("rerankit")

Budget = Literal["total", "body", "flag"]

# torch's memory-efficient SDPA kernel scores some left-padded (masked) batches wrongly on CUDA
# (measured: torch 2.11 + transformers 5.17 on an H200, float32: a 449-token batch of two rows
# 1.7 off the unpadded score, batch 1 vs 16 up to 3.5 apart); without it, 1e-6.
CUDA_ATTENTION_KERNELS = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]

# Padded tokens per batch when max_batch_tokens is unset.
DEFAULT_MAX_BATCH_TOKENS = {"cpu": 4096}
DEFAULT_MAX_BATCH_TOKENS_ACCELERATOR = 16384

# FlagEmbedding's compress_layer default, used when compress_ratio is given without layers.
DEFAULT_COMPRESS_LAYERS = (8,)
# Files a hub snapshot of a layer-wise reranker needs (its *.py model code is never fetched).
SNAPSHOT_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "tokenizer*"]


@dataclass(frozen=True, slots=True)
class Family:
    """How one family of generative rerankers is prompted and scored.

    The input is ``[bos] + prefix + query + middle + passage + suffix + [eos]``: ``prefix``,
    ``middle`` and ``suffix`` are strings tokenized one by one; ``query`` and ``passage`` are
    the text put before and after each query and passage, tokenized with it as one string.
    ``{instruction}`` in ``query`` becomes ``instruction_format`` filled with the instruction
    (or nothing when there is none); ``instruction_format=None``: the family takes none.

    ``answers`` are (negative, positive) or (positive,) tokens, looked up as vocabulary tokens
    (``answer_lookup="token"``) or as the first id of the tokenized text (``"text"``). A
    ``layerwise`` family has none: its model (``"minicpm"`` or ``"gemma2"``) is built by
    :func:`~rerankit.pipelines.bge_layerwise.load_layerwise` and scores with per-layer heads;
    ``options`` names the backend options it takes (``cutoff_layer``, ...). ``bos``:
    ``"unless-pad"`` puts BOS first unless the tokenizer pads with it (FlagEmbedding's
    FlagLLMReranker), ``"always"`` puts it first regardless.
    ``query_share`` caps a query at ``max_length * n // d`` tokens, counting the text around it
    when ``cap_counts_text`` (as FlagEmbedding and mxbai-rerank cap ``"A: " + query``), else the
    query's own tokens (the authors cap nothing: the cap must never eat the prompt). ``budget``
    says what ``max_length`` counts: ``"total"`` the whole input; ``"body"`` the query, middle
    and passage (the prompt's prefix and suffix come on top); ``"flag"`` FlagEmbedding's rule,
    ``[bos] + query + middle + passage <= max_length + len(suffix)``, the suffix on top. Passages
    are cut to ``max_length`` tokens first. ``names`` (a regex) and ``architectures`` are how a
    model is recognised; a local folder whose name says nothing is recognised by its
    ``config.json`` when it has one of ``model_types`` and every key of ``config_keys`` (for
    checkpoints whose config is theirs alone).

    >>> QWEN3.answers, QWEN3.padding_side
    (('no', 'yes'), 'left')
    """

    name: str
    names: str
    architectures: tuple[str, ...]
    answers: tuple[str, ...]
    prefix: tuple[str, ...] = ()
    query: tuple[str, str] = ("", "")
    middle: tuple[str, ...] = ()
    passage: tuple[str, str] = ("", "")
    suffix: tuple[str, ...] = ()
    answer_lookup: Literal["token", "text"] = "token"
    bos: Literal["never", "unless-pad", "always"] = "never"
    eos: bool = False
    instruction: str | None = None
    instruction_format: str | None = None
    query_share: tuple[int, int] = (1, 2)
    cap_counts_text: bool = True
    budget: Budget = "total"
    padding_side: Literal["left", "right"] = "left"
    layerwise: Kind | None = None
    options: tuple[str, ...] = ()
    model_types: tuple[str, ...] = ()
    config_keys: tuple[str, ...] = ()


# Qwen3-Reranker, as its model card scores it: prefix and suffix tokenized on their own, the
# body "<Instruct>: ...\n<Query>: ...\n<Document>: ..." as one string (here three pieces whose
# joints are Qwen2 pre-tokenizer boundaries: "?\n" is one token, so the "\n" goes with the query).
QWEN3 = Family(
    name="qwen3",
    names=r"qwen3-reranker",
    architectures=("Qwen3ForCausalLM",),
    answers=("no", "yes"),
    prefix=(
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
        'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
        "<|im_end|>\n<|im_start|>user\n",
    ),
    query=("<Instruct>: {instruction}\n<Query>: ", "\n"),
    middle=("<Document>:",),
    passage=(" ", ""),
    suffix=("<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",),
    instruction="Given a web search query, retrieve relevant passages that answer the query",
    instruction_format="{instruction}",
    cap_counts_text=False,
)

# bge-reranker-v2-gemma, as FlagEmbedding's FlagLLMReranker scores it.
BGE_GEMMA = Family(
    name="bge-gemma",
    names=r"bge-reranker-v2-gemma",
    architectures=("GemmaForCausalLM",),
    answers=("Yes",),
    answer_lookup="text",
    bos="unless-pad",
    query=("A: ", ""),
    middle=("\n",),
    passage=("B: ", ""),
    suffix=(
        "\n",
        "Given a query A and a passage B, determine whether the passage contains an answer to "
        "the query by providing a prediction of either 'Yes' or 'No'.",
    ),
    query_share=(3, 4),
    budget="flag",
)

# mxbai-rerank-base-v2 / large-v2, as the mxbai-rerank package scores them.
MXBAI_V2 = Family(
    name="mxbai-v2",
    names=r"mxbai-rerank-(base|large)-v2",
    architectures=("Qwen2ForCausalLM",),
    answers=("0", "1"),
    answer_lookup="text",
    prefix=(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
        "assistant.<|im_end|>\n<|im_start|>user\n",
    ),
    query=("{instruction}query: ", ""),
    middle=("\n",),
    passage=("document: ", ""),
    suffix=(
        "\n",
        "You are a search relevance expert who evaluates how well documents match search "
        "queries. For each query-document pair, carefully analyze the semantic relationship "
        "between them, then provide your binary relevance judgment (0 for not relevant, 1 for "
        "relevant).\nRelevance:",
        "<|im_end|>\n<|im_start|>assistant\n",
    ),
    instruction_format="instruction: {instruction}\n",
    query_share=(3, 4),
    budget="body",
)

# bge-reranker-v2-minicpm-layerwise, as FlagEmbedding's LayerWiseFlagLLMReranker scores it: the
# bge-gemma layout with BOS always, scored by the head of cutoff_layer (default: the last layer).
BGE_LAYERWISE = Family(
    name="bge-layerwise",
    names=r"bge-reranker-v2-minicpm-layerwise",
    architectures=("LayerWiseMiniCPMForCausalLM",),
    answers=(),
    bos="always",
    query=("A: ", ""),
    middle=("\n",),
    passage=("B: ", ""),
    suffix=BGE_GEMMA.suffix,
    query_share=(3, 4),
    budget="flag",
    layerwise="minicpm",
    options=("cutoff_layer",),
    model_types=("minicpm",),
    config_keys=("start_layer", "head_multi", "scale_depth"),
)

# bge-reranker-v2.5-gemma2-lightweight, as FlagEmbedding's LightWeightFlagLLMReranker scores it:
# its own short prompt, right padding, optional token compression.
BGE_LIGHTWEIGHT = Family(
    name="bge-lightweight",
    names=r"bge-reranker-v2\.5-gemma2-lightweight",
    architectures=("CostWiseGemmaForCausalLM",),
    answers=(),
    bos="always",
    query=("A: ", ""),
    middle=("\n",),
    passage=("B: ", ""),
    suffix=("\n", "Predict whether passage B contains an answer to query A."),
    query_share=(3, 4),
    budget="flag",
    padding_side="right",
    layerwise="gemma2",
    options=("cutoff_layer", "compress_ratio", "compress_layers"),
    model_types=("cost_wise_gemma",),
    config_keys=("start_layer", "layer_sep", "layer_wise"),
)

CAUSAL_LM_FAMILIES: dict[str, Family] = {
    f.name: f for f in (QWEN3, BGE_GEMMA, BGE_LAYERWISE, BGE_LIGHTWEIGHT, MXBAI_V2)
}

# monoT5 and InRanker, as rerankers' T5Ranker (after InRanker) scores them.
MONOT5 = Family(
    name="monot5",
    names=r"mono-?t5|inranker",
    architectures=("T5ForConditionalGeneration",),
    answers=("▁false", "▁true"),
    query=("Query: ", ""),
    passage=("Document: ", ""),
    suffix=("Relevant:",),
    eos=True,
    padding_side="right",
    cap_counts_text=False,
)

# mT5 rerankers trained on (m)MARCO, which answer "yes" / "no".
MT5 = Family(
    name="mt5",
    names=r"mt5-.*(msmarco|mmarco|rerank)",
    architectures=("MT5ForConditionalGeneration",),
    answers=("▁no", "▁yes"),
    query=("Query: ", ""),
    passage=("Document: ", ""),
    suffix=("Relevant:",),
    eos=True,
    padding_side="right",
    cap_counts_text=False,
)

T5_FAMILIES: dict[str, Family] = {f.name: f for f in (MONOT5, MT5)}


def choose_family(model: str, given: str | None, families: Mapping[str, Family]) -> Family:
    """``families[given]``, else the family whose name pattern ``model`` matches.

    The folder name is tried before the whole path (a cached hub model's path holds its id);
    then a local folder's ``config.json`` (a family's ``model_types`` and ``config_keys``).
    """
    if given is not None:
        return families[given]
    name = model.strip().lower()
    for text in (Path(name).name, name):
        for family in families.values():
            if re.search(family.names, text):
                return family
    folder = Path(model).expanduser()
    config = read_config(folder) if (folder / "config.json").is_file() else {}
    for family in families.values():
        keys = set(family.config_keys)
        if config.get("model_type") in family.model_types and keys <= config.keys():
            return family
    raise ConfigurationError(
        f"cannot tell from its name or config which prompt family {model!r} uses; pass family= "
        f"one of {sorted(families)}"
    )


class GenerativeModel:
    """A causal-LM or T5 reranker, loaded and wired to the pair-encoder pipeline.

    ``seq2seq``: a T5 model (one decoder step), else a causal LM. ``inferred``: the family came
    from the model's name or config, so the checkpoint's architecture must be one the family
    runs on. ``hub`` holds the :data:`~rerankit.backends.base.HUB_OPTIONS`; the other options are
    the backends' (unset: the family's defaults). A layer-wise family's model is built natively
    from the folder's config and safetensors weights (``trust_remote_code`` is not needed).
    Checkpoints that would score noise are refused: a sequence classifier, or weights
    transformers would initialise randomly. The ``llm`` and ``t5`` backends build one:

    >>> from rerankit import Reranker
    >>> rr = Reranker("Qwen/Qwen3-Reranker-0.6B")  # doctest: +SKIP
    >>> rr.backend.model.pipeline.score_many([("what is DNA?", ["a molecule"])])  # doctest: +SKIP
    """

    def __init__(
        self,
        config: RerankerConfig,
        family: Family,
        *,
        seq2seq: bool,
        inferred: bool,
        hub: Mapping[str, Any],
        instruction: str | None = None,
        max_query_length: int | None = None,
        max_batch_tokens: int | None = None,
        cutoff_layer: int | None = None,
        compress_ratio: int | None = None,
        compress_layers: Sequence[int] | None = None,
    ) -> None:
        self.family = family
        self.seq2seq = seq2seq
        kind = "T5 reranker" if seq2seq else "causal-LM reranker"
        _check_layer_options(
            family,
            cutoff_layer=cutoff_layer,
            compress_ratio=compress_ratio,
            compress_layers=compress_layers,
        )
        self.device = resolve_device(config.device)
        self.dtype = _dtype(config.dtype, self.device)
        if family.layerwise is None:
            source: str | Path = config.model
            load_kwargs = {name: hub[name] for name in HUB_OPTIONS}
            try:
                model_config = AutoConfig.from_pretrained(config.model, **load_kwargs)
            except (OSError, ValueError) as exc:
                raise _load_error(kind, config.model, exc) from exc
            architectures = getattr(model_config, "architectures", None)
        else:
            source = model_folder(config.model, hub, kind)
            # A local snapshot, and no remote code; its config.json is no transformers model
            # type, so the tokenizer gets an empty config instead of parsing it.
            load_kwargs = {"config": PreTrainedConfig()}
            architectures = read_config(source).get("architectures")
        _check_architecture(config.model, family, architectures, inferred=inferred)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, **load_kwargs)
        except (OSError, ValueError) as exc:
            raise _load_error(kind, config.model, exc) from exc
        fast = getattr(tokenizer, "backend_tokenizer", None)
        if not isinstance(fast, Tokenizer):
            raise BackendError(f"{config.model!r} has no fast tokenizer (tokenizer.json)")
        # A copy: the pipeline turns its truncation and padding off.
        backend_tokenizer = Tokenizer.from_str(fast.to_str())
        template = build_template(
            family,
            backend_tokenizer,
            instruction=_instruction(family, instruction),
            bos_id=_bos_id(tokenizer, family),
            eos_id=tokenizer.eos_token_id,
        )
        self.answer_ids = answer_ids(family, backend_tokenizer, config.model)
        self._answers = torch.tensor(self.answer_ids, device=self.device)
        self._decoder_start = 0
        model: torch.nn.Module
        if family.layerwise is None:
            model = self._auto_model(config, model_config, kind, load_kwargs)
        else:
            ratio = 1 if compress_ratio is None else compress_ratio
            if compress_layers is None:
                compress_layers = DEFAULT_COMPRESS_LAYERS if ratio > 1 else ()
            model = load_layerwise(
                Path(source),
                family.layerwise,
                name=config.model,
                cutoff_layers=None if cutoff_layer is None else [cutoff_layer],
                prompt_length=len(template.suffix),
                dtype=self.dtype,
                compress_ratio=ratio,
                compress_layers=compress_layers,
            )
        self.model = model.to(device=self.device).eval()
        max_length = total_length(family, template, config.max_length)
        if max_length - template.reserved_tokens < 2:
            raise ConfigurationError(
                f"max_length={config.max_length} leaves no room for a query and a passage: "
                f"the {family.name!r} prompt of {config.model!r} takes "
                f"{template.reserved_tokens} tokens"
            )
        given = max_query_length is not None
        if max_query_length is None:
            numerator, denominator = family.query_share
            max_query_length = config.max_length * numerator // denominator
        if not family.cap_counts_text:  # the cap is the query's own: its prompt text comes on top
            max_query_length += sum(
                len(backend_tokenizer.encode(text, add_special_tokens=False).ids)
                for text in template.query_text
            )
        if not given:  # a default fits; a given cap that does not is the user's error
            max_query_length = min(max_query_length, max_length - template.reserved_tokens - 1)
        if max_batch_tokens is None:
            max_batch_tokens = DEFAULT_MAX_BATCH_TOKENS.get(
                self.device.type, DEFAULT_MAX_BATCH_TOKENS_ACCELERATOR
            )
        pad_id = tokenizer.pad_token_id
        self.pipeline = PairEncoderPipeline(
            backend_tokenizer,
            self.forward,
            max_length=max_length,
            max_query_length=max_query_length,
            max_passage_length=config.max_length,
            batch_size=config.batch_size,
            max_batch_tokens=max_batch_tokens,
            pad_id=0 if pad_id is None else int(pad_id),  # padding is masked: any id works
            normalize=config.normalize,
            name=config.model,
            template=template,
        )

    def _auto_model(
        self, config: RerankerConfig, model_config: Any, kind: str, load_kwargs: dict[str, Any]
    ) -> torch.nn.Module:
        """The checkpoint as transformers' causal-LM or seq2seq class, every weight trained."""
        try:
            auto = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
            # (model, loading info): transformers' annotation names the model alone.
            loaded: Any = auto.from_pretrained(
                config.model,
                config=model_config,
                dtype=self.dtype,
                output_loading_info=True,
                **load_kwargs,
            )
        except (OSError, ValueError) as exc:
            raise _load_error(kind, config.model, exc) from exc
        model, loading = loaded
        untrained = sorted(loading["missing_keys"])
        if untrained:
            raise ConfigurationError(
                f"{config.model!r} has no trained weights for {untrained}: transformers would "
                f"initialise them randomly and every score would be noise. Is it a {kind}?"
            )
        if self.seq2seq:
            start = model.config.decoder_start_token_id
            if start is None:
                raise BackendError(f"{config.model!r} has no decoder_start_token_id in its config")
            self._decoder_start = int(start)
        elif "logits_to_keep" not in inspect.signature(model.forward).parameters:
            raise BackendError(
                f"{config.model!r}: this transformers version's model takes no logits_to_keep "
                "(it would compute a full-vocabulary tensor per position); upgrade transformers"
            )
        result: torch.nn.Module = model.to(dtype=self.dtype)
        return result

    def forward(self, batch: Batch) -> npt.NDArray[np.float32]:
        """The answer tokens' logits (layer-wise: the head's scores) for one padded batch."""
        input_ids = torch.from_numpy(batch["input_ids"]).to(self.device)
        attention_mask = torch.from_numpy(batch["attention_mask"]).to(self.device)
        kernels: AbstractContextManager[object] = nullcontext()
        if self.device.type == "cuda" and not self.seq2seq:
            kernels = sdpa_kernel(CUDA_ATTENTION_KERNELS)
        with torch.inference_mode(), kernels:
            if self.family.layerwise is not None:
                scores = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    passage_mask=torch.from_numpy(batch["token_type_ids"]).to(self.device),
                )
            elif self.seq2seq:
                decoder_input_ids = torch.full(
                    (input_ids.shape[0], 1),
                    self._decoder_start,
                    dtype=torch.long,
                    device=self.device,
                )
                logits = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    decoder_input_ids=decoder_input_ids,
                    use_cache=False,
                ).logits
                scores = logits[:, -1, :].index_select(1, self._answers)
            else:
                # Positions count real tokens only: a row's numbers do not depend on how much
                # left padding its batch gave it.
                position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
                logits = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    logits_to_keep=1,
                    use_cache=False,
                ).logits
                scores = logits[:, -1, :].index_select(1, self._answers)
        result: npt.NDArray[np.float32] = scores.float().cpu().numpy()
        return result


def model_folder(model: str, hub: Mapping[str, Any], kind: str) -> Path:
    """A local folder as given, else the hub snapshot's config, tokenizer and weights.

    Offline (``HF_HUB_OFFLINE``), only the HF cache is read.
    """
    folder = Path(model).expanduser()
    if folder.is_dir():
        return folder
    from huggingface_hub import is_offline_mode, snapshot_download

    try:
        return Path(
            snapshot_download(
                model,
                revision=hub["revision"],
                cache_dir=hub["cache_dir"],
                allow_patterns=SNAPSHOT_FILES,
                local_files_only=is_offline_mode(),
            )
        )
    except (OSError, ValueError) as exc:  # hub errors are OSErrors; a bad repo id, ValueError
        raise _load_error(kind, model, exc) from exc


def build_template(
    family: Family,
    tokenizer: Tokenizer,
    *,
    instruction: str | None,
    bos_id: int | None = None,
    eos_id: int | None = None,
) -> PairTemplate:
    """The family's prompt as token ids around each query and passage.

    ``bos_id`` goes first when the family asks for it and it is not None (FlagLLMReranker leaves
    it out when the tokenizer has none or pads with it: see :func:`_bos_id`). Passage tokens
    have type id 1, the rest 0 (the lightweight model pools the passage).
    """

    def ids(pieces: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(i for p in pieces for i in tokenizer.encode(p, add_special_tokens=False).ids)

    if family.eos and eos_id is None:
        raise BackendError(f"the {family.name!r} prompt ends with EOS; the tokenizer has none")
    if family.bos == "always" and bos_id is None:
        raise BackendError(f"the {family.name!r} prompt starts with BOS; the tokenizer has none")
    rendered = ""
    if instruction and family.instruction_format is not None:  # "" is no instruction (mxbai)
        rendered = family.instruction_format.replace("{instruction}", instruction)
    before, after = family.query
    return PairTemplate(
        prefix=((bos_id,) if family.bos != "never" and bos_id is not None else ())
        + ids(family.prefix),
        middle=ids(family.middle),
        suffix=ids(family.suffix) + ((eos_id,) if family.eos and eos_id is not None else ()),
        passage_type=1,
        padding_side=family.padding_side,
        query_text=(before.replace("{instruction}", rendered), after),
        passage_text=family.passage,
    )


def answer_ids(family: Family, tokenizer: Tokenizer, model: str) -> list[int]:
    """The vocabulary ids of the family's answer tokens; a BackendError if one is missing."""
    found = []
    for answer in family.answers:
        if family.answer_lookup == "text":
            encoded = tokenizer.encode(answer, add_special_tokens=False).ids
            token_id = encoded[0] if encoded else None
        else:
            token_id = tokenizer.token_to_id(answer)
        if token_id is None:
            raise BackendError(
                f"{model!r}'s tokenizer has no token {answer!r}, which the {family.name!r} "
                "family answers with; pass the right family="
            )
        found.append(token_id)
    return found


def total_length(family: Family, template: PairTemplate, max_length: int) -> int:
    """The longest input, prompt included, that ``max_length`` allows under the family's rule."""
    if family.budget == "body":
        return max_length + len(template.prefix) + len(template.suffix)
    if family.budget == "flag":
        return max_length + 2 * len(template.suffix)
    return max_length


def _load_error(kind: str, model: str, exc: Exception) -> BackendError:
    return BackendError(
        f"could not load {kind} {model!r}: {str(exc).rstrip('.')}. Pass a local folder or a "
        "Hugging Face hub id; offline, the model must already be in the HF cache."
    )


def _instruction(family: Family, given: str | None) -> str | None:
    if given is not None and family.instruction_format is None:
        raise ConfigurationError(
            f"the {family.name!r} family takes no instruction, got instruction={given!r}"
        )
    return family.instruction if given is None else given


def _bos_id(tokenizer: Any, family: Family) -> int | None:
    """The tokenizer's BOS id; None if it has none, or pads with it under ``"unless-pad"``."""
    bos, pad = tokenizer.bos_token_id, tokenizer.pad_token_id
    if bos is None or (family.bos == "unless-pad" and bos == pad):
        return None
    return int(bos)


def _dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """``dtype`` if given; else bfloat16 on CUDA (float16 overflows in some LLMs), else fp32."""
    if dtype is None and device.type == "cuda":
        return torch.bfloat16
    return resolve_dtype(dtype, device)


def _check_layer_options(
    family: Family,
    *,
    cutoff_layer: int | None,
    compress_ratio: int | None,
    compress_layers: Sequence[int] | None,
) -> None:
    given = {
        "cutoff_layer": cutoff_layer,
        "compress_ratio": compress_ratio,
        "compress_layers": compress_layers,
    }
    foreign = [name for name, value in given.items() if value is not None]
    foreign = [name for name in foreign if name not in family.options]
    if foreign:
        takers = sorted(
            f.name for f in CAUSAL_LM_FAMILIES.values() if set(foreign) <= set(f.options)
        )
        raise ConfigurationError(
            f"the {family.name!r} family takes no {', '.join(foreign)} (only {takers} do)"
        )
    if compress_layers is not None and compress_ratio is None:
        raise ConfigurationError(
            f"compress_layers={list(compress_layers)} compresses nothing without compress_ratio "
            "(tokens pooled per group, >= 2)"
        )


def _check_architecture(model: str, family: Family, architectures: Any, *, inferred: bool) -> None:
    architectures = [a for a in architectures or [] if isinstance(a, str)]
    if any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ConfigurationError(
            f"{model!r} is a sequence classifier ({architectures}), not a generative reranker; "
            "use backend='cross-encoder'"
        )
    if inferred and not set(architectures) & set(family.architectures):
        raise ConfigurationError(
            f"{model!r} is named like a {family.name!r} reranker, which is a "
            f"{' or '.join(family.architectures)}, but its config says {architectures}; pass "
            f"family={family.name!r} to use that prompt anyway"
        )
