"""LightGCN (He et al., SIGIR 2020): linear propagation of ID embeddings on the user-item graph.

    x^(l+1) = Ã x^(l)            (PyG ``LGConv``: no weights, no non-linearity)
    x_final = mean(x^(0), ..., x^(L))   (layer combination, a_l = 1 / (L+1))
    s(u, i) = <x_final_u, x_final_i>

with ``Ã = D^-1/2 A D^-1/2`` the normalised user-item graph of the training view (see
:mod:`streamrec.models.graph`). The only parameters are the ego embeddings ``x^(0)``.

Defaults (the CPU recipe, see ``docs/graph.md``): the paper's model (dim 64, 3 layers)
trained with fewer, cheaper steps that each learn more than the paper's. A step costs one
propagation over the whole graph whatever the batch, so each step should use it fully: large
batches of whole users (16,384 pairs), the **full** softmax over the catalogue
(``n_negatives=0``, every item a candidate, the user's positives masked) on cosine similarity
with temperature 0.1 plus a learned item bias (``item_bias``: the popularity term a cosine
cannot carry), every user weighted equally (``user_balance``), spectral (SVD) initialisation
and a high learning rate with a cosine decay (why each choice, and what it measured:
``docs/graph.md``).
``--set loss=bpr n_negatives=1 temperature=1 similarity=dot l2=1e-4 user_balance=false
init=normal item_bias=false`` with ``lr=1e-3 batch_size=2048`` gives the paper's BPR recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn
from torch_geometric import EdgeIndex

from streamrec.data.dataset import Dataset
from streamrec.models.graph import GraphConfig, GraphRecommender, LightConv


@dataclass
class LightGCNConfig(GraphConfig):
    """Options of :class:`LightGCN` (see :class:`~streamrec.models.graph.GraphConfig`)."""

    loss: str = "softmax"
    n_negatives: int = 0  # full softmax
    temperature: float = 0.1
    similarity: str = "cosine"
    l2: float = 0.0
    user_balance: bool = True
    init: str = "svd"
    item_bias: bool = True


class LightGCN(GraphRecommender):
    """LightGCN: ``n_layers`` parameter-free ``LGConv`` layers and the mean of their outputs."""

    name = "lightgcn"
    Config = LightGCNConfig
    #: 5 epochs: on Gowalla the 20-epoch curve is flat after epoch 4 (``docs/graph.md``)
    train_defaults: ClassVar[dict[str, Any]] = {
        "lr": 3e-2,
        "schedule": "cosine",
        "valid_metric": "recall@20",
    }
    #: batch 16,384 for 5 epochs at Gowalla scale (``benchmarks/results/gowalla_lightgcn.md``);
    #: no warm-up (as measured); on smaller data a smaller batch, 50 steps per epoch and 250
    #: steps at least (5 epochs), which is exactly the measured recipe at Gowalla scale
    train_recipe: ClassVar[dict[str, Any]] = {
        "batch_size": 16384, "epochs": 5, "min_steps_per_epoch": 50, "min_steps": 250,
        "warmup": 0.0,
    }

    def __init__(self, config: LightGCNConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.convs = nn.ModuleList([LightConv(normalize=False) for _ in range(config.n_layers)])

    def encode(self, x: Tensor, edge_index: EdgeIndex, edge_weight: Tensor | None) -> Tensor:
        return self.conv_stack(x, edge_index, edge_weight)
