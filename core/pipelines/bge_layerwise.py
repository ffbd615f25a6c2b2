"""BAAI's layer-wise LLM rerankers on transformers' own classes: none of their code runs.

``BAAI/bge-reranker-v2-minicpm-layerwise`` and ``BAAI/bge-reranker-v2.5-gemma2-lightweight``
ship model code of their own (FlagEmbedding's ``LayerWiseMiniCPMForCausalLM`` and
``CostWiseGemmaForCausalLM``, which need transformers 4). Here the folder's ``config.json`` and
safetensors weights are mapped onto stock transformers classes instead, so
``trust_remote_code`` is not needed, and :class:`LayerwiseReranker` loops over their decoder
layers:

- ``"minicpm"``: a :class:`~transformers.LlamaModel`. MiniCPM differs from Llama by scalings,
  folded into the weights here: the embeddings times ``scale_emb``, each residual branch
  (``o_proj``, ``down_proj``) times ``scale_depth / sqrt(num_hidden_layers)``.
- ``"gemma2"``: a :class:`~transformers.Gemma2Model` without attention-logit soft-capping
  (FlagEmbedding's model runs SDPA, which skips it); scores are capped at
  ``final_logit_softcapping`` (``30 * tanh(x / 30)``). Optional token compression: before each
  layer of ``compress_layers`` the passage's states are mean-pooled in groups of
  ``compress_ratio`` (the last group may be partial); the query's and the prompt's states are
  kept, positions restart at 0.

Both have a ``Linear(hidden, 1)`` score head per layer from ``start_layer`` on
(``lm_head.{i}.linear_head.weight``). The score at cutoff layer ``k`` is a head applied to
``model.norm`` of the hidden state after ``k`` layers, at the last real token; only ``k`` layers
are loaded and run. minicpm reads head ``k - start_layer``; the gemma2 model picks the head by
position in its list of cutoff layers, so a single cutoff always reads head 0 (FlagEmbedding's
``cutoff_layers=[28]`` does too).

Every weight in the checkpoint must be one of these weights, with its shape, and every one must
be there: anything else is a :class:`~rerankit.errors.ConfigurationError` naming the weights,
never a model run with random weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import safe_open
from torch import nn
from transformers import Gemma2Config, Gemma2Model, LlamaConfig, LlamaModel
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from rerankit.errors import BackendError, ConfigurationError

Kind = Literal["minicpm", "gemma2"]

# Fields the score heads need, beyond the decoder's own.
HEAD_FIELDS: dict[Kind, tuple[str, ...]] = {
    "minicpm": ("start_layer", "scale_emb", "scale_depth"),
    "gemma2": ("start_layer", "layer_sep"),
}
# What the checkpoint's config must say for its heads to be per-layer Linear(hidden, 1) heads.
HEAD_SETTINGS: dict[Kind, dict[str, Any]] = {
    "minicpm": {"head_type": "simple", "head_multi": True},
    "gemma2": {"layer_wise": True},
}
# The decoder's shape, read from config.json without defaults.
SHAPE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
)
MAX_NAMED = 8  # weights named in an error before "and N more"


class LayerwiseReranker(nn.Module):
    """The first layers of a decoder and the score heads read after them.

    Built by :func:`load_layerwise`. ``forward`` takes a padded batch (either side; right padding
    when passages are compressed) and ``passage_mask`` (1 on passage tokens), and returns
    float32 scores of shape ``(batch, len(cutoff_layers))``, one column per cutoff layer.

    >>> scorer = load_layerwise(Path("bge-reranker-v2-minicpm-layerwise"), "minicpm",
    ...     name="bge", cutoff_layers=[28], prompt_length=31)  # doctest: +SKIP
    >>> scorer(input_ids, attention_mask, passage_mask)  # doctest: +SKIP
    """

    heads: torch.Tensor

    def __init__(
        self,
        body: LlamaModel | Gemma2Model,
        heads: torch.Tensor,
        cutoff_layers: tuple[int, ...],
        *,
        softcap: float | None,
        prompt_length: int,
        compress_ratio: int,
        compress_layers: frozenset[int],
    ) -> None:
        super().__init__()
        self.body = body
        self.register_buffer("heads", heads)  # (len(cutoff_layers), hidden), float32
        self.cutoff_layers = cutoff_layers
        self.softcap = softcap
        self.prompt_length = prompt_length
        self.compress_ratio = compress_ratio
        self.compress_layers = compress_layers if compress_ratio > 1 else frozenset()
        depth = len(body.layers)
        self.layer_types: list[str] = list(
            getattr(body.config, "layer_types", None) or ["full_attention"] * depth
        )[:depth]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        passage_mask: torch.Tensor,
    ) -> torch.Tensor:
        """One score per row and cutoff layer, read at each row's last real token."""
        hidden = self.body.embed_tokens(input_ids)
        mask = attention_mask
        query_lengths = mask.sum(1) - passage_mask.sum(1) - self.prompt_length
        positions, masks, rotary = self._attention_inputs(hidden, mask)
        columns: list[torch.Tensor] = []
        for index, layer in enumerate(self.body.layers):
            if index in self.cutoff_layers:
                columns.append(self._read(hidden, mask, len(columns)))
            if index in self.compress_layers:
                hidden, mask = pool_passages(
                    hidden, mask, query_lengths, self.prompt_length, self.compress_ratio
                )
                positions, masks, rotary = self._attention_inputs(hidden, mask)
            hidden = layer(
                hidden,
                attention_mask=masks[self.layer_types[index]],
                position_ids=positions,
                position_embeddings=rotary,
            )
        columns.append(self._read(hidden, mask, len(columns)))  # the body ends at the last cutoff
        return torch.stack(columns, dim=1)

    def _attention_inputs(
        self, hidden: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, Any], tuple[torch.Tensor, torch.Tensor]]:
        # Positions count real tokens only: a row's numbers do not depend on its padding.
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        arguments: dict[str, Any] = {
            "config": self.body.config,
            "inputs_embeds": hidden,
            "attention_mask": mask,
            "cache": None,
            "position_ids": positions,
        }
        masks = {"full_attention": create_causal_mask(**arguments)}
        if "sliding_attention" in self.layer_types:
            masks["sliding_attention"] = create_sliding_window_causal_mask(**arguments)
        return positions, masks, self.body.rotary_emb(hidden, positions)

    def _read(self, hidden: torch.Tensor, mask: torch.Tensor, column: int) -> torch.Tensor:
        last = mask.shape[1] - 1 - mask.flip(1).argmax(dim=1)  # the last real token, either side
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        state: torch.Tensor = self.body.norm(hidden[rows, last])
        score = state.float() @ self.heads[column]
        if self.softcap is not None:
            score = self.softcap * torch.tanh(score / self.softcap)
        return score


