"""Builders for the tiny vision-language rerankers and page screenshots the VLM tests use.

Everything is built offline with seeded random weights and saved to a folder, like
``tests/model_factory.py``. The layouts mirror the real checkpoints: Qwen2-VL-2B-Instruct (the base
of lightonai/MonoQwen2-VL-v0.1, a LoRA adapter) and Qwen3-VL-Reranker.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.model_factory import SEED, _generative_training_text, qwen2_bpe_tokenizer

if TYPE_CHECKING:
    from PIL import Image

# --------------------------------------------------------------------------------------------
# Page screenshots
# --------------------------------------------------------------------------------------------

PAGE_TEXTS = [
    "Quarterly revenue grew 12% in 2024, driven by cloud sales.",
    "The capital of France is Paris, a city on the Seine.",
    "Figure 3: attention maps of the vision encoder.",
    "DNA is a molecule that carries genetic instructions.",
    "Table 2: reranker accuracy on the ViDoRe benchmark.",
    "Installation guide: unpack the archive and run setup.",
]
# (width, height): small, ordinary, above both processors' max_pixels (downscaled), wide, tall,
# and below both min_pixels (upscaled). The tiny processors allow 3136..50176 pixels (Qwen2-VL)
# and 4096..65536 pixels (Qwen3-VL).
PAGE_SIZES = [(120, 160), (168, 224), (420, 600), (448, 84), (84, 336), (56, 48)]


def page_image(text: str, size: tuple[int, int] = (200, 260), seed: int = 0) -> Image.Image:
    """A synthetic page screenshot: white page, lines of ``text`` and a few coloured boxes.

    Deterministic for a given ``text``, ``size`` and ``seed``.
    """
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    rng = random.Random(f"{seed}:{text}:{width}x{height}")
    page = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default()
    for _ in range(3):
        x0, y0 = rng.randrange(0, max(1, width - 20)), rng.randrange(0, max(1, height - 20))
        x1 = min(width - 1, x0 + rng.randrange(10, max(11, width // 2)))
        y1 = min(height - 1, y0 + rng.randrange(10, max(11, height // 3)))
        colour = tuple(rng.randrange(0, 256) for _ in range(3))
        draw.rectangle((x0, y0, x1, y1), fill=colour, outline=(0, 0, 0))
    words, line, lines = text.split(), "", []
    for word in words:  # wrap the text to the page width
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width - 8:
            lines.append(line)
            candidate = word
        line = candidate
    lines.append(line)
    y = 4
    while y < height - 12:  # repeat the paragraph down the page, like body text
        for row in lines:
            if y >= height - 12:
                break
            draw.text((4, y), row, fill=(0, 0, 0), font=font)
            y += 13
        y += 6
    return page


def pages(n: int = len(PAGE_SIZES)) -> list[Image.Image]:
    """``n`` distinct page screenshots of different sizes (see ``PAGE_SIZES``)."""
    return [
        page_image(PAGE_TEXTS[i % len(PAGE_TEXTS)], PAGE_SIZES[i % len(PAGE_SIZES)], seed=i)
        for i in range(n)
    ]


def save_pages(folder: Path, n: int = len(PAGE_SIZES)) -> list[Path]:
    """Write ``pages(n)`` as ``page-<i>.png`` into ``folder``; returns the paths in order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(pages(n)):
        path = folder / f"page-{i}.png"
        image.save(path)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------
# Tokenizer and chat templates
# --------------------------------------------------------------------------------------------

# Added tokens of the Qwen2-VL / Qwen3-VL tokenizers (same strings; the ids here are small).
QWEN_VL_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Qwen3's tokenizer has these as added tokens that are not "special" (kept by decode).
QWEN_VL_THINK_TOKENS = ["<think>", "</think>"]
# Answer words the rerankers read the logits of: each must be one token.
ANSWER_WORDS = ["True", "False", "yes", "no"]

