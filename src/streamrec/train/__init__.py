"""The one training loop for every torch model: schedules, clipping, early stopping,
checkpoints with exact resume, progress and the training curve (see ``docs/training.md``)."""

from streamrec.train.plots import plot_training_curve
from streamrec.train.schedules import make_optimizer, make_scheduler
from streamrec.train.trainer import (
    Callback,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    TrainResult,
    load_checkpoint,
    move_to_device,
    read_metrics,
    resolve_device,
    save_checkpoint,
    save_weights,
    train_model,
)

__all__ = [
    "Callback",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "load_checkpoint",
    "make_optimizer",
    "make_scheduler",
    "move_to_device",
    "plot_training_curve",
    "read_metrics",
    "resolve_device",
    "save_checkpoint",
    "save_weights",
    "train_model",
]
