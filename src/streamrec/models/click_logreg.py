"""Logistic regression for click prediction (``logreg``), and the base of the click models.

Click models (:class:`~streamrec.models.base.ClickModel`, ``task = "click"``) score
impressions, not the catalogue: given the raw features of (user, item) pairs they return click
logits. :class:`ClickRecommender` holds what every click model shares:

* the click split of the impressions (``click_split`` / ``click_split_seed`` /
  ``click_split_ratios`` in the config; see :mod:`streamrec.data.clicks`);
* the :class:`~streamrec.data.clicks.Standardizer` fitted on the **training** impressions only,
  kept as the buffers ``feature_mean`` / ``feature_std`` so a reloaded run standardises the
  same way;
* ``batches`` (shuffled mini-batches of training impressions), ``loss`` (mean binary
  cross-entropy on logits) and ``click_logits`` for the evaluator
  (:func:`streamrec.eval.clicks.evaluate_clicks`).

A subclass only builds its network in :meth:`ClickRecommender.build_net`
(``[B, F] standardised -> [B]`` logits). Logistic regression is the smallest such network: one
``Linear(F, 1)``, so ``logit = w . z + b`` on the standardised features ``z``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamrec.common import at_least, one_of
from streamrec.data.clicks import SPLIT_METHODS, Standardizer, click_arrays, click_split
from streamrec.data.dataset import Dataset
from streamrec.models.base import ClickModel, ModelConfig


@dataclasses.dataclass
class ClickConfig(ModelConfig):
    """Options every click model has: how its impressions are split."""

    #: ``auto`` (the impressions' own ``split`` column if any, else random), ``random``,
    #: ``temporal`` or ``given``
    click_split: str = "auto"
    click_split_seed: int = 0
    click_split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    #: train on a seeded random share of the training impressions (learning curves, the
    #: over-fitting case); validation and test impressions are unchanged
    train_fraction: float = 1.0

    def check(self) -> list[str]:
        problems = [*one_of("click_split", self.click_split, SPLIT_METHODS),
                    *at_least("click_split_seed", self.click_split_seed, 0)]
        if not 0.0 < self.train_fraction <= 1.0:
            problems.append(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        ratios = self.click_split_ratios
        if min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6:
            problems.append(f"click_split_ratios must be three non-negative numbers summing to "
                            f"1, got {list(ratios)}")
        return problems


class ClickRecommender(ClickModel):
    """Base class of the click models (see the module docstring)."""

    Config: ClassVar[type[ModelConfig]] = ClickConfig
    train_defaults: ClassVar[dict[str, Any]] = {
        "valid_metric": "auc",
        "batch_size": 512,
        "epochs": 20,
        "patience": 5,
    }

    def __init__(self, config: ClickConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.feature_names = list(train.meta.get("impression_features", []))
        self.assign = click_split(train, **self.split_spec())
        if config.train_fraction < 1.0:  # drop (code -1) a seeded share of the training rows
            rows = np.flatnonzero(self.assign == 0)
            rng = np.random.default_rng([config.click_split_seed, 0xF4AC])
            drop = rng.permutation(rows)[int(round(config.train_fraction * len(rows))):]
            self.assign[drop] = -1
        tr = click_arrays(train, "train", self.assign)
        if len(tr) == 0:
            raise ValueError("the click split left no training impressions")
        self.n_features = tr.features.shape[1]
        std = Standardizer.fit(tr.features)
        self.register_buffer("feature_mean", torch.from_numpy(std.mean))
        self.register_buffer("feature_std", torch.from_numpy(std.std))
        # raw training arrays for batches() (not part of the state)
        self._train_x = torch.from_numpy(np.ascontiguousarray(tr.features))
        self._train_y = torch.from_numpy(tr.clicked.astype(np.float32))

    @property
    def base_logit(self) -> float:
        """``log(r / (1 - r))`` of the training click rate ``r``: the output bias every click
        model starts from, so the first steps need not learn the base rate (and the initial
        loss is the entropy of the base rate, not ``log 2``)."""
        r = float(self._train_y.mean().clamp(1e-6, 1 - 1e-6))
        return float(np.log(r / (1.0 - r)))

    # ------------------------------------------------------------------ split
    def split_spec(self) -> dict[str, Any]:
        """Arguments of :func:`~streamrec.data.clicks.click_split` for this model."""
        c = self.config
        return {"method": c.click_split, "seed": c.click_split_seed,
                "ratios": tuple(c.click_split_ratios)}

    @property
    def standardizer(self) -> Standardizer:
        return Standardizer(self.feature_mean.cpu().numpy(), self.feature_std.cpu().numpy())

    # ------------------------------------------------------------------ network
    def standardize(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, F]`` raw -> ``[B, F]`` z-scores with the training statistics."""
        return (features.float() - self.feature_mean) / self.feature_std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Raw features ``[B, F]`` -> logits ``[B]``."""
        return self.net(self.standardize(features)).squeeze(-1)

    # ------------------------------------------------------------------ learning
    def num_batches(self, train: Dataset, batch_size: int) -> int:
        return max(1, -(-len(self._train_y) // batch_size))

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled ``(features [B, F] raw float32, clicked [B] float32)`` of the training
        impressions; the last batch may be smaller."""
        n = len(self._train_y)
        order = torch.from_numpy(rng.permutation(n))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            yield self._train_x[idx], self._train_y[idx]

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Mean binary cross-entropy of the batch's logits against its clicks."""
        x, y = batch
        return F.binary_cross_entropy_with_logits(self(x), y.float())

    # ------------------------------------------------------------------ scoring
    def click_logits(
        self, users: torch.Tensor, items: torch.Tensor, features: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``[B]`` of impressions (``users`` / ``items`` [B] are not used by
        feature-only models; ``features`` [B, F] raw)."""
        return self(features)

    def protocol(self) -> dict[str, Any]:
        c = self.config
        return {"train_fraction": c.train_fraction} if c.train_fraction < 1.0 else {}


@dataclasses.dataclass
class LogRegConfig(ClickConfig):
    """Logistic regression has no options beyond the click split (regularise it with the
    train option ``weight_decay``)."""


class LogReg(ClickRecommender):
    """``p(click) = sigmoid(w . z + b)`` on the standardised features ``z`` [F]."""

    name: ClassVar[str] = "logreg"
    Config: ClassVar[type[ModelConfig]] = LogRegConfig
    train_defaults: ClassVar[dict[str, Any]] = {
        **ClickRecommender.train_defaults,
        "lr": 1e-2,
        "batch_size": 1024,
        "epochs": 10,
    }

    def __init__(self, config: LogRegConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.net = nn.Linear(self.n_features, 1)
        nn.init.zeros_(self.net.weight)
        nn.init.constant_(self.net.bias, self.base_logit)
