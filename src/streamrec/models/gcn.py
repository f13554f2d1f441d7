"""GCN encoder on the user-item graph (Kipf & Welling, ICLR 2017), as a recommender.

    x^(l+1) = act(Ã x^(l) W_l + b_l)     (PyG ``GCNConv`` on the normalised training graph)

``Ã = D^-1/2 A D^-1/2`` is the same graph as LightGCN's (see :mod:`streamrec.models.graph`),
so the two differ only by the per-layer weights and the non-linearity: the comparison of the
LightGCN paper. Layer outputs are combined as in LightGCN (``combine="mean"``) or the last one
is used (``combine="last"``, the plain GCN stack). Loss, negatives and regulariser are those
of :class:`~streamrec.models.graph.GraphRecommender`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric import EdgeIndex

from streamrec.data.dataset import Dataset
from streamrec.models.graph import GCNConvFused, GraphRecommender
from streamrec.models.lightgcn import LightGCN, LightGCNConfig


@dataclass
class GCNConfig(LightGCNConfig):
    """Options of :class:`GCN`: those of LightGCN (same graph and loss) plus the
    non-linearity's negative slope (``leaky_relu``; 0 = ReLU)."""

    negative_slope: float = 0.2


class GCN(GraphRecommender):
    """``n_layers`` ``GCNConv`` layers (weights + LeakyReLU between layers)."""

    name = "gcn"
    Config = GCNConfig
    train_recipe: ClassVar[dict[str, Any]] = {**LightGCN.train_recipe, "epochs": 20}

    def __init__(self, config: GCNConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.convs = nn.ModuleList(
            [GCNConvFused(config.dim, config.dim, normalize=False, add_self_loops=False)
             for _ in range(config.n_layers)]
        )

    def encode(self, x: Tensor, edge_index: EdgeIndex, edge_weight: Tensor | None) -> Tensor:
        slope = self.config.negative_slope
        return self.conv_stack(x, edge_index, edge_weight, lambda h: F.leaky_relu(h, slope))
