"""Negative sampling shared by the models trained on implicit feedback.

Negatives are drawn uniformly from the catalogue and re-drawn until none of them is a
training positive of its user (the check is a binary search in the sorted keys
``user * n_items + item`` of the training interactions, so it is vectorised).
Only *training* positives are excluded: a held-out item may be drawn as a negative, because the
sampler must not know what was held out.
"""

from __future__ import annotations

import numpy as np

from streamrec.data.dataset import Dataset


class NegativeSampler:
    """Uniform negatives that are never training positives of the user."""

    def __init__(self, train: Dataset) -> None:
        self.n_items = train.n_items
        self.keys = np.unique(train.user.astype(np.int64) * train.n_items + train.item)
        counts = np.bincount(train.user, minlength=train.n_users)
        if np.any(counts >= train.n_items):
            raise ValueError("a user interacted with every item: no negative can be sampled")

    def is_positive(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Bool array, same shape as ``items``: is (user, item) a training positive."""
        q = users.astype(np.int64) * self.n_items + items
        pos = np.searchsorted(self.keys, q)
        pos = np.minimum(pos, len(self.keys) - 1)
        return self.keys[pos] == q

    def sample(self, users: np.ndarray, n_neg: int, rng: np.random.Generator) -> np.ndarray:
        """Negatives of shape [len(users), n_neg] (int64), none a positive of its user."""
        users2 = np.broadcast_to(np.asarray(users)[:, None], (len(users), n_neg))
        neg = rng.integers(0, self.n_items, size=users2.shape)
        bad = self.is_positive(users2, neg)
        while bad.any():
            neg[bad] = rng.integers(0, self.n_items, size=int(bad.sum()))
            bad[bad] = self.is_positive(users2[bad], neg[bad])
        return neg