# lightonai/MonoQwen2-VL-v0.1's prompt (rerankers' MonoVLMRanker default).
MONOVLM_PROMPT = (
    "Assert the relevance of the previous image document to the following query, "
    "answer True or False. The query is: {query}"
)
QWEN3_VL_RERANKER_SYSTEM = (
    "Judge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".'
)
QWEN3_VL_RERANKER_INSTRUCTION = (
    "Given a search query, retrieve relevant candidates that answer the query."
)

# Qwen/Qwen2-VL-2B-Instruct's chat template, verbatim (one line in its chat_template.json).
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _vl_training_text() -> list[str]:
    lines = [
        MONOVLM_PROMPT.format(query="what is DNA?"),
        QWEN3_VL_RERANKER_SYSTEM,
        QWEN3_VL_RERANKER_INSTRUCTION,
        "You are a helpful assistant.",
        "<Instruct>: <Query>: <Document>: system user assistant",
        *PAGE_TEXTS,
    ]
    return _generative_training_text() + lines * 20 + ANSWER_WORDS * 100


def qwen_vl_tokenizer(vocab_size: int = 800) -> Any:
    """A byte-level BPE in the Qwen2 tokenizer class (a ``PreTrainedTokenizerFast``), trained here.

    The chat and vision markers are added special tokens, ``<think>``/``</think>`` added tokens,
    and ``True``, ``False``, ``yes``, ``no`` single tokens; the Qwen2-VL chat template is set.
    """
    tokenizer = qwen2_bpe_tokenizer(
        _vl_training_text(),
        vocab_size=vocab_size,
        trained=QWEN_VL_SPECIAL_TOKENS[:1],
        special=QWEN_VL_SPECIAL_TOKENS[1:],
        plain=QWEN_VL_THINK_TOKENS,
        model_max_length=32768,
    )
    for word in ANSWER_WORDS:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert ids == [tokenizer.convert_tokens_to_ids(word)], (word, ids)
    for token in QWEN_VL_SPECIAL_TOKENS + QWEN_VL_THINK_TOKENS:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1, token
    tokenizer.chat_template = QWEN2_VL_CHAT_TEMPLATE
    return tokenizer


# --------------------------------------------------------------------------------------------
# Qwen2-VL and the MonoQwen2-VL adapter
# --------------------------------------------------------------------------------------------

# Pages become a handful of merged patches: 4..64 tokens of 28x28 pixels (Qwen2-VL's factor).
QWEN2_VL_MIN_PIXELS = 28 * 28 * 4
QWEN2_VL_MAX_PIXELS = 28 * 28 * 64


def qwen2_vl_image_processor(
    min_pixels: int = QWEN2_VL_MIN_PIXELS, max_pixels: int = QWEN2_VL_MAX_PIXELS
) -> Any:
    """Qwen2-VL's image processor (the PIL backend), by default with small pixel bounds."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    return Qwen2VLImageProcessorPil(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
    )


def _scale_weights(model: Any, *, std: float, embed_std: float, seed: int) -> None:
    """Redraw ``model``'s matrices from N(0, std), token embeddings from N(0, embed_std).

    The default initialisation (std 0.02) scores every input almost alike; these draws make the
    scores of different pages and queries differ by tenths of a logit.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                scale = embed_std if "embed_tokens" in name else std
                param.copy_(torch.randn(param.shape, generator=generator) * scale)


def vision_token_ids(tokenizer: Any) -> dict[str, int]:
    """The config's ids of the image and video markers, as the tokenizer has them."""
    tid = tokenizer.convert_tokens_to_ids
    return {
        "image_token_id": tid("<|image_pad|>"),
        "video_token_id": tid("<|video_pad|>"),
        "vision_start_token_id": tid("<|vision_start|>"),
        "vision_end_token_id": tid("<|vision_end|>"),
    }


