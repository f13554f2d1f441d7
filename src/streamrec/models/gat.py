"""GAT encoder on the user-item graph (Veličković et al., ICLR 2018), as a recommender.

    x_v^(l+1) = act(sum_{j in N(v)} a_vj W x_j^(l)),
    a_vj = softmax_j(LeakyReLU(a^T [W x_v || W x_j]))          (PyG ``GATConv``)

The attention weights replace the fixed ``1/sqrt(deg deg)`` of LightGCN / GCN, so the graph is
the unweighted training graph. Attention needs one value per edge, so GAT runs PyG's
gather-scatter message passing (not the fused sparse product): it is the slowest encoder here.
``heads`` attention heads are concatenated (each ``dim / heads`` wide). No self-loops: a node's
own embedding enters through the layer combination. Loss, negatives and regulariser as in
:class:`~streamrec.models.graph.GraphRecommender`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric import EdgeIndex
from torch_geometric.nn import GATConv

from streamrec.common import at_least, in_range
from streamrec.data.dataset import Dataset
from streamrec.models.graph import GraphRecommender
from streamrec.models.lightgcn import LightGCN, LightGCNConfig


@dataclass
class GATConfig(LightGCNConfig):
    """Options of :class:`GAT`: those of LightGCN plus ``heads`` and attention ``dropout``."""

    n_layers: int = 2
    heads: int = 1
    dropout: float = 0.0

    def check(self) -> list[str]:
        problems = [*super().check(), *at_least("heads", self.heads, 1),
                    *in_range("dropout", self.dropout, 0, 1, high_open=True)]
        if self.heads >= 1 and self.dim >= 1 and self.dim % self.heads:
            problems.append(f"heads ({self.heads}) must divide dim ({self.dim})")
        return problems


class GAT(GraphRecommender):
    """``n_layers`` ``GATConv`` layers with ELU between layers."""

    name = "gat"
    Config = GATConfig
    normalized_graph = False  # attention weights the edges
    #: attention costs one value per edge per step: twice LightGCN's batch, fewer epochs
    train_recipe: ClassVar[dict[str, Any]] = {
        **LightGCN.train_recipe,
        "batch_size": 2 * LightGCN.train_recipe["batch_size"],
        "epochs": 10,
    }

    def __init__(self, config: GATConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.convs = nn.ModuleList(
            [GATConv(config.dim, config.dim // config.heads, heads=config.heads,
                     dropout=config.dropout, add_self_loops=False)
             for _ in range(config.n_layers)]
        )

    def encode(self, x: Tensor, edge_index: EdgeIndex, edge_weight: Tensor | None) -> Tensor:
        return self.conv_stack(x, edge_index, None, F.elu)
