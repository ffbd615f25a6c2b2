"""A small real retrieval set for the eval tests: scifact's first queries over a corpus slice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA


def scifact_slice(out: Path, *, queries: int, documents: int) -> Path:
    """A BEIR folder: scifact's first ``queries`` claims, their cited abstracts and the first
    ``documents`` abstracts of the corpus (real text, real judgements)."""
    source = SHARED_DATA / "scifact"
    out.mkdir(parents=True)
    kept = [json.loads(line) for line in (source / "queries.jsonl").open()][:queries]
    ids = {q["_id"] for q in kept}
    lines = (source / "qrels.tsv").read_text().splitlines()
    judged = [lines[0], *(row for row in lines[1:] if row.split("\t")[0] in ids)]
    cited = {row.split("\t")[1] for row in judged[1:]}
    with (source / "corpus.jsonl").open() as corpus, (out / "corpus.jsonl").open("w") as slice_:
        for position, line in enumerate(corpus):
            if position < documents or json.loads(line)["_id"] in cited:
                slice_.write(line)
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in kept))
    (out / "qrels.tsv").write_text("\n".join(judged) + "\n")
    return out


@pytest.fixture(scope="session")
def scifact_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 scifact claims over 30 abstracts: those they cite and the corpus's first 20."""
    return scifact_slice(tmp_path_factory.mktemp("scifact") / "scifact", queries=10, documents=20)


@pytest.fixture
def scifact_copy(scifact_small: Path, tmp_path: Path) -> Path:
    """A copy of :func:`scifact_small` that a test may change."""
    return Path(shutil.copytree(scifact_small, tmp_path / "scifact"))