def tiny_qwen2_vl(out: Path) -> Path:
    """A 2-layer random ``Qwen2VLForConditionalGeneration``: Qwen2-VL-2B-Instruct's layout.

    Saved with its tokenizer (``qwen_vl_tokenizer``), a ``Qwen2VLImageProcessorPil``
    (14-pixel patches, 2x2 merge, 4..64 merged tokens per image) and the Qwen2-VL chat template.
    """
    return scaled_qwen2_vl(
        out,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=0,  # the tokenizer's own
        vision_depth=2,
        vision_embed_dim=32,
        vision_num_heads=2,
        vision_mlp_ratio=2,
        min_pixels=QWEN2_VL_MIN_PIXELS,
        max_pixels=QWEN2_VL_MAX_PIXELS,
        std=0.5,
    )


def tiny_monovlm_adapter(
    base: Path, out: Path, *, rank: int = 4, legacy_keys: bool = False
) -> Path:
    """A peft LoRA adapter over ``tiny_qwen2_vl(base)``: lightonai/MonoQwen2-VL-v0.1's layout.

    LoRA on the language model's attention projections (the vision tower's are named ``qkv`` and
    ``proj``); ``lora_B`` is drawn at random, not zero, so the adapter changes the scores. Only
    ``adapter_config.json`` (``base_model_name_or_path`` = ``str(base)``) and
    ``adapter_model.safetensors`` are saved: the processor stays with the base, as on the Hub.

    ``legacy_keys`` saves the weights under transformers < 4.52's module names
    (``base_model.model.model.layers.*`` instead of ``base_model.model.model.language_model.
    layers.*``), as adapters trained in 2024 such as MonoQwen2-VL-v0.1 have them. transformers'
    ``from_pretrained(adapter)`` maps those names; ``peft.PeftModel.from_pretrained`` does not.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(SEED + 1)  # lora_A's draw
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    peft_model.save_pretrained(out)
    if legacy_keys:
        from safetensors.torch import load_file, save_file

        weights = out / "adapter_model.safetensors"
        state = load_file(str(weights))
        renamed = {k.replace(".model.language_model.", ".model."): v for k, v in state.items()}
        save_file(renamed, str(weights), metadata={"format": "pt"})
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["base_model_name_or_path"] == str(base), saved["base_model_name_or_path"]
    return out


# --------------------------------------------------------------------------------------------
# Qwen3-VL (Qwen3-VL-Reranker's architecture) and its sentence-transformers files
# --------------------------------------------------------------------------------------------

# Qwen3-VL's patches are 16 pixels, merged 2x2: one visual token per 32x32 pixels; 4..64 here.
QWEN3_VL_MIN_PIXELS = 32 * 32 * 4
QWEN3_VL_MAX_PIXELS = 32 * 32 * 64

# Qwen3-VL's chat template, abridged (no tools, no reasoning): unlike Qwen2-VL's, it adds no
# default system message; content items are concatenated without separators.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' }}"
    "{%- if message.content is string %}{{- message.content }}{%- else %}"
    "{%- for c in message.content %}"
    "{%- if c.type == 'image' or 'image' in c or 'image_url' in c %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif c.type == 'video' or 'video' in c %}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in c %}{{- c.text }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# The "reranker" chat template sentence-transformers uses for Qwen3-VL-Reranker: ST turns a pair
# into [system (the prompt, optional), query, document] messages; this renders them exactly as
# the official Qwen3VLReranker.process() prompt (checked string for string by the research notes).
QWEN3_VL_RERANKER_TEMPLATE = (
    '{%- set ns = namespace(instruction="") -%}\n'
    '{%- for message in messages if message.role == "system" -%}\n'
    "  {%- if message.content is string -%}"
    "{%- set ns.instruction = ns.instruction + message.content -%}\n"
    "  {%- else -%}{%- for c in message.content if 'text' in c -%}"
    "{%- set ns.instruction = ns.instruction + c.text -%}{%- endfor -%}{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if not ns.instruction -%}"
    '{%- set ns.instruction = "' + QWEN3_VL_RERANKER_INSTRUCTION + '" -%}{%- endif -%}\n'
    "{%- macro render(message) -%}\n"
    "  {%- if message.content is string -%}{{- message.content -}}\n"
    "  {%- else -%}{%- for c in message.content -%}\n"
    "    {%- if c.type == 'image' or 'image' in c or 'image_url' in c -%}"
    "<|vision_start|><|image_pad|><|vision_end|>\n"
    "    {%- elif c.type == 'video' or 'video' in c -%}"
    "<|vision_start|><|video_pad|><|vision_end|>\n"
    "    {%- elif 'text' in c -%}{{- c.text -}}{%- endif -%}\n"
    "  {%- endfor -%}{%- endif -%}\n"
    "{%- endmacro -%}\n"
    "{{- '<|im_start|>system\\n" + QWEN3_VL_RERANKER_SYSTEM + "<|im_end|>\\n"
    "<|im_start|>user\\n<Instruct>: ' + ns.instruction + '<Query>:' -}}\n"
    '{%- for message in messages if message.role == "query" -%}{{- render(message) -}}'
    "{%- endfor -%}\n"
    "{{- '\\n<Document>:' -}}\n"
    '{%- for message in messages if message.role == "document" -%}{{- render(message) -}}'
    "{%- endfor -%}\n"
    "{{- '<|im_end|>\\n' -}}\n"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def qwen3_vl_image_processor() -> Any:
    """Qwen3-VL's image processor settings (PIL backend) with small pixel bounds."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    return Qwen2VLImageProcessorPil(
        min_pixels=QWEN3_VL_MIN_PIXELS,
        max_pixels=QWEN3_VL_MAX_PIXELS,
        patch_size=16,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )


def tiny_qwen3_vl(out: Path) -> Path:
    """A 2-layer random ``Qwen3VLForConditionalGeneration``: Qwen3-VL-Reranker's architecture.

    Saved as a plain transformers checkpoint (no sentence-transformers files; see
    ``as_sentence_transformers_reranker``) with ``qwen_vl_tokenizer`` (abridged Qwen3-VL chat
    template) and a ``Qwen2VLImageProcessorPil`` (16-pixel patches, 2x2 merge, 4..64 tokens).
    """
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    tokenizer = qwen_vl_tokenizer()
    tokenizer.chat_template = QWEN3_VL_CHAT_TEMPLATE
    tid = tokenizer.convert_tokens_to_ids
    torch.manual_seed(SEED)
    config = Qwen3VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                "mrope_section": [2, 1, 1],  # sums to head_dim / 2 = 4
                "mrope_interleaved": True,
            },
            "pad_token_id": tid("<|endoftext|>"),
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "patch_size": 16,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "out_hidden_size": 32,
            "num_position_embeddings": 64,  # a square: an 8x8 grid of learned positions
            "deepstack_visual_indexes": [0],
        },
        **vision_token_ids(tokenizer),
        tie_word_embeddings=True,
    )
    model = Qwen3VLForConditionalGeneration(config).eval()
    _scale_weights(model, std=0.5, embed_std=0.1, seed=SEED)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    qwen3_vl_image_processor().save_pretrained(out)
    return out


