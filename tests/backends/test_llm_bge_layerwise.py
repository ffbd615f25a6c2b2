"""BAAI's layer-wise rerankers (``bge-layerwise``, ``bge-lightweight``) against FlagEmbedding.

The golden files under ``tests/fixtures/generative/`` were written by FlagEmbedding's own
``LayerWiseFlagLLMReranker`` and ``LightWeightFlagLLMReranker`` on the tiny checkpoints beside
them (``make_goldens.py``; transformers 4). rerankit runs the same checkpoints on stock
transformers 5 classes; every recorded run is replayed here, ids and scores.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from rerankit import BackendError, ConfigurationError, Reranker
from rerankit.cli.spec import parse_spec
from rerankit.pipelines.bge_layerwise import load_layerwise
from rerankit.registry import infer_backend

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "generative"
LAYERWISE = "bge-minicpm-layerwise"
LIGHTWEIGHT = "bge-gemma2-lightweight"
FAMILIES = {LAYERWISE: "bge-layerwise", LIGHTWEIGHT: "bge-lightweight"}
ATOL = 1e-4  # the README's tolerance: FlagEmbedding's own batch and one-pair calls differ by 1.4e-5


def _golden(folder: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((GOLDEN / folder / "expected.json").read_text("utf-8"))
    return loaded


def _column(scores: list[Any], position: int) -> list[float]:
    """One cutoff layer's scores: a run with several cutoff layers records one list per layer."""
    return scores[position] if isinstance(scores[0], list) else scores


def _replays() -> Iterator[tuple[str, int, int | None, int]]:
    """(folder, run, cutoff_layer, column) for every recorded score one cutoff layer gives.

    Every column of the layer-wise runs. The lightweight model picks its head by position in
    the cutoff list, so a single cutoff reads head 0: only a multi-cutoff run's first column is
    one cutoff's score (the others are replayed through the model in one pass, below).
    """
    for folder in (LAYERWISE, LIGHTWEIGHT):
        for index, run in enumerate(_golden(folder)["runs"]):
            layers = run["cutoff_layers"] or [None]
            if folder == LIGHTWEIGHT:
                layers = layers[:1]
            for column, layer in enumerate(layers):
                yield folder, index, layer, column


def _reranker(folder: str, run: dict[str, Any], **options: Any) -> Reranker:
    """A reranker on a golden folder with a run's settings."""
    compression = {k: run[k] for k in ("compress_ratio", "compress_layers") if k in run}
    return Reranker(
        str(GOLDEN / folder),
        backend="llm",
        family=FAMILIES[folder],
        max_length=run["max_length"],
        **compression,
        **options,
    )


def _pairs(folder: str) -> list[tuple[str, list[str]]]:
    return [(query, [doc]) for query, doc in _golden(folder)["inputs"]["pairs"]]


