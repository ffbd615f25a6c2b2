"""The tiny VLM checkpoints load in the peer libraries, and their reference scores discriminate."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests import vlm_factory
from tests.vlm.references import monovlm_reference, no_video_processor, st_qwen3_vl_reference

QUERIES = ["what is DNA?", "quarterly revenue growth"]
INSTRUCTION = "Find the page that answers a biology question."
# Scores of different inputs must differ by at least this much for comparisons to mean anything.
MIN_SPREAD = 1e-3


def _spread(scores: list[float]) -> float:
    return max(scores) - min(scores)


def _max_diff(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_pages_are_deterministic_and_cover_the_resize_cases(pages: list[Image.Image]) -> None:
    assert [p.size for p in pages] == vlm_factory.PAGE_SIZES
    assert all(p.mode == "RGB" for p in pages)
    areas = [w * h for w, h in vlm_factory.PAGE_SIZES]
    assert max(areas) > max(vlm_factory.QWEN2_VL_MAX_PIXELS, vlm_factory.QWEN3_VL_MAX_PIXELS)
    assert min(areas) < min(vlm_factory.QWEN2_VL_MIN_PIXELS, vlm_factory.QWEN3_VL_MIN_PIXELS)
    assert any(w >= 4 * h for w, h in vlm_factory.PAGE_SIZES)
    assert any(h >= 4 * w for w, h in vlm_factory.PAGE_SIZES)
    again = vlm_factory.page_image(vlm_factory.PAGE_TEXTS[1], vlm_factory.PAGE_SIZES[1], seed=1)
    assert again.tobytes() == pages[1].tobytes()
    # Not a blank page: text and boxes are drawn.
    assert len(pages[1].getcolors(maxcolors=1 << 16) or []) > 4


def test_page_paths_are_pngs_of_the_pages(page_paths: list[Path], pages: list[Image.Image]) -> None:
    assert [p.suffix for p in page_paths] == [".png"] * len(pages)
    with Image.open(page_paths[2]) as saved:
        assert saved.convert("RGB").tobytes() == pages[2].tobytes()


def test_tokenizer_keeps_markers_and_answer_words_whole(tiny_qwen2_vl_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen2_vl_dir)
    words = (
        vlm_factory.QWEN_VL_SPECIAL_TOKENS
        + vlm_factory.QWEN_VL_THINK_TOKENS
        + vlm_factory.ANSWER_WORDS
    )
    for word in words:
        token_id = tokenizer.convert_tokens_to_ids(word)
        assert token_id != tokenizer.unk_token_id
        assert tokenizer(word, add_special_tokens=False)["input_ids"] == [token_id], word
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.eos_token == "<|im_end|>"
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>hi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.fixture(scope="module")
def monovlm_scores(
    tiny_qwen2_vl_dir: Path,
    tiny_monovlm_dir: Path,
    tiny_monovlm_legacy_dir: Path,
    pages: list[Image.Image],
) -> dict[str, list[float]]:
    """MonoVLMRanker's P(True) for the base, the adapter and the legacy-named adapter."""
    scores = {}
    for name, model in [
        ("base", tiny_qwen2_vl_dir),
        ("adapter", tiny_monovlm_dir),
        ("legacy", tiny_monovlm_legacy_dir),
    ]:
        scores[name] = monovlm_reference(model, tiny_qwen2_vl_dir, QUERIES[0], pages)
    scores["adapter-q1"] = monovlm_reference(tiny_monovlm_dir, tiny_qwen2_vl_dir, QUERIES[1], pages)
    return scores


def test_monovlm_scores_are_probabilities_that_differ_between_pages(
    monovlm_scores: dict[str, list[float]],
) -> None:
    for scores in monovlm_scores.values():
        assert all(0.0 < s < 1.0 for s in scores)
        assert _spread(scores) > MIN_SPREAD


