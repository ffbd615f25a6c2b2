"""Export a cross-encoder checkpoint to a FlashRank-style ONNX folder (fp32 or dynamic int8).

The folder runs on the ``flashrank`` backend with ONNX Runtime alone: a torch-free CPU path for
any model the cross-encoder backend loads (BGE, ms-marco, ...).

int8 is dynamic quantization with one scale per output channel of each weight matrix: on a
trained MiniLM reranker its logits err less than half as much as with one scale per matrix, at
the same speed (``benchmarks/int8_export.py``). The graph keeps standard ONNX operators; ONNX
Runtime fuses LayerNorm, GELU and the quantized MatMuls itself when it loads the file (on CPU
the ``flashrank`` backend keeps each residual Add apart from its LayerNorm, which ran the int8
MiniLM export faster: ``rerankit.backends.flashrank.UNFUSED``). Activations get one scale per
batch, so an int8 score moves a little with the other pairs in its batch; fp32 does not.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

from rerankit._optional import require
from rerankit.errors import BackendError, ConfigurationError

logger = logging.getLogger("rerankit")

QUANTIZATIONS = ("int8",)
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export_onnx(
    model: str,
    outdir: str | Path,
    *,
    quantize: str | None = None,
    opset: int = 17,
    trust_remote_code: bool = False,
) -> Path:
    """Write ``model`` as ``model.onnx`` (or ``model_int8.onnx``) plus its tokenizer files.

    >>> export_onnx("BAAI/bge-reranker-base", "bge-onnx", quantize="int8")  # doctest: +SKIP
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigurationError(
            f"quantize must be one of {QUANTIZATIONS} or None, got {quantize!r}"
        )
    out = Path(outdir)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"{out} is a file: give a folder to export into")
    earlier = sorted(p.name for p in out.glob("*.onnx")) if out.is_dir() else []
    if earlier:  # a second .onnx file would make the folder ambiguous to load
        raise ConfigurationError(
            f"{out} already holds {earlier}: export into a new folder (or remove them)"
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
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["a query"], ["a passage to score"], return_tensors="pt")
    names = [name for name in INPUTS if name in sample]
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = (Path(scratch) if quantize else out) / "model.onnx"
        with torch.inference_mode(), warnings.catch_warnings():
            # Tracing warns about shape checks that are constant for these models.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            try:
                torch.onnx.export(
                    network,
                    tuple(sample[name] for name in names),
                    str(fp32),
                    input_names=names,
                    output_names=["logits"],
                    dynamic_axes={**axes, "logits": {0: "batch"}},
                    opset_version=opset,
                    dynamo=False,
                )
            except Exception as exc:  # torch.onnx raises RuntimeError and its own errors
                if created:
                    shutil.rmtree(out, ignore_errors=True)
                raise BackendError(
                    f"torch.onnx could not export {model!r} at opset {opset}: {exc} "
                    "(the default opset, 17, exports BERT-family cross-encoders)"
                ) from exc
        if quantize == "int8":
            quantization = require(
                "onnxruntime.quantization", extra="flashrank", purpose="int8 quantization"
            )
            quantization.quantize_dynamic(
                str(fp32),
                str(out / "model_int8.onnx"),
                weight_type=quantization.QuantType.QInt8,
                per_channel=True,
            )
    tokenizer.save_pretrained(out)
    network.config.save_pretrained(out)
    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    logger.info("exported %s to %s (%s)", model, out, quantize or "fp32")
    return out
