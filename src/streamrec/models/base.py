"""The one small contract every StreamRec recommender honours.

Every model is a ``torch.nn.Module`` so that its state (learned weights, or the statistics of
a closed-form model) saves to safetensors the same way. A model

* is built from its config dataclass and the **training view** of the data
  (``Model(config, train)``); the constructor may read item text, categories and the training
  interactions, never held-out data (it is never given any);
* if ``trainable`` is False, learns everything in :meth:`Recommender.fit` (popularity,
  TF-IDF/SVD, GF-CF): the trainer calls ``fit(train)`` once and skips the loop;
* if ``trainable`` is True, yields mini-batches with :meth:`Recommender.batches` (numpy or
  torch; the trainer moves tensors to the model's device) and returns a scalar loss for a
  batch with :meth:`Recommender.loss`;
* scores every item for a batch of users with :meth:`Recommender.score`, given ``history``:
  the interactions the model may see at that stage (training for validation, training +
  validation for test). Sequence models read the users' recent items from it; MF ignores it.

The trainer, the evaluator and the server call only these methods, so none of them
special-cases a model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from streamrec.data.dataset import Dataset


@dataclasses.dataclass
class ModelConfig:
    """Base class of model configs (each model subclasses it with its own fields)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Recommender(nn.Module):
    """Base class of all recommenders (see the module docstring for the contract)."""

    name: ClassVar[str] = "base"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    trainable: ClassVar[bool] = True
    #: "ranking" models score all items for users; "click" models score impressions.
    task: ClassVar[str] = "ranking"

    def __init__(self, config: ModelConfig, train: Dataset) -> None:
        super().__init__()
        self.config = config
        self.n_users = train.n_users
        self.n_items = train.n_items

    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        for t in self.buffers():
            return t.device
        return torch.device("cpu")

    # ---------------------------------------------------------------- learning
    def fit(self, train: Dataset) -> None:
        """Closed-form learning for models with ``trainable = False``. Default: nothing."""

    def batches(self, train: Dataset, batch_size: int, rng: np.random.Generator) -> Iterator[Any]:
        """Yield the mini-batches of one epoch, drawn with ``rng`` (deterministic)."""
        raise NotImplementedError(f"{type(self).__name__} is not trained by gradient descent")

    def num_batches(self, train: Dataset, batch_size: int) -> int:
        """How many batches one epoch has (for the progress bar and schedules)."""
        return max(1, -(-train.n_interactions // batch_size))

    def loss(self, batch: Any) -> torch.Tensor:
        """Scalar training loss of one batch."""
        raise NotImplementedError(f"{type(self).__name__} is not trained by gradient descent")

    # ---------------------------------------------------------------- scoring
    def score(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        """Scores of every item for a batch of users.

        users: int64 tensor [B] of internal user ids (on the model's device).
        history: the interactions visible at this stage.
        Returns a float tensor [B, n_items]; higher is better.
        """
        raise NotImplementedError

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for models that refresh state each epoch (e.g. cached propagation)."""

    def extra_state_files(self) -> dict[str, bytes]:
        """Non-tensor state to save beside the weights (e.g. a vocabulary), name -> bytes."""
        return {}

    def load_extra_state_files(self, files: dict[str, bytes]) -> None:
        """Restore what :meth:`extra_state_files` returned."""


def config_from_dict(cls: type[ModelConfig], values: dict[str, Any]) -> ModelConfig:
    """Build a config dataclass from a dict, rejecting unknown keys with a clear message."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for {cls.__qualname__}; "
            f"known: {', '.join(sorted(names))}"
        )
    return cls(**values)
