"""The one training loop for every torch model: schedules, clipping, early stopping,
checkpoints with exact resume, progress and the training curve (see ``docs/training.md``)."""

from streamrec.train.checkpoint import (
    DamagedFileError,
    load_checkpoint,
    read_metrics,
    save_checkpoint,
    save_weights,
)
from streamrec.train.config import TrainConfig, build_configs
from streamrec.train.plots import plot_training_curve
from streamrec.train.schedules import make_optimizer, make_scheduler
from streamrec.train.trainer import (
    Callback,
    NonFiniteLossError,
    Trainer,
    TrainingInterrupted,
    TrainResult,
    move_to_device,
    train_model,
)

__all__ = [
    "Callback",
    "DamagedFileError",
    "NonFiniteLossError",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "build_configs",
    "load_checkpoint",
    "make_optimizer",
    "make_scheduler",
    "move_to_device",
    "plot_training_curve",
    "read_metrics",
    "save_checkpoint",
    "save_weights",
    "train_model",
]
