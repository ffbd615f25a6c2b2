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
    ("model", "backend"),
    [
        ("Qwen/Qwen3-Reranker-0.6B", "llm"),
        ("Qwen/Qwen3-Reranker-8B", "llm"),
        ("BAAI/bge-reranker-v2-gemma", "llm"),
        ("BAAI/bge-reranker-v2-minicpm-layerwise", "llm"),
        ("BAAI/bge-reranker-v2.5-gemma2-lightweight", "llm"),
        ("mixedbread-ai/mxbai-rerank-base-v2", "llm"),
        ("castorini/monot5-base-msmarco", "t5"),
        ("unicamp-dl/InRanker-base", "t5"),
        ("castorini/rank_zephyr_7b_v1_full", "listwise"),
        ("castorini/rank_vicuna_7b_v1", "listwise"),
    ],
)
def test_generative_rerankers_get_their_backends(model: str, backend: str) -> None:
    assert infer_backend(model) == backend


def test_listwise_folders_are_causal_lms_named_so(tmp_path: Path) -> None:
    config = json.dumps({"architectures": ["MistralForCausalLM"]})
    assert infer_backend(str(_folder(tmp_path, "rank_zephyr_7b", config__json=config))) == (
        "listwise"
    )
    assert infer_backend(str(_folder(tmp_path, "mistral-7b", config__json=config))) == "llm"
    assert canonical_name("RankGPT") == "listwise"


@pytest.mark.parametrize(
    "model",
    ["jinaai/jina-reranker-m0", "lightonai/MonoQwen2-VL-v0.1", "Qwen/Qwen3-VL-Reranker-2B"],
)
def test_vision_language_rerankers_get_the_vlm_backend(model: str) -> None:
    """Never handed to the cross-encoder, which would give them a random head."""
    assert infer_backend(model) == "vlm"


def test_the_bare_m0_name_is_the_jina_api_and_a_hub_id_runs_here() -> None:
    assert infer_backend("jina-reranker-m0") == "jina"
    assert infer_backend("jinaai/jina-reranker-m0") == "vlm"


@pytest.mark.parametrize(
    ("architecture", "backend"),
    [
        ("Qwen3ForCausalLM", "llm"),
        ("Gemma2ForCausalLM", "llm"),
        ("T5ForConditionalGeneration", "t5"),
        ("MT5ForConditionalGeneration", "t5"),
    ],
)
def test_generative_folders_get_their_backends(
    tmp_path: Path, architecture: str, backend: str
) -> None:
    folder = _folder(
        tmp_path, "some-reranker", config__json=json.dumps({"architectures": [architecture]})
    )
    assert infer_backend(str(folder)) == backend


@pytest.mark.parametrize(
    "architecture", ["Qwen2VLForConditionalGeneration", "Qwen3VLForConditionalGeneration"]
)
def test_vision_language_folders_get_the_vlm_backend(tmp_path: Path, architecture: str) -> None:
    config = json.dumps({"architectures": [architecture]})
    assert infer_backend(str(_folder(tmp_path, "some-reranker", config__json=config))) == "vlm"


def test_a_lora_adapter_folder_is_what_its_base_is(tmp_path: Path) -> None:
    adapter = json.dumps({"base_model_name_or_path": "Qwen/Qwen2-VL-2B-Instruct"})
    folder = _folder(tmp_path, "my-adapter", adapter_config__json=adapter)
    with pytest.raises(UnknownBackendError, match="cannot tell"):
        infer_backend(str(folder))  # the base's name says nothing; backend="vlm" says it
    adapter = json.dumps({"base_model_name_or_path": "lightonai/MonoQwen2-VL-v0.1"})
    folder = _folder(tmp_path, "other-adapter", adapter_config__json=adapter)
    assert infer_backend(str(folder)) == "vlm"


def test_generative_kinds_are_backend_names() -> None:
    assert canonical_name("vlm") == "vlm"
    assert canonical_name("causal-lm") == "llm"
    assert canonical_name("monot5") == "t5"


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


def test_a_classifier_conversion_of_an_llm_reranker_is_a_cross_encoder() -> None:
    assert infer_backend("tomaarsen/Qwen3-Reranker-0.6B-seq-cls") == "cross-encoder"


@pytest.mark.parametrize(
    "model",
    [
        "jina-reranker-v2-base-multilingual/",  # a folder path typed before it exists
        "jina-reranker-v3/onnx",
        "jina-reranker-v2-base-multilingual.onnx",
        "./jina-reranker-v3",
        "~/models/jina-reranker-v3",
        " jina-reranker-v3",
        "jina-reranker-v3\\",
    ],
)
def test_paths_and_files_named_like_an_api_model_are_never_remote(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JINA_API_KEY", "a-key-that-must-not-be-used")
    assert infer_backend(model) != "jina"


def test_an_existing_path_named_exactly_like_an_api_model_runs_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jina-reranker-v3").write_text("not a folder, but a local file")
    assert infer_backend("jina-reranker-v3") == "cross-encoder"


def test_inference_never_picks_a_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    from rerankit import registry

    squatter = registry.BackendSpec("rerank", "evil", "Remote", "", (), plugin="evil-plugin")
    monkeypatch.setattr(registry, "_plugins", lambda: {"rerank": squatter})
    assert "rerank" in registry.available()
    assert infer_backend("someone/my-reranker") == "cross-encoder"


def test_listwise_hint_in_a_parent_folder(tmp_path: Path) -> None:
    causal = json.dumps({"architectures": ["MistralForCausalLM"]})
    runs = tmp_path / "rank_zephyr_runs"
    runs.mkdir()
    folder = _folder(runs, "checkpoint-100", config__json=causal)
    assert infer_backend(str(folder)) == "listwise"
    assert infer_backend(str(_folder(tmp_path, "checkpoint-7", config__json=causal))) == "llm"