@contextmanager
def model_inputs(rr: Reranker) -> Iterator[list[list[int]]]:
    """The real (unpadded) input ids each row of the reranker's model is given."""
    seen: list[list[int]] = []

    def record(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        masks = kwargs["attention_mask"].bool()
        seen.extend(ids[row].tolist() for ids, row in zip(kwargs["input_ids"], masks, strict=True))

    handle = rr.backend.model.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.mark.parametrize(("folder", "index", "cutoff_layer", "column"), list(_replays()))
def test_golden_runs_replay(folder: str, index: int, cutoff_layer: int | None, column: int) -> None:
    """Ids token for token; raw, one-pair and normalised scores as FlagEmbedding computed them."""
    run = _golden(folder)["runs"][index]
    rr = _reranker(folder, run, cutoff_layer=cutoff_layer, batch_size=3)
    with model_inputs(rr) as seen:
        scores = np.concatenate(rr.score_many(_pairs(folder)))
    assert sorted(seen) == sorted(run["input_ids"])
    assert scores == pytest.approx(_column(run["scores_raw"], column), abs=ATOL)
    assert scores == pytest.approx(_column(run["scores_single_pair_calls"], column), abs=ATOL)
    normalized = _reranker(folder, run, cutoff_layer=cutoff_layer, normalize=True)
    probabilities = np.concatenate(normalized.score_many(_pairs(folder)))
    assert probabilities == pytest.approx(_column(run["scores_normalized"], column), abs=ATOL)
    assert normalized.rank("q", ["a"]).scale == "probability"
    assert np.ptp(scores) > 0.1, "the golden scores are all alike: the replay could not fail"


def _right_padded(run: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    """The golden rows as a right-padded batch, the passage marked from the recorded lengths."""
    rows = run["input_ids"]
    width = max(len(row) for row in rows)
    ids, mask, passage = (torch.zeros(len(rows), width, dtype=torch.long) for _ in range(3))
    for i, (row, (query, prompt)) in enumerate(
        zip(rows, run["query_and_prompt_lengths"], strict=True)
    ):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        passage[i, query : len(row) - prompt] = 1
    return ids, mask, passage


def _lightweight_scores(folder: Path, run: dict[str, Any], **settings: Any) -> np.ndarray:
    """The lightweight model on a golden run's rows, one column per cutoff layer."""
    prompt_length = run["query_and_prompt_lengths"][0][1]
    settings = {
        "cutoff_layers": run["cutoff_layers"],
        "compress_ratio": run.get("compress_ratio", 1),
        "compress_layers": run.get("compress_layers", ()),
        **settings,
    }
    model = load_layerwise(
        folder, "gemma2", name=folder.name, prompt_length=prompt_length, **settings
    )
    with torch.inference_mode():
        return model(*_right_padded(run)).numpy()


@pytest.mark.parametrize("index", range(len(_golden(LIGHTWEIGHT)["runs"])))
def test_lightweight_runs_replay_in_one_pass(index: int) -> None:
    """Every column of every lightweight run: a head per cutoff position, one pass."""
    run = _golden(LIGHTWEIGHT)["runs"][index]
    scores = _lightweight_scores(GOLDEN / LIGHTWEIGHT, run)
    golden = np.asarray(run["scores_raw"]).reshape(-1, len(run["input_ids"])).T
    assert scores == pytest.approx(golden, abs=ATOL)


def test_batch_composition_does_not_change_scores(scifact_texts: list[str]) -> None:
    docs = [*scifact_texts[:14], "", "x"]
    requests = [("What causes white matter damage?", docs), ("vitamin D and fractures", docs[:5])]
    for folder, options in [
        (LAYERWISE, {}),
        (LAYERWISE, {"cutoff_layer": 3}),
        (LIGHTWEIGHT, {}),
        (LIGHTWEIGHT, {"compress_ratio": 3, "compress_layers": [1, 2]}),
    ]:
        run = {"max_length": 256}
        one = _reranker(folder, run, batch_size=1, **options).score_many(requests)
        many = _reranker(folder, run, batch_size=16, max_batch_tokens=100_000, **options)
        for alone, together in zip(one, many.score_many(requests), strict=True):
            assert together == pytest.approx(alone, abs=1e-5), (folder, options)
        assert np.ptp(np.concatenate(one)) > 0.1


def test_only_the_layers_up_to_the_cutoff_are_built() -> None:
    run = {"max_length": 64}
    assert len(_reranker(LAYERWISE, run, cutoff_layer=2).backend.model.model.body.layers) == 2
    assert len(_reranker(LAYERWISE, run).backend.model.model.body.layers) == 4
    assert len(_reranker(LIGHTWEIGHT, run, cutoff_layer=3).backend.model.model.body.layers) == 3


@pytest.mark.parametrize("folder", [LAYERWISE, LIGHTWEIGHT])
@pytest.mark.parametrize("layer", [0, 1, 5, -1])
def test_a_cutoff_without_a_score_head_is_a_clear_error(folder: str, layer: int) -> None:
    with pytest.raises(
        ConfigurationError,
        match=rf"cutoff_layer={layer} is not a layer .* score heads for layers 2\.\.4; leave it "
        r"unset for the last \(4\)",
    ):
        _reranker(folder, {"max_length": 64}, cutoff_layer=layer)


def test_layer_options_belong_to_their_families() -> None:
    run = {"max_length": 64}
    with pytest.raises(ConfigurationError, match=r"'bge-layerwise' family takes no compress_ratio"):
        _reranker(LAYERWISE, run, compress_ratio=2)
    with pytest.raises(
        ConfigurationError, match=r"'bge-gemma' family takes no cutoff_layer \(only \['bge-lay"
    ):
        Reranker(str(GOLDEN / "bge-gemma"), backend="llm", family="bge-gemma", cutoff_layer=2)
    with pytest.raises(ConfigurationError, match=r"compresses nothing without compress_ratio"):
        _reranker(LIGHTWEIGHT, run, compress_layers=[1])
    with pytest.raises(ConfigurationError, match=r"compress layer 4 is not one of .* 1\.\.3"):
        _reranker(LIGHTWEIGHT, run, compress_ratio=2, compress_layers=[1, 4])
    with pytest.raises(ConfigurationError, match=r"compress layer 8 is not one of"):
        _reranker(LIGHTWEIGHT, run, compress_ratio=2)  # FlagEmbedding's default layers: [8]
    with pytest.raises(ConfigurationError, match=r"compress_layers takes a non-empty list of ints"):
        _reranker(LIGHTWEIGHT, run, compress_ratio=2, compress_layers="3")
    with pytest.raises(ConfigurationError, match=r"instruction"):
        _reranker(LAYERWISE, run, instruction="find it")


def test_options_from_command_line_text() -> None:
    run = _golden(LIGHTWEIGHT)["runs"][2]
    text = parse_spec("compress_ratio=2,compress_layers=[1, 3]", flag="--reranker")
    as_text = _reranker(LIGHTWEIGHT, {**run, **text})
    scores = np.concatenate(as_text.score_many(_pairs(LIGHTWEIGHT)))
    assert scores == pytest.approx(run["scores_raw"], abs=ATOL)


# -- the replay can fail ---------------------------------------------------------------------


def _copy(
    tmp_path: Path,
    folder: str,
    config: dict[str, Any] | None = None,
    weights: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> Path:
    """A copy of a golden checkpoint, its config and weights changed."""
    target = tmp_path / f"{folder}-copy"
    shutil.copytree(GOLDEN / folder, target)
    if config is not None:
        merged = {**json.loads((target / "config.json").read_text("utf-8")), **config}
        (target / "config.json").write_text(json.dumps(merged), encoding="utf-8")
    if weights is not None:
        changed = weights(load_file(target / "model.safetensors"))
        save_file(changed, target / "model.safetensors")
    return target


def _max_diff(rr: Reranker, folder: str, golden: list[float]) -> float:
    scores = np.concatenate(rr.score_many(_pairs(folder)))
    return float(np.abs(scores - np.asarray(golden)).max())


def test_the_fixtures_discriminate() -> None:
    """Each wrong layout the generator tried moved the reference far beyond the tolerance."""
    for folder in (LAYERWISE, LIGHTWEIGHT):
        found = _golden(folder)["discrimination_max_abs_diff_vs_golden"]
        wrong = {k: v for k, v in found.items() if not k.startswith(("same_rows", "left_padding"))}
        assert len(wrong) >= 4
        assert min(wrong.values()) > 100 * ATOL, wrong
        assert max(v for k, v in found.items() if k not in wrong) < ATOL / 5


def test_layerwise_mistakes_fail_the_replay(tmp_path: Path) -> None:
    """Skipping a MiniCPM scaling, or reading the wrong layer or head, misses the golden."""
    run = _golden(LAYERWISE)["runs"][0]
    golden = run["scores_raw"]
    layers = 4
    mistakes = {
        "no scale_depth": _copy(tmp_path / "a", LAYERWISE, {"scale_depth": math.sqrt(layers)}),
        "no scale_emb": _copy(tmp_path / "b", LAYERWISE, {"scale_emb": 1}),
        "head of layer 2 at layer 4": _copy(
            tmp_path / "c",
            LAYERWISE,
            weights=lambda w: {
                **w,
                "lm_head.2.linear_head.weight": w["lm_head.0.linear_head.weight"].clone(),
            },
        ),
    }
    for mistake, folder in mistakes.items():
        rr = Reranker(str(folder), backend="llm", family="bge-layerwise", max_length=64)
        assert _max_diff(rr, LAYERWISE, golden) > 100 * ATOL, mistake
    wrong_layer = _reranker(LAYERWISE, run, cutoff_layer=3)
    assert _max_diff(wrong_layer, LAYERWISE, golden) > 100 * ATOL
    assert _max_diff(_reranker(LAYERWISE, run), LAYERWISE, golden) < ATOL


def test_lightweight_mistakes_fail_the_replay(tmp_path: Path) -> None:
    """Heads by layer, no score cap, or other compression layers miss the golden."""
    runs = _golden(LIGHTWEIGHT)["runs"]
    plain, compressed = runs[0], runs[2]
    by_layer = _lightweight_scores(GOLDEN / LIGHTWEIGHT, plain, cutoff_layers=[2, 3, 4])[:, 2]
    uncapped = _copy(tmp_path, LIGHTWEIGHT, {"final_logit_softcapping": None})
    mistakes = {
        "head chosen by layer": by_layer,
        "no score cap": _lightweight_scores(uncapped, plain)[:, 0],
        "compressed before layer 1 only": _lightweight_scores(
            GOLDEN / LIGHTWEIGHT, compressed, compress_layers=[1]
        )[:, 0],
    }
    for mistake, scores in mistakes.items():
        golden = compressed if "compressed" in mistake else plain
        assert np.abs(scores - golden["scores_raw"]).max() > 10 * ATOL, mistake


# -- checkpoints that would score noise are refused --------------------------------------------


def _without(key: str) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    return lambda weights: {k: v for k, v in weights.items() if k != key}


@pytest.mark.parametrize(
    ("folder", "change", "message"),
    [
        (LAYERWISE, _without("lm_head.2.linear_head.weight"), r"missing: lm_head\.2\.linear_hea"),
        # A later layer is checked too, though cutoff_layer=2 never runs it.
        (LAYERWISE, _without("model.layers.3.mlp.up_proj.weight"), r"missing: model\.layers\.3"),
        (
            LIGHTWEIGHT,
            lambda w: {**w, "lm_head.weight": torch.zeros(768, 32)},
            r"unexpected: lm_head\.weight\)",
        ),
        (
            LIGHTWEIGHT,
            lambda w: {**w, "model.norm.weight": torch.zeros(33)},
            r"of the wrong shape: model\.norm\.weight \(33,\) \(expected \(32,\)\)",
        ),
    ],
)
def test_missing_or_unexpected_weights_are_refused(
    tmp_path: Path,
    folder: str,
    change: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
    message: str,
) -> None:
    copy = _copy(tmp_path, folder, weights=change)
    with pytest.raises(ConfigurationError, match=rf"{message}.*random weights, so it is refused"):
        Reranker(str(copy), backend="llm", family=FAMILIES[folder], cutoff_layer=2)


def test_checkpoints_that_are_not_layer_wise_are_refused(tmp_path: Path) -> None:
    no_start = _copy(tmp_path / "a", LAYERWISE, {"start_layer": None})
    with pytest.raises(ConfigurationError, match=r"has no \['start_layer'\]"):
        Reranker(str(no_start), backend="llm", family="bge-layerwise")
    vocabulary_heads = _copy(tmp_path / "b", LAYERWISE, {"head_type": "raw"})
    with pytest.raises(ConfigurationError, match=r"says head_type='raw'"):
        Reranker(str(vocabulary_heads), backend="llm", family="bge-layerwise")
    no_weights = _copy(tmp_path / "c", LIGHTWEIGHT)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ConfigurationError, match=r"no model\.safetensors .* safetensors weights"):
        Reranker(str(no_weights), backend="llm", family="bge-lightweight")
    qwen_like = _copy(tmp_path / "d", "bge-gemma")
    with pytest.raises(ConfigurationError, match=r"has no \['start_layer', 'layer_sep'\]"):
        Reranker(str(qwen_like), backend="llm", family="bge-lightweight")


def test_sharded_checkpoints_load(tmp_path: Path) -> None:
    folder = _copy(tmp_path, LAYERWISE)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    heads = {k: v for k, v in weights.items() if k.startswith("lm_head.")}
    body = {k: v for k, v in weights.items() if k not in heads}
    save_file(heads, folder / "model-00001-of-00002.safetensors")
    save_file(body, folder / "model-00002-of-00002.safetensors")
    index = {k: "model-00001-of-00002.safetensors" for k in heads}
    index.update({k: "model-00002-of-00002.safetensors" for k in body})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
    run = _golden(LAYERWISE)["runs"][0]
    rr = Reranker(str(folder), backend="llm", family="bge-layerwise", max_length=64)
    assert _max_diff(rr, LAYERWISE, run["scores_raw"]) < ATOL


def test_no_remote_code_runs_even_when_trusted(tmp_path: Path) -> None:
    folder = _copy(
        tmp_path,
        LAYERWISE,
        {"auto_map": {"AutoModelForCausalLM": "modeling_minicpm_reranker.Model"}},
    )
    (folder / "modeling_minicpm_reranker.py").write_text('raise RuntimeError("remote code ran")\n')
    run = _golden(LAYERWISE)["runs"][0]
    rr = Reranker(str(folder), trust_remote_code=True, max_length=64)
    assert _max_diff(rr, LAYERWISE, run["scores_raw"]) < ATOL


# -- names, folders and the hub ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "name", "family"),
    [
        (LAYERWISE, "bge-reranker-v2-minicpm-layerwise-tiny", "bge-layerwise"),
        (LIGHTWEIGHT, "bge-reranker-v2.5-gemma2-lightweight-tiny", "bge-lightweight"),
        (LAYERWISE, "my-reranker", "bge-layerwise"),  # from config.json: minicpm + start_layer
        (LIGHTWEIGHT, "my-reranker", "bge-lightweight"),  # cost_wise_gemma + layer_sep
    ],
)
def test_folders_infer_backend_and_family(
    folder: str, name: str, family: str, tmp_path: Path
) -> None:
    named = tmp_path / name
    named.symlink_to(GOLDEN / folder, target_is_directory=True)
    assert infer_backend(str(named)) == "llm"
    rr = Reranker(str(named))
    assert (rr.backend_name, rr.backend.model.family.name) == ("llm", family)


def test_names_route_to_llm_and_offline_hub_ids_need_the_cache(tmp_path: Path) -> None:
    for name in (
        "BAAI/bge-reranker-v2-minicpm-layerwise",
        "BAAI/bge-reranker-v2.5-gemma2-lightweight",
    ):
        assert infer_backend(name) == "llm"
        with pytest.raises(BackendError, match=r"(?s)could not load causal-LM reranker.*HF cache"):
            Reranker(name, cache_dir=str(tmp_path))


def test_a_hub_id_loads_from_the_hf_cache_offline(tmp_path: Path) -> None:
    repo = tmp_path / "models--BAAI--bge-reranker-v2-minicpm-layerwise"
    shutil.copytree(GOLDEN / LAYERWISE, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    rr = Reranker("BAAI/bge-reranker-v2-minicpm-layerwise", cache_dir=str(tmp_path), max_length=64)
    assert rr.backend.model.family.name == "bge-layerwise"
    assert _max_diff(rr, LAYERWISE, _golden(LAYERWISE)["runs"][0]["scores_raw"]) < ATOL
