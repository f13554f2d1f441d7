"""Graph collaborative filtering on the user-item graph: what every graph model shares.

The graph
---------
Users and items are the nodes of one bipartite graph: user ``u`` is node ``u`` and item ``i``
is node ``n_users + i``. Every (user, item) pair of the **training view** is an edge in both
directions, so the graph is undirected and nothing held out (validation or test) is ever an
edge. Edges carry the symmetric GCN normalisation of the LightGCN paper,

    w(u, i) = 1 / sqrt(deg(u) * deg(i)),   i.e.   Ã = D^-1/2 A D^-1/2   (no self-loops),

computed by PyG's :func:`~torch_geometric.nn.conv.gcn_conv.gcn_norm`.

The graph is held as a PyG :class:`~torch_geometric.EdgeIndex` sorted by target node (column)
and flagged undirected. PyG convs then run "fused" message passing: one sparse-dense matrix
product per layer (``EdgeIndex.matmul``) instead of materialising one message per edge, and
the backward pass reuses the cached transpose. The convs below (:class:`LightConv`,
:class:`GCNConvFused`, :class:`SAGEConvFused`) are PyG's own ``LGConv`` / ``GCNConv`` /
``SAGEConv`` with that fused path switched on — the same pattern as PyG's ``GraphConv``.

The model
---------
:class:`GraphRecommender` holds one ego (layer-0) embedding per node and an encoder of
``n_layers`` convs. The final embedding of a node combines its layer outputs
(``combine="mean"``: the LightGCN layer combination with equal weights 1/(L+1);
``"last"``: the last layer only, as a plain GCN stack). A user scores an item by the dot
product (or cosine) of their final embeddings.

Training takes a batch of observed (user, item) training pairs and runs **one full
propagation** over the graph per batch, then one of two losses:

* ``bpr``: ``-log sigmoid(s(u, i) - s(u, j))`` with ``n_negatives`` negatives per pair drawn by
  :class:`~streamrec.models.sampling.NegativeSampler` (never a training positive of ``u``);
* ``softmax``: a sampled softmax (cross-entropy of the positive against a candidate set) with
  ``n_negatives`` uniform items **shared by the whole batch** (one matrix product), plus the
  batch's positive items when ``in_batch``; every candidate that is a training positive of
  the row's user is masked out, so negatives are never positives. Scores are divided by
  ``temperature`` (cosine similarity makes the temperature meaningful).

Both add the LightGCN paper's regulariser on the **ego embeddings of the batch**,
``l2 * 0.5 * (|e_u|^2 + |e_i|^2 + mean_j |e_j|^2)``, averaged over the batch.

Scoring uses the full propagation in eval mode, cached until any weight changes (each
parameter's version counter is part of the cache key), so evaluating all users propagates once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric import EdgeIndex
from torch_geometric.nn import GCNConv, LGConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import Adj, OptPairTensor, OptTensor
from torch_geometric.utils import spmm, to_undirected

from streamrec.common import at_least, in_range, one_of
from streamrec.data.dataset import Dataset
from streamrec.models.base import ItemEmbedder, ModelConfig, Recommender, split_rows
from streamrec.models.mf import bpr_or_softmax_loss
from streamrec.models.sampling import NegativeSampler

# PyG's fused products build sparse CSC tensors; torch warns about their beta status and the
# invariant checks on every first use, which is noise to a user (the indices are PyG's own).
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")
warnings.filterwarnings("ignore", message="Sparse CSC tensor support is in beta state")

LOSSES = ("bpr", "softmax")
SIMILARITIES = ("dot", "cosine")
COMBINES = ("mean", "last")
INITS = ("normal", "svd")


# =========================================================================== the graph
def training_pairs(train: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (user, item) pairs of the training view, sorted: (users [E], items [E])."""
    keys = np.unique(train.user.astype(np.int64) * train.n_items + train.item)
    return keys // train.n_items, keys % train.n_items


def bipartite_edge_index(
    users: np.ndarray | Tensor, items: np.ndarray | Tensor, n_users: int, n_items: int
) -> Tensor:
    """The undirected user-item graph of the given pairs.

    users, items: int [E] internal ids of the interactions (training only!).
    Returns edge_index int64 [2, 2E'] (E' distinct pairs) over ``n_users + n_items`` nodes:
    user ``u`` is node ``u``, item ``i`` is node ``n_users + i``; each pair gives the edges
    u -> i and i -> u; coalesced (sorted by source node, duplicates removed).
    """
    u = torch.as_tensor(users, dtype=torch.long)
    i = torch.as_tensor(items, dtype=torch.long) + n_users
    return to_undirected(torch.stack([u, i]), num_nodes=n_users + n_items)


