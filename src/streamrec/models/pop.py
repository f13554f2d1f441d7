"""Popularity: every user gets the items with the most training interactions.

Not trained by gradient descent; it honours the same scoring contract as every model, and its
statistics are computed from the training view only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from streamrec.common import at_least
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender, Validate


@dataclass
class PopConfig(ModelConfig):
    """Options of :class:`Popularity`.

    recency_half_life_days: if set, each interaction counts ``0.5 ** (age / half_life)``
    relative to the newest training interaction (a "trending" popularity).
    """

    recency_half_life_days: float | None = None

    def check(self) -> list[str]:
        return at_least("recency_half_life_days", self.recency_half_life_days, 0, strict=True)


class Popularity(Recommender):
    """Scores every item by its (optionally time-decayed) training interaction count."""

    name = "pop"
    Config = PopConfig
    trainable = False

    def __init__(self, config: PopConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.register_buffer("counts", torch.zeros(train.n_items))

    def fit(self, train: Dataset, validate: Validate | None = None) -> None:
        weights = None
        hl = self.config.recency_half_life_days
        if hl is not None and train.n_interactions:
            age_days = (train.timestamp.max() - train.timestamp) / 86400.0
            weights = np.power(0.5, age_days / hl)
        counts = np.bincount(train.item, weights=weights, minlength=train.n_items)
        self.counts.copy_(torch.as_tensor(counts, dtype=torch.float32))

    def score(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        return self.counts.unsqueeze(0).expand(len(users), -1).clone()
