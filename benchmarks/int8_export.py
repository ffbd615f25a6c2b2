"""How `rerankit export --quantize int8` quantizes, and how far int8 can go on this CPU.

One trained MiniLM reranker (the model `benchmarks/train_scifact.py` writes), eight ways:
fp32 torch (the cross-encoder backend's runtime), fp32 ONNX, and six int8 ONNX graphs:
one scale per weight matrix, one scale per output channel (what `rerankit export` writes), the
same file with ONNX Runtime's SkipLayerNormalization fusion on (the flashrank backend leaves it
off: `UNFUSED`), per channel after ONNX Runtime's transformer optimizer fused attention, either
into `QAttention` (what rerankit exported before it measured this) or into an fp32
`MultiHeadAttention` after int8 Q/K/V projections (it has no int8 form), and static int8
(activation scales calibrated on other training claims, every MatMul quantized, QDQ format).
For each: pairs/s on full batches of real (claim, BM25 candidate) pairs of seeded SciFact
training claims (never the test claims), alternated so that every system sees the same machine
state, and how far its logits are from fp32 torch (Pearson, mean |Δ|, per-claim Spearman, top-1
agreement). ONNX files run as the flashrank backend runs them on CPU (the fused-attention
files are written without SkipLayerNormalization too). The calibration claims are other
claims than the compared ones, though their BM25 candidates can share abstracts. Then the
speed-up of the exported graph over fp32 torch by batch size (BATCH_SIZES pairs of 128 tokens),
since int8 gains most where a batch is small. Last, ONNX Runtime's profile of the per-channel
int8 graph: the share of time in quantized MatMuls bounds what int8 can gain.

    python benchmarks/int8_export.py [--model DIR] [--claims 40]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import DATA, ROOT

MODEL = ROOT / "benchmarks" / ".work" / "minilm-scifact"
OUT = ROOT / "benchmarks" / "results" / "int8_export.json"
BATCH = 32
MAX_LENGTH = 128  # the trained model's length
CANDIDATES = 12  # BM25 top 12 per claim: the hard part of a ranking
REPEATS = 8
BATCH_SIZES = (1, 4, 8, 16, 32, 64)
CALIBRATION_CLAIMS = 16  # static int8's activation ranges, from claims not in the comparison
EXPORTED = "int8, per channel (rerankit export)"
FUSED_SKIP_LAYER_NORM = "int8, per channel, ORT's SkipLayerNormalization fusion on"


def pairs(claims: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(claim, candidate) pairs of seeded SciFact *training* claims and their BM25 top 12: the
    compared ones, and those of CALIBRATION_CLAIMS other claims for static int8."""
    from rerankit.eval.first_stage import BM25
    from rerankit.training.data import load_training_data

    data = load_training_data(DATA / "scifact-train")
    index = BM25(data.corpus)
    seeded = random.Random(1)
    chosen = seeded.sample(data.judged_queries, claims)
    others = [q for q in data.judged_queries if q not in chosen]
    calibration = seeded.sample(others, min(CALIBRATION_CLAIMS, len(others)))

    def candidates(queries: list[Any]) -> list[tuple[str, str]]:
        return [
            (q.text, data.corpus[d]) for q in queries for d, _ in index.search(q.text, CANDIDATES)
        ]

    return candidates(chosen), candidates(calibration)


