"""Evaluation metrics for recommendation (top-K ranking) and click prediction.

All functions are pure and vectorised over users with NumPy; none loops over users in Python.

Conventions
-----------
* ``U`` is the number of users (rows), ``K`` the length of each recommended list and ``k`` a
  cutoff with ``1 <= k <= K`` (the first ``k`` columns are used).
* ``topk`` is an integer array ``[U, K]`` of item indices ranked best first. ``-1`` is padding
  meaning "no item" (e.g. a user with fewer than ``K`` candidates); padding never hits and is
  ignored by coverage.
* Ground truth is given per user in CSR form: user ``u``'s relevant items are
  ``truth_indices[truth_indptr[u]:truth_indptr[u + 1]]``, or equivalently the stored non-zero
  columns of row ``u`` of a ``scipy.sparse`` CSR matrix ``[U, n_items]``.
* Per-user metric functions take ``hits`` (bool ``[U, K]``, ``hits[u, i]`` is True iff the item at
  rank ``i`` of user ``u`` is relevant) and return float64 ``[U]``; the caller averages. Users with
  no relevant item have undefined recall/NDCG and must be excluded by the caller (those
  functions raise ``ValueError`` otherwise). :func:`ranking_metrics` and
  :class:`RankingAccumulator` skip such users automatically.

Ranking metric definitions (binary relevance, ``hit_i`` = hits[u, i], ranks 0-based)
-------------------------------------------------------------------------------------
* ``recall@k    = sum_{i<k} hit_i / n_relevant`` -- the LightGCN / RecBole definition: the
  denominator is the full size of the user's relevant set, *not* ``min(n_relevant, k)``, so a user
  with more than ``k`` relevant items cannot reach recall 1.
* ``precision@k = sum_{i<k} hit_i / k`` (padding counts as a miss).
* ``hit@k       = 1 if any(hit_i for i<k) else 0``.
* ``ndcg@k      = DCG / IDCG`` with ``DCG = sum_{i<k} hit_i / log2(i + 2)`` and
  ``IDCG = sum_{i<min(n_relevant, k)} 1 / log2(i + 2)``.
* ``mrr@k       = 1 / (r + 1)`` where ``r`` is the 0-based rank of the first hit within the top
  ``k``, else 0.
* ``coverage@k  = |distinct items in all users' top-k lists| / n_items``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

__all__ = [
    "ALL_RANKING_METRICS",
    "RankingAccumulator",
    "auc",
    "hit_rate_at_k",
    "hits_from_csr",
    "hits_matrix",
    "item_coverage_at_k",
    "log_loss",
    "log_loss_from_logits",
    "mrr_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metrics",
    "recall_at_k",
]

#: Names accepted in the ``metrics`` argument, in their default output order.
ALL_RANKING_METRICS: tuple[str, ...] = ("recall", "ndcg", "hit", "mrr", "precision", "coverage")


# ---------------------------------------------------------------------------------------------
# Hits
# ---------------------------------------------------------------------------------------------
def _as_topk(topk: np.ndarray) -> np.ndarray:
    topk = np.asarray(topk)
    if topk.ndim != 2:
        raise ValueError(f"topk must be 2-D [U, K], got shape {topk.shape}")
    if topk.size and not np.issubdtype(topk.dtype, np.integer):
        raise ValueError(f"topk must hold integer item indices, got dtype {topk.dtype}")
    topk = topk.astype(np.int64, copy=False)
    if topk.size and topk.min() < -1:
        raise ValueError("topk may only contain item indices >= 0 or -1 (padding)")
    return topk


def hits_matrix(
    topk: np.ndarray, truth_indptr: np.ndarray, truth_indices: np.ndarray
) -> np.ndarray:
    """Mark which recommended items are relevant.

    Args:
        topk: int ``[U, K]`` item indices ranked best first; ``-1`` is padding ("no item").
        truth_indptr: int ``[U + 1]`` CSR row pointer of the ground truth (non-decreasing,
            ``truth_indptr[0] == 0``, ``truth_indptr[-1] == len(truth_indices)``).
        truth_indices: int ``[nnz]`` relevant item indices; user ``u``'s relevant set is
            ``truth_indices[truth_indptr[u]:truth_indptr[u + 1]]`` (any order, duplicates allowed).

    Returns:
        bool ``[U, K]``: ``out[u, i]`` is True iff ``topk[u, i]`` is in user ``u``'s relevant set.
        Padding (-1) is never a hit. If an item is repeated in a row of ``topk``, every occurrence
        is marked.

    Implementation: each (row, item) pair is encoded as the int64 key ``row * n + item`` with
    ``n = 1 + max item index``; the truth keys are sorted once and the top-k keys are looked up
    with ``np.searchsorted`` -- O((nnz + U*K) log nnz), no Python loop over users.
    """
    topk = _as_topk(topk)
    indptr = np.asarray(truth_indptr, dtype=np.int64).ravel()
    indices = np.asarray(truth_indices).ravel()
    n_users, _ = topk.shape
    if indptr.shape[0] != n_users + 1:
        raise ValueError(
            f"truth_indptr must have length U + 1 = {n_users + 1}, got {indptr.shape[0]}"
        )
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"truth_indices must be integers, got dtype {indices.dtype}")
    indices = indices.astype(np.int64, copy=False)
    if indptr[0] != 0 or indptr[-1] != indices.shape[0] or np.any(np.diff(indptr) < 0):
        raise ValueError("truth_indptr is not a valid CSR row pointer for truth_indices")
    if indices.size and indices.min() < 0:
        raise ValueError("truth_indices must be non-negative")

    hits = np.zeros(topk.shape, dtype=bool)
    if indices.size == 0 or topk.size == 0:
        return hits

    n = int(max(indices.max(), topk.max())) + 1
    if n_users * n >= np.iinfo(np.int64).max:  # pragma: no cover - absurdly large inputs
        raise ValueError("U * n_items overflows int64 keys")
    truth_rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
    truth_keys = np.sort(truth_rows * n + indices)

    valid = topk >= 0
    query = np.arange(n_users, dtype=np.int64)[:, None] * n + topk  # [U, K]
    pos = np.searchsorted(truth_keys, query)  # in [0, nnz]
    found = truth_keys[np.minimum(pos, truth_keys.shape[0] - 1)] == query
    np.logical_and(found, valid, out=hits)
    return hits


def _truth_arrays(truth_csr: sp.spmatrix | sp.sparray) -> tuple[np.ndarray, np.ndarray, int]:
    """Canonical (indptr, indices, n_items) of a sparse truth matrix.

    Duplicate entries are merged and explicitly stored zeros are dropped, so the row lengths are
    the sizes of the relevant sets.
    """
    if not sp.issparse(truth_csr):
        raise TypeError(f"truth_csr must be a scipy.sparse matrix, got {type(truth_csr)!r}")
    truth = sp.csr_matrix(truth_csr)  # no copy if already csr_matrix
    needs_fix = (not truth.has_canonical_format) or (truth.nnz and np.any(truth.data == 0))
    if needs_fix:
        truth = truth.copy()
        truth.sum_duplicates()
        truth.eliminate_zeros()
    return truth.indptr, truth.indices, int(truth.shape[1])


def hits_from_csr(topk: np.ndarray, truth_csr: sp.spmatrix | sp.sparray) -> np.ndarray:
    """:func:`hits_matrix` with the ground truth as a scipy.sparse matrix.

    Args:
        topk: int ``[U, K]`` item indices ranked best first; ``-1`` is padding.
        truth_csr: sparse ``[U, n_items]`` (CSR preferred; other formats are converted). Every
            stored non-zero entry ``(u, j)`` means item ``j`` is relevant for user ``u``.

    Returns:
        bool ``[U, K]`` hits.
    """
    indptr, indices, _ = _truth_arrays(truth_csr)
    return hits_matrix(topk, indptr, indices)


# ---------------------------------------------------------------------------------------------
# Per-user ranking metrics
# ---------------------------------------------------------------------------------------------
def _check_hits(hits: np.ndarray, k: int) -> np.ndarray:
    hits = np.asarray(hits)
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-D [U, K], got shape {hits.shape}")
    _check_k(k, hits.shape[1])
    return hits[:, :k].astype(bool, copy=False)


def _check_k(k: int, n_cols: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= n_cols:
        raise ValueError(f"k must satisfy 1 <= k <= K = {n_cols}, got k = {k}")


def _check_n_relevant(n_relevant: np.ndarray, n_users: int) -> np.ndarray:
    n_rel = np.asarray(n_relevant)
    if n_rel.shape != (n_users,):
        raise ValueError(f"n_relevant must have shape ({n_users},), got {n_rel.shape}")
    if n_rel.size and np.any(n_rel <= 0):
        raise ValueError(
            "n_relevant must be >= 1 for every user; exclude users without relevant items "
            "before calling (their recall / NDCG is undefined)"
        )
    return n_rel


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Recall@k per user, LightGCN / RecBole definition.

    ``recall@k = (#hits among the first k) / n_relevant`` -- the denominator is the size of the
    whole relevant set, not ``min(n_relevant, k)``.

    Args:
        hits: bool ``[U, K]`` hits, best rank first.
        n_relevant: int ``[U]`` size of each user's relevant set (all >= 1, else ValueError).
        k: cutoff, ``1 <= k <= K``.

    Returns:
        float64 ``[U]`` in [0, 1].
    """
    h = _check_hits(hits, k)
    n_rel = _check_n_relevant(n_relevant, h.shape[0])
    return h.sum(axis=1, dtype=np.float64) / n_rel.astype(np.float64)


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Precision@k per user: ``(#hits among the first k) / k``.

    Args:
        hits: bool ``[U, K]`` hits, best rank first (padding counts as a miss).
        k: cutoff, ``1 <= k <= K``.

    Returns:
        float64 ``[U]`` in [0, 1].
    """
    h = _check_hits(hits, k)
    return h.sum(axis=1, dtype=np.float64) / float(k)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Hit rate (HR@k) per user: 1.0 if any of the first k items is relevant, else 0.0.

    Args:
        hits: bool ``[U, K]`` hits, best rank first.
        k: cutoff, ``1 <= k <= K``.

    Returns:
        float64 ``[U]`` with values in {0.0, 1.0}.
    """
    h = _check_hits(hits, k)
    return h.any(axis=1).astype(np.float64)


def _discounts(k: int) -> np.ndarray:
    """``1 / log2(i + 2)`` for ranks ``i = 0 .. k-1``, float64 ``[k]``."""
    return 1.0 / np.log2(np.arange(k, dtype=np.float64) + 2.0)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """NDCG@k per user with binary gains.

    ``DCG = sum_{i<k} hit_i / log2(i + 2)`` and ``IDCG = sum_{i<min(n_relevant, k)} 1/log2(i + 2)``
    (the ideal list puts all relevant items first, capped at k), ``ndcg = DCG / IDCG``.

    Args:
        hits: bool ``[U, K]`` hits, best rank first.
        n_relevant: int ``[U]`` size of each user's relevant set (all >= 1, else ValueError).
        k: cutoff, ``1 <= k <= K``.

    Returns:
        float64 ``[U]`` in [0, 1].
    """
    h = _check_hits(hits, k)
    n_rel = _check_n_relevant(n_relevant, h.shape[0])
    disc = _discounts(k)
    dcg = h.astype(np.float64) @ disc
    ideal_len = np.minimum(n_rel.astype(np.int64), k)  # in [1, k]
    idcg = np.cumsum(disc)[ideal_len - 1]
    return dcg / idcg


def mrr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Reciprocal rank of the first hit within the top k, per user (MRR@k before averaging).

    ``1 / (r + 1)`` where ``r`` is the 0-based position of the first hit among the first k
    columns, or 0.0 if there is none.

    Args:
        hits: bool ``[U, K]`` hits, best rank first.
        k: cutoff, ``1 <= k <= K``.

    Returns:
        float64 ``[U]`` in [0, 1].
    """
    h = _check_hits(hits, k)
    first = np.argmax(h, axis=1)  # 0 when no hit; masked below
    return np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0)


def item_coverage_at_k(topk: np.ndarray, k: int, n_items: int) -> float:
    """Catalogue coverage: fraction of the catalogue recommended to at least one user.

    Args:
        topk: int ``[U, K]`` item indices ranked best first; ``-1`` padding is ignored.
        k: cutoff, ``1 <= k <= K``.
        n_items: catalogue size (> 0); item indices must be ``< n_items``.

    Returns:
        ``|distinct items in topk[:, :k]| / n_items`` as a Python float.
    """
    topk = _as_topk(topk)
    _check_k(k, topk.shape[1])
    _check_n_items(n_items)
    items = topk[:, :k]
    items = items[items >= 0]
    if items.size and items.max() >= n_items:
        raise ValueError(f"topk contains item index {items.max()} >= n_items = {n_items}")
    seen = np.zeros(n_items, dtype=bool)
    seen[items] = True
    return float(np.count_nonzero(seen)) / n_items


def _check_n_items(n_items: int) -> None:
    if isinstance(n_items, bool) or not isinstance(n_items, (int, np.integer)) or n_items <= 0:
        raise ValueError(f"n_items must be a positive int, got {n_items!r}")


# ---------------------------------------------------------------------------------------------
# Aggregation (one-shot and streaming)
# ---------------------------------------------------------------------------------------------
class _ExactSum:
    """Exact running sum of float64 values, bounded memory, independent of batching.

    The exact (infinite-precision) sum is kept as a short list of floats whose exact sum it is;
    ``value()`` returns the correctly rounded result (``math.fsum`` of every value ever added).
    Consequently the result does not depend on how the values were split into batches or on
    their order, which is what makes batched evaluation bit-identical to the one-shot one.
    """

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[float] = []

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return
        if not np.all(np.isfinite(values)):
            raise ValueError("metric values must be finite")
        terms = self._parts + values.tolist()
        parts: list[float] = []
        # Peel off correctly rounded partial sums until the exact remainder is zero: every
        # iteration shrinks the remainder by ~2**-53, so this stops after a few rounds.
        for _ in range(64):
            s = math.fsum(terms + [-p for p in parts])
            if s == 0.0:
                break
            parts.append(s)
        self._parts = parts

    def value(self) -> float:
        return math.fsum(self._parts)


class RankingAccumulator:
    """Streaming version of :func:`ranking_metrics` with bounded memory.

    Feed it batch by batch with :meth:`update`; :meth:`result` returns exactly (bit for bit) the
    numbers :func:`ranking_metrics` would give on the concatenation of all batches: per-user
    values are summed exactly (see ``_ExactSum``) and coverage keeps, for each cutoff, a boolean
    ``[n_items]`` array of the items recommended so far.

    Args:
        ks: cutoffs, e.g. ``(10, 20)``; each must be ``<= K`` of the batches given to ``update``.
        n_items: catalogue size (for coverage and index validation).
        metrics: subset of ``("recall", "ndcg", "hit", "mrr", "precision", "coverage")``.

    Attributes:
        n_users: number of users with at least one relevant item seen so far (the denominator of
            every averaged metric). Users with no relevant item are skipped, including for
            coverage.
    """

    def __init__(
        self,
        ks: Sequence[int],
        n_items: int,
        metrics: Iterable[str] = ALL_RANKING_METRICS,
    ) -> None:
        if isinstance(ks, (int, np.integer)):
            ks = [int(ks)]
        ks_list = [int(k) for k in ks]
        if not ks_list:
            raise ValueError("ks must contain at least one cutoff")
        if any(k < 1 for k in ks_list):
            raise ValueError(f"all cutoffs must be >= 1, got {ks_list}")
        _check_n_items(n_items)
        if isinstance(metrics, str):
            metrics = (metrics,)
        metric_list = [m.lower() for m in metrics]
        unknown = sorted(set(metric_list) - set(ALL_RANKING_METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; choose from {ALL_RANKING_METRICS}")
        if not metric_list:
            raise ValueError("metrics must not be empty")
        self.ks: tuple[int, ...] = tuple(dict.fromkeys(ks_list))
        self.n_items = int(n_items)
        self.metrics: tuple[str, ...] = tuple(dict.fromkeys(metric_list))
        self.n_users = 0
        self._sums = {
            f"{m}@{k}": _ExactSum() for m in self.metrics if m != "coverage" for k in self.ks
        }
        self._seen = (
            {k: np.zeros(self.n_items, dtype=bool) for k in self.ks}
            if "coverage" in self.metrics
            else {}
        )

    def update(self, topk_batch: np.ndarray, truth_csr_batch: sp.spmatrix | sp.sparray) -> None:
        """Add a batch of users.

        Args:
            topk_batch: int ``[B, K]`` ranked item indices (``-1`` padding), ``K >= max(ks)``.
            truth_csr_batch: sparse ``[B, n_items]`` ground truth for the same ``B`` users.
        """
        topk = _as_topk(topk_batch)
        indptr, indices, truth_items = _truth_arrays(truth_csr_batch)
        n_batch, n_cols = topk.shape
        if indptr.shape[0] != n_batch + 1:
            raise ValueError(
                f"topk_batch has {n_batch} rows but truth_csr_batch has {indptr.shape[0] - 1}"
            )
        if truth_items != self.n_items:
            raise ValueError(
                f"truth_csr_batch has {truth_items} columns, expected n_items = {self.n_items}"
            )
        for k in self.ks:
            _check_k(k, n_cols)
        if topk.size and topk.max() >= self.n_items:
            raise ValueError(f"topk contains item index {topk.max()} >= n_items = {self.n_items}")

        n_rel_all = np.diff(indptr)
        keep = n_rel_all > 0
        if not np.any(keep):
            return
        hits = hits_matrix(topk, indptr, indices)[keep]
        n_rel = n_rel_all[keep]
        self.n_users += int(keep.sum())

        for k in self.ks:
            for m in self.metrics:
                if m == "coverage":
                    items = topk[keep, :k]
                    self._seen[k][items[items >= 0]] = True
                    continue
                if m == "recall":
                    vals = recall_at_k(hits, n_rel, k)
                elif m == "ndcg":
                    vals = ndcg_at_k(hits, n_rel, k)
                elif m == "hit":
                    vals = hit_rate_at_k(hits, k)
                elif m == "mrr":
                    vals = mrr_at_k(hits, k)
                else:  # precision
                    vals = precision_at_k(hits, k)
                self._sums[f"{m}@{k}"].add(vals)

    def merge(self, other: RankingAccumulator) -> None:
        """Add the users ``other`` has seen (same ks, n_items and metrics), e.g. another
        process's shard of the users: the result is exactly (bit for bit) that of one
        accumulator fed every batch of both."""
        if (other.ks, other.n_items, other.metrics) != (self.ks, self.n_items, self.metrics):
            raise ValueError("cannot merge accumulators of different ks, n_items or metrics")
        self.n_users += other.n_users
        for key, total in self._sums.items():
            total.add(np.asarray(other._sums[key]._parts, dtype=np.float64))
        for k, seen in self._seen.items():
            seen |= other._seen[k]

    def result(self) -> dict[str, float]:
        """Mean of each metric over the users seen so far, keys ``"<metric>@<k>"``.

        Ordered by metric (in the order given) then cutoff. ``coverage@k`` is the fraction of the
        catalogue seen in the top-k lists. With no user seen yet every value is ``nan``.
        """
        out: dict[str, float] = {}
        for m in self.metrics:
            for k in self.ks:
                key = f"{m}@{k}"
                if m == "coverage":
                    out[key] = (
                        float(np.count_nonzero(self._seen[k])) / self.n_items
                        if self.n_users
                        else float("nan")
                    )
                else:
                    out[key] = (
                        self._sums[key].value() / self.n_users if self.n_users else float("nan")
                    )
        return out


def ranking_metrics(
    topk: np.ndarray,
    truth_csr: sp.spmatrix | sp.sparray,
    ks: Sequence[int],
    n_items: int,
    metrics: Iterable[str] = ALL_RANKING_METRICS,
) -> dict[str, float]:
    """Top-K ranking metrics averaged over users with at least one relevant item.

    Args:
        topk: int ``[U, K]`` item indices ranked best first (``-1`` padding), ``K >= max(ks)``.
        truth_csr: sparse ``[U, n_items]`` ground truth (stored non-zeros are relevant).
        ks: cutoffs, e.g. ``(10, 20)``.
        n_items: catalogue size.
        metrics: subset of ``("recall", "ndcg", "hit", "mrr", "precision", "coverage")``.

    Returns:
        ``{"recall@20": ..., "ndcg@20": ..., ...}`` -- mean over users with ``n_relevant >= 1``
        (users without relevant items are skipped, also for coverage); ``nan`` if there is none.
        Identical to feeding the same users to :class:`RankingAccumulator` in any batches.
    """
    acc = RankingAccumulator(ks, n_items, metrics)
    acc.update(topk, truth_csr)
    return acc.result()


# ---------------------------------------------------------------------------------------------
# Click (pointwise) metrics
# ---------------------------------------------------------------------------------------------
def _binary_labels(y_true: np.ndarray, n: int | None = None, name: str = "y_true") -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1:
        y = y.ravel()
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} elements, expected {n}")
    if y.size == 0:
        raise ValueError(f"{name} is empty")
    yf = y.astype(np.float64)
    if not np.all((yf == 0.0) | (yf == 1.0)):
        raise ValueError(f"{name} must contain only 0/1 (or bool) labels")
    return yf


def auc(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """ROC AUC via the Mann-Whitney U statistic with average ranks for ties.

    ``AUC = (sum of ranks of positives - n_pos (n_pos + 1) / 2) / (n_pos * n_neg)`` where ranks are
    1-based average ranks of ``y_score`` (``scipy.stats.rankdata``), i.e. the probability that a
    random positive scores higher than a random negative, ties counting 1/2.

    Args:
        y_true: ``[N]`` binary labels (0/1 or bool).
        y_score: ``[N]`` real-valued scores (higher = more likely positive).

    Returns:
        AUC as a Python float in [0, 1].

    Raises:
        ValueError: if only one class is present (AUC undefined), labels are not binary, shapes
            differ or scores are not finite.
    """
    s = np.asarray(y_score, dtype=np.float64).ravel()
    y = _binary_labels(y_true, s.shape[0])
    if not np.all(np.isfinite(s)):
        raise ValueError("y_score must be finite")
    n_pos = float(y.sum())
    n_neg = float(y.shape[0] - n_pos)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            "AUC is undefined when only one class is present in y_true "
            f"(n_pos={int(n_pos)}, n_neg={int(n_neg)})"
        )
    ranks = rankdata(s, method="average")
    rank_sum_pos = float(ranks[y == 1.0].sum())
    return (rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)


def log_loss(y_true: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy of probabilities.

    ``-mean(y log p + (1 - y) log(1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]``.

    Args:
        y_true: ``[N]`` binary labels (0/1 or bool).
        p: ``[N]`` predicted probabilities of the positive class.
        eps: clipping constant, ``0 < eps < 0.5``.

    Returns:
        Mean log loss (natural log) as a Python float.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}")
    pr = np.asarray(p, dtype=np.float64).ravel()
    y = _binary_labels(y_true, pr.shape[0])
    if np.any(np.isnan(pr)):
        raise ValueError("p contains NaN")
    pr = np.clip(pr, eps, 1.0 - eps)
    losses = -(y * np.log(pr) + (1.0 - y) * np.log1p(-pr))
    return float(losses.mean())


def log_loss_from_logits(y_true: np.ndarray, logits: np.ndarray) -> float:
    """Mean binary cross-entropy computed stably from logits (no clipping needed).

    Uses ``loss = softplus(z) - y z = max(z, 0) - y z + log1p(exp(-|z|))``, equal to
    ``-(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)))`` without overflow for large ``|z|``.

    Args:
        y_true: ``[N]`` binary labels (0/1 or bool).
        logits: ``[N]`` real-valued logits ``z``.

    Returns:
        Mean log loss (natural log) as a Python float.
    """
    z = np.asarray(logits, dtype=np.float64).ravel()
    y = _binary_labels(y_true, z.shape[0])
    if np.any(np.isnan(z)):
        raise ValueError("logits contain NaN")
    losses = np.maximum(z, 0.0) - y * z + np.log1p(np.exp(-np.abs(z)))
    return float(losses.mean())


# ---------------------------------------------------------------------------- neighbours
def category_precision(
    neighbours: np.ndarray, categories: np.ndarray, queries: np.ndarray
) -> float:
    """Mean share of each query item's neighbours [Q, k] that share its category.

    neighbours: int [Q, k] item ids; categories: int [n_items]; queries: int [Q] item ids.
    """
    return float((categories[neighbours] == categories[np.asarray(queries)][:, None]).mean())


def neighbour_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean ``|A_q ∩ B_q| / k`` of two neighbour lists [Q, k] of the same queries."""
    k = a.shape[1]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist())]))