def as_sentence_transformers_reranker(folder: Path) -> Path:
    """Add the sentence-transformers files of Qwen3-VL-Reranker to a ``tiny_qwen3_vl`` folder.

    ``CrossEncoder(folder)`` then builds ``[Transformer(any-to-any), LogitScore(yes, no)]``: the
    score is ``logit("yes") - logit("no")`` at the last position (activation ``Identity``), the
    prompt is rendered by the ``reranker`` chat template (``QWEN3_VL_RERANKER_TEMPLATE``).
    """
    tokenizer_vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    modality = {"method": "forward", "method_output_name": "logits"}
    files = {
        "modules.json": [
            {
                "idx": 0,
                "name": "0",
                "path": "",
                "type": "sentence_transformers.base.modules.transformer.Transformer",
            },
            {
                "idx": 1,
                "name": "1",
                "path": "1_LogitScore",
                "type": "sentence_transformers.cross_encoder.modules.logit_score.LogitScore",
            },
        ],
        "sentence_bert_config.json": {
            "transformer_task": "any-to-any",
            "modality_config": {
                "text": modality,
                "image": modality,
                "video": modality,
                "message": {**modality, "format": "structured"},
            },
            "module_output_name": "causal_logits",
            "processing_kwargs": {
                "chat_template": {"chat_template": "reranker", "add_generation_prompt": True}
            },
            "unpad_inputs": False,
        },
        "config_sentence_transformers.json": {
            "model_type": "CrossEncoder",
            "activation_fn": "torch.nn.modules.linear.Identity",
            "prompts": {},
            "default_prompt_name": None,
        },
        "1_LogitScore/config.json": {
            "true_token_id": tokenizer_vocab["yes"],
            "false_token_id": tokenizer_vocab["no"],
            "module_input_name": "causal_logits",
        },
    }
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(content, indent=2))
    templates = folder / "additional_chat_templates"
    templates.mkdir(exist_ok=True)
    (templates / "reranker.jinja").write_text(QWEN3_VL_RERANKER_TEMPLATE)
    return folder


# --------------------------------------------------------------------------------------------
# jina-reranker-m0
# --------------------------------------------------------------------------------------------

# jina-reranker-m0's modeling.py: the score token appended to every input, and the bias
# subtracted before the sigmoid.
JINA_SCORE_TOKEN_ID = 100
JINA_LOGIT_BIAS = 2.65


