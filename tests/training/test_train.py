"""``rerankit train`` end to end on a tiny encoder and real SciFact training claims."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("datasets")

from rerankit import Reranker
from rerankit.cli import main
from rerankit.config import RerankerConfig
from rerankit.errors import ConfigurationError, InvalidInputError, ServiceUnavailableError
from rerankit.training import TrainSettings, load_training_data, train
from rerankit.training.teacher import CHUNK_QUERIES, Teacher
from tests import model_factory
from tests.backends.rerank_server import running_server


def _settings(base: Path, out: Path, **changes: Any) -> TrainSettings:
    values: dict[str, Any] = {
        "negatives": 3,
        "mine_depth": 10,
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 2e-3,
        "max_length": 64,
        "validation_queries": 4,
        "eval_steps": 4,
        "seed": 7,
        "device": "cpu",
    }
    return TrainSettings(base=str(base), out=str(out), **{**values, **changes})


def _weights(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _same_weights(a: Path, b: Path) -> bool:
    import torch

    first, second = _weights(a), _weights(b)
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture(scope="module")
def trained(
    train_set: Path, tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainSettings, Any]:
    out = tmp_path_factory.mktemp("trained") / "model"
    settings = _settings(tiny_encoder_dir, out)
    return settings, train(train_set, settings)


@pytest.fixture(scope="module")
def minilm_trained(
    train_set: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainSettings, Any]:
    """The real all-MiniLM-L6-v2 encoder, trained 10 steps and exported: the path users take."""
    out = tmp_path_factory.mktemp("minilm-trained") / "model"
    settings = _settings(model_factory.minilm_dir(), out, epochs=1, learning_rate=1e-4)
    return settings, train(train_set, settings, export="int8")


def _training_pairs(train_set: Path, settings: TrainSettings) -> list[tuple[str, str, float]]:
    """Every (query, document, label) the run trained on: positives and mined negatives."""
    from rerankit.training.negatives import first_stage_candidates, sample_negatives

    data = load_training_data(train_set)
    candidates = first_stage_candidates(data, depth=settings.mine_depth)
    negatives = sample_negatives(data, candidates, count=settings.negatives, seed=settings.seed)
    return [
        (query.text, data.corpus[d], float(d in query.positives))
        for query in data.judged_queries
        for d in query.positives + negatives[query.qid]
    ]


def _fit(model: Any, pairs: list[tuple[str, str, float]]) -> tuple[float, float]:
    """The run's objective over ``pairs`` (BCE, positives weighted by the negatives per positive)
    and how often a query's positive outscores its negatives."""
    import torch

    pairs_only = [(q, d) for q, d, _ in pairs]
    logits = torch.tensor(model.predict(pairs_only, activation_fn=torch.nn.Identity()))
    labels = torch.tensor([label for *_, label in pairs])
    weight = (labels == 0).sum() / (labels > 0).sum()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, pos_weight=weight)
    by_query: dict[str, list[tuple[float, float]]] = {}
    for (query, _, label), logit in zip(pairs, logits.tolist(), strict=True):
        by_query.setdefault(query, []).append((logit, label))
    wins = [
        p > n
        for scored in by_query.values()
        for p, lp in scored
        for n, ln in scored
        if lp > 0 and ln == 0
    ]
    return loss.item(), sum(wins) / len(wins)


def test_training_lowers_the_loss_and_learns_the_judgments(train_set: Path, tmp_path: Path) -> None:
    """The real all-MiniLM-L6-v2 encoder fits the training judgments it was given."""
    import transformers
    from sentence_transformers import CrossEncoder

    base = model_factory.minilm_dir()
    settings = _settings(base, tmp_path / "m", epochs=3, learning_rate=3e-4, validation_queries=0)
    pairs = _training_pairs(train_set, settings)
    transformers.set_seed(settings.seed)  # the run starts from exactly this model
    before = _fit(CrossEncoder(str(base), num_labels=1, max_length=64), pairs)
    outcome = train(train_set, settings)
    after = _fit(CrossEncoder(str(outcome.out), max_length=64), pairs)
    assert after[0] < 0.7 * before[0]
    assert after[1] > max(before[1], 0.8)
    assert outcome.train_queries == 24
    assert not [p for p in outcome.curve if "ndcg@10" in p]


