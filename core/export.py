"""Export a cross-encoder checkpoint to a FlashRank-style ONNX folder (fp32 or dynamic int8).

The folder runs on the ``flashrank`` backend with ONNX Runtime alone: a torch-free CPU path for
any model the cross-encoder backend loads (BGE, ms-marco, ...).

BERT-family encoders are fused with ONNX Runtime's transformer optimizer before quantization
(attention, GELU, skip-LayerNorm and embedding kernels; int8 attention then runs as one
``QAttention`` op). The fused graph is kept only if it gives the unfused graph's logits on a
right-padded sample batch (the fused attention reads the mask as lengths: pad on the right, as
rerankit and FlashRank do); ``fuse=False`` keeps standard ONNX ops only, for other runtimes.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

from rerankit._optional import require
from rerankit.errors import BackendError, ConfigurationError

logger = logging.getLogger("rerankit")

QUANTIZATIONS = ("int8",)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Encoders whose graphs ONNX Runtime's "bert" optimizer fuses (checked per export, see above).
FUSABLE = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
PROTOBUF_LIMIT = 2**31  # bytes in one ONNX file; larger models keep their weights outside it


def export_onnx(
    model: str,
    outdir: str | Path,
    *,
    quantize: str | None = None,
    opset: int = 17,
    fuse: bool = True,
    trust_remote_code: bool = False,
) -> Path:
    """Write ``model`` as ``model.onnx`` (or ``model_int8.onnx``) plus its tokenizer files.

    ``fuse=False`` skips ONNX Runtime's kernel fusion (see the module doc).

    >>> export_onnx("BAAI/bge-reranker-base", "bge-onnx", quantize="int8")  # doctest: +SKIP
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigurationError(
            f"quantize must be one of {QUANTIZATIONS} or None, got {quantize!r}"
        )
    torch = require("torch", extra="transformers", purpose="ONNX export")
    transformers = require("transformers", extra="transformers", purpose="ONNX export")
    require("onnx", extra="flashrank", purpose="ONNX export")
    from rerankit.backends.cross_encoder import refuse_generative, untrained_error

    refuse_generative(model)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            model, trust_remote_code=trust_remote_code
        )
        network, loading = transformers.AutoModelForSequenceClassification.from_pretrained(
            model,
            trust_remote_code=trust_remote_code,
            attn_implementation="eager",
            output_loading_info=True,
        )
    except (OSError, ValueError) as exc:
        raise BackendError(f"could not load cross-encoder {model!r} for export: {exc}") from exc
    if loading["missing_keys"]:
        raise untrained_error(
            model,
            sorted(loading["missing_keys"]),
            fix="Export a reranker checkpoint (e.g. cross-encoder/ms-marco-MiniLM-L6-v2).",
        )
    network.eval()
    if not tokenizer.is_fast:
        raise BackendError(f"{model!r} has no fast tokenizer (tokenizer.json); FlashRank needs one")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["a query"], ["a passage to score"], return_tensors="pt")
    names = [name for name in INPUTS if name in sample]
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    fusing = fuse and _fusable(network)
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = (Path(scratch) if quantize else out) / "model.onnx"
        traced = Path(scratch) / "traced.onnx" if fusing else fp32
        with torch.inference_mode(), warnings.catch_warnings():
            # Tracing warns about shape checks that are constant for these models.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                network,
                tuple(sample[name] for name in names),
                str(traced),
                input_names=names,
                output_names=["logits"],
                dynamic_axes={**axes, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        fused = fusing and _fuse(traced, fp32, network.config, _check_batch(tokenizer, names))
        if fusing and not fused:
            traced.replace(fp32)
        if quantize == "int8":
            quantization = require(
                "onnxruntime.quantization", extra="flashrank", purpose="int8 quantization"
            )
            quantization.quantize_dynamic(
                str(fp32),
                str(out / "model_int8.onnx"),
                weight_type=quantization.QuantType.QInt8,
                # Fused ops come from ONNX Runtime's domain, which shape inference cannot type.
                extra_options={"DefaultTensorType": 1},  # onnx.TensorProto.FLOAT
            )
    tokenizer.save_pretrained(out)
    network.config.save_pretrained(out)
    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    kind = f"{quantize or 'fp32'}, {'fused' if fused else 'unfused'}"
    logger.info("exported %s to %s (%s)", model, out, kind)
    return out


def _fusable(network: Any) -> bool:
    """Whether ONNX Runtime's optimizer can fuse ``network``'s graph here (else it says why)."""
    model_type = network.config.model_type
    if model_type not in FUSABLE:
        logger.info("no ONNX Runtime fusion for model type %r: exported unfused", model_type)
        return False
    if importlib.util.find_spec("onnxruntime") is None:
        logger.warning(
            "onnxruntime is not installed, so the export is unfused (slower with int8); "
            'pip install "rerankit[flashrank]" for fused kernels, or pass fuse=False (--no-fuse)'
        )
        return False
    size = sum(p.numel() * p.element_size() for p in network.parameters())
    if size >= PROTOBUF_LIMIT:
        logger.info("the model is over 2 GB (protobuf's limit for one file): exported unfused")
        return False
    return True


def _check_batch(tokenizer: Any, names: list[str]) -> dict[str, Any]:
    """Two pairs of different lengths, right-padded as rerankit and FlashRank pad (the fused
    attention reads the mask as lengths), with ids 0 under the mask (no pad token needed)."""
    import numpy as np

    pairs = tokenizer(
        ["a query", "a longer query about cells"], ["a passage to score", "a longer passage " * 8]
    )
    width = max(len(ids) for ids in pairs["input_ids"])
    return {
        name: np.array([row + [0] * (width - len(row)) for row in pairs[name]], dtype=np.int64)
        for name in names
    }


def _fuse(traced: Path, fused: Path, config: Any, batch: dict[str, Any]) -> bool:
    """Write ``traced`` with ONNX Runtime's fused kernels to ``fused``; False (nothing written)
    when the optimizer fails or the fused graph's logits differ from the traced one's on
    ``batch``."""
    import numpy as np

    ort = require("onnxruntime", extra="flashrank", purpose="ONNX export")
    optimizer = require("onnxruntime.transformers.optimizer", extra="flashrank", purpose="fusion")
    try:
        optimized = optimizer.optimize_model(
            str(traced),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=0,  # the optimizer's own fusions only: the file stays hardware-neutral
        )
        optimized.save_model_to_file(str(fused))
        logits = [
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, batch)[0]
            for path in (traced, fused)
        ]
    except Exception as exc:  # the optimizer's failures have no common type
        logger.warning("ONNX Runtime could not fuse this model (%s); exported it unfused", exc)
        fused.unlink(missing_ok=True)
        return False
    if not np.allclose(logits[0], logits[1], rtol=1e-3, atol=1e-3):
        logger.warning(
            "ONNX Runtime's fused graph changes this model's scores; exported it unfused"
        )
        fused.unlink()
        return False
    return True
