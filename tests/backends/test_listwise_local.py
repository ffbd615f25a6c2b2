"""The listwise backend with a local transformers chat model (a tiny random one built here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rerankit import ConfigurationError, RankResult, Reranker
from rerankit.pipelines.listwise import RANKGPT
from tests import model_factory

QUERY = "which protein repairs DNA?"


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_factory.tiny_chat_model(tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="module")
def reranker(chat_dir: Path) -> Reranker:
    return Reranker(str(chat_dir), backend="listwise", device="cpu")


def _docs(n: int) -> list[str]:
    return [f"passage {i}: proteins such as BRCA{i} repair DNA in cells [{i}]" for i in range(n)]


def _assert_once(result: RankResult, n: int) -> None:
    assert sorted(result.indices) == list(range(n))
    assert sorted(result.scores) == [float(v) for v in range(1, n + 1)]
    assert result.scale == "rank"


def test_garbage_answers_still_give_every_document_once(reranker: Reranker) -> None:
    """A random model answers noise: the order is repaired, and the usage says what happened."""
    result = reranker.rank(QUERY, _docs(25))
    _assert_once(result, 25)
    usage = result.usage
    assert usage["windows"] == 2
    assert 0 <= usage["unparsed_windows"] <= 2
    assert usage["prompt_tokens"] > 0
    model = reranker.backend.chat_model  # type: ignore[attr-defined]
    assert 0 < usage["completion_tokens"] <= model.answer_tokens(20) + model.answer_tokens(15)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert reranker.rank(QUERY, _docs(25)).indices == result.indices  # greedy: deterministic


def test_greedy_answers_match_a_plain_argmax_loop(reranker: Reranker, chat_dir: Path) -> None:
    """The reference: one token at a time, the argmax of a full forward pass, no cache."""
    model = reranker.backend.chat_model  # type: ignore[attr-defined]
    short = RANKGPT.messages("q", ["alpha", "beta"])
    long = RANKGPT.messages("a longer query about DNA", ["alpha beta gamma", "delta", "eps"])
    answers = model.generate([(short, 6), (long, 9)])  # one left-padded batch
    tokenizer: Any = AutoTokenizer.from_pretrained(chat_dir)
    plain = AutoModelForCausalLM.from_pretrained(chat_dir).eval()
    for (messages, steps), (text, usage) in zip([(short, 6), (long, 9)], answers, strict=True):
        rendered = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
        generated: list[int] = []
        with torch.inference_mode():
            for _ in range(steps):
                logits = plain(torch.tensor([ids + generated])).logits
                token = int(logits[0, -1].argmax())
                if token == tokenizer.eos_token_id:
                    break
                generated.append(token)
        assert text == tokenizer.decode(generated, skip_special_tokens=True)
        assert usage == {"prompt_tokens": len(ids), "completion_tokens": len(generated)}


def test_queries_share_batches_without_changing_their_answers(reranker: Reranker) -> None:
    requests = [(f"query {i} about DNA", _docs(n)) for i, n in enumerate((25, 7, 12))]
    together = reranker.rank_many(requests)
    for (query, docs), result in zip(requests, together, strict=True):
        alone = reranker.rank(query, docs)
        assert result.indices == alone.indices
        assert result.usage == alone.usage


async def test_the_async_path_runs_on_the_backends_worker(reranker: Reranker) -> None:
    docs = _docs(9)
    assert (await reranker.arank(QUERY, docs, top_k=4)).indices == reranker.rank(
        QUERY, docs, top_k=4
    ).indices


def test_a_small_context_shrinks_the_passages(chat_dir: Path) -> None:
    rr = Reranker(str(chat_dir), backend="listwise", context_size=1000)
    long_docs = [" ".join([f"word{i}"] * 80) for i in range(5)]
    result = rr.rank(QUERY, long_docs)
    _assert_once(result, 5)
    assert result.usage["truncated_passages"] == 5
    model = rr.backend.chat_model  # type: ignore[attr-defined]
    assert result.usage["prompt_tokens"] <= 1000 - model.answer_tokens(5)


def test_a_model_without_chat_template_needs_one(tmp_path: Path) -> None:
    folder = model_factory.tiny_chat_model(tmp_path / "plain", chat_template=None)
    with pytest.raises(ConfigurationError, match="has no chat template; pass chat_template="):
        Reranker(str(folder), backend="listwise")
    rr = Reranker(str(folder), backend="listwise", chat_template=model_factory.CHATML_TEMPLATE)
    _assert_once(rr.rank(QUERY, _docs(3)), 3)


def test_server_options_are_refused_for_a_local_model(chat_dir: Path) -> None:
    for option in ({"price_per_million_input_tokens": 1.0}, {"max_retries": 2}):
        with pytest.raises(ConfigurationError, match=r"only apply to a server \(base_url"):
            Reranker(str(chat_dir), backend="listwise", **option)


def test_rank_zephyr_folders_are_inferred_as_listwise_and_run_here(
    chat_dir: Path, tmp_path: Path
) -> None:
    named = tmp_path / "rank_zephyr_tiny"
    named.symlink_to(chat_dir, target_is_directory=True)
    assert json.loads((named / "config.json").read_text())["architectures"] == ["Qwen3ForCausalLM"]
    rr = Reranker(str(named))
    assert rr.backend_name == "listwise"
    assert rr.backend.remote is False
    assert rr.backend.style.name == "rankzephyr"  # type: ignore[attr-defined]
    _assert_once(rr.rank(QUERY, _docs(4)), 4)
