"""Content-based recommendation over item embeddings computed from item text.

:class:`ContentRecommender` is the base class of the three text models (``cnn-text``,
``tfidf-svd``, ``minilm``). A subclass only says how to embed texts
(:meth:`ContentRecommender.embed_texts`); the base class provides

* :meth:`~ContentRecommender.item_embeddings`: the embeddings of every item of the catalogue,
  [n_items, d], computed from the item text (cached in eval mode);
* :meth:`~ContentRecommender.score`: the content recommender. A user's profile is the
  (optionally recency-weighted) mean of the L2-normalised embeddings of the items in their
  history; every item is scored by the cosine between its embedding and the profile:

      p_u = sum_i w_ui * e_i / |e_i|  /  sum_i w_ui         score(u, j) = cos(p_u, e_j)

  with ``w_ui = 0.5 ** (r / half_life)``, ``r`` = how many of the user's interactions are more
  recent than this one (0 for the latest), or ``w_ui = 1`` without a half-life. Item text is
  side information, so items that nobody has interacted with yet (cold start) get embeddings
  and scores like any other item. A user with no history scores every item 0.

What the models may learn from (the no-leakage rule of the project): item text of **all**
items may be embedded, since text is not an interaction, but every statistic fitted from text
(the vocabulary, IDF weights, the SVD basis) and every training signal (category labels,
co-engaged pairs) comes only from the training view: :func:`training_items` are the items
with at least one training interaction. On a catalogue without interactions (e.g. MovieLens-1M
items only) every item counts as a training item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from streamrec.common import at_least
from streamrec.data.dataset import Dataset
from streamrec.data.text import item_texts
from streamrec.models.base import ItemEmbedder, ModelConfig, Recommender


def training_items(train: Dataset) -> np.ndarray:
    """Sorted internal ids of the items the model may learn from, int64 [n_train_items].

    The items with at least one interaction in the training view ``train``; every item when
    the training view has no interactions at all (a catalogue without interaction data).
    """
    if train.n_interactions == 0:
        return np.arange(train.n_items, dtype=np.int64)
    return np.flatnonzero(train.item_counts() > 0).astype(np.int64)


def profile_weights(history: Dataset, half_life: float | None = None) -> sp.csr_matrix:
    """User x item weights [n_users, n_items] of the history items, rows summing to 1.

    ``half_life`` (in interactions): the user's ``r``-th most recent interaction (``r = 0`` for
    the latest, by timestamp) weighs ``0.5 ** (r / half_life)``; ``None``: all weigh 1. Repeated
    interactions with one item add up. Users without history have an empty row.
    """
    n_users, n_items = history.n_users, history.n_items
    if history.n_interactions == 0:
        return sp.csr_matrix((n_users, n_items), dtype=np.float32)
    if half_life is None:
        w = np.ones(history.n_interactions, dtype=np.float64)
        users, items = history.user, history.item
    else:
        if half_life <= 0:
            raise ValueError("profile half_life must be positive (or None)")
        order = history.time_order()
        users, items = history.user[order], history.item[order]
        counts = np.bincount(users, minlength=n_users)
        ends = np.cumsum(counts)
        # rank from the end within each user's time-ordered run: 0 for the latest
        from_end = ends[users] - 1 - np.arange(len(users))
        w = np.power(0.5, from_end / float(half_life))
    m = sp.csr_matrix((w, (users, items)), shape=(n_users, n_items), dtype=np.float64)
    m.sum_duplicates()
    totals = np.asarray(m.sum(axis=1)).ravel()
    scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
    return sp.csr_matrix(sp.diags(scale) @ m, dtype=np.float32)


@dataclass
class ContentConfig(ModelConfig):
    """Options shared by the content models.

    profile_half_life: recency weighting of the user profile, in interactions (None: plain
    mean of the history items' embeddings).
    """

    profile_half_life: float | None = None

    def check(self) -> list[str]:
        return at_least("profile_half_life", self.profile_half_life, 0, strict=True)


class ContentRecommender(Recommender, ItemEmbedder):
    """Base class of recommenders whose item embeddings come from item text.

    Subclasses implement :meth:`embed_texts` and, if they are not trained by gradient descent,
    :meth:`fit`. They set ``self.dim``; ``self.texts`` holds every item's text
    (:func:`~streamrec.data.text.item_texts`) and ``self.train_items`` the :func:`training_items`.
    """

    name = "content"
    Config = ContentConfig

    def __init__(self, config: ContentConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.texts: list[str] = item_texts(train)
        self.train_items: np.ndarray = training_items(train)
        self.dim: int = 0
        self._emb_cache: torch.Tensor | None = None
        self._hist: Dataset | None = None
        self._hist_weights: sp.csr_matrix | None = None

    # ------------------------------------------------------------------ embeddings
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        """Embeddings of arbitrary texts, float [len(texts), dim] on the model's device.

        This is how a brand-new item (not in the catalogue) is embedded at serving time.
        """
        raise NotImplementedError

    def compute_item_embeddings(self) -> torch.Tensor:
        """Embeddings of every catalogue item, [n_items, dim] (not cached)."""
        return self.embed_texts(self.texts)

    def item_embeddings(self) -> torch.Tensor:
        """Embeddings of every catalogue item, float [n_items, dim] (not normalised).

        In eval mode the result is cached until the next ``train()``/``eval()`` call or
        ``load_state_dict``; in training mode it is recomputed (with gradients).
        """
        if self.training:
            return self.compute_item_embeddings()
        if self._emb_cache is None:
            with torch.no_grad():
                self._emb_cache = self.compute_item_embeddings().detach()
        return self._emb_cache

    def normalized_item_embeddings(self) -> torch.Tensor:
        """L2-normalised item embeddings [n_items, dim] (zero rows stay zero)."""
        return F.normalize(self.item_embeddings().float(), dim=1)

    def invalidate_cache(self) -> None:
        """Forget the cached item embeddings (after the weights changed)."""
        self._emb_cache = None

    def train(self, mode: bool = True) -> ContentRecommender:
        self.invalidate_cache()
        return super().train(mode)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self.invalidate_cache()
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:  # .to(device), .float(), ...
        self.invalidate_cache()
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------ scoring
    def user_profiles(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        """Profiles [B, dim]: the weighted mean of the users' normalised history embeddings."""
        if self._hist is not history:  # one weight matrix per history view
            self._hist_weights = profile_weights(history, self.config.profile_half_life)
            self._hist = history
        assert self._hist_weights is not None
        rows = self._hist_weights[users.cpu().numpy()].tocoo()
        emb = self.normalized_item_embeddings()
        index = torch.as_tensor(np.vstack([rows.row, rows.col]).astype(np.int64))
        values = torch.as_tensor(rows.data, dtype=emb.dtype)
        weights = torch.sparse_coo_tensor(index, values, size=rows.shape, check_invariants=True).to(
            emb.device
        )
        return torch.sparse.mm(weights, emb)

    def score(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        """Cosine of every item with each user's content profile, [B, n_items]."""
        profiles = F.normalize(self.user_profiles(users, history), dim=1)
        return profiles @ self.normalized_item_embeddings().T

    # ------------------------------------------------------------------ helpers
    def categories(self, train: Dataset) -> np.ndarray | None:
        """Item categories int64 [n_items], or None when the dataset has none."""
        if "category" not in train.items:
            return None
        return np.asarray(train.items["category"]).astype(np.int64)
