"""The causal-LM backend against its authors' code on the same tiny weights.

Qwen3-Reranker: the model card's scoring code, re-typed below (it is the reference), and
sentence-transformers' ``CrossEncoder`` (a causal LM + ``LogitScore``, prompted through a chat
template that carries the query and document roles).
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sentence_transformers import CrossEncoder
from transformers import AutoModelForCausalLM, AutoTokenizer

from rerankit import BackendError, ConfigurationError, Reranker
from rerankit.registry import infer_backend
from tests import model_factory

# The card pads with max_length and padding=True, which transformers warns about.
pytestmark = pytest.mark.filterwarnings("ignore:`max_length` is ignored:UserWarning")

QUERY = "Which proteins are involved in DNA repair?"

# The model card's prompt, typed from the card.
CARD_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n'
    "<|im_start|>user\n"
)
CARD_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
CARD_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

# A chat template that renders the card's prompt (the strings keep their trailing newlines).
ST_TEMPLATE = (
    '{%- set query = messages | selectattr("role", "eq", "query") | map(attribute="content") '
    "| first -%}\n"
    '{%- set document = messages | selectattr("role", "eq", "document") '
    '| map(attribute="content") | first -%}\n'
    "{{- "
    + json.dumps(CARD_PREFIX + f"<Instruct>: {CARD_INSTRUCTION}\n<Query>: ")
    + " + query + "
    + json.dumps("\n<Document>: ")
    + " + document + "
    + json.dumps(CARD_SUFFIX)
    + " -}}"
)

TRICKY_QUERIES = [
    QUERY,
    "what is DNA?\n",
    "what is DNA",
    "trailing spaces   ",
    " leading space",
    "",
    "Qu'est-ce que l'ADN ? é 检索增强生成",
    "numbers 2024 3.14 1e-5",
    "ends with two newlines\n\n",
]
TRICKY_DOCS = [
    "DNA repair involves proteins such as BRCA1 and RAD51.",
    "",
    " leading space",
    "trailing space ",
    "?\nquestion mark then newline",
    "ünïcödé, 检索增强生成, émigré",
    "digits 12345 and 3.14159",
    "The capital of France is Paris.\n\n",
]


def format_instruction(instruction: str | None, query: str, doc: str) -> str:
    """The card's body; ``sep`` is the text before ``<Document>`` (the card: a newline)."""
    if instruction is None:
        instruction = CARD_INSTRUCTION
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"


def card_inputs(
    folder: Path,
    pairs: list[tuple[str, str]],
    *,
    instruction: str | None = None,
    max_length: int = 8192,
    padding_side: str = "left",
    body: Any = format_instruction,
) -> tuple[Any, dict[str, torch.Tensor]]:
    """The model card's ``process_inputs``: the body tokenized as one string, then wrapped."""
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side=padding_side)
    prefix_tokens = tokenizer.encode(CARD_PREFIX, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(CARD_SUFFIX, add_special_tokens=False)
    texts = [body(instruction, query, doc) for query, doc in pairs]
    inputs = tokenizer(
        texts,
        padding=False,
        truncation="longest_first",
        return_attention_mask=False,
        max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
    )
    for i, ele in enumerate(inputs["input_ids"]):
        inputs["input_ids"][i] = prefix_tokens + ele + suffix_tokens
    padded = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
    return tokenizer, dict(padded)


def card_scores(folder: Path, pairs: list[tuple[str, str]], **settings: Any) -> np.ndarray:
    """The card's ``compute_logits``: log-softmax over (no, yes) at the last position.

    Returns the log-odds log P(yes) - log P(no); the card's score is its sigmoid.
    """
    tokenizer, inputs = card_inputs(folder, pairs, **settings)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    token_false_id = tokenizer.convert_tokens_to_ids("no")
    token_true_id = tokenizer.convert_tokens_to_ids("yes")
    with torch.no_grad():
        batch_scores = model(**inputs).logits[:, -1, :]
    stacked = torch.stack([batch_scores[:, token_false_id], batch_scores[:, token_true_id]], 1)
    log_probs = torch.nn.functional.log_softmax(stacked, dim=1)
    return (log_probs[:, 1] - log_probs[:, 0]).double().numpy()


def sigmoid(values: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-values))