def jina_m0_class() -> Any:
    """``JinaVLForRanking`` as jina-reranker-m0's ``modeling.py`` publishes it (test-only copy).

    A ``Qwen2VLForConditionalGeneration`` whose ``lm_head`` is an identity and whose ``score``
    head (Linear, ReLU, Linear to one logit) reads the last layer's hidden state at the last
    position.
    """
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    class JinaVLForRanking(Qwen2VLForConditionalGeneration):  # type: ignore[misc]
        def __init__(self, config: Any) -> None:
            config.tie_word_embeddings = False  # its lm_head is an identity, tied to nothing
            super().__init__(config)
            hidden = config.text_config.hidden_size
            self.lm_head = torch.nn.Identity()
            self.score = torch.nn.Sequential(
                torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
            )
            self.post_init()

        def forward(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.pop("output_hidden_states", None)
            outputs = super().forward(*args, use_cache=False, output_hidden_states=True, **kwargs)
            return self.score(outputs.hidden_states[-1][:, -1]).squeeze(-1)

    return JinaVLForRanking


def tiny_jina_m0(out: Path) -> Path:
    """A tiny random jina-reranker-m0: ``tiny_qwen2_vl``'s backbone plus the ``score`` head."""
    import json

    import torch
    from transformers import Qwen2VLConfig

    source = tiny_qwen2_vl(out.parent / f"{out.name}-backbone")
    config = Qwen2VLConfig.from_pretrained(source)
    torch.manual_seed(SEED + 2)
    model = jina_m0_class()(config).eval()
    model.load_state_dict(
        {
            **{k: v for k, v in model.state_dict().items() if k.startswith("score.")},
            **_backbone_weights(source),
        },
        strict=False,
    )
    _scale_weights(model.score, std=0.5, embed_std=0.5, seed=SEED + 3)
    model.save_pretrained(out)
    _to_legacy_names(out / "model.safetensors")
    data = json.loads((out / "config.json").read_text())
    data["architectures"] = ["JinaVLForRanking"]
    data["auto_map"] = {"AutoModel": "modeling.JinaVLForRanking"}
    (out / "config.json").write_text(json.dumps(data, indent=2))
    qwen_vl_tokenizer().save_pretrained(out)
    qwen2_vl_image_processor().save_pretrained(out)
    return out


def _to_legacy_names(file: Path) -> None:
    """Rename the weights to transformers < 4.52's layout, as the published checkpoint has them.

    ``model.language_model.*`` becomes ``model.*`` and ``model.visual.*`` becomes ``visual.*``
    (what vLLM's loader for jina-reranker-m0 maps back).
    """
    from safetensors.torch import load_file, save_file

    weights = load_file(str(file))
    renamed = {}
    for key, value in weights.items():
        if key.startswith("model.language_model."):
            key = "model." + key[len("model.language_model.") :]
        elif key.startswith("model.visual."):
            key = key[len("model.") :]
        renamed[key] = value
    save_file(renamed, str(file), metadata={"format": "pt"})


def _backbone_weights(folder: Path) -> dict[str, Any]:
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    model = Qwen2VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    return {k: v for k, v in model.state_dict().items() if not k.startswith("lm_head.")}


# --------------------------------------------------------------------------------------------
# A scaled-up random Qwen2-VL (benchmarks)
# --------------------------------------------------------------------------------------------


def scaled_qwen2_vl(
    out: Path,
    *,
    hidden_size: int = 768,
    intermediate_size: int = 2048,
    num_hidden_layers: int = 6,
    num_attention_heads: int = 12,
    num_key_value_heads: int = 2,
    vocab_size: int = 8192,
    vision_depth: int = 6,
    vision_embed_dim: int = 512,
    vision_num_heads: int = 8,
    vision_mlp_ratio: int = 4,
    min_pixels: int = QWEN2_VL_MIN_PIXELS,
    max_pixels: int = 28 * 28 * 256,
    std: float | None = None,
) -> Path:
    """A random ``Qwen2VLForConditionalGeneration`` of any size, laid out as ``tiny_qwen2_vl``.

    Qwen2-VL's real patching (14-pixel patches, 2x2 merge, two temporal frames) and MLP ratio 4
    in the vision tower; the image processor allows ``min_pixels``..``max_pixels`` (by default up
    to 256 merged tokens a page). ``vocab_size`` pads the embedding past the tokenizer's ids, as
    the real checkpoints do (151,936 rows for 151,657 tokens), so the LM head's share of the
    compute can be set. Matrices are drawn from N(0, ``std``) (default ``1.5 / sqrt(hidden)``,
    enough for scores that differ between pages), token embeddings from N(0, 0.1).
    """
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    tokenizer = qwen_vl_tokenizer()
    tid = tokenizer.convert_tokens_to_ids
    head_dim = hidden_size // num_attention_heads
    # Qwen2-VL's mrope_section is [16, 24, 24] at head_dim 128: the same shares of head_dim / 2.
    spatial = (head_dim // 2 - head_dim // 8) // 2
    mrope_section = [head_dim // 2 - 2 * spatial, spatial, spatial]
    assert sum(mrope_section) == head_dim // 2, (head_dim, mrope_section)
    torch.manual_seed(SEED)
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": max(vocab_size, len(tokenizer)),
            "hidden_size": hidden_size,
            "intermediate_size": intermediate_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "num_key_value_heads": num_key_value_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": mrope_section,
            },
            "bos_token_id": tid("<|endoftext|>"),
            "eos_token_id": tid("<|im_end|>"),
            "pad_token_id": tid("<|endoftext|>"),
        },
        vision_config={
            "depth": vision_depth,
            "embed_dim": vision_embed_dim,
            "hidden_size": hidden_size,
            "num_heads": vision_num_heads,
            "mlp_ratio": vision_mlp_ratio,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        },
        **vision_token_ids(tokenizer),
        tie_word_embeddings=True,
    )
    model = Qwen2VLForConditionalGeneration(config).eval()
    _scale_weights(
        model, std=std if std is not None else 1.5 / hidden_size**0.5, embed_std=0.1, seed=SEED
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    qwen2_vl_image_processor(min_pixels, max_pixels).save_pretrained(out)
    return out
