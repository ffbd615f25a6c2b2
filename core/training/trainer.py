"""Fine-tune or distil a one-logit cross-encoder with sentence-transformers' trainer.

The trainer (a ``transformers.Trainer``) brings checkpoints, resuming, early stopping, seeds,
bf16 on CUDA and the progress bar; rerankit adds the data side: judgments, first-stage hard
negatives, a cached teacher, a validation slice of the training queries, and the output folder
(a standard ``AutoModelForSequenceClassification`` checkpoint with a model card).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import re
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rerankit._optional import require
from rerankit.config import RerankerConfig
from rerankit.errors import BackendError, ConfigurationError, InvalidInputError
from rerankit.eval.first_stage import BM25, Ranking
from rerankit.training.data import TrainingData, TrainingQuery, load_training_data
from rerankit.training.negatives import (
    first_stage_candidates,
    first_stage_scores,
    sample_negatives,
)
from rerankit.training.teacher import Teacher, TeacherReport
from rerankit.training.windows import WindowPicker, check_tokenizer

logger = logging.getLogger("rerankit")

#: Losses on judgments (labels 0/grade) and on a teacher's scores.
JUDGMENT_LOSSES = ("bce", "lambda")
TEACHER_LOSSES = ("listnet", "margin-mse")
EXPORTS = ("int8", "fp32")
WORK = "training"  # inside the output folder: checkpoints, settings, the teacher cache
TEACHER_CACHE = "teacher-scores.sqlite"
SETTINGS = "settings.json"
DATA_FINGERPRINT = "data.sha256"
COMPLETED = "completed.json"
METRIC = "eval_validation_ndcg@10"
GENERATIVE_HEADS = ("ForCausalLM", "ForConditionalGeneration")


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
    max_windows: int = 1  # >1: long documents train on one of the windows a reader reads
    validation_queries: int | None = None  # None: 10% of the judged queries, at most 100
    eval_steps: int | None = None  # None: four validations per epoch
    patience: int = 3
    seed: int = 0
    teacher: dict[str, Any] | None = None  # a RerankerConfig as a dict (never an API key)
    teacher_temperature: float = 1.0
    # >0: each list's teacher scores plus this weight x their spread x the first stage's z-score
    teacher_first_stage_weight: float = 0.0
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
        for name in (
            "negatives",
            "mine_depth",
            "batch_size",
            "max_length",
            "max_windows",
            "patience",
        ):
            if not _is_count(getattr(self, name), minimum=1):
                raise ConfigurationError(f"{name} must be a positive integer")
        if self.eval_steps is not None and not _is_count(self.eval_steps, minimum=1):
            raise ConfigurationError(f"eval_steps must be a positive integer: {self.eval_steps}")
        held = self.validation_queries
        if held is not None and not _is_count(held, minimum=0):
            raise ConfigurationError(
                f"validation_queries must be an integer >= 0, got {self.validation_queries}"
            )
        if self.device is not None and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigurationError(
                f"device must be cpu, cuda or cuda:N for training, got {self.device!r}"
            )
        if self.negatives > self.mine_depth:
            raise ConfigurationError(
                f"negatives ({self.negatives}) are drawn from the first-stage top mine_depth "
                f"({self.mine_depth}): raise mine_depth or lower negatives"
            )
        for name in ("epochs", "learning_rate", "teacher_temperature"):
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"{name} must be > 0, got {getattr(self, name)}")
        weight = self.teacher_first_stage_weight
        if not (math.isfinite(weight) and weight >= 0):
            raise ConfigurationError(
                f"teacher_first_stage_weight must be a finite number >= 0, got {weight}"
            )
        if weight > 0 and self.teacher is None:
            raise ConfigurationError(
                "teacher_first_stage_weight blends the first stage into a teacher's scores: "
                "give --teacher"
            )
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


def _is_count(value: object, *, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


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
    teacher_model = None if settings.teacher is None else settings.teacher.get("model")
    inputs = [
        settings.base,
        settings.run_file,
        None if isinstance(data, TrainingData) else data,
        teacher_model if isinstance(teacher_model, str) else None,  # a folder --overwrite spares
    ]
    _check_output(out, settings, inputs, resume=resume, overwrite=overwrite)
    if not isinstance(data, TrainingData):
        data = load_training_data(data)
    _check_resumed_data(out, data, resume=resume)
    loss_name = settings.resolved_loss
    if loss_name in JUDGMENT_LOSSES and not data.judged_queries:
        raise InvalidInputError(
            f"{data.name}: no query has a judged-relevant document; training on judgments "
            "needs some (or give --teacher to learn a teacher's scores instead)"
        )
    run = _load_run(settings.run_file, data)
    train_queries, validation = _split(data, settings, loss_name)
    teacher = None
    if settings.teacher is not None:
        teacher = Teacher(RerankerConfig.from_dict(settings.teacher), work / TEACHER_CACHE)
        if teacher.report.scale == "rank" and loss_name == "margin-mse":
            teacher.close()
            raise ConfigurationError(
                "a listwise teacher's scores are ranks within each list: margins between "
                "lists mean nothing; use --loss listnet"
            )
    try:
        model = _load_base(settings)
        check_tokenizer(model.tokenizer, settings.max_length, settings.max_windows)
        _prepare_output(out, settings, data, resume=resume)
        index = None if run is not None else BM25(data.corpus)  # mining and a hybrid teacher
        candidates = first_stage_candidates(data, depth=settings.mine_depth, run=run, index=index)
        negatives = sample_negatives(data, candidates, count=settings.negatives, seed=settings.seed)
        picker = _window_picker(model, data, negatives, candidates, settings)
        rows, group, used = _examples(
            data,
            train_queries,
            negatives,
            candidates,
            loss_name,
            teacher,
            picker,
            settings,
            progress,
            run,
            index,
        )
    finally:
        if teacher is not None:
            teacher.close()
    evaluator, validated = _validation(data, validation, candidates, picker, settings)
    trainer = _trainer(model, rows, group, evaluator, settings, loss_name, work, progress)
    for callback in callbacks:
        trainer.add_callback(callback)
    checkpoint = _last_complete_checkpoint(work / "checkpoints") if resume else None
    if resume and checkpoint is None:
        logger.warning("--resume: no checkpoint in %s yet; training starts at step 0", work)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=None if checkpoint is None else str(checkpoint))
    seconds = time.perf_counter() - started
    outcome = TrainOutcome(
        out=out,
        steps=trainer.state.global_step,
        seconds=seconds,
        examples=len(rows["query"]),
        train_queries=used,
        validation_queries=validated,
        curve=_curve(trainer.state.log_history),
        best_step=_best_step(trainer.state.best_model_checkpoint),
        teacher=None if teacher is None else teacher.report,
    )
    _save(model, out, trainer, _base_token_limit(settings))
    if export is not None:
        from rerankit.export import export_onnx

        exported = out / f"onnx-{export}"
        shutil.rmtree(exported, ignore_errors=True)  # one a resumed run's killed start wrote
        outcome.export = export_onnx(
            str(out),
            exported,
            quantize="int8" if export == "int8" else None,
            trust_remote_code=settings.trust_remote_code,
        )
    from rerankit.training.card import write_card

    write_card(out, data, settings, outcome)
    (work / COMPLETED).write_text(json.dumps({"steps": outcome.steps}), encoding="utf-8")
    return outcome


def _check_output(
    out: Path,
    settings: TrainSettings,
    inputs: list[str | Path | None],
    *,
    resume: bool,
    overwrite: bool,
) -> None:
    """Refuse to clobber anything but an earlier run's folder; on resume, insist on its settings."""
    if resume and overwrite:
        raise ConfigurationError("--resume continues a folder, --overwrite replaces it: pick one")
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} is a file: give a folder")
    target = out.resolve()
    for given in [Path.cwd(), *(Path(i) for i in inputs if i is not None)]:
        if given.exists() and (target == given.resolve() or target in given.resolve().parents):
            raise ConfigurationError(
                f"--out {out} is or holds an input ({given}): write the model somewhere else"
            )
    saved = out / WORK / SETTINGS
    if resume:
        if not saved.is_file():
            raise ConfigurationError(
                f"--resume: {out} holds no rerankit training run; run without --resume"
            )
        if (out / WORK / COMPLETED).is_file():
            raise ConfigurationError(
                f"--resume: the run in {out} finished; nothing to resume (--overwrite trains again)"
            )
        before = json.loads(saved.read_text(encoding="utf-8"))
        defaults = {f.name: f.default for f in fields(TrainSettings)}  # keys newer than the run
        changed = sorted(k for k, v in asdict(settings).items() if before.get(k, defaults[k]) != v)
        if changed:
            raise ConfigurationError(
                f"--resume with other settings than the run in {out} ({changed}); resume with "
                "the same command, or start again with --overwrite"
            )
    elif out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise ConfigurationError(
                f"the output folder {out} exists and is not empty: pass --overwrite to replace "
                "it, or --resume to continue its training"
            )
        if not saved.is_file():
            raise ConfigurationError(
                f"--overwrite replaces only a folder rerankit train wrote ({WORK}/{SETTINGS} in "
                f"it); {out} is not one: choose another --out"
            )


