"""ChebyCF (Kim et al., SIGIR 2025): a Chebyshev-interpolated graph filter, no training.

With ``R`` the binary user x item matrix of the training view, ``D_U`` / ``D_I`` its user /
item degrees, ``R̃ = D_U^-1/2 R D_I^-1/2`` and ``P̃ = R̃ᵀR̃`` the normalised item-item graph
(eigenvalues ``λ ∈ [0, 1]``; ``λ = 1`` is the smoothest graph signal, ``λ = 0`` the roughest),
ChebyCF scores the items of user ``u`` with history row ``r_u`` as

    s_u = [ r_u D_I^-β ( Σ_{j=0..K} c_j T_j(L̃) + α V_η V_ηᵀ ) ] D_I^β,      L̃ = I − 2P̃

* ``T_j`` is the Chebyshev polynomial of the first kind; ``L̃ = 2(I − P̃) − I`` is the graph
  Laplacian rescaled to the spectrum ``x = 1 − 2λ ∈ [−1, 1]`` (``x = −1``: smoothest). The
  filter ``Σ c_j T_j(L̃)`` is applied by the three-term recurrence
  ``T_0 v = v, T_1 v = L̃v, T_{j+1} v = 2 L̃ T_j v − T_{j−1} v``: ``K`` products with ``P̃``,
  each two sparse products with ``R̃`` (``P̃`` itself, 6.7 GB dense / 42 M non-zeros on
  Gowalla, is never formed).
* the coefficients interpolate a target response ``g`` at the ``K + 1`` Chebyshev nodes
  ``x_m = cos((K + ½ − m) π / (K + 1))``: ``c_j = (2 / (K+1)) Σ_m g_m T_j(x_m)`` (``c_0``
  halved), so the polynomial equals ``g_m`` at every node. The target is the "plateau"
  ``g(x) = ½ − ½ sign(x) |x|^φ``: ``φ = 1`` is the linear filter ``λ`` (GF-CF's ``P̃``),
  ``φ → 0`` the ideal low-pass that keeps ``λ > ½``, ``φ > 1`` a flatter response with a
  plateau around ½ (``flatness``). The authors' code evaluates the plateau at the Chebyshev
  *extrema* ``cos((K − m) π / K)`` and assigns those values to the nodes (``target=extrema``,
  the default, which produced the published numbers); ``target=nodes`` interpolates the
  plateau at the nodes themselves (the textbook interpolant).
* ``V_η`` [n_items, η] holds the top-``η`` right singular vectors of ``R̃`` (the eigenvectors
  of ``P̃`` with the largest eigenvalues): an ideal low-pass filter added with weight ``α``.
* ``D_I^-β ... D_I^β`` is the degree normalisation: it divides the input by the item degree to
  the power ``β`` and multiplies the output back, which favours popular items less than the
  symmetric ``D_I^-1/2 ... D_I^1/2`` of GF-CF's ideal term. It is a similarity transform, so
  the spectrum of the whole filter is exactly ``h(λ) = Σ c_j T_j(1 − 2λ) + α·[λ ≥ σ²_η]``
  (:meth:`ChebyCF.frequency_response`).

Defaults are the authors' Gowalla configuration (``config/chebycf_gowalla.yml`` of
github.com/chanwoo0806/ChebyCF): ``K = 8``, ``φ = 1.5``, ``η = 512``, ``α = 0.2``,
``β = 0.4``; published Recall@20 0.1941, NDCG@20 0.1616 on the LightGCN Gowalla split —
except that ``η``, ``α`` and ``β`` are ``"auto"``: chosen on the validation part when the run
has one (``η`` from a geometric grid around a size rule, ``α`` from 0.2..4, ``β`` from
0.1..0.5), else ``η`` from the size rule (512 on Gowalla-sized data), ``α = 0.2`` and
``β = 0.4`` (:mod:`streamrec.models.spectral_auto`). In that search the Chebyshev term
``h(L̃) D^-β x`` is computed once per user and ``β``, the ideal term once per ``η``.

Memory: scores are computed for at most ``batch_users`` users at a time with every signal
laid out ``[n_items, B]``, and the recurrence runs on ``graph_batch`` of these columns at a
time (a few ``[n_items, graph_batch]`` blocks plus one ``[n_users, graph_batch]``: a narrow
block stays in the CPU cache, which made the sparse products twice as fast); the saved state is
``V_ηᵀ`` (η x n_items float32: 84 MB on Gowalla), the singular values, ``α`` and ``β`` (the
chosen values, so a loaded run has them); ``R̃`` is rebuilt from the training view by the
constructor. The constructor checks the peak (graph, SVD, scoring workspace, the search's
cache; :func:`spectral_memory_bytes`) against the available memory before anything is
allocated and refuses with a one-line :class:`ModelMemoryError`.

The module also holds what the spectral models share (``bspm`` imports it): the item-item
operator :class:`ItemGraph`, the Chebyshev helpers, the ideal low-pass basis
(:func:`ideal_basis`), the memory guard, and :func:`frequency_response` for ``gf-cf``,
``chebycf`` and ``bspm``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import svds
from torch import Tensor

from streamrec.common import at_least, one_of
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender
from streamrec.models.ease import ModelMemoryError, available_memory
from streamrec.models.gfcf import _torch_csr, normalized_rating_matrix
from streamrec.models.spectral_auto import AutoSpectral, auto_or_at_least

__all__ = ["ChebyCF", "ChebyCFConfig", "ItemGraph", "ModelMemoryError",
           "capped_k", "check_memory", "chebyshev_coefficients", "chebyshev_extrema",
           "chebyshev_filter", "chebyshev_nodes", "frequency_response", "ideal_basis",
           "passband", "plateau", "spectral_memory_bytes", "target_values"]

#: a dense SVD is used (``svd=auto``) when ``R̃`` has at most this many entries
DENSE_SVD_ENTRIES = 2**24


# ============================================================================ Chebyshev helpers
def chebyshev_nodes(order: int) -> np.ndarray:
    """The ``order + 1`` Chebyshev nodes of the first kind, ascending, float64 [order + 1]:
    ``x_m = cos((order + ½ − m) π / (order + 1))`` (``numpy.polynomial.chebyshev.chebpts1``)."""
    m = np.arange(order + 1)
    return np.cos((order + 0.5 - m) * np.pi / (order + 1))


def chebyshev_extrema(order: int) -> np.ndarray:
    """The ``order + 1`` Chebyshev extrema, ascending, float64 [order + 1]:
    ``cos((order − m) π / order)``, from −1 to 1 (``order >= 1``)."""
    m = np.arange(order + 1)
    return np.cos((order - m) * np.pi / order)


def chebyshev_coefficients(values: np.ndarray) -> np.ndarray:
    """Coefficients float64 [K + 1] of the degree-``K`` polynomial ``Σ c_j T_j`` that takes
    ``values`` [K + 1] at the ascending Chebyshev nodes (:func:`chebyshev_nodes`):
    ``c_j = (2 / (K+1)) Σ_m values_m T_j(x_m)``, ``c_0`` halved (the discrete orthogonality of
    the ``T_j`` at the nodes makes this the exact interpolant)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    x = chebyshev_nodes(n - 1)
    t = np.cos(np.outer(np.arange(n), np.arccos(x)))  # T_j(x_m) [K + 1, K + 1]
    coeffs = (2.0 / n) * (t @ values)
    coeffs[0] /= 2
    return coeffs