def test_validation_holds_out_queries_and_keeps_the_best_step(
    trained: tuple[TrainSettings, Any],
) -> None:
    _, outcome = trained
    validated = [p for p in outcome.curve if "ndcg@10" in p]
    assert outcome.train_queries == 20
    assert outcome.validation_queries == 4
    assert len(validated) == outcome.steps // 4
    best = max(validated, key=lambda p: p["ndcg@10"])
    assert outcome.best_step == int(best["step"])


def test_the_folder_loads_in_rerankit_sentence_transformers_and_flashrank(
    minilm_trained: tuple[TrainSettings, Any], scifact_texts: list[str]
) -> None:
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    settings, outcome = minilm_trained
    _, loading = AutoModelForSequenceClassification.from_pretrained(
        str(outcome.out), output_loading_info=True
    )
    assert not loading["missing_keys"]
    assert not loading["mismatched_keys"]
    # --max-length bounds training only: the folder keeps the base's limit for inference
    limit = AutoTokenizer.from_pretrained(str(settings.base)).model_max_length
    assert limit > settings.max_length
    assert AutoTokenizer.from_pretrained(str(outcome.out)).model_max_length == limit
    query, docs = "cells and proteins in cancer", scifact_texts[:12]
    ours = Reranker(str(outcome.out), device="cpu", max_length=settings.max_length)
    assert ours.backend_name == "cross-encoder"
    theirs = CrossEncoder(str(outcome.out), device="cpu", max_length=settings.max_length)
    pairs = [(query, d) for d in docs]
    expected = theirs.predict(pairs, activation_fn=torch.nn.Identity())
    assert ours.score(query, docs) == pytest.approx(expected.tolist(), abs=1e-5)
    probabilities = Reranker(str(outcome.out), device="cpu", max_length=64, normalize=True)
    assert probabilities.score(query, docs) == pytest.approx(
        theirs.predict(pairs).tolist(), abs=1e-6
    )
    assert outcome.export == outcome.out / "onnx-int8"
    onnx = Reranker(str(outcome.export), max_length=settings.max_length)
    assert onnx.backend_name == "flashrank"
    int8 = onnx.score(query, docs)
    assert int8 == pytest.approx(expected.tolist(), abs=0.25)  # dynamic int8, same ranking scale
    card = (outcome.out / "README.md").read_text(encoding="utf-8")
    assert str(settings.base) in card
    assert "| step | nDCG@10 |" in card
    assert "rerankit eval" in card
    # the card's examples read the model as it learned: its length, long documents truncated
    assert f"max_length={settings.max_length},max_windows=1" in card
    assert (
        f"Reranker({str(outcome.out)!r}, max_length={settings.max_length}, max_windows=1)" in card
    )


def test_the_same_seed_gives_the_same_weights(
    trained: tuple[TrainSettings, Any], train_set: Path, tmp_path: Path
) -> None:
    settings, outcome = trained
    again = train(train_set, replace(settings, out=str(tmp_path / "again")))
    assert _same_weights(again.out, outcome.out)
    other = train(train_set, replace(settings, out=str(tmp_path / "other"), seed=8))
    assert not _same_weights(other.out, outcome.out)


class _Interrupt(Exception):
    pass


