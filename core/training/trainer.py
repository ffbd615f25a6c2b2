"""Fine-tune or distil a one-logit cross-encoder with sentence-transformers' trainer.

The trainer (a ``transformers.Trainer``) brings checkpoints, resuming, early stopping, seeds,
bf16 on CUDA and the progress bar; rerankit adds the data side: judgments, first-stage hard
negatives, a cached teacher, a validation slice of the training queries, and the output folder
(a standard ``AutoModelForSequenceClassification`` checkpoint with a model card).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rerankit._optional import require
from rerankit.config import RerankerConfig
from rerankit.errors import BackendError, ConfigurationError, InvalidInputError
from rerankit.eval.first_stage import Ranking
from rerankit.training.data import TrainingData, TrainingQuery, load_training_data
from rerankit.training.negatives import first_stage_candidates, sample_negatives
from rerankit.training.teacher import Teacher, TeacherReport

logger = logging.getLogger("rerankit")

#: Losses on judgments (labels 0/grade) and on a teacher's scores.
JUDGMENT_LOSSES = ("bce", "lambda")
TEACHER_LOSSES = ("listnet", "margin-mse")
EXPORTS = ("int8", "fp32")
WORK = "training"  # inside the output folder: checkpoints, settings, the teacher cache
TEACHER_CACHE = "teacher-scores.sqlite"
METRIC = "eval_validation_ndcg@10"


@dataclass(frozen=True)
class TrainSettings:
    """Everything ``rerankit train`` decides; saved with the model and checked on ``--resume``."""

    base: str
    out: str
    loss: str | None = None  # None: "bce" on judgments, "listnet" with a teacher
    negatives: int = 8
    mine_depth: int = 30
    epochs: float = 1.0
    batch_size: int = 16  # (query, document) pairs per optimizer step, whatever the loss
    learning_rate: float = 3e-5
    warmup: float = 0.1
    max_length: int = 256
    validation_queries: int | None = None  # None: 10% of the judged queries, at most 100
    eval_steps: int | None = None  # None: four validations per epoch
    patience: int = 3
    seed: int = 0
    teacher: dict[str, Any] | None = None  # a RerankerConfig as a dict (never an API key)
    teacher_temperature: float = 1.0
    run_file: str | None = None
    device: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        loss = self.resolved_loss
        if loss not in JUDGMENT_LOSSES + TEACHER_LOSSES:
            raise ConfigurationError(
                f"loss must be one of {JUDGMENT_LOSSES + TEACHER_LOSSES}, got {loss!r}"
            )
        if loss in TEACHER_LOSSES and self.teacher is None:
            raise ConfigurationError(f"loss {loss!r} learns a teacher's scores: give --teacher")
        if loss in JUDGMENT_LOSSES and self.teacher is not None:
            raise ConfigurationError(
                f"loss {loss!r} learns judgments; with a teacher use one of {TEACHER_LOSSES}"
            )
        for name in ("negatives", "mine_depth", "batch_size", "max_length", "patience"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be a positive integer")
        if self.negatives > self.mine_depth:
            raise ConfigurationError(
                f"negatives ({self.negatives}) are drawn from the first-stage top mine_depth "
                f"({self.mine_depth}): raise mine_depth or lower negatives"
            )
        for name in ("epochs", "learning_rate", "teacher_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.warmup < 1:
            raise ConfigurationError(
                f"warmup is a fraction of the steps in [0, 1), got {self.warmup}"
            )

    @property
    def resolved_loss(self) -> str:
        """The loss this run uses."""
        if self.loss is not None:
            return self.loss
        return "bce" if self.teacher is None else "listnet"


@dataclass
class TrainOutcome:
    """What a run produced and measured."""

    out: Path
    steps: int
    seconds: float
    examples: int
    train_queries: int
    validation_queries: int
    curve: list[dict[str, float]] = field(default_factory=list)  # step, loss / ndcg@10
    best_step: int | None = None
    teacher: TeacherReport | None = None
    export: Path | None = None


def train(
    data: TrainingData | str | Path,
    settings: TrainSettings,
    *,
    resume: bool = False,
    overwrite: bool = False,
    export: str | None = None,
    progress: bool = False,
    callbacks: Sequence[Any] = (),
) -> TrainOutcome:
    """Mine, label, train, save (and export) a reranker.

    Every input (the output folder, the data, the base model, the teacher) is checked before
    anything is written or trained. ``data`` is a :class:`TrainingData` or a path for
    :func:`~rerankit.training.data.load_training_data`; ``callbacks`` are extra
    ``transformers.TrainerCallback`` objects (logging to your tracker, for example).
    """
    require("sentence_transformers", extra="train", purpose="rerankit train")
    require("datasets", extra="train", purpose="rerankit train")
    if export is not None and export not in EXPORTS:
        raise ConfigurationError(f"export must be one of {EXPORTS} or None, got {export!r}")
    out = Path(settings.out)
    work = out / WORK
    _check_output(out, settings, resume=resume, overwrite=overwrite)
    if not isinstance(data, TrainingData):
        data = load_training_data(data)
    loss_name = settings.resolved_loss
    if loss_name in JUDGMENT_LOSSES and not data.judged_queries:
        raise InvalidInputError(
            f"{data.name}: no query has a judged-relevant document; training on judgments "
            "needs some (or give --teacher to learn a teacher's scores instead)"
        )
    run = _load_run(settings.run_file)
    train_queries, validation = _split(data, settings, loss_name)
    teacher = None
    if settings.teacher is not None:
        teacher = Teacher(RerankerConfig.from_dict(settings.teacher), work / TEACHER_CACHE)
    try:
        model = _load_base(settings)
        _prepare_output(out, settings, resume=resume)
        candidates = first_stage_candidates(data, depth=settings.mine_depth, run=run)
        negatives = sample_negatives(data, candidates, count=settings.negatives, seed=settings.seed)
        rows, group = _examples(
            data, train_queries, negatives, candidates, loss_name, teacher, settings, progress
        )
    finally:
        if teacher is not None:
            teacher.close()
    evaluator = _validation(data, validation, candidates, settings)
    trainer = _trainer(model, rows, group, evaluator, settings, loss_name, work, progress)
    for callback in callbacks:
        trainer.add_callback(callback)
    checkpoints = list((work / "checkpoints").glob("checkpoint-*"))
    if resume and not checkpoints:
        logger.warning("--resume: no checkpoint in %s yet; training starts at step 0", work)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=True if resume and checkpoints else None)
    seconds = time.perf_counter() - started
    outcome = TrainOutcome(
        out=out,
        steps=trainer.state.global_step,
        seconds=seconds,
        examples=len(rows["query"]),
        train_queries=len(train_queries),
        validation_queries=len(validation),
        curve=_curve(trainer.state.log_history),
        best_step=_best_step(trainer.state.best_model_checkpoint),
        teacher=None if teacher is None else teacher.report,
    )
    _save(model, out, trainer)
    if export is not None:
        from rerankit.export import export_onnx

        outcome.export = export_onnx(
            str(out), out / f"onnx-{export}", quantize="int8" if export == "int8" else None
        )
    from rerankit.training.card import write_card

    write_card(out, data, settings, outcome)
    return outcome


def _check_output(out: Path, settings: TrainSettings, *, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a folder; on resume, insist on the settings it was started with."""
    if resume and overwrite:
        raise ConfigurationError("--resume continues a folder, --overwrite replaces it: pick one")
    saved = out / WORK / "settings.json"
    if resume:
        if not saved.is_file():
            raise ConfigurationError(
                f"--resume: {out} holds no rerankit training run; run without --resume"
            )
        before = json.loads(saved.read_text(encoding="utf-8"))
        changed = sorted(k for k, v in asdict(settings).items() if before.get(k) != v)
        if changed:
            raise ConfigurationError(
                f"--resume with other settings than the run in {out} ({changed}); resume with "
                "the same command, or start again with --overwrite"
            )
    elif out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise ConfigurationError(
            f"the output folder {out} exists and is not empty: pass --overwrite to replace it, "
            "or --resume to continue its training"
        )


