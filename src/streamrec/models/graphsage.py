"""GraphSAGE encoder on the user-item graph (Hamilton et al., NeurIPS 2017), as a recommender.

    x_v^(l+1) = act(W_1 x_v^(l) + W_2 mean_{j in N(v)} x_j^(l))     (PyG ``SAGEConv``, mean)

The neighbourhood is the unweighted training graph (mean aggregation needs no normalisation);
a node keeps its own representation through ``W_1`` (the "root weight"). Full-graph
propagation, no neighbour sampling: the graph fits in memory. Layer combination, loss,
negatives and regulariser as in :class:`~streamrec.models.graph.GraphRecommender`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric import EdgeIndex

from streamrec.data.dataset import Dataset
from streamrec.models.graph import (
    GraphRecommender,
    SAGEConvFused,
)
from streamrec.models.lightgcn import LightGCN, LightGCNConfig


@dataclass
class GraphSAGEConfig(LightGCNConfig):
    """Options of :class:`GraphSAGE`: those of LightGCN plus the non-linearity's slope."""

    negative_slope: float = 0.2


class GraphSAGE(GraphRecommender):
    """``n_layers`` ``SAGEConv`` (mean) layers with LeakyReLU between layers."""

    name = "graphsage"
    Config = GraphSAGEConfig
    normalized_graph = False  # the mean aggregation normalises by the degree
    train_recipe: ClassVar[dict[str, Any]] = {**LightGCN.train_recipe, "epochs": 20}

    def __init__(self, config: GraphSAGEConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.convs = nn.ModuleList(
            [SAGEConvFused(config.dim, config.dim, aggr="mean") for _ in range(config.n_layers)]
        )

    def encode(self, x: Tensor, edge_index: EdgeIndex, edge_weight: Tensor | None) -> Tensor:
        slope = self.config.negative_slope
        return self.conv_stack(x, edge_index, None, lambda h: F.leaky_relu(h, slope))
