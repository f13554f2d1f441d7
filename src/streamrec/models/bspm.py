"""BSPM (Choi et al., SIGIR 2023): blurring-sharpening process models, no training.

With ``R̃ = D_U^-1/2 R D_I^-1/2`` and the normalised item-item graph ``P̃ = R̃ᵀR̃`` (as in
GF-CF), BSPM treats a user's history row ``r_u`` as a signal on the item graph and runs two
deterministic processes (ODEs in a time ``t``) on it:

* **blurring** — the heat equation on the item graph, ``dr/dt = r (P̃ − I) = −r L``, from
  ``r(0) = r_u`` to ``t = T_b``: it diffuses the history to similar items (a low-pass filter;
  its exact solution is ``r_u e^{−T_b L}``);
* the **ideal low-pass** process ``dr/dt = r (P_ideal − I)``, ``P_ideal = D_I^-1/2 V_k V_kᵀ
  D_I^1/2`` (GF-CF's ideal filter, ``V_k`` the top-``k`` right singular vectors of ``R̃``),
  to ``t = T_idl``;
* **sharpening** — the reverse, ``dr/dt = −r P̃``, for ``t ∈ [0, T_s]``, started from the
  blurred signal plus ``β`` times the ideal one (*early merge*, BSPM-EM: ``merge=early``);
  with ``merge=late`` (BSPM-LM) only the blurred signal is sharpened and ``β`` times the
  ideal one is added afterwards. ``combine=mean`` averages the states at every solver step
  after ``t = 0`` of both processes instead of keeping the last one.

Each process is integrated with a fixed-step solver written here (:func:`integrate`:
explicit Euler or the classical 4-stage Runge-Kutta; ``steps`` equal steps of ``T / steps``).
The solver and its step are part of the model: with the paper's one step, Euler blurring to
``T_b = 1`` is exactly ``r_u P̃`` (GF-CF's linear filter) and one RK4 sharpening step of
``T_s = 2.5`` multiplies each graph frequency ``λ`` by ``1 − z + z²/2 − z³/6 + z⁴/24`` with
``z = 2.5 λ`` — far from the exact ``e^{−2.5 λ}``, and what the published numbers are made
of. (torchdiffeq's ``rk4``, which the authors call, is the 3/8-rule variant; on these linear
constant-coefficient equations every 4-stage order-4 Runge-Kutta method gives the same step.)
The whole filter, per eigenvalue ``λ`` of ``P̃``, is :meth:`BSPM.frequency_response`.

Defaults are the authors' Gowalla command (README of github.com/jeongwhanchoi/BSPM):
``T_b = 1``, 1 Euler step; ``T_idl = 1``, 1 Euler step; ``T_s = 2.5``, 1 RK4 step; early
merge with ``β = 0.2``; ``k = 448`` (``factor_dim``); published Recall@20 0.1920,
NDCG@20 0.1597 on the LightGCN Gowalla split — except that ``k``, ``β`` and ``T_s`` are
``"auto"``: chosen on the validation part when the run has one (``k`` from a geometric grid
around a size rule, ``β`` from 0.1..1, ``T_s`` from 1..2.5), else ``k`` from the size rule
(448 on Gowalla-sized data), ``β = 0.2`` and ``T_s = 2.5``
(:mod:`streamrec.models.spectral_auto`). In that search the scores are split by linearity:
with ``M_k = D^½ V_k V_kᵀ D^-½`` (idempotent) the ideal process gives ``q₀ x + (1 − q₀) M_k x``
(``q₀`` its scalar solution at 0; 0 with the paper's one Euler step), and BSPM is
``F(x) + β H(smooth)`` with ``F`` the process without the ideal term and ``H`` the
(linear) sharpening of the merged signal; ``F(x)``, ``H(x)`` and ``H(D^½ V_kmax)`` are computed
once per ``T_s``, so each ``k`` and ``β`` costs a projection.

**Memory.** The authors' GPU version forms ``P̃`` as a dense ``n_items²`` matrix (6.7 GB in
float32 on Gowalla's 41k items, and a dense product of ``n_items²`` per user). Here, as in
their CPU version, ``P̃`` is never formed: every ``r P̃`` is two sparse products with ``R̃``
(:class:`~streamrec.models.chebycf.ItemGraph`), on ``graph_batch`` users' signals at a time
(within blocks of ``batch_users``), so memory is ``O(nnz(R) + k·n_items + batch_users·n_items)``
— about 1.7 GB on Gowalla with the defaults, the ARPACK SVD included (the guard's estimate) —
and 1 Euler + 4 RK4 stages cost five ``P̃`` products per user.
The constructor checks the peak (:func:`~streamrec.models.chebycf.spectral_memory_bytes`)
against the available memory before anything is allocated and refuses with a one-line
:class:`~streamrec.models.ease.ModelMemoryError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from streamrec.common import at_least, one_of
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender
from streamrec.models.chebycf import (
    ItemGraph,
    check_memory,
    passband,
)
from streamrec.models.gfcf import normalized_rating_matrix
from streamrec.models.spectral_auto import AutoSpectral, auto_or_at_least

SOLVERS = ("euler", "rk4")


def integrate(f: Callable[[Any], Any], x: Any, t_end: float, steps: int, method: str,
              on_step: Callable[[Any], None] | None = None) -> Any:
    """Integrate the autonomous ODE ``dx/dt = f(x)`` from ``x(0) = x`` to ``t_end`` with
    ``steps`` fixed steps of ``h = t_end / steps``; returns ``x(t_end)`` (same shape as ``x``).

    method: ``euler`` (``x + h f(x)``) or ``rk4`` (classical Runge-Kutta:
    ``x + h/6 (k1 + 2 k2 + 2 k3 + k4)``). ``x`` is a torch tensor or a numpy array (any shape
    ``f`` accepts); ``on_step(x)`` is called with the state after every step.
    ``steps = 0`` or ``t_end = 0`` returns ``x`` unchanged.
    """
    if method not in SOLVERS:
        raise ValueError(f"unknown ODE solver {method!r}; choose one of {', '.join(SOLVERS)}")
    if steps <= 0 or t_end == 0:
        return x
    h = t_end / steps
    for _ in range(steps):
        if method == "euler":
            x = x + h * f(x)
        else:
            k = f(x)
            acc = k
            k = f(x + (h / 2) * k)
            acc = acc + 2.0 * k
            k = f(x + (h / 2) * k)
            acc = acc + 2.0 * k
            k = f(x + h * k)
            x = x + (h / 6) * (acc + k)
        if on_step is not None:
            on_step(x)
    return x


def blur_sharpen(x: Any, blur: Callable[[Any], Any], sharpen: Callable[[Any], Any],
                 config: BSPMConfig, smooth: Any | None = None) -> Any:
    """The blurring-sharpening process on signals ``x`` (e.g. [n_items, B]), given the right
    sides ``blur(x) = (P̃ − I) x`` and ``sharpen(x) = −P̃ x``, and ``smooth``: the ideal
    low-pass process already run on ``x`` (same shape; None: no ideal term). Returns the
    scores, shaped like ``x``.

    ``merge=early``: sharpen ``blur(T_b) + β smooth``; ``late``: sharpen ``blur(T_b)`` and add
    ``β smooth``. ``combine=mean``: the mean of the states after every blurring and every
    sharpening step (the authors' ``t_point_combination``) instead of the last one.
    """
    c = config
    total: list[Any] = []  # [running sum of the step states, count], for combine=mean

    def keep(state: Any) -> None:
        if c.combine == "mean":
            total[:] = [state, 1] if not total else [total[0] + state, total[1] + 1]

    blurred = integrate(blur, x, c.blur_time, c.blur_steps, c.blur_solver, keep)
    if smooth is not None and c.merge == "early":
        blurred = blurred + c.beta * smooth
    out = integrate(sharpen, blurred, c.sharpen_time, c.sharpen_steps, c.sharpen_solver, keep)
    if c.combine == "mean" and total:
        out = total[0] / total[1]
    if smooth is not None and c.merge == "late":
        out = out + c.beta * smooth
    return out


@dataclass
class BSPMConfig(ModelConfig):
    """Options of :class:`BSPM` (the authors' flag in brackets; defaults: their Gowalla run).

    blur_time, blur_steps, blur_solver: [T_b, K_b, solver_blr] the blurring process.
    ideal_time, ideal_steps, ideal_solver: [T_idl, K_idl, solver_idl] the ideal low-pass one.
    sharpen_time, sharpen_steps, sharpen_solver: [T_s, K_s, solver_shr] the sharpening one
        (``sharpen_time = 0``: no sharpening); ``sharpen_time = auto``: chosen on validation
        with ``k`` (from 1, 1.5, 2, 2.5), or the paper's 2.5 without a validation part.
    beta: [idl_beta] weight of the ideal low-pass signal (0: off, no SVD); ``auto``: chosen on
        validation with ``k`` (from 0.1, 0.2, 0.5, 1), or the paper's 0.2 without one.
    k: [factor_dim] singular vectors of the ideal low-pass filter (capped at
        ``min(n_users, n_items) − 1``); ``auto``: chosen on validation from a geometric grid
        around the size rule, or the size rule without a validation part (448 on Gowalla;
        :mod:`streamrec.models.spectral_auto`).
    valid_users: the search of ``auto`` values scores at most this many validation users (a
        seeded random sample).
    merge: ``early`` [final_sharpening=True, BSPM-EM]: sharpen blurred + β·ideal; ``late``
        [BSPM-LM]: sharpen the blurred signal, then add β·ideal.
    combine: ``last`` (the final state) or ``mean`` [t_point_combination]: the mean of the
        states after every step of blurring and sharpening.
    svd: ``auto``, ``arpack``, ``randomized`` or ``dense`` (see
        :func:`~streamrec.models.chebycf.ideal_basis`).
    seed: seed of the SVD's starting vector.
    batch_users: users scored at a time (bounds the scoring memory).
    graph_batch: users whose signals go through the sparse graph products together (see
        :class:`~streamrec.models.chebycf.ChebyCFConfig`).
    """

    blur_time: float = 1.0
    blur_steps: int = 1
    blur_solver: str = "euler"
    ideal_time: float = 1.0
    ideal_steps: int = 1
    ideal_solver: str = "euler"
    sharpen_time: float | str = "auto"
    sharpen_steps: int = 1
    sharpen_solver: str = "rk4"
    beta: float | str = "auto"
    k: int | str = "auto"
    valid_users: int = 5000
    merge: str = "early"
    combine: str = "last"
    svd: str = "auto"
    seed: int = 0
    batch_users: int = 1024
    graph_batch: int = 64

    def check(self) -> list[str]:
        return [*at_least("blur_time", self.blur_time, 0),
                *at_least("blur_steps", self.blur_steps, 1),
                *one_of("blur_solver", self.blur_solver, SOLVERS),
                *at_least("ideal_time", self.ideal_time, 0),
                *at_least("ideal_steps", self.ideal_steps, 1),
                *one_of("ideal_solver", self.ideal_solver, SOLVERS),
                *auto_or_at_least("sharpen_time", self.sharpen_time, 0),
                *at_least("sharpen_steps", self.sharpen_steps, 1),
                *one_of("sharpen_solver", self.sharpen_solver, SOLVERS),
                *auto_or_at_least("beta", self.beta, 0), *auto_or_at_least("k", self.k, 0),
                *at_least("valid_users", self.valid_users, 1),
                *one_of("merge", self.merge, ("early", "late")),
                *one_of("combine", self.combine, ("last", "mean")),
                *one_of("svd", self.svd, ("auto", "arpack", "randomized", "dense")),
                *at_least("seed", self.seed, 0), *at_least("batch_users", self.batch_users, 1),
                *at_least("graph_batch", self.graph_batch, 1)]


class BSPM(AutoSpectral, Recommender):
    """BSPM: blur (heat equation) + ideal low-pass, then sharpen, on the item-item graph."""

    name = "bspm"
    Config = BSPMConfig
    trainable = False
    #: float32 [n_items, graph_batch] blocks alive in the solvers (for the memory guard)
    SIGNALS = 8
    PAPER_K = 448
    WEIGHTS = {"sharpen_time": (2.5, (1.0, 1.5, 2.0, 2.5), True),
               "beta": (0.2, (0.1, 0.2, 0.5, 1.0), False)}
    IDEAL_WEIGHT = "beta"

    def __init__(self, config: BSPMConfig, train: Dataset) -> None:
        super().__init__(config, train)
        #: the ideal process's solution is q0 x + (1 − q0) M_k x (M_k idempotent)
        self._q0 = float(integrate(lambda v: -v, 1.0, config.ideal_time, config.ideal_steps,
                                   config.ideal_solver))
        self.CACHED_PARTS = 1 if self._q0 == 0 else 2
        self._init_spectral(train)
        k_max, search_rows = self.guard_k_and_rows()
        check_memory(self.name, train, k_max, config, self.SIGNALS, search_rows + k_max)
        r_norm, d_i = normalized_rating_matrix(train.csr())
        self._r_norm = r_norm
        self.graph = ItemGraph(r_norm)
        inv_sqrt = np.divide(1.0, np.sqrt(d_i), out=np.zeros_like(d_i), where=d_i > 0)
        self.register_buffer("item_inv_sqrt_degree", torch.as_tensor(inv_sqrt),
                             persistent=False)
        self.register_buffer("item_sqrt_degree", torch.as_tensor(np.sqrt(d_i)),
                             persistent=False)
        #: ``sharpen_time`` and ``beta`` (0-d float64), V_kᵀ [k, n_items] and the singular
        #: values σ [k] of R̃ (computed, and k and the weights chosen, by ``fit``: AutoSpectral)
        self._register_spectral()
        self._w_t: Tensor | None = None  # H(D^½ V_kmax)ᵀ during the search

    def effective_config(self) -> BSPMConfig:
        """The options with the chosen (or loaded) ``beta`` and ``sharpen_time``."""
        return dataclasses.replace(self.config, beta=float(self.beta),
                                   sharpen_time=float(self.sharpen_time))

    # ------------------------------------------------------------------ the processes
    def _blur(self, x: Tensor) -> Tensor:
        """``d x/dt`` of blurring for signals ``x`` [n_items, B]: ``(P̃ − I) x``."""
        return self.graph(x) - x

    def _ideal(self, x: Tensor) -> Tensor:
        """``d x/dt`` of the ideal process, [n_items, B]: ``(D^1/2 V Vᵀ D^-1/2 − I) x`` (the
        transpose of ``r (P_ideal − I)``)."""
        vt = self.vt.cpu()
        inv, sq = self.item_inv_sqrt_degree.cpu()[:, None], self.item_sqrt_degree.cpu()[:, None]
        return sq * (vt.T @ (vt @ (inv * x))) - x

    def _sharpen(self, x: Tensor) -> Tensor:
        """``d x/dt`` of sharpening, [n_items, B]: ``−P̃ x``."""
        return -self.graph(x)

    def apply_filter(self, x: Tensor) -> Tensor:
        """BSPM applied to history signals ``x`` [n_items, B] (one column per user); float32
        [n_items, B]. The ideal process runs on all columns at once, blurring and sharpening
        on ``graph_batch`` columns at a time."""
        c = self.effective_config()
        smooth = None
        if self.k:
            smooth = integrate(self._ideal, x, c.ideal_time, c.ideal_steps, c.ideal_solver)
        out = torch.empty_like(x)
        for s in range(0, x.shape[1], c.graph_batch):
            cols = slice(s, s + c.graph_batch)
            out[:, cols] = blur_sharpen(x[:, cols].contiguous(), self._blur, self._sharpen, c,
                                        None if smooth is None else smooth[:, cols])
        return out

    # the search of k = "auto" (AutoSpectral): BSPM = F(x) + β H(q0 x + (1 − q0) M_k x)
    def _merged(self, y: Tensor) -> Tensor:
        """``H(y)`` [n_items, b]: what a merged ideal signal ``y`` adds to the scores with
        ``β = 1`` (the process run from 0 with ``smooth = y``; linear in ``y``)."""
        c = dataclasses.replace(self.effective_config(), beta=1.0)
        out = torch.empty_like(y)
        for s in range(0, y.shape[1], c.graph_batch):
            part = y[:, s : s + c.graph_batch].contiguous()
            out[:, s : s + c.graph_batch] = blur_sharpen(torch.zeros_like(part), self._blur,
                                                         self._sharpen, c, part)
        return out

    def _cached_parts(self, x: Tensor) -> tuple[Tensor, ...]:
        """``F(x)`` (the process without the ideal term) and, when ``q0 ≠ 0``, ``H(x)``."""
        c = self.effective_config()
        f = torch.empty_like(x)
        for s in range(0, x.shape[1], c.graph_batch):
            f[:, s : s + c.graph_batch] = blur_sharpen(x[:, s : s + c.graph_batch].contiguous(),
                                                       self._blur, self._sharpen, c, None)
        return (f,) if self._q0 == 0 else (f, self._merged(x))

    def _prepare_search(self) -> None:
        """``H(D^½ V)ᵀ`` [k_max, n_items] for the full basis and the current ``T_s``."""
        y = self.item_sqrt_degree.cpu().float()[:, None] * self.vt.cpu().T
        self._w_t = self._merged(y.contiguous()).T.contiguous() if self.k else None

    def _ideal_part(self, x: Tensor, k: int) -> Tensor:
        """``H(M_k x)`` as rows, for history rows ``x`` [B, n_items]: ``(x D^-½ V_k) H(D^½
        V_k)ᵀ``."""
        assert self._w_t is not None
        coef = (x * self.item_inv_sqrt_degree.cpu().float()) @ self.vt.cpu()[:k].T
        return coef @ self._w_t[:k]

    def _combine(self, parts: Sequence[Tensor], ideal: Tensor | None, x: Tensor) -> Tensor:
        if ideal is None:  # k = 0: no ideal process at all
            return parts[0].clone()
        beta = float(self.beta)
        out = parts[0] + (beta * (1.0 - self._q0)) * ideal
        if self._q0 != 0:
            out += (beta * self._q0) * parts[1]
        return out

    def frequency_response(self, lam: np.ndarray) -> np.ndarray:
        """The gain float64 [n] at eigenvalues ``lam`` [n] of ``P̃``: the same processes and
        solvers (:func:`blur_sharpen`) run on the scalar equations ``dx/dt = (λ − 1) x``
        (blur), ``(1[λ ≥ σ²_k] − 1) x`` (ideal) and ``−λ x`` (sharpen), from ``x = 1``. Exact
        for blurring and sharpening; the ideal part (``D^-1/2 V Vᵀ D^1/2``) is read as if it
        shared ``P̃``'s eigenvectors."""
        lam = np.asarray(lam, dtype=np.float64)
        c = self.effective_config()
        one = np.ones_like(lam)
        smooth = None
        if self.k:
            inside = passband(lam, self.singular_values.cpu().numpy())
            smooth = integrate(lambda x: (inside - 1.0) * x, one, c.ideal_time, c.ideal_steps,
                               c.ideal_solver)
        out = blur_sharpen(one, lambda x: (lam - 1.0) * x, lambda x: -lam * x, c, smooth)
        return np.asarray(out, dtype=np.float64)