def _prepare_output(out: Path, settings: TrainSettings, *, resume: bool) -> None:
    """Clear a folder being overwritten (keeping the teacher's cached scores) and save settings."""
    if not resume and out.is_dir():
        for child in out.iterdir():  # the cached teacher scores stay: they are still valid
            if child.name == WORK:
                for item in child.iterdir():
                    if item.name != TEACHER_CACHE:
                        _remove(item)
            else:
                _remove(child)
    elif not resume and out.exists():
        out.unlink()
    (out / WORK).mkdir(parents=True, exist_ok=True)
    (out / WORK / "settings.json").write_text(json.dumps(asdict(settings), indent=2), "utf-8")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _load_run(path: str | None) -> dict[str, Ranking] | None:
    if path is None:
        return None
    from rerankit.eval.first_stage import load_run

    if not Path(path).is_file():
        raise ConfigurationError(f"run file {path!r} not found")
    return load_run(path)


def _load_base(settings: TrainSettings) -> Any:
    """The base checkpoint as a one-logit CrossEncoder; a plain encoder gets a new head."""
    transformers = require("transformers", extra="train", purpose="rerankit train")
    from sentence_transformers.cross_encoder import CrossEncoder

    from rerankit.backends.cross_encoder import refuse_generative

    refuse_generative(settings.base)
    try:
        config = transformers.AutoConfig.from_pretrained(
            settings.base, trust_remote_code=settings.trust_remote_code
        )
    except (OSError, ValueError) as exc:
        raise BackendError(f"could not load the base model {settings.base!r}: {exc}") from exc
    classifier = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    if classifier and config.num_labels != 1:
        raise ConfigurationError(
            f"{settings.base!r} has a {config.num_labels}-label classification head; rerankit "
            "train trains one-logit rerankers: start from its encoder or a one-logit reranker"
        )
    if not classifier:
        logger.info("%s has no reranking head: a new one-logit head is trained", settings.base)
    transformers.set_seed(settings.seed)  # the new head's initial weights
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the new head's "newly initialised" report
    try:
        return CrossEncoder(
            settings.base,
            num_labels=1,
            max_length=settings.max_length,
            device=settings.device,
            trust_remote_code=settings.trust_remote_code,
        )
    except (OSError, ValueError) as exc:
        raise BackendError(f"could not load the base model {settings.base!r}: {exc}") from exc
    finally:
        transformers.logging.set_verbosity(verbosity)


