"""GRU4Rec-style recurrent next-item models (Hidasi et al., ICLR 2016): ``gru`` and ``lstm``.

item (+ side) embedding -> embedding dropout -> 1-layer GRU/LSTM (hidden 128) -> linear to
``d_model`` -> scores against the tied item embeddings (see :mod:`streamrec.models.sequential`
for batches, losses and scoring). Trained like SASRec, on every prefix in one pass with full
softmax cross-entropy (the CE variant of GRU4Rec that RecBole uses too).

Sequences are left-padded; the recurrent layer runs on packed sequences so that padding never
enters the recurrent state (the padded rows are re-aligned to the right for packing and back).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from streamrec.common import at_least
from streamrec.data.dataset import Dataset
from streamrec.models.sequential import SequentialConfig, SequentialRecommender


@dataclass
class RNNConfig(SequentialConfig):
    """Options of :class:`GRU` / :class:`LSTM` (plus the shared :class:`SequentialConfig`)."""

    hidden: int = 128
    n_layers: int = 1
    dropout: float = 0.3  # embedding dropout

    def check(self) -> list[str]:
        return [*super().check(), *at_least("hidden", self.hidden, 1),
                *at_least("n_layers", self.n_layers, 1)]


def realign(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Roll every row of ``x`` [B, L, ...] left by ``shift`` [B] positions (cyclically)."""
    L = x.shape[1]
    idx = (torch.arange(L, device=x.device).unsqueeze(0) + shift.unsqueeze(1)) % L  # [B, L]
    idx = idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return torch.gather(x, 1, idx)


class _RecurrentRecommender(SequentialRecommender):
    Config = RNNConfig
    cell: type[nn.Module] = nn.GRU
    #: a higher rate on a cosine schedule: at the shared 1e-3, constant, the GRU was still
    #: improving at its last epoch on Amazon Scientific and Gowalla's 94k subsample (87% of
    #: its best recipe's NDCG@10 there; ``benchmarks/results/defaults.md``)
    train_defaults: ClassVar[dict[str, Any]] = {**SequentialRecommender.train_defaults,
                                                "lr": 3e-3, "schedule": "cosine"}

    def __init__(self, config: RNNConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.emb_dropout = nn.Dropout(config.dropout)
        self.rnn = self.cell(
            config.d_model, config.hidden, num_layers=config.n_layers, batch_first=True
        )
        self.out = nn.Linear(config.hidden, config.d_model)

    def encode(
        self,
        items: torch.Tensor,
        category: torch.Tensor | None = None,
        engagement: torch.Tensor | None = None,
    ) -> torch.Tensor:
        B, L = items.shape
        x = self.emb_dropout(self.embed(items, category, engagement))  # [B, L, d]
        lengths = (items > 0).sum(1)  # [B]
        # left-padded -> right-padded, pack, run, unpack, and back to left-padded
        x = realign(x, L - lengths)
        packed = pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        h, _ = self.rnn(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=L)
        h = realign(h, lengths % L)
        return self.out(h)  # [B, L, d]


class GRU(_RecurrentRecommender):
    """GRU4Rec-style next-item model."""

    name = "gru"
    cell = nn.GRU


class LSTM(_RecurrentRecommender):
    """The same with an LSTM cell."""

    name = "lstm"
    cell = nn.LSTM
