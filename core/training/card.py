"""The model card (``README.md``) of a trained reranker: what made it and how to check it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from rerankit.training.data import TrainingData
from rerankit.training.trainer import TrainOutcome, TrainSettings


def write_card(
    out: Path, data: TrainingData, settings: TrainSettings, outcome: TrainOutcome
) -> Path:
    """Write ``out/README.md`` (replacing sentence-transformers' generic card)."""
    front = [
        "---",
        f"base_model: {json.dumps(settings.base)}" if not Path(settings.base).exists() else None,
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        "tags: [cross-encoder, reranker, rerankit]",
        "---",
    ]
    lines = [line for line in front if line is not None]
    lines += [
        f"# Reranker fine-tuned from {settings.base}",
        "",
        "A one-logit cross-encoder (`AutoModelForSequenceClassification`) trained with",
        "`rerankit train`. Its score is a raw logit: `normalize=True` in rerankit (or a sigmoid)",
        "gives a probability.",
        "",
        *_reading(settings),
        "",
        "```python",
        "from rerankit import Reranker",
        "",
        f"reranker = Reranker({str(out)!r}, max_length={settings.max_length}, "
        f"max_windows={settings.max_windows})",
        "# or: sentence_transformers.CrossEncoder(...) on the same folder",
        "```",
        "",
        "## Training",
        "",
        "| setting | value |",
        "|---|---|",
        f"| base | `{settings.base}` |",
        f"| data | {data.name}: {outcome.train_queries} training queries, "
        f"{outcome.validation_queries} held out for validation, {len(data.corpus)} documents |",
        f"| examples | {outcome.examples} ({_loss_text(settings)}) |",
        f"| hard negatives | {settings.negatives} per query, seeded sample of the "
        f"{'run file' if settings.run_file else 'BM25'} top {settings.mine_depth}, "
        "judged positives excluded |",
        f"| teacher | {_teacher_text(settings, outcome)} |",
        f"| steps | {outcome.steps} (epochs {settings.epochs}, {settings.batch_size} pairs per "
        f"step, learning rate {settings.learning_rate}, warm-up {settings.warmup}) |",
        f"| max length | {settings.max_length} tokens, long documents as "
        f"{_windows_text(settings)} |",
        f"| seed | {settings.seed} |",
        f"| training time | {outcome.seconds / 60:.1f} min |",
    ]
    if outcome.export is not None:
        lines.append(f"| ONNX export | `{outcome.export.name}/` (FlashRank backend) |")
    lines += ["", "## Validation", ""]
    validated = [p for p in outcome.curve if "ndcg@10" in p]
    if validated:
        best = "" if outcome.best_step is None else f" The weights are step {outcome.best_step}'s."
        lines += [
            "nDCG@10 of reranking the held-out training queries' first-stage candidates "
            f"(top {settings.mine_depth}).{best}",
            "",
            "| step | nDCG@10 |",
            "|---|---|",
            *(f"| {int(p['step'])} | {p['ndcg@10']:.4f} |" for p in validated),
        ]
    else:
        lines.append("No validation queries were held out.")
    command = shlex.join(
        [
            "rerankit",
            "eval",
            "YOUR_TEST_SET",
            "--reranker",
            eval_spec(out, settings),
        ]
    )
    lines += [
        "",
        "## Evaluate it",
        "",
        "On a test set it never saw (never the training queries):",
        "",
        "```",
        command,
        "```",
        "",
        f"`{out / 'training'}` holds the settings, the training log and any cached teacher",
        "scores (training texts): leave it out when you publish the model.",
        "",
    ]
    path = out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def eval_spec(out: Path, settings: TrainSettings) -> str:
    """The ``--reranker`` spec that reads the trained model as it learned (length, windows)."""
    return (
        f"name=trained,model={out},max_length={settings.max_length},"
        f"max_windows={settings.max_windows}"
    )


def _reading(settings: TrainSettings) -> list[str]:
    """How to read the model: at its training length, long documents as it learned them."""
    if settings.max_windows == 1:
        return [
            f"It learned from pairs of {settings.max_length} tokens, a longer document from its",
            "first tokens: read it the same way (training with `--max-windows N` teaches it to",
            "read long documents as windows).",
        ]
    return [
        f"It learned from pairs of {settings.max_length} tokens, a longer document from the one of",
        f"its first {settings.max_windows} windows that shares the most query terms: read it the",
        f"same way, scoring a long document as up to {settings.max_windows} windows and keeping",
        "the best window's score (`max_windows`).",
    ]


def _windows_text(settings: TrainSettings) -> str:
    if settings.max_windows == 1:
        return "their first tokens"
    return f"the query-matching one of up to {settings.max_windows} windows"


def _loss_text(settings: TrainSettings) -> str:
    return {
        "bce": "binary cross-entropy on judgments",
        "lambda": "LambdaLoss (listwise, nDCG-weighted) on judgments",
        "listnet": "ListNet: listwise KL to the teacher's score distribution",
        "margin-mse": "margin-MSE to the teacher's score margins",
    }[settings.resolved_loss]


def _teacher_text(settings: TrainSettings, outcome: TrainOutcome) -> str:
    teacher = settings.teacher
    if teacher is None or outcome.teacher is None:
        return "none (judgments only)"
    report = outcome.teacher
    usage = ", ".join(f"{k} {v:g}" for k, v in sorted(report.usage.items()))
    weight = settings.teacher_first_stage_weight
    blended = f", blended with the first stage's z-scores at weight {weight:g}" if weight else ""
    return (
        f"`{teacher['model']}` (backend {teacher.get('backend') or 'inferred'}, scale "
        f"{report.scale}, temperature {settings.teacher_temperature}{blended}): "
        f"{report.scored} pairs scored, {report.cached} from cache{'; ' + usage if usage else ''}"
    )
