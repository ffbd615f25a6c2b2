"""Reference scores from peer libraries on the tiny VLM checkpoints of ``tests/vlm_factory.py``.

Test-only code. This environment has no torchvision, and transformers 5's Qwen2-VL / Qwen3-VL
processors declare a video processor that needs it; ``no_video_processor`` patches that out for
the duration of a reference call only (never in the package).
"""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image


@contextlib.contextmanager
def no_video_processor() -> Iterator[None]:
    """Let Qwen2-VL / Qwen3-VL processors load and build with only an image processor + tokenizer.

    ``ProcessorMixin.get_attributes`` lists the sub-processors from ``__init__``'s parameters, so
    ``video_processor`` is one, and ``AutoProcessor.from_pretrained`` then loads
    ``Qwen2VLVideoProcessor``, a torchvision-only class. Declaring ``["image_processor",
    "tokenizer"]`` instead skips it (``video_processor=None`` is dropped); image and text inputs
    are processed exactly as before, video inputs are unsupported.
    """
    from unittest import mock

    from transformers import Qwen2VLProcessor, Qwen3VLProcessor

    attributes = classmethod(lambda cls: ["image_processor", "tokenizer"])
    with contextlib.ExitStack() as stack:
        for processor_class in (Qwen2VLProcessor, Qwen3VLProcessor):
            stack.enter_context(mock.patch.object(processor_class, "get_attributes", attributes))
        yield


def _png_base64(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def monovlm_reference(
    adapter_or_model: Path, processor_dir: Path, query: str, images: list[Image.Image]
) -> list[float]:
    """rerankers 0.10 ``MonoVLMRanker`` scores of ``images`` for ``query``, in input order.

    Each number is P(True) = softmax([logit("False"), logit("True")])[1] of the next-token logits
    after MonoQwen2-VL's prompt (``vlm_factory.MONOVLM_PROMPT``) rendered by the processor's chat
    template (Qwen2-VL's, with its default system message), one image per forward pass, in fp32 on
    CPU with SDPA attention. ``adapter_or_model`` is a Qwen2-VL folder or a peft LoRA adapter
    folder (loaded over its ``base_model_name_or_path`` by transformers' peft integration);
    ``processor_dir`` is where the tokenizer, image processor and chat template are.
    """
    from rerankers.models.monovlm_ranker import MonoVLMRanker

    with no_video_processor():
        ranker = MonoVLMRanker(
            str(adapter_or_model),
            processor_name=str(processor_dir),
            dtype="fp32",
            device="cpu",
            verbose=0,
            return_logits=False,
            attention_implementation="sdpa",
        )
    ranked = ranker.rank(query, [_png_base64(i) for i in images], doc_ids=list(range(len(images))))
    scores: dict[Any, float] = {r.document.doc_id: r.score for r in ranked.results}
    return [float(scores[i]) for i in range(len(images))]


def st_qwen3_vl_reference(
    folder: Path, query: str, images: list[Any], instruction: str | None = None
) -> list[float]:
    """sentence-transformers 6.2 ``CrossEncoder`` scores of ``images`` for ``query``, in order.

    ``folder`` is a ``tiny_qwen3_vl`` checkpoint with ``as_sentence_transformers_reranker``'s
    files. Each number is the raw ``logit("yes") - logit("no")`` of the next token after the
    ``reranker`` chat template's prompt (Qwen3-VL-Reranker's official prompt; the document is the
    image alone, ``instruction`` replaces the default instruction via ``predict(prompt=...)``),
    one pair per forward pass, fp32 on CPU. An item of ``images`` may also be a text document
    (``str``) or ``{"image": ..., "text": ...}`` (an image with its caption, in that order, as the
    official prompt puts them). No sigmoid: the folder's activation is ``Identity``
    and ``Identity`` is also passed explicitly (ST's default for a one-logit CrossEncoder without
    that setting would be ``Sigmoid``). The official ``Qwen3VLReranker`` score is the sigmoid of
    this number.
    """
    import torch
    from sentence_transformers import CrossEncoder

    with no_video_processor():
        model = CrossEncoder(str(folder), device="cpu")
    scores = model.predict(
        [(query, image) for image in images],
        batch_size=1,
        prompt=instruction,
        activation_fn=torch.nn.Identity(),
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return [float(s) for s in scores]


def _jina_m0_model(folder: Path) -> Any:
    """The published ``JinaVLForRanking`` with the checkpoint's weights, legacy names mapped.

    Its v4-era checkpoint names the backbone ``model.*`` / ``visual.*``; a subclass loaded with
    ``from_pretrained`` under transformers 5 would leave those weights random, so they are
    renamed here to the current layout and loaded strictly.
    """
    from safetensors.torch import load_file
    from transformers import Qwen2VLConfig

    from tests.vlm_factory import jina_m0_class

    model = jina_m0_class()(Qwen2VLConfig.from_pretrained(folder)).eval()
    renamed = {}
    for key, value in load_file(str(folder / "model.safetensors")).items():
        if key.startswith("visual."):
            key = f"model.{key}"
        elif key.startswith("model."):
            key = f"model.language_model.{key[len('model.') :]}"
        renamed[key] = value
    model.load_state_dict(renamed, strict=True)
    return model


def jina_m0_reference(
    folder: Path, query: str, images: list[Image.Image], *, max_pixels: int, min_pixels: int
) -> list[float]:
    """jina-reranker-m0's ``compute_score`` for image documents, on its published architecture.

    ``vlm_factory.jina_m0_class()`` loaded from ``folder``; each prompt is
    ``"**Document**:\\n<image>\\n**Query**:\\n{query}"`` through the Qwen2-VL processor (with
    ``max_pixels`` / ``min_pixels`` as ``compute_score`` sets them), the score token (id 100)
    appended with attention 1, one pair per forward pass. Each number is
    ``sigmoid(head - 2.65)``, what ``compute_score`` returns.
    """
    import torch
    from transformers import AutoProcessor

    from tests.vlm_factory import JINA_LOGIT_BIAS, JINA_SCORE_TOKEN_ID

    model = _jina_m0_model(folder)
    with no_video_processor():
        processor = AutoProcessor.from_pretrained(
            folder, max_pixels=max_pixels, min_pixels=min_pixels
        )
    scores = []
    for image in images:
        prompt = f"**Document**:\n<|vision_start|><|image_pad|><|vision_end|>\n**Query**:\n{query}"
        inputs = processor(text=[prompt], images=[image], return_tensors="pt")
        one = torch.ones((1, 1), dtype=inputs["input_ids"].dtype)
        inputs["input_ids"] = torch.cat([inputs["input_ids"], one * JINA_SCORE_TOKEN_ID], dim=1)
        inputs["attention_mask"] = torch.cat([inputs["attention_mask"], one], dim=1)
        types = inputs["mm_token_type_ids"]
        inputs["mm_token_type_ids"] = torch.cat([types, torch.zeros_like(one).to(types)], dim=1)
        with torch.no_grad():
            logit = model(**inputs)
        scores.append(float(torch.sigmoid(logit - JINA_LOGIT_BIAS)))
    return scores
