"""Users' binary history rows, built on the model's device (shared by the models that read a
user's whole history as one vector: EASE, Mult-VAE / DAE, DiffRec, L-DiffRec, CFGAN).

:class:`UserRows` keeps one dataset's user x item CSR (``indptr`` int64 [n_users + 1],
``indices`` int64 [nnz]) on a device and builds batches of rows there: dense ``[B, n_items]``
(``rows(users)`` or ``rows.dense(users)``, a fixed-width gather as wide as the longest history,
so nothing waits for a device sync) or sparse COO. :class:`RowsCache` holds one per named slot
(the training view, the latest scoring history) and rebuilds it when the dataset object or the
device changes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from streamrec.data.dataset import Dataset


class UserRows:
    """The binary user x item matrix of one :class:`Dataset`, kept on ``device`` as CSR."""

    def __init__(self, data: Dataset, device: torch.device | str) -> None:
        csr = data.csr()
        self.data = data
        self.device = torch.device(device)
        self.n_items = data.n_items
        self.indptr = torch.from_numpy(csr.indptr.astype(np.int64)).to(self.device)
        self.indices = torch.from_numpy(csr.indices.astype(np.int64)).to(self.device)
        #: the longest history: the width of the gather that builds dense rows
        self.width = int(np.diff(csr.indptr).max()) if csr.nnz else 0
        self.offsets = torch.arange(self.width, device=self.device)

    @classmethod
    def cached(cls, rows: UserRows | None, data: Dataset, device: torch.device | str) -> UserRows:
        """``rows`` when it holds ``data`` (the same object) on ``device``, else new ones."""
        if rows is not None and rows.data is data and rows.device == torch.device(device):
            return rows
        return cls(data, device)

    def coords(self, users: Tensor) -> tuple[Tensor, Tensor]:
        """``(row, item)`` int64 [nnz] of the users' interactions; ``row`` indexes ``users``
        [B]. Sorted by row, then item (a canonical COO)."""
        users = users.to(self.device, torch.long)
        start = self.indptr[users]
        count = self.indptr[users + 1] - start
        rows = torch.repeat_interleave(torch.arange(len(users), device=self.device), count)
        first = torch.cumsum(count, 0) - count  # where each row's pairs begin
        offset = torch.arange(len(rows), device=self.device) - first[rows]
        return rows, self.indices[start[rows] + offset]

    def dense(self, users: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """The users' rows, dense [B, n_items] (1.0 where an interaction, else 0.0)."""
        users = users.to(self.device, torch.long)
        out = torch.zeros(len(users), self.n_items + 1, dtype=dtype, device=self.device)
        if self.width:
            start = self.indptr[users]
            length = self.indptr[users + 1] - start
            pos = (start[:, None] + self.offsets).clamp(max=len(self.indices) - 1)
            valid = self.offsets < length[:, None]
            cols = torch.where(valid, self.indices[pos], self.n_items)  # padding: spare column
            out.scatter_(1, cols, 1.0)
        return out[:, : self.n_items]

    __call__ = dense

    def sparse(self, users: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """The users' rows as a sparse COO tensor [B, n_items]."""
        rows, cols = self.coords(users)
        values = torch.ones(len(rows), dtype=dtype, device=self.device)
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), values,
                                       (len(users), self.n_items), is_coalesced=True,
                                       check_invariants=False)


class RowsCache:
    """One :class:`UserRows` per named slot (e.g. ``"train"``, ``"history"``), rebuilt when
    the slot's dataset object or the device changes."""

    def __init__(self) -> None:
        self._slots: dict[str, UserRows] = {}

    def get(self, slot: str, data: Dataset, device: torch.device | str) -> UserRows:
        self._slots[slot] = UserRows.cached(self._slots.get(slot), data, device)
        return self._slots[slot]


class UserBatches:
    """Mixin of the models that train on whole users' rows (DiffRec, L-DiffRec, CFGAN): an
    epoch is the users with a training history, shuffled, in batches of users (int64 [b]);
    :meth:`train_rows` gives a batch's training rows and :meth:`history_rows` the rows a
    score reads, dense float32 [b, n_items] on the model's device.

    The model calls :meth:`_init_user_batches` in its constructor."""

    def _init_user_batches(self, train: Dataset) -> None:
        self._users = active_users(train)
        self._rows = RowsCache()
        self._train_user_rows: UserRows | None = None

    def batches(self, train: Dataset, batch_size: int,
                rng: np.random.Generator) -> Iterator[np.ndarray]:
        self._train_user_rows = self._rows.get("train", train, self.device)
        yield from user_batches(self._users, batch_size, rng)

    def num_batches(self, train: Dataset, batch_size: int) -> int:
        return max(1, -(-len(self._users) // batch_size))

    def train_rows(self, users: Tensor) -> Tensor:
        """Training rows float32 [b, n_items] of ``users`` (a batch of :meth:`batches`)."""
        if self._train_user_rows is None:
            raise RuntimeError("call batches(train, ...) before loss(batch)")
        return self._train_user_rows(users)

    def history_rows(self, users: Tensor, history: Dataset) -> Tensor:
        """Rows float32 [b, n_items] of internal ``users`` in ``history``."""
        return self._rows.get("history", history, self.device)(users)


def active_users(train: Dataset) -> np.ndarray:
    """Internal ids int64 [U] of the users with at least one training interaction."""
    return np.flatnonzero(train.user_counts() > 0).astype(np.int64)


def user_batches(users: np.ndarray, batch_size: int,
                 rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The users int64 [U] in a random order, cut into batches of ``batch_size``."""
    order = users[rng.permutation(len(users))]
    for s in range(0, len(order), batch_size):
        yield order[s : s + batch_size]
