"""A small real training set (SciFact train claims) and a tiny encoder to train on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import model_factory
from tests.conftest import SHARED_DATA

QUERIES = 24
EXTRA_DOCUMENTS = 150


@pytest.fixture(scope="session")
def train_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 24 scifact-train claims over their cited abstracts plus 150 other abstracts."""
    from rerankit.eval.data import load_beir

    source = load_beir(SHARED_DATA / "scifact-train", max_queries=QUERIES)
    cited = {d for judged in source.qrels.values() for d in judged}
    keep = cited | set(list(source.corpus)[:EXTRA_DOCUMENTS])
    out = tmp_path_factory.mktemp("scifact-train-small")
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for doc_id in keep:
            corpus.write(json.dumps({"_id": doc_id, "title": "", "text": source.corpus[doc_id]}))
            corpus.write("\n")
    (out / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in source.queries.items()),
        encoding="utf-8",
    )
    rows = [f"{q}\t{d}\t{g}" for q, judged in source.qrels.items() for d, g in judged.items()]
    (out / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(rows) + "\n")
    return out


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT encoder with no reranking head."""
    return model_factory.tiny_bert_encoder(tmp_path_factory.mktemp("tiny-encoder"))