def _split(
    data: TrainingData, settings: TrainSettings, loss: str
) -> tuple[list[TrainingQuery], list[TrainingQuery]]:
    """A seeded slice of the judged training queries for validation; the rest trains."""
    judged = data.judged_queries
    count = settings.validation_queries
    if count is None:
        count = min(100, len(judged) // 10)
    if count >= len(judged) and count > 0:
        raise ConfigurationError(
            f"validation_queries ({count}) leaves no judged query to train on ({len(judged)})"
        )
    held = {q.qid for q in random.Random(settings.seed).sample(judged, count)}
    trainable = data.queries if loss in TEACHER_LOSSES else judged
    return [q for q in trainable if q.qid not in held], [q for q in judged if q.qid in held]


def _examples(
    data: TrainingData,
    queries: list[TrainingQuery],
    negatives: dict[str, list[str]],
    candidates: dict[str, list[str]],
    loss: str,
    teacher: Teacher | None,
    settings: TrainSettings,
    progress: bool,
) -> tuple[dict[str, list[Any]], int]:
    """The training columns for ``loss`` and the documents per example (1 pointwise)."""
    lists = {
        q.qid: q.positives + negatives[q.qid]
        if q.positives
        else candidates[q.qid][: settings.negatives + 1]  # no judgments: the teacher decides
        for q in queries
    }
    queries = [q for q in queries if len(lists[q.qid]) >= 2 or loss == "bce"]
    if not queries:
        raise InvalidInputError("no training query has two documents to compare")
    if teacher is None:
        labels = {q.qid: [float(q.judged.get(d, 0)) for d in lists[q.qid]] for q in queries}
    else:
        requests = [(q.text, [data.corpus[d] for d in lists[q.qid]]) for q in queries]
        scored = teacher.score(requests, progress=progress)
        labels = {
            q.qid: [s / settings.teacher_temperature for s in row]
            for q, row in zip(queries, scored, strict=True)
        }
    if loss == "bce":
        rows: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
        for q in queries:
            for doc, label in zip(lists[q.qid], labels[q.qid], strict=True):
                rows["query"].append(q.text)
                rows["document"].append(data.corpus[doc])
                rows["label"].append(min(label, 1.0))
        return rows, 1
    if loss == "margin-mse":
        rows = {"query": [], "positive": [], "negative": [], "label": []}
        for q in queries:
            ids, scores = lists[q.qid], labels[q.qid]
            top = max(range(len(ids)), key=scores.__getitem__)
            for i, doc in enumerate(ids):
                if i != top:
                    rows["query"].append(q.text)
                    rows["positive"].append(data.corpus[ids[top]])
                    rows["negative"].append(data.corpus[doc])
                    rows["label"].append(scores[top] - scores[i])
        return rows, 2
    rows = {"query": [], "documents": [], "labels": []}
    for q in queries:
        rows["query"].append(q.text)
        rows["documents"].append([data.corpus[d] for d in lists[q.qid]])
        rows["labels"].append(labels[q.qid])
    return rows, settings.negatives + 1


def _validation(
    data: TrainingData,
    queries: list[TrainingQuery],
    candidates: dict[str, list[str]],
    settings: TrainSettings,
) -> Any:
    """nDCG@10 of reranking each held-out query's first-stage list (positives it missed count)."""
    if not queries:
        return None
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    samples: list[dict[str, str | list[str]]] = [
        {
            "query": q.text,
            "positive": [data.corpus[d] for d in q.positives],
            "documents": [data.corpus[d] for d in candidates[q.qid]],
        }
        for q in queries
    ]
    return CrossEncoderRerankingEvaluator(
        samples,
        at_k=10,
        always_rerank_positives=False,
        name="validation",
        batch_size=settings.batch_size * 2,
        write_csv=False,
    )


def _loss(model: Any, loss: str, group: int, rows: dict[str, list[Any]], batch: int) -> Any:
    import torch
    from sentence_transformers.cross_encoder import losses

    if loss == "bce":
        positives = sum(1 for label in rows["label"] if label > 0)
        weight = (len(rows["label"]) - positives) / max(positives, 1)
        return losses.BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(max(weight, 1.0)))
    if loss == "margin-mse":
        return losses.MarginMSELoss(model)
    if loss == "lambda":
        return losses.LambdaLoss(model, mini_batch_size=batch)
    return losses.ListNetLoss(model, mini_batch_size=batch)


