"""``rerankit train``: judgments or a teacher in, a one-logit cross-encoder folder out."""

from rerankit.training.data import TrainingData, TrainingQuery, load_training_data
from rerankit.training.trainer import TrainOutcome, TrainSettings, train

__all__ = [
    "TrainOutcome",
    "TrainSettings",
    "TrainingData",
    "TrainingQuery",
    "load_training_data",
    "train",
]