def pool_passages(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    query_lengths: torch.Tensor,
    prompt_length: int,
    ratio: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded rows with each passage mean-pooled in groups of ``ratio``; the new mask.

    A row is ``query + passage + prompt + padding``; it becomes ``query + pooled passage +
    prompt + padding``. Each group is summed with weights ``1 / its size``, as FlagEmbedding's
    ``token_compress`` does, so the numbers match it (and never depend on other rows).
    """
    lengths = mask.sum(dim=1)
    passage = lengths - query_lengths - prompt_length
    kept = (passage + ratio - 1) // ratio
    new_lengths = lengths - passage + kept
    width = int(new_lengths.max())
    device = hidden.device
    column = torch.arange(width, device=device)[None, :, None]  # new column
    member = torch.arange(ratio, device=device)[None, None, :]  # place in a group
    query, passage_, kept_ = (t[:, None, None] for t in (query_lengths, passage, kept))
    group = column - query
    pooled = (group >= 0) & (group < kept_)
    offset = group * ratio + member  # a pooled column's source tokens, within the passage
    source = torch.where(
        pooled, query + offset, torch.where(column < query, column, column - kept_ + passage_)
    )
    size = (passage_ - group * ratio).clamp(min=1, max=ratio)
    weight = torch.where(
        pooled,
        (offset < passage_) / size,
        ((member == 0) & (column < new_lengths[:, None, None])).to(hidden.dtype),
    )
    batch, _, features = hidden.shape
    index = source.clamp(0, hidden.shape[1] - 1).reshape(batch, -1, 1).expand(-1, -1, features)
    gathered = hidden.gather(1, index).view(batch, width, ratio, features)
    states = (gathered * weight.to(hidden.dtype).unsqueeze(-1)).sum(dim=2)
    new_mask = (column[:, :, 0] < new_lengths[:, None]).to(mask.dtype)
    return states, new_mask


def load_layerwise(
    folder: Path,
    kind: Kind,
    *,
    name: str,
    cutoff_layers: Sequence[int] | None,
    prompt_length: int,
    dtype: torch.dtype = torch.float32,
    compress_ratio: int = 1,
    compress_layers: Sequence[int] = (),
) -> LayerwiseReranker:
    """A :class:`LayerwiseReranker` from a checkpoint folder, checked weight by weight.

    ``cutoff_layers``: the layers to score after (None: the last); ``prompt_length``: the tokens
    after each passage (kept by compression); ``name`` names the model in errors.
    """
    config = read_config(folder)
    _check_fields(config, kind, name)
    layers = int(config["num_hidden_layers"])
    start = int(config["start_layer"])
    scoring = range(start, layers + 1, int(config.get("layer_sep", 1)))
    cutoffs = tuple(sorted(set(cutoff_layers or [layers])))
    for layer in cutoffs:
        if layer not in scoring:
            raise ConfigurationError(
                f"cutoff_layer={layer} is not a layer {name!r} scores after: it has score heads "
                f"for layers {_span(scoring)}; leave it unset for the last ({layers})"
            )
    if kind == "minicpm" and compress_ratio != 1:
        raise ConfigurationError(f"{name!r} (minicpm) has no token compression")
    for layer in compress_layers:
        if not 0 < layer < layers:
            raise ConfigurationError(
                f"compress layer {layer} is not one of {name!r}'s layers 1..{layers - 1}"
            )
    shapes, files = _checkpoint(folder, name)
    expected = _expected_shapes(kind, config, len(scoring), name)
    _check_weights(name, expected, shapes)

    depth = cutoffs[-1]
    needed = [
        key
        for key in expected
        if key.startswith("model.")
        and not (key.startswith("model.layers.") and int(key.split(".")[2]) >= depth)
    ]
    scales = _scales(kind, config)
    state = {
        key.removeprefix("model."): _scaled(tensor, scales, key)
        for key, tensor in _tensors(files, needed).items()
    }
    body_class = LlamaModel if kind == "minicpm" else Gemma2Model
    loaded: Any = body_class.from_pretrained(
        None,
        config=_stock_config(kind, config, depth),
        state_dict=state,
        dtype=dtype,
        output_loading_info=True,
    )
    body, loading = loaded
    left = [key for problem in ("missing_keys", "unexpected_keys") for key in loading[problem]]
    if left:
        raise BackendError(f"transformers did not load {name!r}'s weights {sorted(left)}")
    rows = [layer - start for layer in cutoffs] if kind == "minicpm" else range(len(cutoffs))
    head_keys = [f"lm_head.{row}.linear_head.weight" for row in rows]
    head_tensors = _tensors(files, head_keys)
    heads = torch.stack([head_tensors[key][0] for key in head_keys]).float()
    softcap = config.get("final_logit_softcapping") if kind == "gemma2" else None
    return LayerwiseReranker(
        body.eval(),
        heads,
        cutoffs,
        softcap=None if softcap is None else float(softcap),
        prompt_length=prompt_length,
        compress_ratio=compress_ratio,
        compress_layers=frozenset(compress_layers),
    )


def read_config(folder: Path, name: str = "config.json") -> dict[str, Any]:
    """``folder/name`` as a dict; a ConfigurationError if it is missing or not JSON."""
    path = folder / name
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigurationError(f"{path} holds no JSON object")
    return config


def _check_fields(config: Mapping[str, Any], kind: Kind, name: str) -> None:
    missing = [f for f in (*SHAPE_FIELDS, *HEAD_FIELDS[kind]) if config.get(f) is None]
    if missing:
        raise ConfigurationError(
            f"{name!r}'s config.json has no {missing}: it is not a BAAI {kind} layer-wise "
            "reranker checkpoint"
        )
    for field, value in HEAD_SETTINGS[kind].items():
        if config.get(field, value) != value:
            raise ConfigurationError(
                f"{name!r}'s config.json says {field}={config[field]!r}; rerankit runs the "
                f"per-layer score heads of {field}={value!r} only"
            )
    if kind == "minicpm" and config.get("rope_scaling"):
        raise ConfigurationError(
            f"{name!r} scales RoPE ({config['rope_scaling']!r}), which rerankit does not run"
        )


def _stock_config(kind: Kind, config: Mapping[str, Any], layers: int) -> LlamaConfig | Gemma2Config:
    """The transformers config of the first ``layers`` layers of the checkpoint's decoder."""
    common: dict[str, Any] = {
        "vocab_size": config["vocab_size"],
        "hidden_size": config["hidden_size"],
        "intermediate_size": config["intermediate_size"],
        "num_hidden_layers": layers,
        "num_attention_heads": config["num_attention_heads"],
        "num_key_value_heads": config.get("num_key_value_heads") or config["num_attention_heads"],
        "max_position_embeddings": config.get("max_position_embeddings", 4096),
        "rope_parameters": {"rope_type": "default", "rope_theta": config.get("rope_theta", 1e4)},
        "attention_bias": bool(config.get("attention_bias", False)),
        "pad_token_id": config.get("pad_token_id"),
        "tie_word_embeddings": False,
    }
    if kind == "minicpm":
        return LlamaConfig(
            **common,
            hidden_act=config.get("hidden_act", "silu"),
            rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        )
    return Gemma2Config(
        **common,
        head_dim=config.get("head_dim", 256),
        hidden_activation=config.get("hidden_activation") or "gelu_pytorch_tanh",
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        query_pre_attn_scalar=config.get("query_pre_attn_scalar", 256),
        sliding_window=config.get("sliding_window", 4096),
        attn_logit_softcapping=None,  # as FlagEmbedding's SDPA run computes it
        final_logit_softcapping=None,  # applied to the scores instead
    )


def _expected_shapes(
    kind: Kind, config: Mapping[str, Any], heads: int, name: str
) -> dict[str, tuple[int, ...]]:
    """Every weight of the checkpoint and its shape, as the stock class would hold them."""
    stock = _stock_config(kind, config, int(config["num_hidden_layers"]))
    try:
        with torch.device("meta"):  # shapes only: nothing is allocated
            body = LlamaModel(stock) if isinstance(stock, LlamaConfig) else Gemma2Model(stock)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"{name!r}'s config.json does not describe a model: {exc}"
        ) from exc
    shapes = {f"model.{key}": tuple(value.shape) for key, value in body.state_dict().items()}
    hidden = int(config["hidden_size"])
    shapes.update({f"lm_head.{i}.linear_head.weight": (1, hidden) for i in range(heads)})
    return shapes


