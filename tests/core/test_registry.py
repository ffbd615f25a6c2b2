from __future__ import annotations

import json
from pathlib import Path

import pytest

from rerankit import Reranker, UnknownBackendError
from rerankit.registry import BACKENDS, canonical_name, infer_backend


@pytest.mark.parametrize(
    ("model", "backend"),
    [
        ("BAAI/bge-reranker-v2-m3", "cross-encoder"),
        ("BAAI/bge-reranker-base", "cross-encoder"),
        ("cross-encoder/ms-marco-MiniLM-L-6-v2", "cross-encoder"),
        ("mixedbread-ai/mxbai-rerank-base-v1", "cross-encoder"),
    ],
)
def test_names_infer_the_backend(model: str, backend: str) -> None:
    assert infer_backend(model) == backend


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("colbert-ir/colbertv2.0", "colbert"),
        ("answerdotai/answerai-colbert-small-v1", "colbert"),
        ("jina-reranker-v2-base-multilingual", "jina"),
        ("ms-marco-TinyBERT-L-2-v2", "flashrank"),
    ],
)
def test_names_of_other_families(model: str, family: str) -> None:
    _expect_family(model, family)


def _expect_family(model: str, family: str) -> None:
    """Inferred when that backend is installed, else a typed error naming the family."""
    if family in BACKENDS:
        assert infer_backend(model) == family
    else:
        with pytest.raises(UnknownBackendError, match=f"looks like a '{family}' model"):
            infer_backend(model)


def test_unknown_name_lists_valid_backends() -> None:
    with pytest.raises(UnknownBackendError, match="cross-encoder"):
        infer_backend("someone/some-model")
    with pytest.raises(UnknownBackendError, match="valid backends"):
        canonical_name("nope")


def test_aliases() -> None:
    assert canonical_name("Cross_Encoder") == "cross-encoder"
    assert canonical_name("transformers") == "cross-encoder"


def _folder(tmp_path: Path, name: str, **files: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for filename, text in files.items():
        (folder / filename.replace("__", ".")).write_text(text)
    return folder


def test_folder_contents_beat_the_folder_name(tmp_path: Path) -> None:
    cls = json.dumps({"architectures": ["XLMRobertaForSequenceClassification"]})
    assert infer_backend(str(_folder(tmp_path, "my-colbert", config__json=cls))) == "cross-encoder"
    onnx = _folder(tmp_path, "bge-reranker-onnx", model__onnx="")
    colbert = _folder(tmp_path, "plain", artifact__metadata="{}")
    _expect_family(str(onnx), "flashrank")
    _expect_family(str(colbert), "colbert")


def test_folder_without_clues_raises(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "encoder", config__json=json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(UnknownBackendError, match="pass backend="):
        infer_backend(str(folder))


def test_explicit_backend_wins(tiny_bert_dir: Path, tmp_path: Path) -> None:
    # A folder name that would infer something else is served by the explicit backend.
    renamed = tmp_path / "colbert-lookalike"
    renamed.symlink_to(tiny_bert_dir, target_is_directory=True)
    assert Reranker(str(renamed), backend="cross-encoder").backend_name == "cross-encoder"
    with pytest.raises(UnknownBackendError):
        Reranker(str(tiny_bert_dir), backend="does-not-exist")


@pytest.mark.parametrize(
    "model",
    [
        "Qwen/Qwen3-Reranker-0.6B",
        "BAAI/bge-reranker-v2-gemma",
        "BAAI/bge-reranker-v2-minicpm-layerwise",
        "BAAI/bge-reranker-v2.5-gemma2-lightweight",
        "mixedbread-ai/mxbai-rerank-base-v2",
        "castorini/monot5-base-msmarco",
        "jinaai/jina-reranker-m0",
    ],
)
def test_generative_rerankers_are_not_given_to_the_cross_encoder(model: str) -> None:
    with pytest.raises(UnknownBackendError, match="randomly initialised head"):
        infer_backend(model)
    with pytest.raises(UnknownBackendError, match="randomly initialised head"):
        Reranker(model)


@pytest.mark.parametrize(
    ("architecture", "kind"),
    [
        ("Qwen3ForCausalLM", "causal-LM"),
        ("Gemma2ForCausalLM", "causal-LM"),
        ("T5ForConditionalGeneration", "T5"),
        ("Qwen2VLForConditionalGeneration", "vision-language"),
    ],
)
def test_generative_folders_are_refused(tmp_path: Path, architecture: str, kind: str) -> None:
    folder = _folder(
        tmp_path, "some-reranker", config__json=json.dumps({"architectures": [architecture]})
    )
    with pytest.raises(UnknownBackendError, match=kind):
        infer_backend(str(folder))


@pytest.mark.parametrize(
    "model",
    [
        "jinaai/jina-reranker-v2-base-multilingual",
        "jinaai/jina-reranker-v1-turbo-en",
        "someone/jina-reranker-v2-finetuned",
    ],
)
def test_hub_ids_never_go_to_a_remote_backend(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINA_API_KEY", "a-key-that-must-not-be-used")
    assert infer_backend(model) == "cross-encoder"


def test_a_folder_named_like_an_api_model_runs_locally(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "jina-reranker-v2-base-multilingual", readme__md="")
    assert infer_backend(str(folder)) == "cross-encoder"


def test_bare_api_model_names_stay_remote() -> None:
    assert infer_backend("jina-reranker-v2-base-multilingual") == "jina"
    assert infer_backend("jina-colbert-v2") == "colbert"