def graphs(model: Path, scratch: Path, calibration: dict[str, Any]) -> dict[str, Path]:
    """The ONNX files to compare, all from one fp32 export; ``calibration`` holds the encoded
    pairs static int8 takes its activation ranges from."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoConfig

    from rerankit.export import export_onnx

    fp32 = export_onnx(str(model), scratch / "fp32") / "model.onnx"
    ours = export_onnx(str(model), scratch / "int8", quantize="int8") / "model_int8.onnx"
    per_matrix = scratch / "per-matrix.onnx"
    quantize_dynamic(str(fp32), str(per_matrix), weight_type=QuantType.QInt8)
    config = AutoConfig.from_pretrained(model)
    fused = {}
    for name, separate_projections in (("qattention", False), ("mha", True)):
        options = FusionOptions("bert")
        options.use_multi_head_attention = separate_projections
        options.enable_skip_layer_norm = False  # as the flashrank backend runs (UNFUSED)
        fused_fp32 = scratch / f"{name}-fp32.onnx"
        optimize_model(
            str(fp32),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=0,
            optimization_options=options,
        ).save_model_to_file(str(fused_fp32))
        fused[name] = scratch / f"{name}.onnx"
        quantize_dynamic(
            str(fused_fp32),
            str(fused[name]),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": 1},  # fused ops have no ONNX shape inference
        )

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            size = len(calibration["input_ids"])
            self._batches = iter(
                {k: v[i : i + BATCH] for k, v in calibration.items()} for i in range(0, size, BATCH)
            )

        def get_next(self) -> dict[str, Any] | None:
            return next(self._batches, None)

    static, prepared = scratch / "static.onnx", scratch / "static-input.onnx"
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(static),
        Calibration(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        weight_type=QuantType.QInt8,
        extra_options={"MatMulConstBOnly": False},
    )
    return {
        "fp32 ONNX": fp32,
        "int8, one scale per matrix": per_matrix,
        EXPORTED: ours,
        "int8, per channel, fused attention": fused["qattention"],
        "int8, per channel, fused MultiHeadAttention": fused["mha"],
        "int8, static (calibrated activations), per channel": static,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=MODEL, help="a one-logit reranker folder")
    parser.add_argument("--claims", type=int, default=40)
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        parser.error(f"{args.model} is not a model folder: run benchmarks/train_scifact.py first")
    import numpy as np
    import onnxruntime as ort
    import torch
    from scipy.stats import pearsonr, spearmanr
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(texts: list[tuple[str, str]]) -> dict[str, Any]:
        encoded = tokenizer(
            [q for q, _ in texts],
            [d for _, d in texts],
            truncation="only_second",
            max_length=MAX_LENGTH,
            padding="max_length",
            return_tensors="np",
        )
        return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}

    texts, calibration = pairs(args.claims)
    inputs = encode(texts)
    batches = [
        {k: v[i : i + BATCH] for k, v in inputs.items()} for i in range(0, len(texts), BATCH)
    ]
    network = AutoModelForSequenceClassification.from_pretrained(args.model).eval()

    def run_torch(batch: dict[str, Any]) -> Any:
        with torch.inference_mode():
            tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
            return network(**tensors).logits[:, 0].numpy()

    runners: dict[str, Callable[[dict[str, Any]], Any]] = {"fp32 torch": run_torch}
    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        files = graphs(args.model, Path(scratch), encode(calibration))
        sessions = {name: ort_session(path, options) for name, path in files.items()}
        sessions[FUSED_SKIP_LAYER_NORM] = ort_session(files[EXPORTED], options, unfused=())
        for name, session in sessions.items():
            runners[name] = lambda batch, s=session: s.run(None, batch)[0][:, 0]
        reference = np.concatenate([run_torch(b) for b in batches])
        rows: dict[str, dict[str, float]] = {}
        for name, runner in runners.items():
            logits = np.concatenate([runner(b) for b in batches])
            per_claim = range(0, len(texts), CANDIDATES)
            rows[name] = {
                "pearson": float(pearsonr(reference, logits)[0]),
                "mean_abs_logit_error": float(np.abs(logits - reference).mean()),
                "spearman_per_claim": float(
                    statistics.mean(
                        spearmanr(reference[i : i + CANDIDATES], logits[i : i + CANDIDATES])[0]
                        for i in per_claim
                    )
                ),
                "top1_agreement": float(
                    statistics.mean(
                        float(
                            np.argmax(reference[i : i + CANDIDATES])
                            == np.argmax(logits[i : i + CANDIDATES])
                        )
                        for i in per_claim
                    )
                ),
            }
        full = batches[0]
        rates = pairs_per_second(runners, full, REPEATS)
        for name, rate in rates.items():
            rows[name] |= {"pairs_per_second": rate, "speedup_vs_torch": rate / rates["fp32 torch"]}
        by_batch = batch_curve(run_torch, runners[EXPORTED], inputs)
        profile = op_profile(files[EXPORTED], full)
    summary = {
        "model": str(
            args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model
        ),
        "pairs": len(texts),
        "batch": [BATCH, MAX_LENGTH],
        "systems": rows,
        "by_batch_size": by_batch,
        "int8_op_time_share": profile,
    }
    OUT.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(markdown(summary))
    return 0


def ort_session(path: Path, options: Any, unfused: tuple[str, ...] | None = None) -> Any:
    """An ONNX Runtime CPU session on ``path`` with the fusions in ``unfused`` off: those the
    flashrank backend leaves off (``UNFUSED``) unless given."""
    import onnxruntime as ort

    from rerankit.backends.flashrank import UNFUSED

    return ort.InferenceSession(
        str(path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=UNFUSED if unfused is None else unfused,
    )


def pairs_per_second(
    runners: dict[str, Callable[[dict[str, Any]], Any]], batch: dict[str, Any], repeats: int
) -> dict[str, float]:
    """Each runner's pairs/s on ``batch``: the median of ``repeats`` runs, taken in turns so
    that every runner sees the same machine state."""
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    for runner in runners.values():
        runner(batch)  # warm-up
    for _ in range(repeats):
        for name, runner in runners.items():
            started = time.perf_counter()
            runner(batch)
            seconds[name].append(time.perf_counter() - started)
    size = len(batch["input_ids"])  # fewer pairs than asked when --claims is small
    return {name: size / statistics.median(spent) for name, spent in seconds.items()}


def batch_curve(
    run_torch: Callable[[dict[str, Any]], Any],
    run_int8: Callable[[dict[str, Any]], Any],
    inputs: dict[str, Any],
) -> dict[str, dict[str, float]]:
    """Pairs/s of fp32 torch and the exported int8 graph on the first ``size`` pairs, by size."""
    curve = {}
    for asked in BATCH_SIZES:
        batch = {k: v[:asked] for k, v in inputs.items()}
        size = len(batch["input_ids"])
        # small batches are noisier: time more
        rates = pairs_per_second(
            {"torch": run_torch, "int8": run_int8}, batch, max(REPEATS, 64 // size)
        )
        curve[str(size)] = {
            "fp32_torch_pairs_per_second": rates["torch"],
            "int8_pairs_per_second": rates["int8"],
            "speedup_vs_torch": rates["int8"] / rates["torch"],
        }
    return curve


def op_profile(model: Path, batch: dict[str, Any]) -> dict[str, float]:
    """Share of kernel time per operator type of the ONNX file over a few runs of ``batch``."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as scratch:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "profile")
        profiled = ort_session(model, options)
        for _ in range(4):
            profiled.run(None, batch)
        events = json.loads(Path(profiled.end_profiling()).read_text(encoding="utf-8"))
    time_by_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            time_by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(time_by_op.values())
    return {op: spent / total for op, spent in time_by_op.most_common()}


