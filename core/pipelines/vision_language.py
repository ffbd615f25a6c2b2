"""Vision-language rerankers: a Qwen-VL causal LM read at the last token, images in the prompt.

A :class:`VisionFamily` is a frozen preset, data rather than code: the prompt (a string with
``{query}``, ``{document}`` and ``{instruction}`` slots), how a document's image and text fill
``{document}``, which documents the family takes, the answer tokens, or a score head.
:class:`VisionLanguagePipeline` does what a Qwen-VL processor does for images, without
``AutoProcessor`` (whose video processor needs torchvision): the model's PIL image processor
resizes each image within ``[min_pixels, max_pixels]`` (its own ``smart_resize``: the aspect
ratio is kept and nothing is cropped) and cuts it into patches; the prompt's image pad token is
repeated once per merged patch; ``pixel_values``, ``image_grid_thw`` and the multimodal token
types go to the model. Then it

1. renders each (query, document) prompt once, counting image tokens from the image's header
   (an image is decoded only when its batch runs, once however many of its rows show it);
2. caps the query at ``max_query_length`` tokens and the document text to fit ``max_length``
   text tokens (image tokens come on top; truncations are counted);
3. groups pairs into length-sorted batches under ``batch_size`` and ``max_batch_tokens`` (image
   tokens included), left-pads them, and gives every row the multimodal RoPE positions of its
   real tokens, so a score does not depend on its batch;
4. reads the answer tokens' logits at the last position (``logits_to_keep=1``), or the score
   head on the last hidden state.

Scores: ``logit(positive) - logit(negative)``, or the head's output; ``normalize=True`` gives
its sigmoid (for two answers, the softmax probability of the positive one).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.attention import sdpa_kernel
from transformers import AutoTokenizer

from rerankit._optional import require
from rerankit.backends._device import resolve_device, resolve_dtype
from rerankit.backends.base import HUB_OPTIONS, Passage
from rerankit.batching import length_sorted_batches
from rerankit.config import RerankerConfig
from rerankit.errors import BackendError, ConfigurationError, InvalidInputError
from rerankit.images import (
    ImagePassage,
    ImagePolicy,
    check_pixels,
    image_key,
    read_bytes,
    read_image,
    read_size,
)
from rerankit.pipelines.bge_layerwise import read_config
from rerankit.pipelines.generative import CUDA_ATTENTION_KERNELS
from rerankit.types import Scores

logger = logging.getLogger("rerankit")

ADAPTER_CONFIG = "adapter_config.json"
# Padded tokens per batch (image tokens included) when max_batch_tokens is unset.
DEFAULT_MAX_BATCH_TOKENS = 2048
DEFAULT_MAX_BATCH_TOKENS_ACCELERATOR = 32768
# The Qwen-VL chat markup an image takes in a prompt.
IMAGE_PAD = "<|image_pad|>"
IMAGE_BLOCK = f"<|vision_start|>{IMAGE_PAD}<|vision_end|>"
# The slots of a family's prompt and document templates.
SLOT = re.compile(r"(\{query\}|\{document\}|\{instruction\}|\{image\}|\{text\})")


@dataclass(frozen=True, slots=True)
class VisionFamily:
    """How one family of vision-language rerankers is prompted and scored.

    ``prompt`` is the whole input as text with ``{query}``, ``{document}`` and (optionally)
    ``{instruction}`` slots; ``image_document`` and ``text_document`` fill ``{document}`` for a
    document with an image (``{image}`` is the image block, ``{text}`` its caption or OCR, ``""``
    when it has none) and for a text-only one; ``None``: the family does not take that kind.
    ``instruction_format`` wraps the instruction (``None``: the family takes none).
    ``answers`` are the (negative, positive) vocabulary tokens read at the last position; a
    family with ``head`` instead reads the last hidden state through that score head (its
    weights named ``head`` in the checkpoint), minus ``bias``. ``suffix_ids`` are token ids put
    after the tokenized prompt. ``names`` (a regex) and ``architectures`` recognise a
    model. ``max_pixels`` / ``min_pixels``: the family's default pixel budget per
    image (``None``: the model's image processor's own).
    """

    name: str
    names: str
    architectures: tuple[str, ...]
    prompt: str
    image_document: str | None
    text_document: str | None
    answers: tuple[str, ...] = ()
    head: str | None = None
    instruction: str | None = None
    instruction_format: str | None = None
    suffix_ids: tuple[int, ...] = ()
    bias: float = 0.0
    max_pixels: int | None = None
    min_pixels: int | None = None

    def takes(self, passage: Passage) -> bool:
        """Whether this family can score ``passage``."""
        template = self.image_document if isinstance(passage, ImagePassage) else self.text_document
        return template is not None


@dataclass(frozen=True, slots=True)
class _Encoded:
    """One (query, document) prompt as ids, its image's key (or None), and whether it was cut."""

    ids: list[int]
    image: Any  # the image's key in the call's image table, or None
    truncated: bool


