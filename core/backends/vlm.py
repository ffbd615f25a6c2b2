"""Vision-language backend: text queries against image (and text) documents.

MonoQwen2-VL (``family="monovlm"``, a LoRA adapter over Qwen2-VL, loaded with ``peft``),
Qwen3-VL-Reranker (``"qwen3-vl"``) and jina-reranker-m0 (``"jina-m0"``, CC-BY-NC-4.0), each
prompted and scored as its authors do; the family is inferred from the model's name (or a
folder's config) and always overridable. Prompts and scoring rules are presets in
:mod:`rerankit.pipelines.vision_language`. Images are read when they are scored, resized within
``max_pixels`` as the model's own image processor does (never cropped), and need neither
torchvision nor ``AutoProcessor``. ``http(s)`` image URLs are fetched only with
``fetch_images=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rerankit.backends.base import HUB_OPTIONS, Backend, Passage
from rerankit.config import RerankerConfig
from rerankit.options import Option, OptionSchema
from rerankit.pipelines.vision_language import (
    VISION_FAMILIES,
    choose_vision_family,
    load_vision_language,
)
from rerankit.types import Scores

VisionRequest = tuple[str, Sequence[Passage]]


class VLMBackend(Backend):
    """Score text queries against image or text documents with a vision-language reranker.

    >>> from rerankit import Document, Reranker
    >>> rr = Reranker("lightonai/MonoQwen2-VL-v0.1", backend="vlm")  # doctest: +SKIP
    >>> rr.rank("revenue in 2023?", [Document(image="page-1.png")])  # doctest: +SKIP

    Options: ``family``, ``instruction``, ``max_pixels``, ``min_pixels``, ``fetch_images``,
    ``image_timeout``, ``max_image_bytes``, ``processor``, ``max_query_length``,
    ``max_batch_tokens``, ``revision``, ``cache_dir``, ``trust_remote_code`` (``rerankit info``
    describes them). ``max_length`` counts text tokens; image tokens come on top.
    """

    name: ClassVar[str] = "vlm"
    accepts_images = True
    options_schema: ClassVar[OptionSchema] = {
        "family": Option(
            "enum",
            None,
            "prompt and scoring rule; inferred from the model name (or a folder's config) when "
            "unset",
            choices=tuple(VISION_FAMILIES),
        ),
        "instruction": Option(
            "str",
            None,
            "task instruction in the prompt (qwen3-vl: the authors' search one when unset; the "
            "other families take none)",
        ),
        "max_pixels": Option(
            "int",
            None,
            "pixels per image at most, after resizing (aspect kept, never cropped); the "
            "family's or the image processor's default when unset",
            minimum=1,
        ),
        "min_pixels": Option(
            "int",
            None,
            "pixels per image at least (small images are scaled up); the family's or the image "
            "processor's default when unset",
            minimum=1,
        ),
        "fetch_images": Option(
            "bool", False, "download http(s) image URLs (off: a URL is refused, never fetched)"
        ),
        "image_timeout": Option("float", 10.0, "seconds to download one image URL", minimum=0.001),
        "max_image_bytes": Option(
            "int",
            32 * 1024 * 1024,
            "bytes per encoded image at most (file, upload or download)",
            minimum=1,
        ),
        "processor": Option(
            "str",
            None,
            "where the tokenizer and image processor are; the model's folder, else a LoRA "
            "adapter's base model, when unset",
        ),
        "max_query_length": Option(
            "int", None, "query tokens at most; max_length // 2 when unset", minimum=1
        ),
        "max_batch_tokens": Option(
            "int",
            None,
            "padded tokens per batch, image tokens included; 2048 on CPU and 32768 on "
            "accelerators when unset",
            minimum=1,
        ),
        **HUB_OPTIONS,
    }

    def __init__(self, config: RerankerConfig) -> None:
        super().__init__(config)
        given = self.options["family"]
        family = choose_vision_family(config.model, given)
        self.pipeline = load_vision_language(
            config, family, inferred=given is None, options=self.options
        )
        self.scale = "probability" if config.normalize else "logit"

    def score(self, query: str, texts: Sequence[Passage]) -> Scores:
        return self.pipeline.score_many([(query, texts)])[0]

    def score_many(
        self, requests: Sequence[VisionRequest], *, top_k: int | None = None
    ) -> list[Scores]:
        return self.pipeline.score_many(requests)