def test_resume_continues_from_the_checkpoint(
    train_set: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    from transformers import TrainerCallback

    class Steps(TrainerCallback):  # type: ignore[misc]
        def __init__(self, stop_at: int | None = None) -> None:
            self.taken, self.stop_at = 0, stop_at

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.taken += 1

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == self.stop_at:
                raise _Interrupt

    # No validation: the folder holds the last step's weights, so resuming must reproduce them.
    settings = _settings(tiny_encoder_dir, tmp_path / "whole", validation_queries=0)
    whole = train(train_set, settings)
    settings = replace(settings, out=str(tmp_path / "resumed"))
    with pytest.raises(_Interrupt):
        train(train_set, settings, callbacks=[Steps(stop_at=8)])
    assert (tmp_path / "resumed" / "training" / "checkpoints" / "checkpoint-8").is_dir()
    with pytest.raises(ConfigurationError, match="--overwrite"):
        train(train_set, settings)
    with pytest.raises(ConfigurationError, match="other settings"):
        train(train_set, replace(settings, seed=1), resume=True)
    # A run killed while saving leaves a checkpoint without its trainer state (written last).
    partial = tmp_path / "resumed" / "training" / "checkpoints" / "checkpoint-12"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"cut off")
    steps = Steps()
    resumed = train(train_set, settings, resume=True, callbacks=[steps])
    assert not partial.exists() or (partial / "trainer_state.json").is_file()
    assert steps.taken == whole.steps - 8
    assert resumed.steps == whole.steps
    assert _same_weights(resumed.out, whole.out)  # as if never interrupted