@pytest.fixture(scope="module")
def qwen3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3-Reranker (its name infers the family), with a chat template for ST."""
    folder = tmp_path_factory.mktemp("llm") / "Qwen3-Reranker-tiny"
    return model_factory.tiny_qwen3_reranker(folder, chat_template=ST_TEMPLATE)


@contextmanager
def model_inputs(rr: Reranker) -> Iterator[list[list[int]]]:
    """The real (unpadded) input ids the reranker's model is given, row by row."""
    seen: list[list[int]] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        mask = kwargs["attention_mask"].bool()
        assert mask[:, -1].all(), "a row does not end in a real token (right padding?)"
        seen.extend(ids[row].tolist() for ids, row in zip(kwargs["input_ids"], mask, strict=True))

    handle = rr.backend.model.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def full_text_scores(folder: Path, texts: list[str]) -> np.ndarray:
    """Log-odds of whole prompts tokenized as one string each (as a chat-template user would)."""
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    inputs = tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1, :]
    no, yes = tokenizer.convert_tokens_to_ids(["no", "yes"])
    return (logits[:, yes] - logits[:, no]).double().numpy()


def _pairs(queries: list[str], docs: list[str]) -> list[tuple[str, str]]:
    return [(q, d) for q in queries for d in docs]


def test_input_ids_equal_the_cards_joint_tokenization(qwen3_dir: Path) -> None:
    """Tokenizing each query and passage once gives the ids of the card's one-string body."""
    rr = Reranker(str(qwen3_dir), batch_size=4)
    with model_inputs(rr) as seen:
        rr.score_many([(q, TRICKY_DOCS) for q in TRICKY_QUERIES])
    _, inputs = card_inputs(qwen3_dir, _pairs(TRICKY_QUERIES, TRICKY_DOCS))
    expected = [
        ids[mask.bool()].tolist()
        for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)
    ]
    assert sorted(seen) == sorted(expected)
    # The joints this guards: "?\n" and "\n\n" are one token each, as in Qwen's tokenizer.
    tokenizer = AutoTokenizer.from_pretrained(qwen3_dir)
    assert len(tokenizer("DNA?\n", add_special_tokens=False)["input_ids"]) == 2
    assert len(tokenizer("\n\n", add_special_tokens=False)["input_ids"]) == 1


def test_scores_equal_the_model_card(qwen3_dir: Path) -> None:
    pairs = _pairs(TRICKY_QUERIES, TRICKY_DOCS)
    reference = card_scores(qwen3_dir, pairs)
    requests = [(q, TRICKY_DOCS) for q in TRICKY_QUERIES]
    raw = Reranker(str(qwen3_dir), batch_size=16).score_many(requests)
    assert np.concatenate(raw) == pytest.approx(reference, abs=1e-5)
    normalized = Reranker(str(qwen3_dir), normalize=True).score_many(requests)
    assert np.concatenate(normalized) == pytest.approx(sigmoid(reference), abs=1e-5)
    assert np.ptp(reference) > 1e-3, "reference scores are all equal: the test could not fail"


def test_scores_equal_sentence_transformers(qwen3_dir: Path, scifact_texts: list[str]) -> None:
    docs = [*scifact_texts[:12], *TRICKY_DOCS]
    ce = CrossEncoder(str(qwen3_dir), device="cpu")
    reference = np.asarray(
        ce.predict([(QUERY, d) for d in docs], activation_fn=torch.nn.Identity(), batch_size=8)
    )
    rr = Reranker(str(qwen3_dir), max_length=4096)  # ST's limit: nothing is truncated
    assert rr.score(QUERY, docs) == pytest.approx(reference.tolist(), abs=1e-5)
    # ST's own sigmoid is the card's P(yes).
    probabilities = np.asarray(ce.predict([(QUERY, d) for d in docs], batch_size=8))
    normalized = Reranker(str(qwen3_dir), max_length=4096, normalize=True)
    assert normalized.score(QUERY, docs) == pytest.approx(probabilities.tolist(), abs=1e-5)
    assert normalized.rank(QUERY, docs).scale == "probability"
    assert np.ptp(reference) > 1e-3