def plateau(x: np.ndarray, flatness: float) -> np.ndarray:
    """ChebyCF's target response on the rescaled spectrum ``x ∈ [−1, 1]``:
    ``½ − ½ sign(x) |x|^flatness`` (1 at ``x = −1``, the smoothest signals; 0 at ``x = 1``)."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 - 0.5 * np.sign(x) * np.abs(x) ** flatness


def chebyshev_filter(apply_p: Callable[[Any], Any], x: Any, coeffs: np.ndarray) -> Any:
    """``Σ_j c_j T_j(L̃) x`` with ``L̃ = I − 2P``, by the three-term recurrence.

    apply_p: ``v -> P v`` for the symmetric operator ``P`` (eigenvalues in [0, 1]), returning
    a new array; ``x`` and every ``v`` are [n, B] (torch or numpy). coeffs: float [K + 1].
    Returns [n, B]. Uses ``K`` calls of ``apply_p`` and keeps three signals plus the sum,
    updated in place (large temporaries cost page faults on every allocation).
    """
    def lap(v: Any) -> Any:  # L̃ v = v − 2 P v, in the new array apply_p returned
        pv = apply_p(v)
        pv *= -2.0
        pv += v
        return pv

    out = x * float(coeffs[0])
    if len(coeffs) == 1:
        return out
    prev, cur = x, lap(x)
    _axpy(out, float(coeffs[1]), cur)
    for c in coeffs[2:]:
        nxt = lap(cur)
        nxt *= 2.0
        nxt -= prev
        prev, cur = cur, nxt
        _axpy(out, float(c), cur)
    return out


def _axpy(y: Any, a: float, x: Any) -> None:
    """``y += a x`` in place (torch without a temporary)."""
    if isinstance(y, Tensor):
        y.add_(x, alpha=a)
    else:
        y += a * x


# ============================================================================ the item graph
class ItemGraph:
    """The normalised item-item graph ``P̃ = R̃ᵀR̃`` [n_items, n_items] as an operator.

    ``P̃`` is never formed: ``R̃`` [n_users, n_items] and ``R̃ᵀ`` are kept as torch CSR
    tensors and ``graph(x)`` computes ``P̃ x = R̃ᵀ (R̃ x)`` for ``x`` [n_items, B] with two
    sparse-dense products (``2 nnz(R) B`` multiply-adds, an [n_users, B] intermediate).
    """

    def __init__(self, r_norm: sp.csr_matrix) -> None:
        self.n_users, self.n_items = r_norm.shape
        self.r = _torch_csr(r_norm)  # [n_users, n_items]
        self.rt = _torch_csr(sp.csr_matrix(r_norm.T))  # [n_items, n_users]

    def __call__(self, x: Tensor) -> Tensor:
        return torch.sparse.mm(self.rt, torch.sparse.mm(self.r, x))


def ideal_basis(r_norm: sp.csr_matrix, k: int, method: str = "auto",
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The top-``k`` singular values float32 [k] (descending) and right singular vectors
    ``V_kᵀ`` float32 [k, n_items] of ``R̃`` [n_users, n_items]: the eigenvectors of ``P̃``
    with the ``k`` largest eigenvalues ``σ²``.

    method: ``arpack`` (``scipy.sparse.linalg.svds``, exact), ``randomized`` (sklearn's
    ``randomized_svd``, faster, approximate), ``dense`` (``numpy.linalg.svd`` of the dense
    matrix) or ``auto`` (dense when ``R̃`` has at most :data:`DENSE_SVD_ENTRIES` entries, else
    arpack). ``k`` must be below ``min(n_users, n_items)``.
    """
    n_users, n_items = r_norm.shape
    if k <= 0:
        return np.zeros(0, np.float32), np.zeros((0, n_items), np.float32)
    if method == "auto":
        method = "dense" if n_users * n_items <= DENSE_SVD_ENTRIES else "arpack"
    if method == "dense":
        _, s, vt = np.linalg.svd(r_norm.toarray().astype(np.float64), full_matrices=False)
        s, vt = s[:k], vt[:k]
    elif method == "arpack":
        v0 = np.random.default_rng(seed).uniform(-1, 1, min(r_norm.shape))
        _, s, vt = svds(r_norm, k=k, v0=v0)
        order = np.argsort(-s)
        s, vt = s[order], vt[order]
    else:
        from sklearn.utils.extmath import randomized_svd

        _, s, vt = randomized_svd(r_norm, k, n_iter=7, random_state=seed)
    return (np.ascontiguousarray(s, dtype=np.float32),
            np.ascontiguousarray(vt, dtype=np.float32))