def _fingerprint(data: TrainingData) -> str:
    """A hash of the queries, judgments and document ids, to tell a resumed run's data apart."""
    digest = hashlib.sha256()
    for query in data.queries:
        digest.update(json.dumps([query.qid, query.text, sorted(query.judged.items())]).encode())
    digest.update(json.dumps(sorted(data.corpus)).encode())
    return digest.hexdigest()


def _check_resumed_data(out: Path, data: TrainingData, *, resume: bool) -> None:
    saved = out / WORK / DATA_FINGERPRINT
    if resume and saved.is_file() and saved.read_text(encoding="utf-8") != _fingerprint(data):
        raise ConfigurationError(
            f"--resume with other training data than the run in {out}; resume with the same "
            "data, or start again with --overwrite"
        )


def _prepare_output(
    out: Path, settings: TrainSettings, data: TrainingData, *, resume: bool
) -> None:
    """Clear an earlier run being overwritten (keeping its cached teacher scores); save settings."""
    if not resume and out.is_dir():
        for child in out.iterdir():
            if child.name == WORK:
                for item in child.iterdir():
                    if not item.name.startswith(TEACHER_CACHE):  # the cache and its journal
                        _remove(item)
            else:
                _remove(child)
    (out / WORK).mkdir(parents=True, exist_ok=True)
    (out / WORK / SETTINGS).write_text(json.dumps(asdict(settings), indent=2), "utf-8")
    (out / WORK / DATA_FINGERPRINT).write_text(_fingerprint(data), "utf-8")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _load_run(path: str | None, data: TrainingData) -> dict[str, Ranking] | None:
    """A run file's rankings for the training queries; one that covers none is an error."""
    if path is None:
        return None
    from rerankit.eval.first_stage import load_run

    if data.layout != "beir":
        raise ConfigurationError(
            "a run file names BEIR query and document ids: JSONL judgments have none; mine "
            "with BM25 (leave out --first-stage) or convert the data to a BEIR folder"
        )
    if not Path(path).is_file():
        raise ConfigurationError(f"run file {path!r} not found")
    run = load_run(path)
    covered = sum(1 for q in data.queries if any(d in data.corpus for d, _ in run.get(q.qid, [])))
    if covered == 0:
        raise InvalidInputError(
            f"run file {path} ranks none of the {len(data.queries)} training queries' corpus "
            "documents: is it a run over this data?"
        )
    if covered < len(data.queries):
        logger.warning(
            "run file %s ranks documents for %d of %d training queries; the others get no "
            "mined negatives",
            path,
            covered,
            len(data.queries),
        )
    return run


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
    architectures = config.architectures or []
    generative = [a for a in architectures if a.endswith(GENERATIVE_HEADS)]
    if generative:
        raise ConfigurationError(
            f"{settings.base!r} is a generative model ({generative[0]}); rerankit train makes "
            "cross-encoders: start from an encoder (BERT, MiniLM, XLM-R, ...) or a cross-encoder"
        )
    classifier = any(a.endswith("ForSequenceClassification") for a in architectures)
    if classifier and config.num_labels != 1:
        raise ConfigurationError(
            f"{settings.base!r} has a {config.num_labels}-label classification head; rerankit "
            "train trains one-logit rerankers: start from its encoder or a one-logit reranker"
        )
    if not classifier:
        logger.info("%s has no reranking head: a new one-logit head is trained", settings.base)
    if settings.device is not None and settings.device.startswith("cuda:"):
        import torch

        torch.cuda.set_device(int(settings.device.split(":")[1]))  # the Trainer's device
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