def test_teacher_scores_are_cached_and_an_interrupted_run_pays_once(
    train_set: Path, tiny_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JINA_API_KEY", "local-test-key")
    with running_server() as server:
        teacher = {
            "model": "jina-reranker-v2-base-multilingual",
            "backend": "jina",
            "options": {"base_url": server.url, "max_retries": 0, "timeout": 5.0},
        }
        settings = _settings(tiny_encoder_dir, tmp_path / "student", teacher=teacher, epochs=1)
        assert settings.resolved_loss == "listnet"
        # The service fails after the first chunk of queries: the run stops, typed.
        server.script.extend(["ok"] * CHUNK_QUERIES)
        server.default_step = ("status", 503, None)
        with pytest.raises(ServiceUnavailableError):
            train(train_set, settings)
        first_queries = {r["query"] for r in server.requests[:CHUNK_QUERIES]}
        assert not (tmp_path / "student" / "model.safetensors").exists()

        server.default_step = "ok"
        server.requests.clear()
        outcome = train(train_set, settings, resume=True)
        again = {r["query"] for r in server.requests}
        assert again
        assert not again & first_queries
        report = outcome.teacher
        assert report.cached > 0
        assert report.scored > 0
        assert report.usage["total_tokens"] > 0

        server.requests.clear()
        rerun = train(train_set, settings, overwrite=True)
        assert server.requests == []
        assert rerun.teacher.scored == 0
        assert rerun.teacher.cached == report.cached + report.scored
    card = (tmp_path / "student" / "README.md").read_text(encoding="utf-8")
    assert "jina-reranker-v2-base-multilingual" in card
    assert "JINA_API_KEY" not in card


def test_a_literal_api_key_for_the_teacher_is_refused_before_any_work(
    train_set: Path, tiny_encoder_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    teacher = "model=jina-reranker-v2-base-multilingual,backend=jina,api_key=sk-literal-123"
    out = tmp_path / "out"
    flags = ["--model", str(tiny_encoder_dir), "--out", str(out), "--teacher", teacher]
    code = main(["train", str(train_set), *flags])
    err = capsys.readouterr().err
    assert code == 2
    assert "literal API key" in err
    assert "sk-literal-123" not in err
    assert not out.exists()


def test_teacher_labels_are_the_teachers_scores(
    train_set: Path, tiny_encoder_dir: Path, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    import sqlite3

    teacher = {"model": str(tiny_bert_dir), "backend": "cross-encoder", "device": "cpu"}
    settings = _settings(
        tiny_encoder_dir,
        tmp_path / "s",
        teacher=teacher,
        epochs=1,
        loss="margin-mse",
        teacher_first_stage_weight=0.5,  # blended in training; the cache keeps the teacher's own
    )
    outcome = train(train_set, settings)
    assert outcome.teacher.scored > 0
    card = (tmp_path / "s" / "README.md").read_text()
    assert "blended with the first stage's z-scores at weight 0.5" in card
    cached = sqlite3.connect(tmp_path / "s" / "training" / "teacher-scores.sqlite")
    stored = sorted(score for (score,) in cached.execute("SELECT score FROM scores"))
    data = load_training_data(train_set)
    query = data.judged_queries[0]
    direct = Reranker(str(tiny_bert_dir), device="cpu").score(
        query.text, [data.corpus[d] for d in query.positives]
    )
    assert all(min(abs(s - d) for s in stored) < 1e-5 for d in direct)


def test_a_hybrid_teacher_blends_bm25_into_each_list(
    train_set: Path,
    tiny_encoder_dir: Path,
    tiny_bert_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rerankit.eval.first_stage import BM25
    from rerankit.training import trainer as trainer_module
    from rerankit.training.trainer import blend

    captured: dict[float, dict[str, list[Any]]] = {}
    weight = 0.0

    def stop(model: Any, rows: dict[str, list[Any]], *args: Any) -> Any:
        captured[weight] = rows
        raise _Interrupt

    monkeypatch.setattr(trainer_module, "_trainer", stop)
    teacher = {"model": str(tiny_bert_dir), "backend": "cross-encoder", "device": "cpu"}
    for weight in (0.0, 0.5):
        settings = _settings(
            tiny_encoder_dir,
            tmp_path / str(weight),
            teacher=teacher,
            loss="listnet",
            teacher_first_stage_weight=weight,
        )
        with pytest.raises(_Interrupt):
            train(train_set, settings)
    alone, hybrid = captured[0.0], captured[0.5]
    assert alone["query"] == hybrid["query"]
    assert alone["documents"] == hybrid["documents"]
    data = load_training_data(train_set)
    index, ids = BM25(data.corpus), {text: d for d, text in data.corpus.items()}
    moved = 0
    for query, documents, plain, blended in zip(
        alone["query"], alone["documents"], alone["labels"], hybrid["labels"], strict=True
    ):
        lexical = index.scores(query, [ids[text] for text in documents])
        assert blended == pytest.approx(blend(plain, lexical, 0.5))
        # the blend moves each document toward its BM25 standing, on the teacher's scale
        shift = [b - p for b, p in zip(blended, plain, strict=True)]
        order = sorted(range(len(lexical)), key=lexical.__getitem__)
        in_order = [shift[i] for i in order]
        assert all(a <= b + 1e-9 for a, b in itertools.pairwise(in_order))
        moved += any(abs(x) > 1e-6 for x in shift)
    assert moved > 0
    card = tmp_path / "0.5" / "README.md"
    assert not card.exists()  # stopped before training: nothing written as a finished model


def test_blend_puts_the_first_stage_on_the_teachers_scale_and_ignores_a_flat_one() -> None:
    import statistics

    from rerankit.training.trainer import blend

    teacher = [4.0, 1.0, 0.0, -2.0]
    lexical = [0.0, 9.0, 3.0, 6.0]
    blended = blend(teacher, lexical, 1.0)
    z = [(x - 4.5) / statistics.pstdev(lexical) for x in lexical]
    spread = statistics.pstdev(teacher)
    assert blended == pytest.approx([t + spread * w for t, w in zip(teacher, z, strict=True)])
    assert blend(teacher, lexical, 0.0) == teacher
    assert blend(teacher, [2.0] * 4, 1.0) == teacher  # no lexical signal: the teacher alone
    # a flat teacher still learns the first stage's order, on a unit scale
    assert blend([1.0, 1.0], [0.0, 2.0], 1.0) == [0.0, 2.0]


def test_first_stage_scores_are_bm25s_or_the_run_files(train_set: Path) -> None:
    from rerankit.eval.first_stage import BM25
    from rerankit.training.negatives import first_stage_scores

    data = load_training_data(train_set)
    query = data.judged_queries[0]
    hits = BM25(data.corpus).search(query.text, 5)
    unretrieved = next(d for d in data.corpus if d not in dict(hits))
    listed = {query.qid: [d for d, _ in hits] + [unretrieved]}
    scores = first_stage_scores(data, listed)[query.qid]
    assert scores[: len(hits)] == pytest.approx([s for _, s in hits])
    # a run: its own scores, its lowest (over documents in the corpus) for what it missed
    run = {query.qid: [hits[0], hits[1], ("not-in-the-corpus", -50.0)]}
    from_run = first_stage_scores(data, listed, run=run)[query.qid]
    listed_count = len(listed[query.qid])
    assert from_run == pytest.approx([hits[0][1]] + [hits[1][1]] * (listed_count - 1))
    assert first_stage_scores(data, listed, run={})[query.qid] == [0.0] * listed_count
    assert BM25(data.corpus).scores("?!", [unretrieved]) == [0.0]  # a query without terms


# -- bad input: typed errors before anything trains ---------------------------------------------


def _beir(folder: Path, corpus: list[dict[str, str]], qrels: list[str]) -> Path:
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "a claim"}) + "\n")
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels))
    return folder