def test_the_reference_discriminates(qwen3_dir: Path) -> None:
    """A missing newline before <Document>, or right padding, moves the card's scores."""
    pairs = [(QUERY, d) for d in ["short", *TRICKY_DOCS, "a much longer passage " * 12]]
    reference = card_scores(qwen3_dir, pairs)

    def no_newline(instruction: str | None, query: str, doc: str) -> str:
        return format_instruction(instruction, query, doc).replace("\n<Document>", "<Document>")

    wrong_prompt = card_scores(qwen3_dir, pairs, body=no_newline)
    right_padded = card_scores(qwen3_dir, pairs, padding_side="right")
    assert np.abs(wrong_prompt - reference).max() > 1e-3
    assert np.abs(right_padded - reference).max() > 1e-3
    ours = np.asarray(Reranker(str(qwen3_dir)).score(QUERY, [d for _, d in pairs]))
    assert ours == pytest.approx(reference, abs=1e-5)


def test_a_chat_template_loses_the_trailing_newline(qwen3_dir: Path) -> None:
    """The card's prompt as a template file renders without its last newline; ids are built."""
    tokenizer = AutoTokenizer.from_pretrained(qwen3_dir)
    template = (
        CARD_PREFIX
        + "<Instruct>: {{ instruction }}\n<Query>: {{ query }}\n<Document>: {{ document }}"
        + CARD_SUFFIX
    )
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": ""}],
        chat_template=template,
        tokenize=False,
        instruction=CARD_INSTRUCTION,
        query=QUERY,
        document="DNA repair",
    )
    expected = CARD_PREFIX + format_instruction(None, QUERY, "DNA repair") + CARD_SUFFIX
    assert rendered == expected[:-1], "the template kept its trailing newline"
    exact, lost = full_text_scores(qwen3_dir, [expected, rendered])
    ours = Reranker(str(qwen3_dir)).score(QUERY, ["DNA repair"])
    assert ours == pytest.approx([exact], abs=1e-5)
    assert abs(ours[0] - lost) > 1e-3


def test_batch_composition_does_not_change_scores(
    qwen3_dir: Path, scifact_texts: list[str]
) -> None:
    docs = [*scifact_texts[:14], "", "x"]
    one_by_one = Reranker(str(qwen3_dir), batch_size=1).score(QUERY, docs)
    together = Reranker(str(qwen3_dir), batch_size=16, max_batch_tokens=100_000)
    assert together.score(QUERY, docs) == pytest.approx(one_by_one, abs=1e-5)
    shared = together.score_many([(QUERY, docs), ("another query about cells", docs[:5])])
    assert shared[0] == pytest.approx(one_by_one, abs=1e-5)


def test_long_documents_keep_the_prompt_and_equal_the_card(qwen3_dir: Path) -> None:
    """A long passage is cut; the prompt's suffix survives, as with the card's truncation."""
    docs = ["short passage", "word " * 800, "DNA repair " * 300]
    rr = Reranker(str(qwen3_dir), max_length=256)
    with model_inputs(rr) as seen:
        result = rr.rank(QUERY, docs)
    assert result.truncated == 2
    reference = card_scores(qwen3_dir, [(QUERY, d) for d in docs], max_length=256)
    assert rr.score(QUERY, docs) == pytest.approx(reference, abs=1e-5)
    tokenizer = AutoTokenizer.from_pretrained(qwen3_dir)
    suffix = tokenizer.encode(CARD_SUFFIX, add_special_tokens=False)
    assert [len(ids) for ids in seen] == [256, 256, len(seen[2])]
    assert all(ids[-len(suffix) :] == suffix for ids in seen)