def test_monovlm_scores_differ_between_queries(monovlm_scores: dict[str, list[float]]) -> None:
    assert _max_diff(monovlm_scores["adapter"], monovlm_scores["adapter-q1"]) > MIN_SPREAD


def test_monovlm_adapter_changes_the_scores(monovlm_scores: dict[str, list[float]]) -> None:
    assert _max_diff(monovlm_scores["base"], monovlm_scores["adapter"]) > MIN_SPREAD


def test_monovlm_legacy_adapter_names_load_the_same_weights(
    monovlm_scores: dict[str, list[float]],
) -> None:
    assert _max_diff(monovlm_scores["legacy"], monovlm_scores["adapter"]) < 1e-6


def test_monovlm_score_is_p_true_of_the_next_token(
    tiny_qwen2_vl_dir: Path, pages: list[Image.Image], monovlm_scores: dict[str, list[float]]
) -> None:
    import torch
    from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

    with no_video_processor():
        processor = AutoProcessor.from_pretrained(tiny_qwen2_vl_dir)
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_qwen2_vl_dir).eval()
    prompt = vlm_factory.MONOVLM_PROMPT.format(query=QUERIES[0])
    text = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        f"<|vision_start|><|image_pad|><|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = processor(text=text, images=pages[3], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1]
    vocab = processor.tokenizer.get_vocab()
    p_true = torch.softmax(logits[[vocab["False"], vocab["True"]]], dim=-1)[1].item()
    assert p_true == pytest.approx(monovlm_scores["base"][3], abs=1e-5)


@pytest.fixture(scope="module")
def st_scores(tiny_qwen3_vl_dir: Path, pages: list[Image.Image]) -> dict[str, list[float]]:
    """CrossEncoder's logit(yes) - logit(no) for two queries and a custom instruction."""
    return {
        "q0": st_qwen3_vl_reference(tiny_qwen3_vl_dir, QUERIES[0], pages),
        "q1": st_qwen3_vl_reference(tiny_qwen3_vl_dir, QUERIES[1], pages),
        "q0-instruction": st_qwen3_vl_reference(
            tiny_qwen3_vl_dir, QUERIES[0], pages, instruction=INSTRUCTION
        ),
    }


def test_st_scores_differ_between_pages(st_scores: dict[str, list[float]]) -> None:
    for scores in st_scores.values():
        assert _spread(scores) > MIN_SPREAD


def test_st_scores_differ_between_queries_and_instructions(
    st_scores: dict[str, list[float]],
) -> None:
    assert _max_diff(st_scores["q0"], st_scores["q1"]) > MIN_SPREAD
    assert _max_diff(st_scores["q0"], st_scores["q0-instruction"]) > MIN_SPREAD


def test_st_score_is_the_official_logit_difference(
    tiny_qwen3_vl_plain_dir: Path, pages: list[Image.Image], st_scores: dict[str, list[float]]
) -> None:
    """Official Qwen3VLReranker: last hidden state . (w_yes - w_no), before its sigmoid."""
    import torch
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    with no_video_processor():
        processor = AutoProcessor.from_pretrained(tiny_qwen3_vl_plain_dir)
    model = Qwen3VLForConditionalGeneration.from_pretrained(tiny_qwen3_vl_plain_dir).eval()
    text = (
        f"<|im_start|>system\n{vlm_factory.QWEN3_VL_RERANKER_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n<Instruct>: {vlm_factory.QWEN3_VL_RERANKER_INSTRUCTION}"
        f"<Query>:{QUERIES[0]}\n<Document>:<|vision_start|><|image_pad|><|vision_end|>"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = processor(text=text, images=pages[2], return_tensors="pt")
    with torch.no_grad():
        hidden = model.model(**inputs).last_hidden_state[0, -1]
    vocab = processor.tokenizer.get_vocab()
    weight = model.lm_head.weight
    expected = (hidden @ (weight[vocab["yes"]] - weight[vocab["no"]])).item()
    assert st_scores["q0"][2] == pytest.approx(expected, abs=1e-4)