def validation_queries(data: TrainingData, count: int | None, seed: int) -> list[TrainingQuery]:
    """The judged training queries ``rerankit train --validation-queries COUNT --seed SEED``
    holds out for validation (``None``: 10%, at most 100), in file order."""
    judged = data.judged_queries
    if count is None:
        count = min(100, len(judged) // 10)
    if count >= len(judged) and count > 0:
        raise ConfigurationError(
            f"validation_queries ({count}) leaves no judged query to train on ({len(judged)})"
        )
    held = {q.qid for q in random.Random(seed).sample(judged, count)}
    return [q for q in judged if q.qid in held]


def _split(
    data: TrainingData, settings: TrainSettings, loss: str
) -> tuple[list[TrainingQuery], list[TrainingQuery]]:
    """A seeded slice of the judged training queries for validation; the rest trains."""
    validation = validation_queries(data, settings.validation_queries, settings.seed)
    held = {q.qid for q in validation}
    trainable = data.queries if loss in TEACHER_LOSSES else data.judged_queries
    return [q for q in trainable if q.qid not in held], validation


def _window_picker(
    model: Any,
    data: TrainingData,
    negatives: dict[str, list[str]],
    candidates: dict[str, list[str]],
    settings: TrainSettings,
) -> WindowPicker:
    """The window picker over every document training or validation may read."""
    used = {
        d
        for q in data.queries
        for d in [*q.positives, *negatives.get(q.qid, ()), *candidates.get(q.qid, ())]
    }
    return WindowPicker(
        model.tokenizer,
        (data.corpus[d] for d in sorted(used)),
        max_length=settings.max_length,
        max_windows=settings.max_windows,
    )


def _examples(
    data: TrainingData,
    queries: list[TrainingQuery],
    negatives: dict[str, list[str]],
    candidates: dict[str, list[str]],
    loss: str,
    teacher: Teacher | None,
    picker: WindowPicker,
    settings: TrainSettings,
    progress: bool,
    run: dict[str, Ranking] | None,
    index: BM25 | None,
) -> tuple[dict[str, list[Any]], int, int]:
    """The training columns for ``loss``, the documents per example and the queries used.

    The teacher scores each document as its own reranker reads it; the student reads the
    document's picked window (see :mod:`rerankit.training.windows`)."""
    lists = {
        q.qid: q.positives + negatives[q.qid]
        if q.positives
        else candidates[q.qid][: settings.negatives + 1]  # no judgments: the teacher decides
        for q in queries
    }
    kept = [q for q in queries if len(lists[q.qid]) >= 2 or (loss == "bce" and lists[q.qid])]
    if len(kept) < len(queries):
        logger.warning(
            "%d of %d training queries have too few documents (positives and first-stage "
            "candidates) to train on; they are left out",
            len(queries) - len(kept),
            len(queries),
        )
    queries = kept
    if not queries:
        raise InvalidInputError("no training query has two documents to compare")
    if teacher is None:
        labels = {q.qid: [float(q.judged.get(d, 0)) for d in lists[q.qid]] for q in queries}
    else:
        requests = [(q.text, [data.corpus[d] for d in lists[q.qid]]) for q in queries]
        scored = [_as_logits(row, teacher) for row in teacher.score(requests, progress=progress)]
        weight = settings.teacher_first_stage_weight
        if weight > 0:
            listed = {q.qid: lists[q.qid] for q in queries}
            first = first_stage_scores(data, listed, run=run, index=index)
            scored = [
                blend(row, first[q.qid], weight) for q, row in zip(queries, scored, strict=True)
            ]
        labels = {
            q.qid: [s / settings.teacher_temperature for s in row]
            for q, row in zip(queries, scored, strict=True)
        }
    if loss == "bce":
        rows: dict[str, list[Any]] = {"query": [], "document": [], "label": []}
        for q in queries:
            for doc, label in zip(lists[q.qid], labels[q.qid], strict=True):
                rows["query"].append(q.text)
                rows["document"].append(picker.pick(q.text, data.corpus[doc]))
                rows["label"].append(min(label, 1.0))
        return rows, 1, len(queries)
    if loss == "margin-mse":
        rows = {"query": [], "positive": [], "negative": [], "label": []}
        for q in queries:
            ids, scores = lists[q.qid], labels[q.qid]
            top = max(range(len(ids)), key=scores.__getitem__)
            best = picker.pick(q.text, data.corpus[ids[top]])
            for i, doc in enumerate(ids):
                if i != top:
                    rows["query"].append(q.text)
                    rows["positive"].append(best)
                    rows["negative"].append(picker.pick(q.text, data.corpus[doc]))
                    rows["label"].append(scores[top] - scores[i])
        return rows, 2, len(queries)
    rows = {"query": [], "documents": [], "labels": []}
    for q in queries:
        rows["query"].append(q.text)
        rows["documents"].append([picker.pick(q.text, data.corpus[d]) for d in lists[q.qid]])
        rows["labels"].append(labels[q.qid])
    return rows, settings.negatives + 1, len(queries)


def blend(teacher: list[float], first_stage: list[float], weight: float) -> list[float]:
    """A hybrid teacher over one list: the teacher's scores plus ``weight`` times the first
    stage's z-scores put on the teacher's scale (times the teacher's spread over the list; a
    flat teacher's scale is 1). A flat first stage leaves the teacher's scores as they are.

    >>> blend([2.0, 0.0], [0.0, 10.0], 0.5)
    [1.5, 0.5]
    """
    spread = statistics.pstdev(teacher) or 1.0
    centre, scale = statistics.fmean(first_stage), statistics.pstdev(first_stage)
    if scale == 0:
        return list(teacher)
    return [
        t + weight * spread * (f - centre) / scale
        for t, f in zip(teacher, first_stage, strict=True)
    ]


def _as_logits(scores: list[float], teacher: Teacher) -> list[float]:
    """A probability-like teacher's scores (0..1) as log-odds, so that ListNet's softmax over
    them is as sharp as the teacher's judgement; other scales stay as they are."""
    if teacher.report.scale not in ("probability", "service") or not all(
        0.0 <= s <= 1.0 for s in scores
    ):
        return scores
    clipped = [min(max(s, 1e-6), 1 - 1e-6) for s in scores]
    return [math.log(p / (1 - p)) for p in clipped]


def _validation(
    data: TrainingData,
    queries: list[TrainingQuery],
    candidates: dict[str, list[str]],
    picker: WindowPicker,
    settings: TrainSettings,
) -> tuple[Any, int]:
    """nDCG@10 of reranking each held-out query's first-stage list (each document read as its
    picked window, as in training), and the queries it uses.

    A query whose first stage found nothing cannot be reranked and is left out (with a warning).
    """
    searchable = [q for q in queries if candidates[q.qid]]
    if len(searchable) < len(queries):
        logger.warning(
            "%d validation queries have no first-stage candidates and are left out",
            len(queries) - len(searchable),
        )
    queries = searchable
    if not queries:
        return None, 0
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    samples: list[dict[str, str | list[str]]] = [
        {
            "query": q.text,
            "positive": [picker.pick(q.text, data.corpus[d]) for d in q.positives],
            "documents": [picker.pick(q.text, data.corpus[d]) for d in candidates[q.qid]],
        }
        for q in queries
    ]
    evaluator = CrossEncoderRerankingEvaluator(
        samples,
        at_k=10,
        always_rerank_positives=False,
        name="validation",
        batch_size=settings.batch_size * 2,
        write_csv=False,
    )
    return evaluator, len(queries)


def _loss(model: Any, loss: str, rows: dict[str, list[Any]], batch: int) -> Any:
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
        bf16=cuda and torch.cuda.get_device_capability(model.device)[0] >= 8,  # native bf16
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
        loss=_loss(model, loss_name, rows, settings.batch_size),
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


def _last_complete_checkpoint(folder: Path) -> Path | None:
    """The latest checkpoint in ``folder`` that was saved whole; those a killed run left half
    written (no ``trainer_state.json``, written last) are removed, with a warning."""
    saved = [c for c in folder.glob("checkpoint-*") if c.name.removeprefix("checkpoint-").isdigit()]
    complete = []
    for checkpoint in sorted(saved, key=lambda c: int(c.name.removeprefix("checkpoint-"))):
        if (checkpoint / "trainer_state.json").is_file():
            complete.append(checkpoint)
        else:
            logger.warning("--resume: %s was cut off while saving; removing it", checkpoint)
            shutil.rmtree(checkpoint)
    return complete[-1] if complete else None


def _best_step(checkpoint: str | None) -> int | None:
    return None if checkpoint is None else int(checkpoint.rsplit("-", 1)[-1])


def _base_token_limit(settings: TrainSettings) -> int | None:
    """The base tokenizer's ``model_max_length``: the trained folder's own, not the training's."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            settings.base, trust_remote_code=settings.trust_remote_code
        )
    except (OSError, ValueError):
        return None
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) else None


def _save(model: Any, out: Path, trainer: Any, token_limit: int | None) -> None:
    """The final (best, with validation) weights as a plain sequence-classification folder.

    Its tokenizer keeps the base's token limit: ``--max-length`` bounds training inputs, and
    rerankers built on the folder choose their own ``max_length`` up to the model's limit.
    """
    if token_limit is not None:
        model.tokenizer.model_max_length = token_limit
    model.save_pretrained(str(out))
    history = out / WORK / "log_history.json"
    history.write_text(json.dumps(trainer.state.log_history, indent=1), encoding="utf-8")
    shutil.rmtree(out / WORK / "checkpoints", ignore_errors=True)  # the model is saved