def _checkpoint(folder: Path, name: str) -> tuple[dict[str, tuple[int, ...]], dict[str, Path]]:
    """The shape and the file of every tensor in the folder's safetensors weights."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        paths = sorted({folder / file for file in weight_map.values()})
    else:
        paths = [folder / "model.safetensors"]
    shapes: dict[str, tuple[int, ...]] = {}
    files: dict[str, Path] = {}
    for path in paths:
        if not path.is_file():
            raise ConfigurationError(
                f"{name!r} has no {path.name} in {folder}: rerankit reads safetensors weights only"
            )
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shapes[key] = tuple(handle.get_slice(key).get_shape())
                files[key] = path
    return shapes, files


def _check_weights(
    name: str, expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]
) -> None:
    problems = {
        "missing": sorted(set(expected) - set(found)),
        "unexpected": sorted(set(found) - set(expected)),
        "of the wrong shape": sorted(
            f"{key} {found[key]} (expected {expected[key]})"
            for key in set(expected) & set(found)
            if found[key] != expected[key]
        ),
    }
    found_problems = [f"{kind}: {_named(keys)}" for kind, keys in problems.items() if keys]
    if found_problems:
        raise ConfigurationError(
            f"{name!r} does not hold the weights of its layer-wise reranker config ("
            + "; ".join(found_problems)
            + "): it would run with random weights, so it is refused"
        )


def _named(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_NAMED])
    return shown + (f" and {len(keys) - MAX_NAMED} more" if len(keys) > MAX_NAMED else "")


def _span(layers: range) -> str:
    return f"{layers.start}..{layers[-1]}" + (f" every {layers.step}" if layers.step != 1 else "")


def _scales(kind: Kind, config: Mapping[str, Any]) -> dict[str, float]:
    """Weight-name suffix -> factor that turns a MiniCPM checkpoint into Llama weights."""
    if kind != "minicpm":
        return {}
    residual = float(config["scale_depth"]) / math.sqrt(int(config["num_hidden_layers"]))
    return {
        "model.embed_tokens.weight": float(config["scale_emb"]),
        ".self_attn.o_proj.weight": residual,
        ".self_attn.o_proj.bias": residual,
        ".mlp.down_proj.weight": residual,
    }


def _scaled(tensor: torch.Tensor, scales: Mapping[str, float], key: str) -> torch.Tensor:
    for suffix, factor in scales.items():
        if key.endswith(suffix):
            return tensor.float() * factor
    return tensor


def _tensors(files: Mapping[str, Path], keys: Sequence[str]) -> dict[str, torch.Tensor]:
    by_file: dict[Path, list[str]] = {}
    for key in keys:
        by_file.setdefault(files[key], []).append(key)
    tensors = {}
    for path, names in by_file.items():
        with safe_open(str(path), framework="pt") as handle:
            tensors.update({key: handle.get_tensor(key) for key in names})
    return tensors