def passband(lam: np.ndarray, singular_values: Tensor | np.ndarray) -> np.ndarray:
    """``1.0`` where ``λ`` [n] is among the eigenvalues an ideal low-pass filter with these
    singular values [k] keeps (``λ ≥ σ²_k``, with a relative tolerance of 1e-4 for the float32
    values), else ``0.0``; all zeros when ``k = 0``. float64 [n]."""
    lam = np.asarray(lam, dtype=np.float64)
    if len(singular_values) == 0:
        return np.zeros_like(lam)
    cut = float(singular_values[-1]) ** 2
    return (lam >= cut * (1 - 1e-4)).astype(np.float64)


def capped_k(k: int, train: Dataset) -> int:
    """``k`` capped at ``min(n_users, n_items) − 1`` (what a truncated SVD can give), >= 0."""
    return max(0, min(k, min(train.n_users, train.n_items) - 1))


# ============================================================================ memory
def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def spectral_memory_bytes(n_users: int, n_items: int, nnz: int, k: int, batch_users: int,
                          graph_batch: int, signals: int, svd: str = "auto",
                          search_rows: int = 0) -> dict[str, int]:
    """Peak bytes of a spectral model (``chebycf``, ``bspm``), by part.

    graph: ``R̃`` and ``R̃ᵀ`` as scipy and torch CSR (~48 bytes per non-zero); svd: ARPACK's
    Lanczos basis (``max(2k + 1, 20)`` vectors of the shorter side) and both singular factors
    in float64, or the dense matrix and its factors for a dense SVD; state: ``V_kᵀ`` in float32,
    twice (the copy made when a run is saved or loaded); scoring: four float32
    [n_items, batch_users] blocks (input, output, the ideal term, the transposed result) and,
    per graph batch, ``signals`` [n_items, graph_batch] blocks and two [n_users, graph_batch];
    search (only when ``search_rows``): the cache of the search for ``k = "auto"``,
    ``search_rows`` float32 rows of ``n_items``
    (:meth:`~streamrec.models.spectral_auto.AutoSpectral.guard_k_and_rows`).
    """
    short = min(n_users, n_items)
    if svd == "auto":
        svd = "dense" if n_users * n_items <= DENSE_SVD_ENTRIES else "arpack"
    if k <= 0:
        svd_bytes = 0
    elif svd == "dense":
        svd_bytes = 8 * (n_users * n_items + short * (n_users + n_items) + n_users * n_items)
    else:
        ncv = min(short, max(2 * k + 1, 20))
        svd_bytes = 8 * (ncv * short + 2 * k * (n_users + n_items))
    graph_batch = min(graph_batch, batch_users)
    parts = {
        "graph": 48 * nnz + 32 * (n_users + n_items),
        "svd": svd_bytes,
        "state": 2 * 4 * k * n_items,
        "scoring": 4 * (4 * batch_users * n_items + k * batch_users
                        + graph_batch * (signals * n_items + 2 * n_users)),
    }
    if search_rows:
        parts["search"] = 4 * search_rows * n_items
    return parts


