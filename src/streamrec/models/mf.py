"""Matrix factorisation trained with BPR (Rendle et al., UAI 2009): the collaborative baseline.

score(u, i) = <p_u, q_i>. Each training step takes a batch of observed (user, item) pairs,
draws negatives that are never training positives of the user, and minimises

    BPR:      -log sigmoid(s(u, i) - s(u, j))            (one negative j per positive)
    softmax:  cross-entropy of the positive among itself and ``n_negatives`` negatives

plus ``l2 * 0.5 * (|p_u|^2 + |q_i|^2 + |q_j|^2) / batch`` on the embeddings of the batch (the
regulariser of the LightGCN paper's MF baseline).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamrec.common import at_least, one_of
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender, VectorRetriever
from streamrec.models.sampling import NegativeSampler


@dataclass
class MFConfig(ModelConfig):
    """Options of :class:`MF`."""

    dim: int = 64
    loss: str = "bpr"  # "bpr" or "softmax"
    n_negatives: int = 4  # BPR averages over the negatives of each positive
    l2: float = 3e-4
    init_std: float = 0.1

    def check(self) -> list[str]:
        return [
            *at_least("dim", self.dim, 1),
            *one_of("loss", self.loss, ("bpr", "softmax")),
            *at_least("n_negatives", self.n_negatives, 1),
            *at_least("l2", self.l2, 0),
            *at_least("init_std", self.init_std, 0, strict=True),
        ]


def bpr_or_softmax_loss(pos: torch.Tensor, neg: torch.Tensor, loss: str) -> torch.Tensor:
    """Ranking loss of positive scores [B] against negative scores [B, N] (mean over batch)."""
    if loss == "bpr":
        return -F.logsigmoid(pos.unsqueeze(1) - neg).mean()
    if loss == "softmax":
        logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))
    raise ValueError(f"unknown loss {loss!r}; choose bpr or softmax")


class MF(Recommender, VectorRetriever):
    """Matrix factorisation with BPR (or sampled-softmax) loss; ``score = P Q^T``."""

    name = "mf"
    Config = MFConfig
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 5e-3}
    #: batch 8,192 for 12 epochs at Gowalla scale (``benchmarks/results/gowalla_mf.md``); at
    #: least 1,100 steps (12 epochs of 99 steps on Gowalla, as measured; no warm-up), so small
    #: data gets a smaller batch and more epochs
    train_recipe: ClassVar[dict[str, Any]] = {"batch_size": 8192, "epochs": 12,
                                              "min_steps": 1100, "warmup": 0.0}

    def __init__(self, config: MFConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.user_emb = nn.Embedding(train.n_users, config.dim)
        self.item_emb = nn.Embedding(train.n_items, config.dim)
        nn.init.normal_(self.user_emb.weight, std=config.init_std)
        nn.init.normal_(self.item_emb.weight, std=config.init_std)
        self._sampler: NegativeSampler | None = None

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if self._sampler is None:
            self._sampler = NegativeSampler(train)
        order = rng.permutation(train.n_interactions)
        users, items = train.user[order].astype(np.int64), train.item[order].astype(np.int64)
        for s in range(0, len(order), batch_size):
            u = users[s : s + batch_size]
            yield (
                u,
                items[s : s + batch_size],
                self._sampler.sample(u, self.config.n_negatives, rng),
            )

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        u, i, j = batch
        pu, qi, qj = self.user_emb(u), self.item_emb(i), self.item_emb(j)
        pos = (pu * qi).sum(-1)
        neg = torch.einsum("bd,bnd->bn", pu, qj)
        reg = 0.5 * (pu.pow(2).sum() + qi.pow(2).sum() + qj.pow(2).sum() / qj.shape[1]) / len(u)
        return bpr_or_softmax_loss(pos, neg, self.config.loss) + self.config.l2 * reg

    def score(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        return self.user_embeddings(users, history) @ self.item_embeddings().T

    def user_embeddings(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        """The users' factors P[users], [B, dim] (MF reads no history)."""
        return self.user_emb(users)

    def item_embeddings(self) -> torch.Tensor:
        """The item factors Q, [n_items, dim]."""
        return self.item_emb.weight