def normalized_adjacency(edge_index: Tensor, num_nodes: int) -> tuple[EdgeIndex, Tensor]:
    """Symmetric GCN normalisation ``D^-1/2 A D^-1/2`` (no self-loops) of an undirected graph.

    Returns ``(adj, edge_weight)``: ``adj`` is an :class:`EdgeIndex` [2, E] sorted by target
    node (column) and flagged undirected, ``edge_weight`` [E] float32 is
    ``1 / sqrt(deg(src) * deg(dst))`` aligned with it.
    """
    edge_index, edge_weight = gcn_norm(
        edge_index, None, num_nodes, add_self_loops=False, dtype=torch.float32
    )
    adj = EdgeIndex(edge_index, sparse_size=(num_nodes, num_nodes), is_undirected=True)
    adj, perm = adj.sort_by("col")
    return adj, edge_weight[perm]


def unweighted_adjacency(edge_index: Tensor, num_nodes: int) -> EdgeIndex:
    """The graph as an :class:`EdgeIndex` sorted by target node, flagged undirected, without
    edge weights (for GraphSAGE's mean aggregation and GAT's attention)."""
    adj = EdgeIndex(edge_index, sparse_size=(num_nodes, num_nodes), is_undirected=True)
    return adj.sort_by("col")[0]