def check_memory(name: str, train: Dataset, k: int, config: Any, signals: int,
                 search_rows: int = 0) -> None:
    """Raise :class:`ModelMemoryError` (one line) when the model cannot fit in the available
    memory (:func:`~streamrec.models.ease.available_memory`); called before anything is
    allocated. ``config`` has ``batch_users``, ``graph_batch``, ``svd`` and ``valid_users``;
    ``k`` is the largest a fit may compute, ``search_rows`` the search's cache."""
    parts = spectral_memory_bytes(train.n_users, train.n_items, train.n_interactions, k,
                                  config.batch_users, config.graph_batch, signals, config.svd,
                                  search_rows)
    need, have = sum(parts.values()), available_memory()
    if need <= have:
        return
    detail = ", ".join(f"{part} {_size(b)}" for part, b in parts.items())
    raise ModelMemoryError(
        f"{name} needs about {_size(need)} ({detail}) on {train.n_users:,} users x "
        f"{train.n_items:,} items, but only {_size(have)} of memory is available: lower "
        f"batch_users (now {config.batch_users}) for the scoring, k (now {k}) for the SVD, "
        f"valid_users (now {config.valid_users}) for the search of k = 'auto', or use a "
        "smaller catalogue"
    )


# ============================================================================ the model
@dataclass
class ChebyCFConfig(ModelConfig):
    """Options of :class:`ChebyCF` (the paper's symbols in brackets; defaults: the authors'
    Gowalla configuration).

    order: [K] degree of the Chebyshev polynomial (``K`` products with ``P̃`` per batch).
    flatness: [φ] exponent of the plateau target (1: the linear filter; < 1 sharper, towards
        the ideal low-pass; > 1 flatter).
    target: where the plateau is evaluated: ``extrema`` (the authors' code: its values at the
        Chebyshev extrema, given to the nodes) or ``nodes`` (at the interpolation nodes).
    alpha: [α] weight of the ideal low-pass filter (0: off, no SVD); ``auto``: chosen on
        validation with ``k`` (from 0.2, 0.5, 1, 2, 4), or the paper's 0.2 without a
        validation part.
    k: [η] number of singular vectors of the ideal low-pass filter (capped at
        ``min(n_users, n_items) − 1``); ``auto``: chosen on validation from a geometric grid
        around the size rule, or the size rule without a validation part (512 on Gowalla;
        :mod:`streamrec.models.spectral_auto`).
    beta: [β] power of the item-degree normalisation (0: off); ``auto``: chosen on validation
        with ``k`` (from 0.1 .. 0.5), or the paper's 0.4 without a validation part.
    valid_users: the search of ``auto`` values scores at most this many validation users (a
        seeded random sample).
    svd: ``auto``, ``arpack``, ``randomized`` or ``dense`` (see :func:`ideal_basis`).
    seed: seed of the SVD's starting vector.
    batch_users: users scored at a time (bounds the scoring memory).
    graph_batch: users whose signals go through the sparse graph products together (a narrow
        block keeps the dense operand in the CPU cache: on Gowalla 32-64 columns ran about
        twice as fast per user as 1,024).
    """

    order: int = 8
    flatness: float = 1.5
    target: str = "extrema"
    alpha: float | str = "auto"
    k: int | str = "auto"
    beta: float | str = "auto"
    valid_users: int = 5000
    svd: str = "auto"
    seed: int = 0
    batch_users: int = 1024
    graph_batch: int = 64

    def check(self) -> list[str]:
        return [*at_least("order", self.order, 1), *at_least("flatness", self.flatness, 0,
                                                             strict=True),
                *one_of("target", self.target, ("extrema", "nodes")),
                *auto_or_at_least("alpha", self.alpha, 0), *auto_or_at_least("k", self.k, 0),
                *auto_or_at_least("beta", self.beta, 0),
                *at_least("valid_users", self.valid_users, 1),
                *one_of("svd", self.svd, ("auto", "arpack", "randomized", "dense")),
                *at_least("seed", self.seed, 0), *at_least("batch_users", self.batch_users, 1),
                *at_least("graph_batch", self.graph_batch, 1)]