class VisionLanguagePipeline:
    """Scores (query, text-or-image) pairs with a Qwen-VL model in shared, left-padded batches.

    ``model`` is the ``...ForConditionalGeneration`` (or, for a ``head`` family, its inner
    model), ``score_head`` the head for ``head`` families. ``image_processor`` is the model's
    PIL image processor. Thread-safe: one call runs at a time.
    """

    def __init__(
        self,
        *,
        family: VisionFamily,
        model: torch.nn.Module,
        tokenizer: Any,
        image_processor: Any,
        score_head: Callable[[torch.Tensor], torch.Tensor] | None,
        answer_ids: Sequence[int],
        device: torch.device,
        dtype: torch.dtype,
        instruction: str | None,
        max_length: int,
        max_query_length: int,
        max_pixels: int | None,
        min_pixels: int | None,
        batch_size: int,
        max_batch_tokens: int,
        normalize: bool,
        image_policy: ImagePolicy,
        name: str,
    ) -> None:
        self.family = family
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.score_head = score_head
        self.device = device
        self.dtype = dtype
        self.max_length = max_length
        self.max_query_length = max_query_length
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.normalize = normalize
        self.image_policy = image_policy
        self.name = name
        self._answers = torch.tensor(list(answer_ids), device=device)
        self._lock = threading.Lock()
        self.image_pad_id = _token_id(tokenizer, IMAGE_PAD, name)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        size = dict(image_processor.size)
        smallest = min_pixels or size.get("shortest_edge")
        largest = max_pixels or size.get("longest_edge")
        if not smallest or not largest or smallest > largest:
            raise ConfigurationError(
                f"{name!r}: min_pixels={smallest} and max_pixels={largest} must be set and "
                "min_pixels <= max_pixels"
            )
        self.min_pixels, self.max_pixels = int(smallest), int(largest)
        self.merge = int(image_processor.merge_size)
        self.patch = int(image_processor.patch_size)
        rendered = ""
        if instruction and family.instruction_format is not None:
            rendered = family.instruction_format.replace("{instruction}", instruction)
        self.instruction = rendered
        self.specials = _special_strings(tokenizer)
        smallest_document = "" if family.text_document is not None else IMAGE_PAD
        fixed = len(self._tokenize(self._pieces("", smallest_document, "", image_tokens=1)))
        if max_length - fixed < 2:
            raise ConfigurationError(
                f"max_length={max_length} leaves no room for a query and a document: the "
                f"{family.name!r} prompt of {name!r} takes {fixed} tokens"
            )

    def score_many(self, requests: Sequence[tuple[str, Sequence[Passage]]]) -> list[Scores]:
        """One :class:`Scores` per request, in order."""
        with self._lock:
            return self._score_many(requests)

    def _score_many(self, requests: Sequence[tuple[str, Sequence[Passage]]]) -> list[Scores]:
        self._check_documents(requests)
        images: dict[Any, _Image] = {}
        rooms: dict[tuple[str, str], int] = {}
        encoded: list[_Encoded] = []
        for query, passages in requests:
            query = self._cap(query, self.max_query_length)[0]
            for passage in passages:
                encoded.append(self._encode(query, passage, images, rooms))
        values = np.zeros(len(encoded), dtype=np.float64)
        batches = length_sorted_batches(
            [len(e.ids) for e in encoded],
            max_batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
        )
        for batch in batches:
            logits = self._forward([encoded[i] for i in batch], images)
            values[batch] = logits
        if self.normalize:
            values = np.exp(-np.logaddexp(0.0, -values))
        results, start = [], 0
        for _, passages in requests:
            part = encoded[start : start + len(passages)]
            results.append(
                Scores(
                    values=values[start : start + len(passages)].tolist(),
                    truncated=sum(e.truncated for e in part),
                    max_tokens=self.max_length,
                )
            )
            start += len(passages)
        return results

    def _check_documents(self, requests: Sequence[tuple[str, Sequence[Passage]]]) -> None:
        for number, (_, passages) in enumerate(requests):
            for position, passage in enumerate(passages):
                if not self.family.takes(passage):
                    kind, other = (
                        ("an image", "text")
                        if isinstance(passage, ImagePassage)
                        else ("a text", "image")
                    )
                    raise InvalidInputError(
                        f"request {number}, documents[{position}] is {kind} document and the "
                        f"{self.family.name!r} family of {self.name!r} ranks {other} documents "
                        "only; rank the two kinds with separate rerankers"
                    )

    def _cap(self, text: str, limit: int) -> tuple[str, bool]:
        """``text`` cut to its first ``limit`` tokens (at a character offset), and whether cut."""
        encoding = self.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True
        )
        offsets = encoding["offset_mapping"]
        if len(offsets) <= limit:
            return text, False
        return text[: offsets[limit - 1][1]] if limit > 0 else "", True

    def _encode(
        self,
        query: str,
        passage: Passage,
        images: dict[Any, _Image],
        rooms: dict[tuple[str, str], int],
    ) -> _Encoded:
        """One pair's ids. ``images`` and ``rooms`` (text tokens left beside a query's prompt)
        are shared by the pairs of one call, so each is worked out once."""
        if isinstance(passage, ImagePassage):
            key = image_key(passage.image)
            if key not in images:
                images[key] = _Image.open(passage.image, self.image_policy)
            tokens = self._image_tokens(images[key].size)
            template, text = self.family.image_document, passage.text
        else:
            key, tokens, template, text = None, 0, self.family.text_document, passage
        assert template is not None  # checked by _check_documents
        truncated = False
        if text and "{text}" in template:
            if (query, template) not in rooms:
                fixed = self._tokenize(self._pieces(query, template, "", image_tokens=1))
                rooms[query, template] = max(self.max_length - len(fixed), 0)
            text, truncated = self._cap(text, rooms[query, template])
        ids = self._tokenize(self._pieces(query, template, text, image_tokens=tokens))
        if ids.count(self.image_pad_id) != tokens:
            raise BackendError(
                f"{self.name!r}: a prompt holds {ids.count(self.image_pad_id)} image tokens for "
                f"an image of {tokens}; the {self.family.name!r} prompt is not a Qwen-VL one"
            )
        return _Encoded(ids + list(self.family.suffix_ids), key, truncated)

    def _pieces(
        self, query: str, template: str, text: str, *, image_tokens: int
    ) -> list[tuple[str, bool]]:
        """The prompt as (text, written by the caller) pieces, in order.

        Built piece by piece, never by substituting into caller text: a query or document
        holding ``{document}`` or ``<|image_pad|>`` stays text.
        """
        block = IMAGE_BLOCK.replace(IMAGE_PAD, IMAGE_PAD * image_tokens)
        values = {"{query}": query, "{instruction}": self.instruction, "{text}": text}
        pieces: list[tuple[str, bool]] = []
        for part in SLOT.split(self.family.prompt):
            if part == "{document}":
                for inner in SLOT.split(template):
                    if inner == "{image}":
                        pieces.append((block, False))
                    elif inner in values:
                        pieces.append((values[inner], True))
                    else:
                        pieces.append((inner, False))
            elif part in values:
                pieces.append((values[part], True))
            else:
                pieces.append((part, False))
        return [(piece, mine) for piece, mine in pieces if piece]

    def _tokenize(self, pieces: list[tuple[str, bool]]) -> list[int]:
        """The ids of the joined pieces, as the model's authors tokenize the whole prompt.

        When caller text holds one of the tokenizer's special tokens (``<|im_end|>``, ...),
        each piece is tokenized on its own and the caller's pieces as plain text, so that it
        cannot end the prompt early or add image tokens.
        """
        if not any(special in piece for piece, mine in pieces if mine for special in self.specials):
            return self._ids("".join(piece for piece, _ in pieces))
        ids: list[int] = []
        for piece, mine in pieces:
            encoded = self.tokenizer(piece, add_special_tokens=False, split_special_tokens=mine)
            ids.extend(encoded["input_ids"])
        return ids

    def _ids(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def _image_tokens(self, size: tuple[int, int]) -> int:
        """Tokens an image of ``size`` (width, height) becomes after resizing and merging."""
        width, height = size
        resized_height, resized_width = _smart_resize(
            height,
            width,
            factor=self.patch * self.merge,
            min_pixels=self.min_pixels,
            max_pixels=self.max_pixels,
            name=self.name,
        )
        return (resized_height // self.patch) * (resized_width // self.patch) // self.merge**2

    def _forward(self, rows: list[_Encoded], images: Mapping[Any, _Image]) -> np.ndarray:
        longest = max(len(row.ids) for row in rows)
        input_ids = torch.full((len(rows), longest), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, row in enumerate(rows):  # left padding: every row ends at the last position
            input_ids[i, longest - len(row.ids) :] = torch.tensor(row.ids)
            attention_mask[i, longest - len(row.ids) :] = 1
        token_types = (input_ids == self.image_pad_id).long() * attention_mask
        inputs: dict[str, Any] = {}
        keys = [row.image for row in rows if row.image is not None]
        if keys:
            inputs = self._pixels(keys, images)
        input_ids = input_ids.to(self.device)
        attention_mask = attention_mask.to(self.device)
        token_types = token_types.to(self.device)
        kernels: AbstractContextManager[object] = nullcontext()
        if self.device.type == "cuda":  # as for text LLMs: no memory-efficient SDPA kernel
            kernels = sdpa_kernel(CUDA_ATTENTION_KERNELS)
        with torch.inference_mode(), kernels:
            positions = self._rope_model().get_rope_index(
                input_ids,
                mm_token_type_ids=token_types,
                image_grid_thw=inputs.get("image_grid_thw"),
                attention_mask=attention_mask,
            )[0]
            if self.score_head is None:
                logits = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=positions,
                    mm_token_type_ids=token_types,
                    logits_to_keep=1,
                    use_cache=False,
                    **inputs,
                ).logits[:, -1, :]
                answers = logits.index_select(1, self._answers).float()
                scores = answers[:, 1] - answers[:, 0]
            else:
                hidden = self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=positions,
                    mm_token_type_ids=token_types,
                    use_cache=False,
                    **inputs,
                ).last_hidden_state[:, -1, :]
                scores = self.score_head(hidden).float().reshape(-1) - self.family.bias
        result: np.ndarray = scores.cpu().numpy().astype(np.float64)
        return result

    def _pixels(self, keys: list[Any], images: Mapping[Any, _Image]) -> dict[str, torch.Tensor]:
        """``pixel_values`` and ``image_grid_thw`` of a batch's images, in row order.

        Each distinct image is decoded and processed once, however many rows show it.
        """
        unique = list(dict.fromkeys(keys))
        processed = self.image_processor(
            images=[images[key].decode(self.image_policy) for key in unique],
            size={"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            return_tensors="pt",
        )
        grids = processed["image_grid_thw"]
        expected = [self._image_tokens(images[key].size) for key in unique]
        if [int(t) for t in grids.prod(dim=1) // self.merge**2] != expected:
            raise BackendError(
                f"{self.name!r}: the image processor resized images to {grids.tolist()}, not to "
                "the sizes their prompts were built for"
            )
        patches = processed["pixel_values"].split(grids.prod(dim=1).tolist())
        where = {key: i for i, key in enumerate(unique)}
        order = [where[key] for key in keys]
        return {
            "pixel_values": torch.cat([patches[i] for i in order]).to(self.device, self.dtype),
            "image_grid_thw": grids[order].to(self.device),
        }

    def _rope_model(self) -> Any:
        """The module that computes multimodal RoPE positions (the inner ``...VLModel``)."""
        inner = getattr(self.model, "model", self.model)
        if not hasattr(inner, "get_rope_index"):
            raise BackendError(f"{self.name!r} has no multimodal RoPE (get_rope_index)")
        return inner


class _Image:
    """An image of one call: its encoded bytes (or PIL object) and size, decoded on demand."""

    def __init__(self, source: Any, size: tuple[int, int], data: bytes | None) -> None:
        self.source = source
        self.size = size
        self.data = data

    @classmethod
    def open(cls, source: Any, policy: ImagePolicy) -> _Image:
        """Read ``source``'s bytes and header (its size); the pixels are not decoded."""
        from PIL import Image

        if isinstance(source, Image.Image):
            check_pixels(source.size, source)
            return cls(source, source.size, None)
        data = read_bytes(source, policy)
        size = read_size(data, source)
        return cls(source, size, data)

    def decode(self, policy: ImagePolicy) -> Any:
        return read_image(self.source if self.data is None else self.data, policy)


def _smart_resize(
    height: int, width: int, *, factor: int, min_pixels: int, max_pixels: int, name: str
) -> tuple[int, int]:
    """The size Qwen-VL image processors resize to; an error for an absurd aspect ratio."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    try:
        resized: tuple[int, int] = smart_resize(
            height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels
        )
    except ValueError as exc:
        raise InvalidInputError(f"a {width}x{height} image cannot go to {name!r}: {exc}") from None
    return resized


def _special_strings(tokenizer: Any) -> tuple[str, ...]:
    """The tokenizer's special and added tokens as text (what caller text must not become)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    found = {str(getattr(token, "content", token)) for token in added.values()}
    found.update(str(token) for token in getattr(tokenizer, "all_special_tokens", []))
    return tuple(sorted(token for token in found if token))


def _token_id(tokenizer: Any, token: str, name: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise BackendError(f"{name!r}'s tokenizer has no {token!r} token; is it a Qwen-VL model?")
    return int(token_id)


# lightonai/MonoQwen2-VL-v0.1, as rerankers' MonoVLMRanker scores it: Qwen2-VL's chat template
# (its default system turn), the page image, then the question. It reads the image only: a
# caption or OCR text on an image document is not part of its prompt.
MONOVLM = VisionFamily(
    name="monovlm",
    names=r"monoqwen2?-vl|monovlm",
    architectures=("Qwen2VLForConditionalGeneration",),
    prompt=(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "{document}Assert the relevance of the previous image document to the following query, "
        "answer True or False. The query is: {query}<|im_end|>\n<|im_start|>assistant\n"
    ),
    image_document="{image}",
    text_document=None,
    answers=("False", "True"),
)

# Qwen3-VL-Reranker (2B, 8B), as its authors' Qwen3VLReranker and sentence-transformers score it:
# a system turn, then the instruction, the query and the document (image, then its text).
QWEN3_VL = VisionFamily(
    name="qwen3-vl",
    names=r"qwen3-vl-reranker",
    architectures=("Qwen3VLForConditionalGeneration",),
    prompt=(
        "<|im_start|>system\nJudge whether the Document meets the requirements based on the "
        'Query and the Instruct provided. Note that the answer can only be "yes" or "no".'
        "<|im_end|>\n<|im_start|>user\n<Instruct>: {instruction}<Query>:{query}\n"
        "<Document>:{document}<|im_end|>\n<|im_start|>assistant\n"
    ),
    image_document="{image}{text}",
    text_document="{text}",
    answers=("no", "yes"),
    instruction="Given a search query, retrieve relevant candidates that answer the query.",
    instruction_format="{instruction}",
    max_pixels=1800 * 32 * 32,
    min_pixels=4 * 32 * 32,
)

# jina-reranker-m0 (CC-BY-NC-4.0), as its modeling.py scores it: document first, then the query,
# then token 100, read by an MLP head on the last hidden state; its sigmoid is taken after
# subtracting 2.65, so the raw score here is head - 2.65. It runs on stock transformers classes
# with the head's weights read from the checkpoint: its remote code is never run.
JINA_M0 = VisionFamily(
    name="jina-m0",
    names=r"jina-reranker-m0",
    architectures=("JinaVLForRanking",),
    prompt="{document}\n**Query**:\n{query}",
    image_document="**Document**:\n{image}",
    text_document="**Document**:\n{text}",
    head="score",
    suffix_ids=(100,),
    bias=2.65,
    max_pixels=602112,
    min_pixels=3136,
)

VISION_FAMILIES: dict[str, VisionFamily] = {f.name: f for f in (MONOVLM, QWEN3_VL, JINA_M0)}


def choose_vision_family(model: str, given: str | None) -> VisionFamily:
    """``VISION_FAMILIES[given]``, else the family whose name pattern or config fits ``model``."""
    if given is not None:
        return VISION_FAMILIES[given]
    name = model.strip().lower()
    for text in (Path(name).name, name):
        for family in VISION_FAMILIES.values():
            if re.search(family.names, text):
                return family
    folder = Path(model).expanduser()
    config = read_config(folder) if (folder / "config.json").is_file() else {}
    architectures = set(config.get("architectures") or [])
    for family in VISION_FAMILIES.values():
        if architectures & set(family.architectures) and family is not MONOVLM:
            return family
    raise ConfigurationError(
        f"cannot tell from its name or config which vision-language family {model!r} is; pass "
        f"family= one of {sorted(VISION_FAMILIES)}"
    )


def load_vision_language(
    config: RerankerConfig,
    family: VisionFamily,
    *,
    inferred: bool,
    options: Mapping[str, Any],
) -> VisionLanguagePipeline:
    """Load ``config.model`` (a folder, a hub id, or a LoRA adapter over one) for ``family``.

    Checkpoints that would score noise are refused: weights transformers would initialise
    randomly, or a head family's checkpoint without the head. ``options`` are the ``vlm``
    backend's.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText
    from transformers.utils import logging as transformers_logging

    hub = {name: options[name] for name in HUB_OPTIONS}
    adapter = _adapter_config(config.model, hub)
    base = config.model if adapter is None else str(adapter["base_model_name_or_path"])
    try:
        model_config = AutoConfig.from_pretrained(base, **hub)
    except (OSError, ValueError) as exc:
        raise _load_error(base, exc) from exc
    architectures = list(getattr(model_config, "architectures", None) or [])
    if inferred and adapter is None and not set(architectures) & set(family.architectures):
        raise ConfigurationError(
            f"{config.model!r} is named like a {family.name!r} reranker, which is a "
            f"{' or '.join(family.architectures)}, but its config says {architectures}; pass "
            f"family={family.name!r} to use that prompt anyway"
        )
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype, device) if device.type != "cuda" else _cuda_dtype(config)
    verbosity = transformers_logging.get_verbosity()
    if family.head is not None:  # its head's weights are "unexpected" here: they load below
        transformers_logging.set_verbosity(logging.ERROR)
    try:
        loaded: Any = AutoModelForImageTextToText.from_pretrained(
            base,
            config=model_config,
            dtype=dtype,
            attn_implementation="sdpa",
            output_loading_info=True,
            **hub,
        )
    except (OSError, ValueError) as exc:
        raise _load_error(base, exc) from exc
    finally:
        transformers_logging.set_verbosity(verbosity)
    model, loading = loaded
    untrained = sorted(
        key
        for key in loading["missing_keys"]
        if not (family.head is not None and key.startswith("lm_head."))  # a head family's
    )
    if untrained:
        raise ConfigurationError(
            f"{base!r} has no trained weights for {untrained}: transformers would initialise "
            "them randomly and every score would be noise. Is it a vision-language reranker?"
        )
    if adapter is not None:
        model = _with_adapter(model, config.model, hub)
    head = None if family.head is None else _score_head(base, family.head, hub, dtype)
    processor_source = options["processor"] or _processor_source(config.model, base, hub)
    try:
        tokenizer = AutoTokenizer.from_pretrained(processor_source, **hub)
        image_processor = AutoImageProcessor.from_pretrained(  # type: ignore[no-untyped-call]
            processor_source, backend="pil", **hub
        )
    except (OSError, ValueError, ImportError) as exc:
        raise _load_error(processor_source, exc) from exc
    answer_ids = [_token_id(tokenizer, answer, config.model) for answer in family.answers]
    instruction = options["instruction"]
    if instruction is not None and family.instruction_format is None:
        raise ConfigurationError(
            f"the {family.name!r} family takes no instruction, got instruction={instruction!r}"
        )
    max_query_length = options["max_query_length"] or config.max_length // 2
    max_batch_tokens = options["max_batch_tokens"] or (
        DEFAULT_MAX_BATCH_TOKENS if device.type == "cpu" else DEFAULT_MAX_BATCH_TOKENS_ACCELERATOR
    )
    model = model.to(device).eval()
    return VisionLanguagePipeline(
        family=family,
        model=model.model if head is not None else model,
        tokenizer=tokenizer,
        image_processor=image_processor,
        score_head=None if head is None else head.to(device).eval(),
        answer_ids=answer_ids,
        device=device,
        dtype=dtype,
        instruction=family.instruction if instruction is None else instruction,
        max_length=config.max_length,
        max_query_length=max_query_length,
        max_pixels=options["max_pixels"] or family.max_pixels,
        min_pixels=options["min_pixels"] or family.min_pixels,
        batch_size=config.batch_size,
        max_batch_tokens=max_batch_tokens,
        normalize=config.normalize,
        image_policy=ImagePolicy(
            allow_urls=options["fetch_images"],
            timeout=options["image_timeout"],
            max_bytes=options["max_image_bytes"],
        ),
        name=config.model,
    )


def _cuda_dtype(config: RerankerConfig) -> torch.dtype:
    """bfloat16 on CUDA unless ``dtype=`` says otherwise (float16 overflows in some LLMs)."""
    cuda = torch.device("cuda")
    return torch.bfloat16 if config.dtype is None else resolve_dtype(config.dtype, cuda)


def _adapter_config(model: str, hub: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PEFT ``adapter_config.json`` of ``model`` (a folder or hub id), or None."""
    folder = Path(model).expanduser()
    if folder.is_dir():
        path = folder / ADAPTER_CONFIG
        if not path.is_file():
            return None
    else:
        from huggingface_hub import hf_hub_download, is_offline_mode
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

        try:
            path = Path(
                hf_hub_download(
                    model,
                    ADAPTER_CONFIG,
                    revision=hub["revision"],
                    cache_dir=hub["cache_dir"],
                    local_files_only=is_offline_mode(),
                )
            )
        except (EntryNotFoundError, LocalEntryNotFoundError):
            return None
        except (OSError, ValueError) as exc:
            raise _load_error(model, exc) from exc
    data = read_config(path.parent, ADAPTER_CONFIG)
    if not data.get("base_model_name_or_path"):
        raise ConfigurationError(f"{model!r} is a PEFT adapter that names no base model")
    return data


def _with_adapter(model: Any, adapter: str, hub: Mapping[str, Any]) -> Any:
    """``model`` with the LoRA adapter ``adapter`` applied; an error if any weight is left out.

    transformers' PEFT integration maps adapters saved under older layouts of the model's
    weights (MonoQwen2-VL's ``model.layers.*``), which ``peft.PeftModel`` would silently skip.
    """
    require("peft", extra="vlm", purpose=f"Loading the LoRA adapter {adapter!r}")
    try:
        report = model.load_adapter(
            adapter, adapter_kwargs={"revision": hub["revision"], "cache_dir": hub["cache_dir"]}
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise _load_error(adapter, exc) from exc
    unused = sorted(getattr(report, "unexpected_keys", None) or [])
    mismatched = list(getattr(report, "mismatched_keys", None) or [])
    if unused or mismatched:
        raise ConfigurationError(
            f"the LoRA adapter {adapter!r} does not fit its base model: weights "
            f"{(unused + [str(m) for m in mismatched])[:5]} have no place in it; is "
            "base_model_name_or_path in its adapter_config.json the model it was trained on?"
        )
    return model


def _score_head(base: str, prefix: str, hub: Mapping[str, Any], dtype: torch.dtype) -> Any:
    """The ``Linear - ReLU - Linear`` score head stored under ``prefix`` in the checkpoint."""
    from safetensors import safe_open

    weights: dict[str, torch.Tensor] = {}
    for file in _safetensors_files(base, hub):
        with safe_open(str(file), framework="pt") as opened:
            for key in opened.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.startswith(f"{prefix}."):
                    weights[key[len(prefix) + 1 :]] = opened.get_tensor(key)
    needed = {"0.weight", "0.bias", "2.weight", "2.bias"}
    if not needed <= weights.keys():
        raise ConfigurationError(
            f"{base!r} has no trained score head ({prefix}.0 / {prefix}.2 weights); every "
            "score would be noise. Is it a jina-reranker-m0 checkpoint?"
        )
    hidden, outputs = weights["0.weight"].shape[1], weights["2.weight"].shape[0]
    head = torch.nn.Sequential(
        torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, outputs)
    )
    head.load_state_dict({key: weights[key] for key in needed})
    return head.to(dtype)


def _safetensors_files(model: str, hub: Mapping[str, Any]) -> list[Path]:
    folder = Path(model).expanduser()
    if not folder.is_dir():
        from huggingface_hub import is_offline_mode, snapshot_download

        try:
            folder = Path(
                snapshot_download(
                    model,
                    revision=hub["revision"],
                    cache_dir=hub["cache_dir"],
                    allow_patterns=["*.safetensors", "*.json"],
                    local_files_only=is_offline_mode(),
                )
            )
        except (OSError, ValueError) as exc:
            raise _load_error(model, exc) from exc
    return sorted(folder.glob("*.safetensors"))


def _processor_source(model: str, base: str, hub: Mapping[str, Any]) -> str:
    """Where the tokenizer and image processor are: the model's folder, else the base's."""
    if model == base:
        return model
    folder = Path(model).expanduser()
    if folder.is_dir():
        return model if (folder / "preprocessor_config.json").is_file() else base
    return base  # a hub adapter: its base model ships the processor (MonoQwen2-VL does)


def _load_error(model: str, exc: Exception) -> BackendError:
    return BackendError(
        f"could not load vision-language reranker {model!r}: {str(exc).rstrip('.')}. Pass a "
        "local folder or a Hugging Face hub id; offline, the model must already be in the HF "
        "cache."
    )
