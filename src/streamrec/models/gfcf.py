"""GF-CF (Shen et al., CIKM 2021): a closed-form graph filter, no training.

With ``R`` the binary user x item matrix of the training view, ``D_U`` / ``D_I`` its user /
item degrees and ``R̃ = D_U^-1/2 R D_I^-1/2`` (the user-item block of LightGCN's normalised
graph), GF-CF scores the items of user ``u`` with history row ``r_u`` as

    s_u = r_u P̃ + alpha * r_u D_I^-1/2 V_k V_k^T D_I^1/2

* ``P̃ = R̃^T R̃`` is the normalised item-item graph: a linear (low-pass) filter;
* ``V_k`` [n_items, k] holds the top-``k`` right singular vectors of ``R̃``: an ideal low-pass
  filter that keeps only the ``k`` smoothest graph frequencies.

The defaults (``alpha = 0.3``, ``k = 256``) are the paper's for Gowalla and Yelp2018; the
formula follows the authors' code (``batch_test @ norm_adj.T @ norm_adj + 0.3 * batch_test @
d_mat_i @ vt.T @ vt @ d_mat_i_inv``).

Memory: ``P̃`` is never formed (it would hold 42 M non-zeros on Gowalla, and 6.7 GB dense);
scores are computed per user batch as ``(r_u R̃^T) R̃`` with sparse products. ``fit`` computes
``V_k`` with ``scipy.sparse.linalg.svds`` (ARPACK, exact) and keeps it as the model's one saved
tensor (``k x n_items`` float32: 42 MB on Gowalla); ``R̃`` is rebuilt from the training view by
the constructor, which is what ``load_run`` calls before loading the weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds
from torch import Tensor

from streamrec.common import at_least, one_of
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender, Validate


@dataclass
class GFCFConfig(ModelConfig):
    """Options of :class:`GFCF`.

    alpha: weight of the ideal low-pass filter (0 = the linear filter ``P̃`` alone).
    k: number of singular vectors of the ideal low-pass filter (capped at
        ``min(n_users, n_items) - 1``).
    svd: ``arpack`` (``scipy.sparse.linalg.svds``, exact) or ``randomized``
        (``sklearn.utils.extmath.randomized_svd``, faster, approximate).
    seed: seed of the SVD's starting vector.
    """

    alpha: float = 0.3
    k: int = 256
    svd: str = "arpack"
    seed: int = 0

    def check(self) -> list[str]:
        return [*at_least("alpha", self.alpha, 0), *at_least("k", self.k, 1),
                *one_of("svd", self.svd, ("arpack", "randomized")), *at_least("seed", self.seed, 0)]


def normalized_rating_matrix(r: sp.spmatrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``R̃ = D_U^-1/2 R D_I^-1/2`` (float32 CSR) and the item degrees ``d_I`` [n_items].

    Users or items without any interaction get a zero row / column.
    """
    r = sp.csr_matrix(r, dtype=np.float32)
    d_u = np.asarray(r.sum(axis=1)).ravel()
    d_i = np.asarray(r.sum(axis=0)).ravel()
    inv_u = np.divide(1.0, np.sqrt(d_u), out=np.zeros_like(d_u), where=d_u > 0)
    inv_i = np.divide(1.0, np.sqrt(d_i), out=np.zeros_like(d_i), where=d_i > 0)
    r_norm = sp.diags(inv_u) @ r @ sp.diags(inv_i)
    return sp.csr_matrix(r_norm, dtype=np.float32), d_i


def _torch_csr(m: sp.spmatrix) -> Tensor:
    """``m`` as a torch CSR tensor (float32; scipy built it, so its invariants hold and are not
    checked again; torch's notice that CSR support is in beta is not a user's concern)."""
    import warnings

    m = sp.csr_matrix(m)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(m.indptr.astype(np.int64)),
            torch.from_numpy(m.indices.astype(np.int64)),
            torch.from_numpy(m.data.astype(np.float32)),
            size=m.shape,
            check_invariants=False,
        )


class GFCF(Recommender):
    """GF-CF: linear + ideal low-pass graph filters over the normalised item-item graph."""

    name = "gf-cf"
    Config = GFCFConfig
    trainable = False

    def __init__(self, config: GFCFConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self._r_norm, d_i = normalized_rating_matrix(train.csr())
        self._r_norm_t = _torch_csr(self._r_norm.T)  # [n_items, n_users] for (r R̃^T) R̃
        self.k = max(1, min(config.k, min(train.n_users, train.n_items) - 1))
        inv_sqrt = np.divide(1.0, np.sqrt(d_i), out=np.zeros_like(d_i), where=d_i > 0)
        self.register_buffer("item_inv_sqrt_degree", torch.as_tensor(inv_sqrt), persistent=False)
        self.register_buffer("item_sqrt_degree", torch.as_tensor(np.sqrt(d_i)), persistent=False)
        #: V_k^T [k, n_items]: the top-k right singular vectors of R̃ (computed by ``fit``).
        self.register_buffer("vt", torch.zeros(self.k, train.n_items))
        self._history: tuple[Dataset, sp.csr_matrix] | None = None

    def fit(self, train: Dataset, validate: Validate | None = None) -> None:
        if self.config.svd == "arpack":
            v0 = np.random.default_rng(self.config.seed).uniform(-1, 1, min(self._r_norm.shape))
            _, s, vt = svds(self._r_norm, k=self.k, v0=v0)
            vt = vt[np.argsort(-s)]
        else:
            from sklearn.utils.extmath import randomized_svd

            _, _, vt = randomized_svd(self._r_norm, self.k, n_iter=7,
                                      random_state=self.config.seed)
        self.vt.copy_(torch.as_tensor(np.ascontiguousarray(vt), dtype=torch.float32))

    def _history_rows(self, users: np.ndarray, history: Dataset) -> sp.csr_matrix:
        if self._history is None or self._history[0] is not history:
            self._history = (history, history.csr())
        return self._history[1][users]

    @torch.no_grad()
    def score(self, users: Tensor, history: Dataset) -> Tensor:
        rows = self._history_rows(users.cpu().numpy(), history)  # r_u, binary [B, n_items]
        # linear filter r_u R̃^T R̃: sparse (r_u R̃^T), then one sparse-dense product
        ru_rt = torch.from_numpy((rows @ self._r_norm.T).toarray())  # [B, n_users]
        scores = torch.sparse.mm(self._r_norm_t, ru_rt.T.contiguous()).T
        if self.config.alpha > 0:
            vt = self.vt.cpu()
            # r_u D_I^-1/2 V_k: sparse rows times [n_items, k]; then V_k^T D_I^1/2
            r_scaled = rows @ sp.diags(self.item_inv_sqrt_degree.cpu().numpy())
            coef = torch.from_numpy(np.asarray(r_scaled @ vt.T.numpy(), dtype=np.float32))
            low = (coef @ vt) * self.item_sqrt_degree.cpu()
            scores = scores + self.config.alpha * low
        return scores.to(users.device)