def _trainer(
    model: Any,
    rows: dict[str, list[Any]],
    group: int,
    evaluator: Any,
    settings: TrainSettings,
    loss_name: str,
    work: Path,
    progress: bool,
) -> Any:
    import torch
    from datasets import Dataset
    from sentence_transformers.cross_encoder import (
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
    )
    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    per_step = max(1, settings.batch_size // group)  # examples per step: batch_size pairs
    dataset = Dataset.from_dict(rows).shuffle(seed=settings.seed)
    steps_per_epoch = max(1, -(-len(dataset) // per_step))
    every = settings.eval_steps or max(1, steps_per_epoch // 4)
    cuda = model.device.type == "cuda"
    validate = evaluator is not None
    args = CrossEncoderTrainingArguments(
        output_dir=str(work / "checkpoints"),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=per_step,
        learning_rate=settings.learning_rate,
        warmup_steps=settings.warmup,
        seed=settings.seed,
        data_seed=settings.seed,
        bf16=cuda and torch.cuda.is_bf16_supported(),
        use_cpu=not cuda,
        logging_steps=max(1, min(every, steps_per_epoch // 20)),
        eval_strategy="steps" if validate else "no",
        eval_steps=every if validate else None,
        save_strategy="steps",
        save_steps=every,
        save_total_limit=2,
        load_best_model_at_end=validate,
        restore_callback_states_from_checkpoint=True,  # early stopping's count survives --resume
        metric_for_best_model=METRIC if validate else None,
        greater_is_better=True if validate else None,
        report_to="none",
        disable_tqdm=not progress,
        dataloader_num_workers=0,
    )
    callbacks: list[Any] = [EarlyStoppingCallback(settings.patience)] if validate else []
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        loss=_loss(model, loss_name, group, rows, settings.batch_size),
        evaluator=evaluator,
        callbacks=callbacks,
    )
    if progress:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_loss_bar())
    else:  # the log goes to rerankit's logger (rerankit -v), not to stdout
        trainer.remove_callback(PrinterCallback)
        trainer.add_callback(_log_lines())
    return trainer


def _loss_bar() -> Any:
    """The trainer's progress bar (steps, ETA) with the latest loss and nDCG@10 beside it."""
    from transformers.trainer_callback import ProgressCallback

    class LossBar(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            shown = {k: f"{logs[k]:.4g}" for k in ("loss", METRIC) if logs and k in logs}
            if state.is_world_process_zero and self.training_bar is not None and shown:
                self.training_bar.set_postfix(shown)

    return LossBar()


def _log_lines() -> Any:
    """Each trainer log entry (loss, validation) as an INFO line of the ``rerankit`` logger."""
    from transformers import TrainerCallback

    class LogLines(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if state.is_world_process_zero and logs:
                logger.info("step %d: %s", state.global_step, logs)

    return LogLines()


def _curve(history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The training loss and validation nDCG@10 by step, from the trainer's log."""
    points: list[dict[str, float]] = []
    for entry in history:
        point = {"step": float(entry["step"])}
        if "loss" in entry:
            point["loss"] = float(entry["loss"])
        if METRIC in entry:
            point["ndcg@10"] = float(entry[METRIC])
        if len(point) > 1:
            points.append(point)
    return points


def _best_step(checkpoint: str | None) -> int | None:
    return None if checkpoint is None else int(checkpoint.rsplit("-", 1)[-1])


def _save(model: Any, out: Path, trainer: Any) -> None:
    """The final (best, with validation) weights as a plain sequence-classification folder."""
    model.save_pretrained(str(out))
    history = out / WORK / "log_history.json"
    history.write_text(json.dumps(trainer.state.log_history, indent=1), encoding="utf-8")
    for checkpoint in (out / WORK / "checkpoints").glob("checkpoint-*"):
        shutil.rmtree(checkpoint)  # the model is saved; keep the folder small
