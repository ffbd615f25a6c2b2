"""An out-of-tree backend installed as a package is named like a built-in one everywhere.

The plugin is a real distribution, built and installed into this test venv with pip (and
removed afterwards); it registers a listwise stand-in under the ``rerankit.backends`` group.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rerankit import Reranker
from rerankit.cli import main
from rerankit.registry import _plugins, available
from tests.conftest import SHARED_DATA
from tests.serve.test_serve_cli import rerankit_serve

pytestmark = pytest.mark.slow

PLUGIN = '''
"""A listwise stand-in backend: orders texts by how many query words they share."""

from collections.abc import Sequence
from typing import ClassVar

from rerankit.backends.base import Backend
from rerankit.options import Option
from rerankit.types import Scores


class WordOverlap(Backend):
    name: ClassVar[str] = "word-overlap"
    scale = "rank"
    options_schema = {"lowercase": Option("bool", True, "compare words case-insensitively")}

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        fold = str.lower if self.options["lowercase"] else str
        words = set(fold(query).split())
        overlap = [len(words & set(fold(t).split())) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: (-overlap[i], i))
        values = [0.0] * len(texts)
        for position, index in enumerate(order):
            values[index] = float(len(texts) - position)
        return Scores(values=values)
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    source = tmp_path_factory.mktemp("plugin")
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "rerankit-word-overlap"
            version = "0.1.0"

            [project.entry-points."rerankit.backends"]
            word-overlap = "rerankit_word_overlap:WordOverlap"
            """
        )
    )
    (source / "rerankit_word_overlap.py").write_text(PLUGIN)
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-build-isolation", "--no-index", str(source)],
        check=True,
    )
    importlib.invalidate_caches()
    _plugins.cache_clear()
    try:
        yield "word-overlap"
    finally:
        subprocess.run([*pip, "uninstall", "--yes", "rerankit-word-overlap"], check=True)
        importlib.invalidate_caches()
        _plugins.cache_clear()


DOCS = ["cells fold proteins", "Protein folding in cells", "bread", "folding chairs"]


def test_the_constructor_names_a_plugin(plugin: str) -> None:
    assert available()[plugin].plugin == "rerankit-word-overlap"
    result = Reranker("any-model", backend=plugin).rank("protein folding in cells", DOCS)
    assert result.backend == plugin
    assert result.scale == "rank"
    assert result.indices == [1, 0, 3, 2]
    # Its typed options are parsed like a built-in backend's (text from a command line too).
    assert Reranker("m", backend=plugin).rank("protein", DOCS).indices[0] == 1
    assert Reranker("m", backend=plugin, lowercase="false").rank("protein", DOCS).indices[0] == 0
    with pytest.raises(ValueError, match="valid options are \\['lowercase'\\]"):
        Reranker("m", backend=plugin, nope=1)


def test_haystack_yaml_names_a_plugin(plugin: str) -> None:
    from haystack import Document, Pipeline

    from rerankit.integrations.haystack import RerankitRanker

    pipeline = Pipeline()
    pipeline.add_component("ranker", RerankitRanker(model="m", backend=plugin, top_k=2))
    loaded = Pipeline.loads(pipeline.dumps(), allowed_modules=["rerankit.*"])  # type: ignore[call-arg]
    documents = [Document(content=text) for text in DOCS]
    ranked = loaded.run({"ranker": {"query": "protein folding", "documents": documents}})
    assert [d.content for d in ranked["ranker"]["documents"]] == [DOCS[1], DOCS[3]]


def test_rerankit_eval_names_a_plugin(
    plugin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            str(SHARED_DATA / "scifact"),
            "--reranker",
            f"name=overlap,model=m,backend={plugin},lowercase=true",
            "--max-queries",
            "5",
            "--candidates",
            "10",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    systems = {s["name"]: s for s in report["systems"]}
    assert systems["overlap"]["backend"] == plugin


def test_rerankit_serve_names_a_plugin(plugin: str, tmp_path: Path) -> None:
    arguments = ("--model", "m", "--backend", plugin, "--option", "lowercase=False")
    with rerankit_serve(*arguments, log=tmp_path / "serve.log") as (url, _):
        answer = httpx.post(f"{url}/v1/rerank", json={"query": "protein", "documents": DOCS})
    answer.raise_for_status()
    body = answer.json()
    assert body["score_scale"] == "rank"
    # lowercase=False reached the plugin: "Protein" no longer matches, input order stays.
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    assert [r["relevance_score"] for r in body["results"]] == [4.0, 3.0, 2.0, 1.0]


def test_rerankit_ray_names_a_plugin(plugin: str) -> None:
    ray = pytest.importorskip("ray")
    from rerankit import RerankerConfig
    from rerankit.ray import rerank_dataset

    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        rows = [{"query": "protein folding in cells", "candidates": DOCS}]
        config = RerankerConfig(model="m", backend=plugin)
        (row,) = rerank_dataset(ray.data.from_items(rows), config).take_all()
    finally:
        ray.shutdown()
    assert list(row["ranking"]) == [1, 0, 3, 2]