QUANTIZED_MATMULS = ("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulInteger")


def markdown(summary: dict[str, Any]) -> str:
    """The comparison table and the profile line."""
    lines = [
        f"{summary['pairs']} (SciFact training claim, BM25 top {CANDIDATES}) pairs; "
        f"speed on {summary['batch'][0]} x {summary['batch'][1]}-token batches, 2 threads.",
        "",
        "| graph | pairs/s | vs fp32 torch | Pearson | mean abs logit error | Spearman per claim "
        "| top-1 agreement |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in summary["systems"].items():
        lines.append(
            f"| {name} | {row['pairs_per_second']:.0f} | {row['speedup_vs_torch']:.2f}x "
            f"| {row['pearson']:.4f} | {row['mean_abs_logit_error']:.3f} "
            f"| {row['spearman_per_claim']:.3f} | {row['top1_agreement']:.3f} |"
        )
    curve = summary["by_batch_size"]
    best_torch = max(row["fp32_torch_pairs_per_second"] for row in curve.values())
    best_int8 = max(row["int8_pairs_per_second"] for row in curve.values())
    lines += [
        "",
        "| pairs per batch | fp32 torch pairs/s | int8 (rerankit export) pairs/s | speed-up |",
        "|---|---|---|---|",
        *(
            f"| {size} | {row['fp32_torch_pairs_per_second']:.0f} "
            f"| {row['int8_pairs_per_second']:.0f} | {row['speedup_vs_torch']:.2f}x |"
            for size, row in curve.items()
        ),
        f"| each at its best | {best_torch:.0f} | {best_int8:.0f} "
        f"| {best_int8 / best_torch:.2f}x |",
    ]
    share = summary["int8_op_time_share"]
    quantized = sum(v for k, v in share.items() if k in QUANTIZED_MATMULS)
    top = ", ".join(f"{k} {v:.0%}" for k, v in list(share.items())[:6])
    lines += [
        "",
        f"Per-channel int8 kernel time: quantized MatMuls {quantized:.0%} ({top}).",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