def test_long_query_is_capped_and_keeps_the_prompt(
    qwen3_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rr = Reranker(str(qwen3_dir))
    with caplog.at_level(logging.WARNING, logger="rerankit"), model_inputs(rr) as seen:
        result = rr.rank("a very long query " * 200, ["passage one", "passage two " * 100])
    assert "query truncated to max_query_length=" in caplog.text
    assert len(result) == 2
    tokenizer = AutoTokenizer.from_pretrained(qwen3_dir)
    document = tokenizer.encode("\n<Document>:", add_special_tokens=False)
    suffix = tokenizer.encode(CARD_SUFFIX, add_special_tokens=False)
    prefix = tokenizer.encode(CARD_PREFIX, add_special_tokens=False)
    label = tokenizer.encode(f"<Instruct>: {CARD_INSTRUCTION}\n<Query>:", add_special_tokens=False)
    around = sum(
        len(tokenizer.encode(text, add_special_tokens=False))
        for text in (f"<Instruct>: {CARD_INSTRUCTION}\n<Query>: ", "\n")
    )
    for ids in seen:
        assert len(ids) <= 512
        assert ids[: len(prefix)] == prefix
        assert ids[-len(suffix) :] == suffix
        assert ids[len(prefix) : len(prefix) + len(label)] == label, "the prompt was cut"
        starts = [i for i in range(len(ids)) if ids[i : i + len(document)] == document]
        # The query's own tokens are capped at 256 (max_length // 2); the prompt's text around
        # it comes on top, and the newline before <Document> survives.
        assert starts == [len(prefix) + around + 256 - 1], "the query cap is off"


def test_a_long_instruction_never_pushes_the_query_out(qwen3_dir: Path) -> None:
    instruction = "Given a question about proteins, find the abstract that answers it. " * 8
    rr = Reranker(str(qwen3_dir), instruction=instruction, max_query_length=24)
    tokenizer = AutoTokenizer.from_pretrained(qwen3_dir)
    query = tokenizer.encode(" QSTART protein folding", add_special_tokens=False)
    with model_inputs(rr) as seen:
        rr.score("QSTART protein folding", ["a passage"])
    label = tokenizer.encode("<Query>:", add_special_tokens=False)
    (ids,) = seen
    assert any(ids[i : i + len(label)] == label for i in range(len(ids)))
    assert any(ids[i : i + len(query)] == query for i in range(len(ids))), "the query was cut"


def test_instruction_option(qwen3_dir: Path) -> None:
    docs = TRICKY_DOCS
    instruction = "Given a biology question, find the abstract that answers it"
    reference = card_scores(qwen3_dir, [(QUERY, d) for d in docs], instruction=instruction)
    scores = Reranker(str(qwen3_dir), instruction=instruction).score(QUERY, docs)
    assert scores == pytest.approx(reference, abs=1e-5)
    default = Reranker(str(qwen3_dir)).score(QUERY, docs)
    assert np.abs(np.asarray(default) - reference).max() > 1e-3


def test_name_routes_to_llm_and_qwen3() -> None:
    assert infer_backend("Qwen/Qwen3-Reranker-0.6B") == "llm"
    with pytest.raises(BackendError, match=r"(?s)could not load causal-LM reranker.*HF cache"):
        Reranker("Qwen/Qwen3-Reranker-0.6B")


def test_family_is_inferred_from_the_name_and_checked(qwen3_dir: Path, tmp_path: Path) -> None:
    assert Reranker(str(qwen3_dir)).backend.model.family.name == "qwen3"
    anonymous = tmp_path / "my-model"
    anonymous.symlink_to(qwen3_dir, target_is_directory=True)
    with pytest.raises(ConfigurationError, match=r"pass family= one of \['bge-gemma', "):
        Reranker(str(anonymous), backend="llm")
    explicit = Reranker(str(anonymous), backend="llm", family="QWEN3")
    assert explicit.score(QUERY, ["a"]) == Reranker(str(qwen3_dir)).score(QUERY, ["a"])
    misnamed = tmp_path / "mxbai-rerank-base-v2"
    misnamed.symlink_to(qwen3_dir, target_is_directory=True)
    with pytest.raises(ConfigurationError, match=r"Qwen2ForCausalLM.*\['Qwen3ForCausalLM'\]"):
        Reranker(str(misnamed))
    with pytest.raises(ConfigurationError, match="option family takes one of"):
        Reranker(str(qwen3_dir), family="llama")


def test_a_layerwise_name_on_another_checkpoint_is_refused(tmp_path: Path, qwen3_dir: Path) -> None:
    folder = tmp_path / "bge-reranker-v2-minicpm-layerwise"
    folder.symlink_to(qwen3_dir, target_is_directory=True)
    with pytest.raises(
        ConfigurationError,
        match=r"'bge-layerwise' reranker, which is a LayerWiseMiniCPMForCausalLM, but its config "
        r"says \['Qwen3ForCausalLM'\]",
    ):
        Reranker(str(folder))


def test_untrained_weights_are_refused(qwen3_dir: Path, tmp_path: Path) -> None:
    """An untied checkpoint saved without its lm_head would run with a random one."""
    folder = tmp_path / "Qwen3-Reranker-no-head"
    shutil.copytree(qwen3_dir, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["tie_word_embeddings"] = False
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"no trained weights for \['lm_head.weight'\]"):
        Reranker(str(folder))


def test_classifier_checkpoints_are_refused(tmp_path: Path, qwen3_dir: Path) -> None:
    folder = tmp_path / "Qwen3-Reranker-seq"
    shutil.copytree(qwen3_dir, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["architectures"] = ["Qwen3ForSequenceClassification"]
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigurationError, match="use backend='cross-encoder'"):
        Reranker(str(folder), backend="llm")


def test_remote_code_runs_only_when_asked(qwen3_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "Qwen3-Reranker-remote"
    shutil.copytree(qwen3_dir, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoModelForCausalLM": "remote_model.Model"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "remote_model.py").write_text('raise RuntimeError("the folder\'s own code ran")\n')
    assert len(Reranker(str(folder), trust_remote_code="false").score(QUERY, ["a"])) == 1
    with pytest.raises(RuntimeError, match="the folder's own code ran"):
        Reranker(str(folder), trust_remote_code=True)


def test_options_are_checked(qwen3_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"max_query_length must be between 1 and"):
        Reranker(str(qwen3_dir), max_query_length=500)
    with pytest.raises(ConfigurationError, match=r"max_length=64 leaves no room .* takes \d+ tok"):
        Reranker(str(qwen3_dir), max_length=64)
    with pytest.raises(ConfigurationError, match="does not accept the options"):
        Reranker(str(qwen3_dir), allow_untrained_head=True)


# -- bge-reranker-v2-gemma and mxbai-rerank-v2: golden files from their authors' packages ------

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "generative"
GOLDEN_RUNS = [
    (folder, index) for folder, runs in (("bge-gemma", 2), ("mxbai-v2", 4)) for index in range(runs)
]


def _golden(folder: str) -> dict[str, Any]:
    """``expected.json`` written by ``make_goldens.py`` (FlagEmbedding / mxbai-rerank)."""
    loaded: dict[str, Any] = json.loads((GOLDEN / folder / "expected.json").read_text("utf-8"))
    return loaded


@pytest.mark.parametrize(("folder", "index"), GOLDEN_RUNS)
def test_golden_input_ids_and_scores(folder: str, index: int) -> None:
    """Token for token and score for score what FlagEmbedding / mxbai-rerank computed."""
    expected = _golden(folder)
    run = expected["runs"][index]
    pairs = expected["inputs"]["pairs"]
    rr = Reranker(
        str(GOLDEN / folder),
        backend="llm",
        family=expected["family"],
        max_length=run["max_length"],
        instruction=run.get("instruction"),
        batch_size=3,
    )
    with model_inputs(rr) as seen:
        scores = np.concatenate(rr.score_many([(query, [doc]) for query, doc in pairs]))
    assert sorted(seen) == sorted(run["input_ids"])
    # mxbai-rerank pads to a multiple of 8 on the left without position ids, so its rows' RoPE
    # positions start at the padding's width: with these large random weights that moves the
    # 203-token row by up to 1.4e-5 (its batch and one-pair calls differ by as much). rerankit
    # starts every row at position 0; given the reference's offsets, the rows agree to 2e-6.
    tolerance = 2e-5 if expected["family"] == "mxbai-v2" else 1e-5
    assert scores == pytest.approx(run["scores_raw"], abs=tolerance)
    assert scores == pytest.approx(run["scores_single_pair_calls"], abs=tolerance)
    normalized = Reranker(
        str(GOLDEN / folder),
        backend="llm",
        family=expected["family"],
        max_length=run["max_length"],
        instruction=run.get("instruction"),
        normalize=True,
    ).score_many([(query, [doc]) for query, doc in pairs])
    assert np.concatenate(normalized) == pytest.approx(sigmoid(scores), abs=1e-6)
    if expected["family"] == "bge-gemma":  # FlagEmbedding's normalize is that sigmoid
        assert np.concatenate(normalized) == pytest.approx(run["scores_normalized"], abs=1e-5)


@pytest.mark.parametrize("folder", ["bge-gemma", "mxbai-v2"])
def test_golden_files_discriminate(folder: str) -> None:
    """Each wrong layout the generator tried moved the reference's scores (same rows: not)."""
    found = _golden(folder)["discrimination_max_abs_diff_vs_golden"]
    wrong = {
        k: v for k, v in found.items() if not k.startswith(("same_rows", "right_padding_read_last"))
    }
    assert len(wrong) >= 5
    assert min(wrong.values()) > 1e-3, wrong


@pytest.mark.parametrize(
    ("folder", "name", "family"),
    [
        ("bge-gemma", "bge-reranker-v2-gemma-tiny", "bge-gemma"),
        ("mxbai-v2", "mxbai-rerank-base-v2-tiny", "mxbai-v2"),
    ],
)
def test_golden_folders_infer_their_family(
    folder: str, name: str, family: str, tmp_path: Path
) -> None:
    named = tmp_path / name
    named.symlink_to(GOLDEN / folder, target_is_directory=True)
    rr = Reranker(str(named))
    assert (rr.backend_name, rr.backend.model.family.name) == ("llm", family)


def test_bge_gemma_takes_no_instruction() -> None:
    with pytest.raises(ConfigurationError, match="'bge-gemma' family takes no instruction"):
        Reranker(str(GOLDEN / "bge-gemma"), backend="llm", family="bge-gemma", instruction="x")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_batches_agree_and_bfloat16_keeps_the_ranking(qwen3_dir: Path) -> None:
    """On CUDA left-padded batches must score as single rows (a masked SDPA kernel did not)."""
    rng = np.random.default_rng(0)
    words = ["cell", "protein", "gene", "DNA", "repair", "immune", "tumour", "risk", "Paris"]
    docs = [" ".join(rng.choice(words, size=n)) for n in rng.integers(1, 300, size=40)]
    cpu = np.asarray(Reranker(str(qwen3_dir), device="cpu").score(QUERY, docs))
    one = Reranker(str(qwen3_dir), device="cuda", dtype="float32", batch_size=1)
    many = Reranker(str(qwen3_dir), device="cuda", dtype="float32", batch_size=16)
    assert many.score(QUERY, docs) == pytest.approx(one.score(QUERY, docs), abs=1e-5)
    assert many.score(QUERY, docs) == pytest.approx(cpu, abs=1e-5)
    default = Reranker(str(qwen3_dir), device="cuda")
    assert default.backend.model.dtype == torch.bfloat16  # type: ignore[attr-defined]
    scores = np.asarray(default.score(QUERY, docs))
    assert set(np.argsort(-scores)[:5]) & set(np.argsort(-cpu)[:5])
    assert np.abs(scores - cpu).max() < 0.1


def test_mxbai_empty_instruction_is_no_instruction() -> None:
    folder = str(GOLDEN / "mxbai-v2")
    plain = Reranker(folder, backend="llm", family="mxbai-v2")
    empty = Reranker(folder, backend="llm", family="mxbai-v2", instruction="")
    docs = ["a passage", ""]
    assert empty.score("q", docs) == plain.score("q", docs)