def drop_pairs(
    users: Tensor, items: Tensor, p: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Edge dropout on the user-item graph: keep each (user, item) pair with probability
    ``1 - p`` (both directions of a pair are kept or dropped together)."""
    keep = torch.rand(len(users), generator=generator) >= p
    return users[keep], items[keep]


# =========================================================================== fused convs
class _FusedWeighted:
    """Fused weighted message passing (``sum_j w_ji x_j`` as one sparse-dense product) on an
    :class:`EdgeIndex` sorted by target node; mixed into PyG convs that weight their edges."""

    SUPPORTS_FUSED_EDGE_INDEX = True
    aggr: str

    def message_and_aggregate(self, edge_index: Adj, x: Tensor, edge_weight: OptTensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):  # no bfloat16 sparse kernels
            if isinstance(edge_index, EdgeIndex):
                return edge_index.matmul(x.float(), input_value=edge_weight, transpose=True)
            return spmm(edge_index, x.float(), reduce=self.aggr)


class LightConv(_FusedWeighted, LGConv):
    """:class:`~torch_geometric.nn.conv.LGConv` (``x'_i = sum_j w_ji x_j``), fused."""


class GCNConvFused(_FusedWeighted, GCNConv):
    """:class:`~torch_geometric.nn.conv.GCNConv` (``x' = Ã x W + b``), fused."""


class SAGEConvFused(SAGEConv):
    """:class:`~torch_geometric.nn.conv.SAGEConv` (``x'_i = W1 x_i + W2 mean_j x_j``) with
    fused message passing on an :class:`EdgeIndex` sorted by target node."""

    SUPPORTS_FUSED_EDGE_INDEX = True

    def message_and_aggregate(self, edge_index: Adj, x: OptPairTensor) -> Tensor:
        with torch.autocast(x[0].device.type, enabled=False):  # no bfloat16 sparse kernels
            if isinstance(edge_index, EdgeIndex):
                return edge_index.matmul(x[0].float(), reduce=self.aggr, transpose=True)
            return spmm(edge_index, x[0].float(), reduce=self.aggr)


# =========================================================================== the model
@dataclass
class GraphConfig(ModelConfig):
    """Options shared by the graph recommenders.

    dim: embedding size. n_layers: number of message-passing layers (0 = MF).
    loss: ``bpr`` or ``softmax`` (sampled softmax with shared negatives).
    n_negatives: ``bpr``: negatives per pair; ``softmax``: uniform negatives shared by the batch.
    in_batch: ``softmax`` only: the batch's positive items are negatives too.
    temperature: ``softmax`` only: logits are ``similarity / temperature``.
    similarity: ``dot`` or ``cosine`` (of the final embeddings) for training and scoring.
    ego_norm: L2-normalise the ego embeddings before propagation. With ``similarity=dot`` the
        final embeddings then have magnitudes set by the graph (a node's degree), not learned
        freely: a popular item scores higher through the propagation, which cosine similarity
        of the final embeddings cannot express (after Wu et al., TOIS 2023: message passing
        can supply the magnitudes that cosine similarity removes).
    item_bias: a learned per-item bias added to every logit (softmax: ``s / temperature + b_i``;
        BPR: ``s + b_i``) and to the scores: the popularity term that cosine similarity cannot
        carry in an item's norm.
    l2: weight of the L2 penalty on the ego embeddings of the batch.
    edge_dropout: probability of dropping a training pair from the graph at each step
        (the graph is renormalised); 0 = off.
    user_balance: weight each pair's loss by ``1 / deg(user)`` so every user counts equally
        (as LightGCN-PyTorch's sampler, which draws users uniformly); default: every pair
        counts equally.
    combine: ``mean`` (LightGCN layer combination over layers 0..L) or ``last``.
    init: ``normal`` (N(0, init_std^2), the paper's) or ``svd``: the ego embeddings start from
        the top-``dim`` singular vectors of the normalised rating matrix ``D_U^-1/2 R D_I^-1/2``
        (users ``U sqrt(S)``, items ``V sqrt(S)``, randomized SVD of the training view, scaled
        to the mean row norm of the normal initialisation), so that training starts from the
        graph's smoothest directions (spectral initialisation).
    init_std: std of the ``normal`` initialisation.
    """

    dim: int = 64
    n_layers: int = 3
    loss: str = "bpr"
    n_negatives: int = 1
    in_batch: bool = False
    temperature: float = 1.0
    similarity: str = "dot"
    ego_norm: bool = False
    item_bias: bool = False
    l2: float = 1e-4
    edge_dropout: float = 0.0
    user_balance: bool = False
    combine: str = "mean"
    init: str = "normal"
    init_std: float = 0.1

    def check(self) -> list[str]:
        problems = [
            *one_of("loss", self.loss, LOSSES),
            *one_of("similarity", self.similarity, SIMILARITIES),
            *one_of("combine", self.combine, COMBINES),
            *one_of("init", self.init, INITS),
            *at_least("dim", self.dim, 1),
            *at_least("n_layers", self.n_layers, 0),
            *at_least("n_negatives", self.n_negatives, 1 if self.loss == "bpr" else 0),
            *at_least("temperature", self.temperature, 0, strict=True),
            *at_least("l2", self.l2, 0),
            *in_range("edge_dropout", self.edge_dropout, 0, 1, high_open=True),
            *at_least("init_std", self.init_std, 0, strict=True),
        ]
        if self.in_batch and self.loss != "softmax":
            problems.append("in_batch negatives need loss='softmax'")
        return problems


class GraphBatch(NamedTuple):
    """One training batch.

    users, items: [B] observed training pairs. negatives: ``bpr``: [B, n] per pair;
    ``softmax``: [M] candidate items shared by the batch (all items for the full softmax).
    rows: ``softmax``: [R] the distinct users of the batch (one row of logits each) and
    pair_rows: [B] the row of each pair. mask_rows / mask_cols: the (row, candidate) logits to
    mask because the candidate is a training positive of the row's user.
    """

    users: Any
    items: Any
    negatives: Any
    rows: Any
    pair_rows: Any
    mask_rows: Any
    mask_cols: Any


class GraphRecommender(Recommender, ItemEmbedder):
    """Base class: ego embeddings + an encoder over the user-item graph + BPR/softmax loss.

    Subclasses build ``self.convs`` and implement :meth:`encode` (usually one call of
    :meth:`conv_stack`); ``normalized_graph = False`` runs them on the unweighted graph.
    """

    Config = GraphConfig
    #: True: the symmetric-normalised graph (LightGCN, GCN); False: the unweighted graph
    #: (GraphSAGE's mean and GAT's attention weight the edges themselves)
    normalized_graph: ClassVar[bool] = True

    def __init__(self, config: GraphConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.num_nodes = train.n_users + train.n_items
        self.embedding = nn.Embedding(self.num_nodes, config.dim)
        nn.init.normal_(self.embedding.weight, std=config.init_std)
        self.item_bias = nn.Parameter(torch.zeros(self.n_items)) if config.item_bias else None
        users, items = training_pairs(train)
        self._pair_users = torch.as_tensor(users)
        self._pair_items = torch.as_tensor(items)
        adj, edge_weight = self.graph_inputs(self._pair_users, self._pair_items)
        # The graph is derived from the training view: not saved with the weights.
        self.register_buffer("edge_index", adj, persistent=False)
        self.register_buffer("edge_weight", edge_weight, persistent=False)
        degree = torch.bincount(self._pair_users, minlength=self.n_users).clamp(min=1)
        self.register_buffer("user_degree", degree.float(), persistent=False)
        self._train_csr: sp.csr_matrix | None = None
        self._sampler: NegativeSampler | None = None
        self._cache: tuple[tuple, tuple[Tensor, Tensor]] | None = None
        self._svd_done = False

    # ------------------------------------------------------------------ graph
    def graph_inputs(self, users: Tensor, items: Tensor) -> tuple[EdgeIndex, Tensor | None]:
        """The (edge_index, edge_weight) the encoder runs on, for the given training pairs:
        the symmetric-normalised graph, or the unweighted one (``normalized_graph``)."""
        edge_index = bipartite_edge_index(users, items, self.n_users, self.n_items)
        if self.normalized_graph:
            return normalized_adjacency(edge_index, self.num_nodes)
        return unweighted_adjacency(edge_index, self.num_nodes), None

    def conv_stack(
        self,
        x: Tensor,
        edge_index: EdgeIndex,
        edge_weight: Tensor | None,
        activation: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        """``self.convs`` in turn, ``activation`` between layers (none after the last), and
        :meth:`combine` of the layer outputs 0..L."""
        layers = [x]
        for k, conv in enumerate(self.convs):
            x = conv(x, edge_index) if edge_weight is None else conv(x, edge_index, edge_weight)
            if activation is not None and k < len(self.convs) - 1:
                x = activation(x)
            layers.append(x)
        return self.combine(layers)

    def encode(self, x: Tensor, edge_index: EdgeIndex, edge_weight: Tensor | None) -> Tensor:
        """Final node embeddings [N, dim] from the ego embeddings ``x`` [N, dim]."""
        raise NotImplementedError

    def combine(self, layers: list[Tensor]) -> Tensor:
        """Layer combination of ``[x_0, x_1, ..., x_L]`` (each [N, dim])."""
        if self.config.combine == "last" and len(layers) > 1:
            return layers[-1]
        return sum(layers[1:], layers[0]) / len(layers)

    def encode_graph(self) -> Tensor:
        """Final embeddings of all nodes [N, dim] from one propagation over the graph (with
        edge dropout when training and ``edge_dropout > 0``)."""
        edge_index, edge_weight = self.edge_index, self.edge_weight
        if self.training and self.config.edge_dropout > 0:
            users, items = drop_pairs(self._pair_users, self._pair_items, self.config.edge_dropout)
            edge_index, edge_weight = self.graph_inputs(users, items)
            edge_index = edge_index.to(self.device)
            edge_weight = edge_weight.to(self.device) if edge_weight is not None else None
        x = self.embedding.weight
        if self.config.ego_norm:
            x = F.normalize(x, dim=1)
        return self.encode(x, edge_index, edge_weight)

    def propagate(self) -> tuple[Tensor, Tensor]:
        """Final (user [n_users, dim], item [n_items, dim]) embeddings (:meth:`encode_graph`)."""
        out = self.encode_graph()
        return out[: self.n_users], out[self.n_users :]

    # ------------------------------------------------------------------ batches
    def num_batches(self, train: Dataset, batch_size: int) -> int:
        return max(1, -(-len(self._pair_users) // batch_size))

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[GraphBatch]:
        """One epoch: every training pair once, ``batch_size`` pairs per batch.

        ``bpr``: pairs in random order, ``n_negatives`` sampled negatives per pair.
        ``softmax``: users in random order with their pairs together, so a batch holds about
        ``batch_size / mean degree`` distinct users and one row of logits per user serves all
        of that user's pairs; candidates are shared by the batch.
        """
        cfg = self.config
        if self._sampler is None:
            self._sampler = NegativeSampler(train)
            self._train_csr = train.csr()
        users, items = self._pair_users.numpy(), self._pair_items.numpy()
        empty = np.zeros(0, dtype=np.int64)
        if cfg.loss == "bpr":
            order = rng.permutation(len(users))
        else:  # group the pairs by user, users in random order
            rank = np.empty(self.n_users, dtype=np.int64)
            rank[rng.permutation(self.n_users)] = np.arange(self.n_users)
            order = np.argsort(rank[users], kind="stable")
        all_items = np.arange(self.n_items)
        for s in range(0, len(order), batch_size):
            u, i = users[order[s : s + batch_size]], items[order[s : s + batch_size]]
            if cfg.loss == "bpr":
                neg = self._sampler.sample(u, cfg.n_negatives, rng)
                yield GraphBatch(u, i, neg, empty, empty, empty, empty)
                continue
            rows, pair_rows = np.unique(u, return_inverse=True)
            positives = self._train_csr[rows]
            if cfg.n_negatives == 0:  # full softmax: every item is a candidate
                cand = all_items
                mask_rows = np.repeat(np.arange(len(rows)), np.diff(positives.indptr))
                mask_cols = positives.indices.astype(np.int64)
            else:
                cand = rng.integers(0, self.n_items, size=cfg.n_negatives)
                if cfg.in_batch:
                    cand = np.concatenate([cand, i])
                cand = np.unique(cand)
                hits = positives[:, cand].tocoo()
                mask_rows, mask_cols = hits.row.astype(np.int64), hits.col.astype(np.int64)
            yield GraphBatch(u, i, cand, rows, pair_rows.astype(np.int64), mask_rows, mask_cols)

    def split_batch(self, batch: GraphBatch, parts: int) -> list[tuple[GraphBatch, float]]:
        """The pairs (users, items, pair_rows; ``bpr``: their negatives) cut into ``parts``;
        ``softmax``'s shared candidates, distinct users and mask kept whole in every share.
        Each share weighs its pairs, or with ``user_balance`` the sum of their ``1 / deg(user)``
        weights (the loss is that weighted mean; its L2 term, a mean over pairs, is then
        weighted the same way, exact with the default ``l2 = 0``)."""
        shared = {"rows", "mask_rows", "mask_cols"} | (
            set() if self.config.loss == "bpr" else {"negatives"})
        shares = split_rows(batch, parts, frozenset(shared), self.name)
        if not self.config.user_balance:
            return shares
        degree = self.user_degree
        return [(share, float((1.0 / degree[torch.as_tensor(share.users, device=degree.device)
                                            .long()]).sum()) if n else 0.0)
                for share, n in shares]

    # ------------------------------------------------------------------ loss
    def loss(self, batch: GraphBatch) -> Tensor:
        if self.config.loss == "bpr":
            return self._bpr_loss(batch)
        return self._softmax_loss(batch)

    def _gather(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        """Final and ego embeddings of ``nodes``, after one propagation over the graph."""
        out = self.encode_graph()[nodes]
        if self.config.similarity == "cosine":
            out = F.normalize(out, dim=-1)
        return out, self.embedding(nodes)

    def _bpr_loss(self, batch: GraphBatch) -> Tensor:
        u, i, j = batch.users, batch.items, batch.negatives  # [B], [B], [B, n]
        b, n = j.shape
        out, ego = self._gather(torch.cat([u, i + self.n_users, j.reshape(-1) + self.n_users]))
        pu, qi, qj = out[:b], out[b : 2 * b], out[2 * b :].view(b, n, -1)
        pos = (pu * qi).sum(-1)
        neg = torch.einsum("bd,bnd->bn", pu, qj)
        if self.item_bias is not None:
            pos, neg = pos + self.item_bias[i], neg + self.item_bias[j]
        # L2 on the ego embeddings of the batch: 0.5 (|e_u|^2 + |e_i|^2 + mean_j |e_j|^2) / B
        reg = 0.5 * (ego[: 2 * b].pow(2).sum() + ego[2 * b :].pow(2).sum() / n) / b
        if self.config.user_balance:
            loss = self._mean(-F.logsigmoid(pos.unsqueeze(1) - neg).mean(1), u)
        else:
            loss = bpr_or_softmax_loss(pos, neg, "bpr")
        return loss + self.config.l2 * reg

    def _mean(self, losses: Tensor, users: Tensor) -> Tensor:
        """Mean of per-pair losses, weighted by ``1 / deg(user)`` if ``user_balance``."""
        if not self.config.user_balance:
            return losses.mean()
        w = 1.0 / self.user_degree[users]
        return (losses * w).sum() / w.sum()

    def _softmax_loss(self, batch: GraphBatch) -> Tensor:
        cfg = self.config
        rows, cand = batch.rows, batch.negatives  # [R] distinct users, [M] candidates
        r, b = len(rows), len(batch.users)
        out, ego = self._gather(torch.cat([rows, batch.items + self.n_users,
                                           cand + self.n_users]))
        pu, qi, qc = out[:r] / cfg.temperature, out[r : r + b], out[r + b :]
        logits = pu @ qc.T  # [R, M]: each user of the batch against the shared candidates
        if self.item_bias is not None:
            logits = logits + self.item_bias[cand]
        logits.index_put_((batch.mask_rows, batch.mask_cols),
                          torch.tensor(float("-inf"), device=logits.device))
        neg_lse = torch.logsumexp(logits, dim=1)[batch.pair_rows]  # [B]
        pos = (pu[batch.pair_rows] * qi).sum(-1)  # [B]
        if self.item_bias is not None:
            pos = pos + self.item_bias[batch.items]
        # cross-entropy of each positive against its user's candidates (positives masked)
        loss = self._mean(torch.logaddexp(pos, neg_lse) - pos, batch.users)
        ego_u = ego[:r][batch.pair_rows]
        reg = 0.5 * ((ego_u.pow(2).sum() + ego[r : r + b].pow(2).sum()) / b
                     + ego[r + b :].pow(2).sum(1).mean())
        return loss + cfg.l2 * reg

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """As torch's; a run saved before ``item_bias`` existed loads with a zero bias, which
        is exactly the model it was."""
        if self.item_bias is not None and "item_bias" not in state_dict:
            state_dict = {**state_dict, "item_bias": torch.zeros_like(self.item_bias)}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ------------------------------------------------------------------ scoring
    def _weights_key(self) -> tuple:
        # In-place updates (optimizer steps, load_state_dict) bump a tensor's version counter.
        return (self.training, self.device) + tuple(
            (id(p), p._version) for p in self.parameters()
        )

    @torch.no_grad()
    def final_embeddings(self) -> tuple[Tensor, Tensor]:
        """Final (user, item) embeddings, cached until any weight changes."""
        key = self._weights_key()
        if self._cache is None or self._cache[0] != key:
            user_out, item_out = self.propagate()
            if self.config.similarity == "cosine":
                # the user's norm does not change its ranking; the items' does
                user_out, item_out = F.normalize(user_out, dim=-1), F.normalize(item_out, dim=-1)
            self._cache = (key, (user_out, item_out))
        return self._cache[1]

    def on_epoch_start(self, epoch: int) -> None:
        self._cache = None
        if epoch == 0 and self.config.init == "svd" and not self._svd_done:
            self.svd_init()

    @torch.no_grad()
    def svd_init(self, seed: int = 0) -> None:
        """Spectral initialisation (``init="svd"``): ego embeddings from the top-``dim``
        singular triplets of ``R̃ = D_U^-1/2 R D_I^-1/2`` of the training graph. Run once,
        before the first epoch (a resumed or loaded model keeps its own weights)."""
        from sklearn.utils.extmath import randomized_svd

        r = sp.csr_matrix((np.ones(len(self._pair_users), dtype=np.float32),
                           (self._pair_users.numpy(), self._pair_items.numpy())),
                          shape=(self.n_users, self.n_items))
        d_u, d_i = np.asarray(r.sum(1)).ravel(), np.asarray(r.sum(0)).ravel()
        r_norm = sp.diags(1 / np.sqrt(np.maximum(d_u, 1))) @ r @ sp.diags(
            1 / np.sqrt(np.maximum(d_i, 1)))
        k = min(self.config.dim, min(r.shape) - 1)
        u, s, vt = randomized_svd(r_norm, k, n_iter=4, random_state=seed)
        root = np.sqrt(s)[None, :]
        weight = torch.zeros_like(self.embedding.weight)
        weight[: self.n_users, :k] = torch.as_tensor(u * root, dtype=weight.dtype)
        weight[self.n_users :, :k] = torch.as_tensor(vt.T * root, dtype=weight.dtype)
        # same mean row norm as the normal initialisation (init_std * sqrt(dim))
        weight *= self.config.init_std * self.config.dim**0.5 / weight.norm(dim=1).mean()
        self.embedding.weight.copy_(weight.to(self.embedding.weight.device))
        self._svd_done = True

    def item_embeddings(self) -> Tensor:
        """The items' final (propagated) embeddings [n_items, dim], unit-normalised with
        ``similarity="cosine"``: the vectors users score items with."""
        return self.final_embeddings()[1]

    def score(self, users: Tensor, history: Dataset) -> Tensor:
        user_out, item_out = self.final_embeddings()
        scores = user_out[users] @ item_out.T
        if self.item_bias is not None:  # the training logit, times the temperature (softmax)
            scale = self.config.temperature if self.config.loss == "softmax" else 1.0
            scores = scores + scale * self.item_bias.detach()
        return scores
