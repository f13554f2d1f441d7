"""EASE (Steck, WWW 2019): a closed-form item-item linear autoencoder, no training.

With ``X`` the binary user x item matrix of the training view, EASE learns the item-item
weights ``B`` [n_items, n_items] of ``ŝ_u = x_u B`` by

    min_B  ‖X − X B‖²_F + λ ‖B‖²_F     subject to  diag(B) = 0

whose solution (the Lagrangian derivation is in ``docs/generative.md``) is

    P = (XᵀX + λI)⁻¹,      B = I − P · diagMat(1 / diag(P))      (so  B_ij = −P_ij / P_jj, B_jj = 0)

Default ``l2 = 500``: the paper tuned λ per data set and found about 500 on ML-20M (1,000 on
Netflix, 200 on MSD). λ is in units of co-occurrence counts, so a small data set wants a
smaller one; ``--set l2=...`` it on validation.

**Memory.** ``B`` is a dense ``n_items²`` matrix: ``4 n²`` bytes in float32 (6.7 GB for the
41k items of Gowalla), twice that in float64. Here the Gram matrix, its Cholesky factor, the
inverse ``P`` and ``B`` are computed one after the other **in the same buffer** (torch's
LAPACK Cholesky and ``cholesky_inverse``), so building ``B`` needs two dense matrices at its
peak (the factorisation works on one copy), not the usual four; the run machinery copies ``B``
once more when it saves or loads the weights. The constructor
checks this bound (:func:`ease_memory_bytes`) against the available memory
(:func:`available_memory`) **before anything is allocated**, and refuses with a one-line
:class:`ModelMemoryError` naming what is needed, what is available and what to do.

**Precision.** float32 by default: ``XᵀX + λI`` is symmetric positive definite with every
eigenvalue at least λ, so its condition number is at most ``1 + ‖XᵀX‖ / λ``, and a float32
Cholesky inverse is accurate to roughly ``κ · 6e-8`` relative: negligible at the λ one uses
(hundreds), while float32 halves the memory, the one resource EASE is short of.
``dtype=float64`` is there for a tiny λ (the tests compare the two).

Scoring is ``x_u B`` for a batch of users: the history rows as a sparse tensor times the dense
``B`` on the model's device (``nnz(x) · n_items`` work, not ``B · n_items²``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from streamrec.common import at_least, one_of
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender, Validate
from streamrec.models.rows import UserRows

#: bytes of working memory a Gram-matrix block may take (rows of XᵀX built at a time)
BLOCK_BYTES = 64 * 2**20


class ModelMemoryError(ValueError):
    """The model would not fit in the memory of this machine (the message says what to do)."""


@dataclass
class EASEConfig(ModelConfig):
    """Options of :class:`EASE`.

    l2: λ, the L2 penalty on ``B`` (added to the diagonal of the Gram matrix); > 0.
    dtype: float type of ``B``: ``float32`` (half the memory) or ``float64``.
    """

    l2: float = 500.0
    dtype: str = "float32"

    def check(self) -> list[str]:
        return [*at_least("l2", self.l2, 0, strict=True),
                *one_of("dtype", self.dtype, ("float32", "float64"))]


# ============================================================================ memory
def available_memory() -> int:
    """Bytes of memory this process can still use: ``psutil``'s available memory (else
    ``MemAvailable`` of ``/proc/meminfo``, else ``os.sysconf``), capped by a cgroup v2 limit."""
    have: int | None = None
    try:
        import psutil

        have = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        have = int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
        if have is None:
            have = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:  # a container's own limit, when there is one
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            have = min(have, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(0, have)


def _block_rows(n_items: int, itemsize: int) -> int:
    """Rows of ``XᵀX`` built at a time (dense block + its sparse product within BLOCK_BYTES)."""
    return max(1, min(n_items, BLOCK_BYTES // max(1, n_items * (itemsize + 12))))


def ease_memory_bytes(n_items: int, nnz: int, itemsize: int) -> int:
    """Peak bytes to build, save or load EASE on ``n_items`` items and ``nnz`` interactions:
    two dense ``n_items²`` matrices (the model's ``B`` and the copy made when its weights are
    saved or loaded), the sparse ``X`` and ``Xᵀ`` (~24 bytes per non-zero) and one Gram block."""
    block = _block_rows(n_items, itemsize) * n_items * (itemsize + 12)
    return 2 * n_items * n_items * itemsize + 24 * nnz + block


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_memory(n_items: int, nnz: int, dtype: str) -> None:
    """Raise :class:`ModelMemoryError` (one line) when EASE cannot fit in the available
    memory; called before anything is allocated."""
    itemsize = np.dtype(dtype).itemsize
    need, have = ease_memory_bytes(n_items, nnz, itemsize), available_memory()
    if need <= have:
        return
    smaller = ", dtype=float32 (half the memory)" if dtype == "float64" else ""
    fits = int((max(0, have - 24 * nnz - BLOCK_BYTES) / (2 * itemsize)) ** 0.5)  # about
    raise ModelMemoryError(
        f"ease needs about {_size(need)} for its {n_items:,} x {n_items:,} {dtype} item-item "
        f"matrix (held twice while the run is saved or loaded), but only {_size(have)} of memory "
        f"is available: use a catalogue of at most ~{fits:,} items (drop rare items before "
        f"importing the data){smaller}, or gf-cf, which needs no dense item-item matrix"
    )


# ============================================================================ closed form
def ease_weights(x: sp.spmatrix, l2: float, out: np.ndarray) -> np.ndarray:
    """EASE's ``B`` [n_items, n_items] for the user x item matrix ``x``, computed in ``out``.

    x: sparse [n_users, n_items] (binary, or any non-negative weights).
    out: C-contiguous float32/float64 [n_items, n_items]; it holds, in turn, ``XᵀX + λI``,
        its Cholesky factor, the inverse ``P`` and ``B = I − P diagMat(1 / diag P)`` — the
        only dense matrix this needs besides the copy the factorisation works on. Returned.
    """
    n = x.shape[1]
    if out.shape != (n, n) or not out.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous [{n}, {n}] array, got {out.shape}")
    x = sp.csr_matrix(x, dtype=out.dtype)
    xt = sp.csr_matrix(x.T)  # [n_items, n_users]
    step = _block_rows(n, out.dtype.itemsize)
    for i0 in range(0, n, step):  # Gram rows i0:i1 = X[:, i0:i1]ᵀ X, densified in place
        block = out[i0 : i0 + step]
        block[:] = 0
        (xt[i0 : i0 + step] @ x).toarray(out=block)
    out.flat[:: n + 1] += l2
    # Cholesky factor, then the inverse from it, both written back into `out` by torch's
    # LAPACK (scipy's bundled LAPACK crashed in potrf on Gowalla's 41k x 41k matrix).
    a = torch.from_numpy(out)
    info = torch.empty((), dtype=torch.int32)
    torch.linalg.cholesky_ex(a, out=(a, info))
    if int(info) != 0:
        raise np.linalg.LinAlgError(
            f"XᵀX + λI is not positive definite (cholesky info {int(info)})")
    torch.cholesky_inverse(a, out=a)  # P = (XᵀX + λI)⁻¹, symmetric, in place
    scale = -1.0 / out.diagonal().copy()  # B_ij = −P_ij / P_jj
    for i0 in range(0, n, step):
        out[i0 : i0 + step] *= scale
    out.flat[:: n + 1] = 0.0
    return out


class EASE(Recommender):
    """EASE: scores ``x_u B`` with the closed-form item-item weights ``B`` (zero diagonal)."""

    name = "ease"
    Config = EASEConfig
    trainable = False

    def __init__(self, config: EASEConfig, train: Dataset) -> None:
        super().__init__(config, train)
        check_memory(train.n_items, train.n_interactions, config.dtype)
        dtype = getattr(torch, config.dtype)
        #: B [n_items, n_items]: row i = how much having item i adds to every item's score.
        self.register_buffer("B", torch.zeros(train.n_items, train.n_items, dtype=dtype))
        self._rows: UserRows | None = None

    def fit(self, train: Dataset, validate: Validate | None = None) -> None:
        on_cpu = self.B.device.type == "cpu"
        work = self.B.numpy() if on_cpu else np.empty(tuple(self.B.shape), self.config.dtype)
        ease_weights(train.csr(), self.config.l2, work)
        if not on_cpu:
            self.B.copy_(torch.from_numpy(work))

    @torch.no_grad()
    def score(self, users: Tensor, history: Dataset) -> Tensor:
        """``x_u B`` [B, n_items] (float32) for the users' history rows ``x_u``."""
        self._rows = UserRows.cached(self._rows, history, self.B.device)
        x = self._rows.sparse(users, dtype=self.B.dtype)  # [B, n_items], sparse
        return torch.sparse.mm(x, self.B).float()
