"""A row-wise sharded embedding table on ``torch.distributed`` primitives (model parallelism).

Data parallelism keeps a full copy of every table on every rank and all-reduces dense
gradients of the whole table at every step; a 5M-user table outgrows that first. Here each of
the ``W`` ranks owns a contiguous block of rows (``rows_of(rank)``) and only those rows'
weights and optimizer state; a lookup is

1. ``all_gather`` the ids every rank asks for (``[W * B]``; every rank passes ``B`` ids);
2. each rank looks up the ids it owns (zeros elsewhere): ``[W * B, dim]``;
3. ``all_reduce`` (sum; every id has exactly one owner) and keep this rank's ``B`` rows.

Both collectives are the differentiable ones of ``torch.distributed.nn.functional``, so the
backward pass sends each gradient row to the rank that owns it, and a plain optimizer on the
local shard trains the table. This is the shape of TorchRec's row-wise sharding, written
small; at scale use ``torchrec.distributed.DistributedModelParallel`` (see
``docs/distributed.md``).
"""

from __future__ import annotations

import torch
from torch import nn


class RowShardedEmbedding(nn.Module):
    """Embedding ``[num_embeddings, dim]`` whose rows are split across the process group.

    This rank holds ``weight`` ``[hi - lo, dim]`` for global rows ``[lo, hi)``
    (:meth:`rows_of`). Call it on every rank at once with the same number of ids.
    """

    def __init__(self, num_embeddings: int, dim: int, rank: int, world_size: int,
                 init_std: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in a group of {world_size}")
        if num_embeddings < world_size:
            raise ValueError(f"{num_embeddings} rows cannot be split over {world_size} ranks")
        self.num_embeddings, self.dim = int(num_embeddings), int(dim)
        self.rank, self.world_size = int(rank), int(world_size)
        self.lo, self.hi = self.rows_of(rank)
        # each row's initial value depends only on (seed, row): the sharded table starts as the
        # single-process one would
        g = torch.Generator().manual_seed(seed)
        full_init = torch.randn(self.num_embeddings, dim, generator=g) * init_std
        self.weight = nn.Parameter(full_init[self.lo : self.hi].clone())

    def rows_of(self, rank: int) -> tuple[int, int]:
        """Global rows ``[lo, hi)`` owned by ``rank`` (contiguous, sizes differing by <= 1)."""
        base, extra = divmod(self.num_embeddings, self.world_size)
        lo = rank * base + min(rank, extra)
        return lo, lo + base + (1 if rank < extra else 0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Vectors ``[B, dim]`` of global row ids ``[B]`` (int64); every rank passes B ids."""
        import torch.distributed.nn.functional as dnn

        ids = ids.reshape(-1)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_embeddings):
            raise IndexError(f"ids must lie in [0, {self.num_embeddings})")
        every = torch.cat(dnn.all_gather(ids))  # [W * B]
        local = every - self.lo
        mine = (local >= 0) & (local < self.hi - self.lo)
        part = self.weight[local.clamp(0, self.hi - self.lo - 1)] * mine.unsqueeze(1)
        full = dnn.all_reduce(part)  # [W * B, dim]: each row from its owner
        b = ids.numel()
        return full[self.rank * b : (self.rank + 1) * b]


def table_bytes(rows: int, dim: int, optimizer_states: int = 2, bytes_per: int = 4) -> int:
    """Bytes of one float table with its gradient and ``optimizer_states`` per-row states
    (Adam: 2): ``rows * dim * bytes_per * (2 + optimizer_states)``."""
    return int(rows) * int(dim) * int(bytes_per) * (2 + int(optimizer_states))