def target_values(order: int, flatness: float, target: str) -> np.ndarray:
    """The plateau's values float64 [order + 1] given to the Chebyshev nodes (see
    :class:`ChebyCFConfig`'s ``target``)."""
    points = chebyshev_extrema(order) if target == "extrema" else chebyshev_nodes(order)
    return plateau(points, flatness)


class ChebyCF(AutoSpectral, Recommender):
    """ChebyCF: Chebyshev-interpolated plateau filter + ideal low-pass, degree-normalised."""

    name = "chebycf"
    Config = ChebyCFConfig
    trainable = False
    #: float32 [n_items, graph_batch] blocks alive in the recurrence (for the memory guard)
    SIGNALS = 6
    PAPER_K = 512
    WEIGHTS = {"beta": (0.4, (0.1, 0.2, 0.3, 0.4, 0.5), True),
               "alpha": (0.2, (0.2, 0.5, 1.0, 2.0, 4.0), False)}
    IDEAL_WEIGHT = "alpha"

    def __init__(self, config: ChebyCFConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self._init_spectral(train)
        k_max, search_rows = self.guard_k_and_rows()
        check_memory(self.name, train, k_max, config, self.SIGNALS, search_rows)
        r_norm, d_i = normalized_rating_matrix(train.csr())
        self._r_norm = r_norm
        self.graph = ItemGraph(r_norm)
        self.coeffs = chebyshev_coefficients(
            target_values(config.order, config.flatness, config.target))
        self._degree = d_i
        self._norms_of: tuple[float, Tensor, Tensor] | None = None
        #: ``beta`` and ``alpha`` (0-d float64), V_ηᵀ [k, n_items] and the singular values σ
        #: [k] of R̃ (computed, and k, beta and alpha chosen, by ``fit``: AutoSpectral)
        self._register_spectral()

    def degree_norms(self) -> tuple[Tensor, Tensor]:
        """``(D^-β, D^β)`` float32 [n_items] for the current ``beta`` (0 for items without
        training interactions), computed again when ``beta`` changes."""
        beta = float(self.beta)
        if self._norms_of is None or self._norms_of[0] != beta:
            d = self._degree
            pre = np.zeros_like(d)
            np.power(d, -beta, out=pre, where=d > 0)
            post = np.where(d > 0, d, 0.0) ** beta
            self._norms_of = (beta, torch.as_tensor(pre, dtype=torch.float32),
                              torch.as_tensor(post, dtype=torch.float32))
        return self._norms_of[1], self._norms_of[2]

    def apply_filter(self, x: Tensor) -> Tensor:
        """The filter applied to item signals ``x`` [n_items, B] (one column per user):
        ``D^β (h(L̃) + α V Vᵀ) D^-β x``, float32 [n_items, B]; the Chebyshev recurrence runs
        on ``graph_batch`` columns at a time, the ideal term on all of them at once."""
        pre, post = self.degree_norms()
        x = x * pre[:, None]
        out = torch.empty_like(x)
        step = self.config.graph_batch
        for s in range(0, x.shape[1], step):
            out[:, s : s + step] = chebyshev_filter(self.graph, x[:, s : s + step].contiguous(),
                                                   self.coeffs)
        if self.k:
            vt = self.vt.cpu()
            out.add_(vt.T @ (vt @ x), alpha=float(self.alpha))
        out *= post[:, None]
        return out

    # the search of k = "auto" (AutoSpectral): the Chebyshev term is cached per user and β
    def _cached_parts(self, x: Tensor) -> tuple[Tensor]:
        """``h(L̃) D^-β x`` for signals ``x`` [n_items, b]."""
        x = x * self.degree_norms()[0][:, None]
        out = torch.empty_like(x)
        step = self.config.graph_batch
        for s in range(0, x.shape[1], step):
            out[:, s : s + step] = chebyshev_filter(self.graph, x[:, s : s + step].contiguous(),
                                                   self.coeffs)
        return (out,)

    def _ideal_part(self, x: Tensor, k: int) -> Tensor:
        """``V_k V_kᵀ D^-β`` applied to history rows ``x`` [B, n_items], as rows."""
        vt = self.vt.cpu()[:k]
        return ((x * self.degree_norms()[0]) @ vt.T) @ vt

    def _combine(self, parts: Sequence[Tensor], ideal: Tensor | None, x: Tensor) -> Tensor:
        out = parts[0] if ideal is None else parts[0] + float(self.alpha) * ideal
        return out * self.degree_norms()[1]

    def frequency_response(self, lam: np.ndarray) -> np.ndarray:
        """The filter's gain float64 [n] at eigenvalues ``lam`` [n] of ``P̃`` (in [0, 1]):
        ``Σ c_j T_j(1 − 2λ) + α·[λ ≥ σ²_η]``; exact, as the degree normalisation is a
        similarity transform and ``V_η`` are eigenvectors of ``P̃``."""
        lam = np.asarray(lam, dtype=np.float64)
        h = np.polynomial.chebyshev.chebval(1.0 - 2.0 * lam, self.coeffs)
        return h + float(self.alpha) * passband(lam, self.singular_values.cpu().numpy())


# ============================================================================ responses
def frequency_response(model: Any, lam: np.ndarray | None = None,
                       n_points: int = 401) -> tuple[np.ndarray, np.ndarray]:
    """``(λ, h)``: a filter's gain ``h`` float64 [n] at eigenvalues ``λ`` [n] of the normalised
    item-item graph ``P̃`` (``lam``, or ``n_points`` evenly spaced in [0, 1]), for a fitted
    ``gf-cf``, ``chebycf`` or ``bspm`` model (any object with ``frequency_response(λ)``).

    For ``gf-cf`` the gain is ``λ + α·[λ ≥ σ²_k]``; its ideal term ``D^-1/2 V Vᵀ D^1/2`` is
    similar to a projection but does not share ``P̃``'s eigenvectors, so this is the response
    read as if it did (as the papers plot it). ``σ_k`` is read from the fitted ``V_k``.
    """
    lam = np.linspace(0.0, 1.0, n_points) if lam is None else np.asarray(lam, np.float64)
    if hasattr(model, "frequency_response"):
        return lam, np.asarray(model.frequency_response(lam), dtype=np.float64)
    if getattr(model, "name", None) == "gf-cf":
        h = lam.copy()
        if model.config.alpha > 0:
            v = model.vt[-1].cpu().numpy().astype(np.float64)
            s_k = np.sqrt(np.sum((model._r_norm @ v) ** 2))  # σ_k = |R̃ v_k|
            h = h + model.config.alpha * passband(lam, np.array([s_k]))
        return lam, h
    raise TypeError(f"no frequency response for model {getattr(model, 'name', model)!r}")

