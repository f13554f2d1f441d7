"""Choosing a spectral filter's ideal low-pass size ``k`` and its weights: ``k = "auto"``.

``chebycf`` and ``bspm`` add to a polynomial filter of the item-item graph an ideal low-pass
filter made of the top-``k`` right singular vectors of ``R̃``. The papers set ``k`` on Gowalla
(810,128 training interactions: 512 and 448); on smaller data that ideal filter keeps
frequencies that are noise there (MovieLens-100k, validation NDCG@20 of chebycf: 0.081 with
the paper's ``k = 512`` and ``alpha = 0.2``, 0.106 with ``k = 64`` and ``alpha = 2``), and the
weights move with it. With ``k = "auto"`` (the default of both models, as are their weights;
a number fixes any of them), ``fit``:

* **with a validator** (``streamrec train`` passes one whenever the split has a validation
  part) computes the truncated SVD **once**, at the largest candidate ``k`` of
  :func:`k_grid` (the top singular vectors do not depend on how many are asked for), and
  scores every setting of the grid (``k`` x the model's weights left at ``"auto"``: chebycf's
  ``alpha`` and degree power ``beta``, bspm's ``beta`` and ``sharpen_time``;
  :attr:`AutoSpectral.WEIGHTS`) by the run's ``valid_metric`` (default NDCG@20, full
  ranking) on a seeded random sample of at most ``valid_users`` validation users. The best
  setting is kept (ties: the first tried; ``k`` ascending); the SVD is sliced to it. The
  candidates share the work: the part of the scores that depends on neither ``k`` nor the
  inner weight (the polynomial filter, per user) is computed once per value of the outer
  weight (chebycf's ``beta``, bspm's ``sharpen_time``) and cached for the search, the ideal
  term once per ``k``, so a candidate costs an addition and the ranking.
* **without one** (a split with no validation part, such as Gowalla's given split) takes the
  size rule :func:`rule_k` and the paper's weights.

The chosen values are the model's saved state (``vt`` holds ``k`` rows; each weight is a 0-d
buffer named as its option), so ``load_run`` restores them, and :meth:`AutoSpectral.fit_report`
(printed by the trainer, recorded in ``metrics.jsonl`` and ``results.json``) says how they were
chosen, with every setting tried and its validation score.

**The size rule.** ``k = 2^round(log2(n_train / 1500))``: one singular vector per about
1,500 training interactions, rounded to a power of two, at least 16, and at most the paper's
``k`` (on Gowalla-sized data the rule gives 512, so the paper's value is kept: 512 for
chebycf, 448 for bspm). It was read off the validation optimum of chebycf's ``k`` (grid
16..512, the best ``alpha`` at each ``k``, ``beta = 0.4``) on three datasets and matches the
paper on the fourth: MovieLens-100k (98 k training interactions) 64, Amazon Scientific (42 k)
32, the ``m0`` world (377 k) 256, Gowalla (810 k) 512. The geometric search grid is built
around it, from a quarter to twice the rule's ``k``, so the rule also bounds the SVD that the
search needs.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from streamrec.data.dataset import Dataset
from streamrec.models.base import Validate, validate_on, validation_target

__all__ = ["AUTO", "INTERACTIONS_PER_K", "MAX_K", "MIN_K", "SELECTION_BYTES", "AutoSpectral",
           "HistoryRows", "auto_or_at_least", "k_grid", "rule_k", "row_key", "selection_users"]

AUTO = "auto"
#: the size rule: one singular vector per this many training interactions
INTERACTIONS_PER_K = 1500
#: the smallest k the rule and the grid give
MIN_K = 16
#: the largest k the search tries (it bounds the SVD of the search)
MAX_K = 1024
#: the search's cache of per-user scores stays below this many bytes (fewer users if needed)
SELECTION_BYTES = 2 << 30


def auto_or_at_least(name: str, value: Any, low: float) -> list[str]:
    """``[problem]`` unless ``value`` is ``"auto"`` or a number ``>= low``."""
    if isinstance(value, str):
        return [] if value == AUTO else [f"{name} must be 'auto' or a number, got {value!r}"]
    return [] if value >= low else [f"{name} must be 'auto' or >= {low}, got {value!r}"]


def rule_k(n_interactions: int, n_users: int, n_items: int, paper_k: int) -> int:
    """The size rule (module docstring): ``2^round(log2(n_interactions / 1500))``, at least
    :data:`MIN_K`, at most ``paper_k``, and below ``min(n_users, n_items)`` (what a truncated
    SVD can give); >= 0."""
    k = 2 ** round(math.log2(max(n_interactions / INTERACTIONS_PER_K, 1.0)))
    k = min(max(k, MIN_K), paper_k)
    return max(0, min(k, min(n_users, n_items) - 1))


def k_grid(rule: int, n_users: int, n_items: int) -> list[int]:
    """The candidate ``k`` of the search, ascending: ``rule · 2^j`` for ``j = -2..1`` (a
    quarter to twice the rule's), within [:data:`MIN_K`, :data:`MAX_K`] and below
    ``min(n_users, n_items)``."""
    top = min(MAX_K, min(n_users, n_items) - 1)
    if rule <= 0 or top <= 0:
        return [0]
    return sorted({min(max(int(rule * 2.0**j), min(MIN_K, top)), top) for j in (-2, -1, 0, 1)})


def selection_users(valid_users: int, n_items: int, parts: int) -> int:
    """How many validation users the search scores: ``valid_users``, fewer when its cache
    (``parts + 1`` float32 [users, n_items] blocks) would pass :data:`SELECTION_BYTES`."""
    return max(1, min(valid_users, SELECTION_BYTES // (4 * n_items * (parts + 1))))


def row_key(users: np.ndarray, rows: sp.csr_matrix) -> bytes:
    """A digest of a scoring call (which users, with which history rows)."""
    h = hashlib.blake2b(digest_size=16)
    for a in (users.astype(np.int64), rows.indptr.astype(np.int64),
              rows.indices.astype(np.int64)):
        h.update(a.tobytes())
    return h.digest()


class HistoryRows:
    """The binary history rows of one scoring dataset, cached by dataset object."""

    def __init__(self) -> None:
        self._data: tuple[Dataset, sp.csr_matrix] | None = None

    def __call__(self, users: np.ndarray, history: Dataset) -> sp.csr_matrix:
        """Rows [len(users), n_items] (CSR, float32) of ``users`` in ``history``."""
        if self._data is None or self._data[0] is not history:
            self._data = (history, sp.csr_matrix(history.csr(), dtype=np.float32))
        return self._data[1][users]


def score_in_batches(apply: Callable[[Tensor], Tensor], rows: sp.csr_matrix, batch_users: int,
                     n_items: int) -> Tensor:
    """Scores float32 [B, n_items] of history ``rows`` [B, n_items] (CSR) through
    ``apply: x [n_items, b] -> [n_items, b]`` (one column per user), ``batch_users`` rows at
    a time."""
    out = torch.empty(rows.shape[0], n_items)
    for s in range(0, rows.shape[0], batch_users):
        x = torch.from_numpy(np.ascontiguousarray(rows[s : s + batch_users].toarray().T))
        out[s : s + batch_users] = apply(x).T
    return out


class AutoSpectral:
    """Mixin of ``chebycf`` and ``bspm``: the ideal basis whose size ``fit`` chooses, the
    weights chosen with it, the search (module docstring) and its report.

    A model using it calls, in its constructor, :meth:`_init_spectral` (sizes only), then the
    memory guard with :meth:`guard_k_and_rows`, then :meth:`_register_spectral` (the weight
    buffers, ``vt`` [k, n_items] and ``singular_values`` [k]); it keeps ``R̃`` as
    ``self._r_norm``, reads ``self.k`` (rows of ``vt``) and the weights from their buffers
    (``float(self.alpha)``), and implements :meth:`apply_filter` (the mixin's ``score`` runs it on
    batches of history rows, after :meth:`_score_rows` during the search), and:

    * :meth:`_cached_parts` ``x [n_items, b] -> tuple of [n_items, b]``: what its scores need
      that depends on neither ``k`` nor the inner weights;
    * :meth:`_ideal_part` ``(x [B, n_items], k) -> [B, n_items]``: the ideal term with ``k``
      vectors, before its weight;
    * :meth:`_combine` ``(parts, ideal, x) -> scores [B, n_items]`` with the current weights;
    * optionally :meth:`_prepare_search` (called after every change of an outer weight).
    """

    def apply_filter(self, x: Tensor) -> Tensor:
        """The model's filter on item signals ``x`` float32 [n_items, b] (one column per
        user): scores [n_items, b]."""
        raise NotImplementedError

    @torch.no_grad()
    def score(self, users: Tensor, history: Dataset) -> Tensor:
        """Scores float32 [B, n_items] of internal ``users`` [B] from their rows in
        ``history``, ``batch_users`` users at a time through :meth:`apply_filter`."""
        ids = users.cpu().numpy()
        rows = self._rows(ids, history)
        cached = self._score_rows(ids, rows)  # during fit's search of k = "auto" only
        if cached is None:
            cached = score_in_batches(self.apply_filter, rows, self.config.batch_users,
                                      self.n_items)
        return cached.to(users.device)

    #: the paper's k (the rule's upper bound)
    PAPER_K: ClassVar[int]
    #: weight option -> (its value without validation (the paper's), candidates, outer):
    #: an outer weight changes the cached parts (searched in the outer loop)
    WEIGHTS: ClassVar[dict[str, tuple[float, tuple[float, ...], bool]]]
    #: the weight of the ideal term (0: no ideal term, no SVD)
    IDEAL_WEIGHT: ClassVar[str]
    #: how many [users, n_items] blocks :meth:`_cached_parts` returns (a model may set it
    #: per instance)
    CACHED_PARTS: int = 1

    vt: Tensor
    singular_values: Tensor
    _r_norm: sp.csr_matrix
    name: str
    config: Any
    n_items: int
    register_buffer: Callable[..., None]

    # ------------------------------------------------------------------ setup
    def _init_spectral(self, train: Dataset) -> None:
        """Read the sizes (nothing is allocated: the memory guard comes next)."""
        self._dims = (train.n_users, train.n_items)
        self._rule_k = rule_k(train.n_interactions, train.n_users, train.n_items, self.PAPER_K)
        k = self.config.k
        self._k_fixed = None if k == AUTO else max(0, min(int(k), min(self._dims) - 1))
        self._cache: dict[bytes, dict[str, Any]] | None = None
        self._report: dict[str, Any] = {}
        self._rows = HistoryRows()

    def _register_spectral(self) -> None:
        """Register the weight buffers (the paper's value for ``"auto"`` until ``fit``) and the
        ideal basis at its provisional size (the rule's or the fixed ``k``; ``fit`` and
        ``load_state_dict`` resize it)."""
        for name, (paper, _, _) in self.WEIGHTS.items():
            value = getattr(self.config, name)
            self.register_buffer(name, torch.tensor(paper if value == AUTO else float(value),
                                                    dtype=torch.float64))
        k = 0 if self._no_ideal() else (self._rule_k if self._k_fixed is None else self._k_fixed)
        self.register_buffer("vt", torch.zeros(k, self._dims[1]))
        self.register_buffer("singular_values", torch.zeros(k))

    def _no_ideal(self) -> bool:
        return getattr(self.config, self.IDEAL_WEIGHT) == 0

    @property
    def k(self) -> int:
        """Singular vectors in the ideal low-pass filter (0: none)."""
        return int(self.vt.shape[0])

    def search_space(self) -> tuple[list[int], dict[str, list[float]]]:
        """The candidate ``k`` (one value when fixed) and each weight's candidates (one value
        when set) that a search with a validator tries."""
        if self._no_ideal():
            ks = [0]
        elif self._k_fixed is not None:
            ks = [self._k_fixed]
        else:
            ks = k_grid(self._rule_k, *self._dims)
        weights = {name: (list(cands) if getattr(self.config, name) == AUTO
                          else [float(getattr(self.config, name))])
                   for name, (_, cands, _) in self.WEIGHTS.items()}
        return ks, weights

    def _searches(self) -> bool:
        ks, weights = self.search_space()
        return len(ks) * math.prod(len(v) for v in weights.values()) > 1

    def guard_k_and_rows(self) -> tuple[int, int]:
        """``(largest k, float32 rows of n_items in the search's cache)`` that a fit may need
        (for the memory guard)."""
        ks, _ = self.search_space()
        if not self._searches():
            return ks[0], 0
        users = selection_users(self.config.valid_users, self._dims[1], self.CACHED_PARTS)
        return max(ks), users * (self.CACHED_PARTS + 1)

    def _set_weights(self, values: dict[str, float]) -> None:
        for name, v in values.items():
            getattr(self, name).fill_(float(v))

    def _set_basis(self, s: np.ndarray | Tensor, vt: np.ndarray | Tensor) -> None:
        """Make ``vt`` / ``singular_values`` these (a view of them where they are tensors on
        the model's device already); ``k`` follows."""
        device = self.vt.device
        self.vt = torch.as_tensor(vt, dtype=torch.float32, device=device)
        self.singular_values = torch.as_tensor(s, dtype=torch.float32, device=device)

    # ------------------------------------------------------------------ fit
    def fit(self, train: Dataset, validate: Validate | None = None) -> None:
        """The ideal basis and the weights: searched on ``validate`` when something is
        ``"auto"``, else the rule's ``k`` (or the fixed one) and the set weights."""
        t0 = time.perf_counter()
        if validate is None or not self._searches():
            k = self.k
            if k:
                self._set_basis(*self._svd(k))
            auto = self.config.k == AUTO or any(getattr(self.config, n) == AUTO
                                                for n in self.WEIGHTS)
            self._report = {"selection": "rule (no validation)" if auto and validate is None
                            else "fixed", **self._chosen(),
                            "seconds": round(time.perf_counter() - t0, 2)}
            return
        self._search(validate, t0)

    def _svd(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        from streamrec.models.chebycf import ideal_basis

        return ideal_basis(self._r_norm, k, self.config.svd, self.config.seed)

    def _chosen(self) -> dict[str, Any]:
        return {"k": self.k, **{n: float(getattr(self, n)) for n in self.WEIGHTS},
                "rule_k": self._rule_k}

    def _search(self, validate: Validate, t0: float) -> None:
        """The grid search of the module docstring; keeps the best setting."""
        ks, grids = self.search_space()
        metric, mode = validation_target(validate)
        users = selection_users(self.config.valid_users, self.n_items, self.CACHED_PARTS)
        s_all, vt_all = (torch.from_numpy(a) for a in self._svd(max(ks)))
        svd_seconds = time.perf_counter() - t0
        outer = [n for n, (_, _, o) in self.WEIGHTS.items() if o]
        inner = [n for n, (_, _, o) in self.WEIGHTS.items() if not o]
        tried: list[dict[str, Any]] = []
        best: dict[str, Any] = {}
        sign = 1.0 if mode == "max" else -1.0
        try:
            for out_values in itertools.product(*(grids[n] for n in outer)):
                self._set_weights(dict(zip(outer, out_values)))
                self._set_basis(s_all, vt_all)
                self._cache = {}
                self._prepare_search()
                for k in ks:
                    self._set_basis(s_all[:k], vt_all[:k])
                    for in_values in itertools.product(*(grids[n] for n in inner)):
                        setting = {"k": k, **dict(zip(outer, out_values)),
                                   **dict(zip(inner, in_values))}
                        self._set_weights({n: setting[n] for n in inner})
                        logs = validate_on(validate, self, max_users=users)
                        if metric not in logs:
                            raise KeyError(f"{self.name} chooses k by {metric!r} (valid_metric),"
                                           " but validation returned "
                                           f"{', '.join(sorted(logs)) or 'nothing'}")
                        tried.append({**setting, metric: logs[metric]})
                        if not best or sign * logs[metric] > sign * best[metric]:
                            best = tried[-1]
        finally:
            self._cache = None
        k = int(best["k"])
        self._set_basis(s_all[:k].clone(), vt_all[:k].clone())
        self._set_weights({n: best[n] for n in self.WEIGHTS})
        self._report = {
            "selection": "validation", "metric": metric, "valid": round(best[metric], 5),
            "valid_users_max": users, **self._chosen(), "settings": len(tried),
            "svd_k": max(ks), "svd_seconds": round(svd_seconds, 2),
            "seconds": round(time.perf_counter() - t0, 2),
            "grid": {"k": ks, **grids},
            "tried": [{n: (round(v, 5) if n == metric else v) for n, v in t.items()}
                      for t in tried],
        }

    def fit_report(self) -> dict[str, Any]:
        """How ``k`` and the weights were chosen (see the module docstring); after
        ``load_run``, the restored values."""
        return dict(self._report) if self._report else self._chosen()

    # ------------------------------------------------------------------ scoring in the search
    def _prepare_search(self) -> None:
        """Called with the full basis after every change of an outer weight (default: nothing)."""

    def _cached_parts(self, x: Tensor) -> tuple[Tensor, ...]:
        raise NotImplementedError

    def _ideal_part(self, x: Tensor, k: int) -> Tensor:
        raise NotImplementedError

    def _combine(self, parts: Sequence[Tensor], ideal: Tensor | None, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _score_rows(self, users: np.ndarray, rows: sp.csr_matrix) -> Tensor | None:
        """Scores [B, n_items] of history ``rows`` [B, n_items] from the search's cache (the
        cached parts computed on first sight of these users and rows, the ideal term once per
        ``k``), or None outside a search."""
        if self._cache is None:
            return None
        key = row_key(users, rows)
        entry = self._cache.get(key)
        if entry is None:
            step = self.config.batch_users
            parts = [torch.empty(rows.shape[0], self.n_items) for _ in range(self.CACHED_PARTS)]
            for s in range(0, rows.shape[0], step):
                x = torch.from_numpy(np.ascontiguousarray(rows[s : s + step].toarray().T))
                for block, part in zip(parts, self._cached_parts(x)):
                    block[s : s + step] = part.T
            entry = self._cache[key] = {"parts": parts, "k": None, "ideal": None}
        x = torch.from_numpy(rows.toarray())
        if entry["k"] != self.k:
            entry["k"], entry["ideal"] = self.k, None  # free the old one first
            entry["ideal"] = self._ideal_part(x, self.k) if self.k else None
        return self._combine(entry["parts"], entry["ideal"], x)

    # ------------------------------------------------------------------ loading
    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str,
                              *args: Any, **kwargs: Any) -> None:
        """Take the saved basis at its saved size (the chosen ``k``); a state saved before the
        weights were buffers keeps the configured ones."""
        for name in ("vt", "singular_values"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, torch.zeros(saved.shape, dtype=getattr(self, name).dtype,
                                                device=getattr(self, name).device))
        for name in self.WEIGHTS:
            state_dict.setdefault(prefix + name, getattr(self, name).detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