DOCS = [{"_id": "d1", "text": "one abstract"}, {"_id": "d2", "text": "another abstract"}]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no-judged-query", "judges none of the queries"),
        ("unknown-document", "missing from corpus.jsonl"),
        ("empty-corpus", "the corpus has no documents"),
        ("bad-teacher", "teacher"),
        ("output-exists", "--overwrite"),
        ("bad-jsonl", "label must be a number"),
        ("first-stage-weight-without-teacher", "blends the first stage"),
        ("negative-first-stage-weight", "must be a finite number >= 0"),
        ("infinite-first-stage-weight", "must be a finite number >= 0"),
    ],
)
def test_bad_input_is_a_typed_error_before_training(
    case: str,
    message: str,
    tiny_encoder_dir: Path,
    train_set: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = train_set
    extra: list[str] = []
    out = tmp_path / "out"
    if case == "no-judged-query":
        data = _beir(tmp_path / "d", DOCS, [])
    elif case == "unknown-document":
        data = _beir(tmp_path / "d", DOCS, ["q1\td9\t1\n"])
    elif case == "empty-corpus":
        data = _beir(tmp_path / "d", [], ["q1\td1\t1\n"])
    elif case == "bad-teacher":
        extra = ["--teacher", f"model={tmp_path / 'missing'},backend=cross-encoder"]
    elif case == "output-exists":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "first-stage-weight-without-teacher":
        extra = ["--teacher-first-stage-weight", "0.5"]
    elif case in ("negative-first-stage-weight", "infinite-first-stage-weight"):
        teacher = f"model={tmp_path / 'missing'},backend=cross-encoder"
        weight = "-1" if case.startswith("negative") else "inf"
        extra = ["--teacher", teacher, "--teacher-first-stage-weight", weight]
    elif case == "bad-jsonl":
        data = tmp_path / "pairs.jsonl"
        data.write_text(json.dumps({"query": "q", "document": "d", "label": "yes"}) + "\n")
    code = main(["train", str(data), "--model", str(tiny_encoder_dir), "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert not (out / "model.safetensors").exists()
    assert not (out / "training").exists()
    if case == "output-exists":
        assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("case", ["unrelated-folder", "the-data", "the-teacher", "a-file", "cwd"])
def test_overwrite_replaces_only_an_earlier_training_run(
    case: str,
    tiny_encoder_dir: Path,
    train_set: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "mine"
    if case == "unrelated-folder":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
        message = "not one"
    elif case == "the-data":
        out = train_set
        message = "is or holds an input"
    elif case == "the-teacher":  # e.g. an earlier run's model, distilled again into itself
        shutil.copytree(tiny_encoder_dir, out)
        teacher = {"model": str(out), "backend": "cross-encoder"}
        message = "is or holds an input"
    elif case == "a-file":
        out.write_text("mine")
        message = "is a file"
    else:
        monkeypatch.chdir(tmp_path)
        out = tmp_path
        message = "is or holds an input"
    before = sorted(p.name for p in out.parent.iterdir())
    settings = _settings(tiny_encoder_dir, out, teacher=teacher if case == "the-teacher" else None)
    with pytest.raises(ConfigurationError, match=message):
        train(train_set, settings, overwrite=True)
    assert sorted(p.name for p in out.parent.iterdir()) == before
    if case in ("unrelated-folder", "a-file"):
        assert (out / "notes.txt" if out.is_dir() else out).read_text() == "mine"


def test_a_finished_run_or_other_data_cannot_be_resumed(
    trained: tuple[TrainSettings, Any], tmp_path: Path
) -> None:
    settings, _ = trained
    with pytest.raises(ConfigurationError, match="finished"):
        train(tmp_path, settings, resume=True)
    work = Path(settings.out) / "training"
    (work / "completed.json").rename(work / "was-completed.json")
    try:
        other = tmp_path / "other.jsonl"
        other.write_text(json.dumps({"query": "q", "positive": "p", "negative": "n"}) + "\n")
        with pytest.raises(ConfigurationError, match="other training data"):
            train(other, settings, resume=True)
    finally:
        (work / "was-completed.json").rename(work / "completed.json")


def test_a_run_file_must_cover_the_training_queries(
    train_set: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run.tsv"
    run.write_text("nobody\tnothing\t1.0\n")
    settings = _settings(tiny_encoder_dir, tmp_path / "o", run_file=str(run))
    with pytest.raises(InvalidInputError, match="ranks none"):
        train(train_set, settings)
    jsonl = tmp_path / "j.jsonl"
    jsonl.write_text(json.dumps({"query": "q", "positive": "p", "negative": "n"}) + "\n")
    with pytest.raises(ConfigurationError, match="JSONL"):
        train(jsonl, settings)


def test_validation_leaves_out_queries_the_first_stage_found_nothing_for(
    train_set: Path, tiny_encoder_dir: Path
) -> None:
    from transformers import AutoTokenizer

    from rerankit.training.trainer import _validation
    from rerankit.training.windows import WindowPicker

    data = load_training_data(train_set)
    held = data.judged_queries[:3]
    candidates = {q.qid: list(data.corpus)[:5] for q in held}
    candidates[held[0].qid] = []
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder_dir)
    picker = WindowPicker(tokenizer, [], max_length=64, max_windows=1)
    settings = _settings(tiny_encoder_dir, Path("x"))
    evaluator, used = _validation(data, held, candidates, picker, settings)
    assert used == 2
    assert [s["query"] for s in evaluator.samples] == [q.text for q in held[1:]]


def test_probability_teachers_are_read_as_log_odds() -> None:
    from types import SimpleNamespace

    from rerankit.training.trainer import _as_logits

    api = SimpleNamespace(report=SimpleNamespace(scale="service"))
    assert _as_logits([0.5, 0.9], api) == pytest.approx([0.0, 2.1972246])  # type: ignore[arg-type]
    logits = SimpleNamespace(report=SimpleNamespace(scale="logit"))
    assert _as_logits([0.5, 3.0], logits) == [0.5, 3.0]  # type: ignore[arg-type]


def test_a_retrained_local_teacher_is_not_read_from_the_cache(
    trained: tuple[TrainSettings, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "teacher"
    shutil.copytree(trained[1].out, folder)
    config = RerankerConfig.from_dict({"model": str(folder), "backend": "cross-encoder"})

    def identity() -> str:
        teacher = Teacher(config, tmp_path / "cache.sqlite")
        teacher.close()
        return teacher._identity

    before = identity()
    assert identity() == before  # the same weights: the cache holds
    weights = next(folder.glob("*.safetensors"))
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten in place
    assert identity() != before


def test_beir_judged_negatives_are_kept(tmp_path: Path) -> None:
    folder = _beir(tmp_path / "d", DOCS, ["q1\td1\t1\n", "q1\td2\t0\n"])
    (query,) = load_training_data(folder).queries
    assert query.judged == {"d1": 1, "d2": 0}


def test_a_jsonl_file_with_a_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "notepad.jsonl"
    row = {"query": "q", "positive": "p", "negatives": ["n"]}
    path.write_text("\ufeff" + json.dumps(row) + "\r\n", encoding="utf-8")
    (query,) = load_training_data(path).queries
    assert query.text == "q"


def test_jsonl_judgments_in_both_layouts(tmp_path: Path) -> None:
    path = tmp_path / "judgments.jsonl"
    rows = [
        {"query": "what is BM25", "positive": "a ranking function", "negatives": ["a fish"]},
        {"query": "what is BM25", "document": "a bag-of-words scorer", "label": 2},
        {"query": "what is BM25", "document": "a fish", "label": 0},
        {"query": "an unjudged query"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    data = load_training_data(path)
    assert len(data.corpus) == 3  # "a fish" once
    first, second = data.queries
    assert [data.corpus[d] for d in first.positives] == [
        "a bag-of-words scorer",
        "a ranking function",
    ]
    assert sorted(first.judged.values()) == [0, 1, 2]
    assert second.judged == {}
    assert data.judged_queries == [first]


def test_negatives_exclude_positives_are_seeded_and_per_query(train_set: Path) -> None:
    from rerankit.training.negatives import first_stage_candidates, sample_negatives

    data = load_training_data(train_set)
    candidates = first_stage_candidates(data, depth=20)
    negatives = sample_negatives(data, candidates, count=5, seed=3)
    assert negatives == sample_negatives(data, candidates, count=5, seed=3)
    assert negatives != sample_negatives(data, candidates, count=5, seed=4)
    for query in data.queries:
        picked = negatives[query.qid]
        assert len(picked) == len(set(picked)) <= 5
        assert not set(picked) & set(query.positives)
        assert set(picked) <= set(candidates[query.qid])
    fewer = replace(data, queries=data.queries[1:])
    alone = sample_negatives(fewer, candidates, count=5, seed=3)
    assert all(alone[q.qid] == negatives[q.qid] for q in fewer.queries)


def test_listwise_lambda_loss_on_graded_judgments(
    train_set: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    settings = _settings(tiny_encoder_dir, tmp_path / "l", loss="lambda", epochs=1)
    outcome = train(train_set, settings)
    assert outcome.examples == outcome.train_queries  # one list per query
    assert Reranker(str(outcome.out), device="cpu").score("a claim", ["x", "y"])
    assert "LambdaLoss" in (outcome.out / "README.md").read_text(encoding="utf-8")


@pytest.mark.gpu
def test_cuda_trains_in_bfloat16(train_set: Path, tiny_encoder_dir: Path, tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from transformers import TrainerCallback

    seen: dict[str, Any] = {}

    class Precision(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seen["bf16"], seen["device"] = args.bf16, kwargs["model"].device.type

    settings = _settings(tiny_encoder_dir, tmp_path / "g", device="cuda", epochs=1)
    outcome = train(train_set, settings, callbacks=[Precision()])
    assert seen == {"bf16": torch.cuda.is_bf16_supported(), "device": "cuda"}
    assert Reranker(str(outcome.out), device="cuda").score("a claim", ["x", "y"])
