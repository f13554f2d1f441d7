"""Judging recommendation lists against the synthetic world's truth, and by list measures.

Held-out hits say whether a list contained the one item a user happened to consume next. The
world knows more: every user's true latent preferences and every item's true latent and
quality, so it can say how much a user would **truly** engage with any item. In the world a
consumed item's engagement level (0 click, 1 partial view, 2 full view, 3 save, 4 share) is
``#{thresholds below z}`` with

    z = a * (u . v - m) / s  +  q * quality  +  noise,    noise ~ N(0, (a * sigma / s)^2 + e^2)

(``a``, ``q``, ``e`` the engagement weights, ``sigma`` the affinity noise, ``m``, ``s`` the
affinity's mean and sd, all in the dataset's ``meta["world"]``). So the expected engagement of
item ``i`` for user ``u``, in levels 1 (click) .. 5 (share), is

    E[level + 1] = 1 + sum_k Phi((mu_ui - t_k) / sd),   mu_ui = a (u.v_i - m) / s + q quality_i.

:class:`TrueEngagement` computes it; :func:`list_measures` reports, for lists of ``k`` items,
their mean expected engagement, the same for the oracle's lists (the ``k`` unconsumed items of
largest expected engagement) and the ratio, with intra-list diversity, category coverage,
novelty and catalogue coverage, which any dataset has.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import ndtr

from streamrec.data.dataset import Dataset


class TrueEngagement:
    """Expected engagement under a world's true model (see the module docstring).

    truth: the world's :class:`~streamrec.data.world.WorldTruth`; meta: the dataset's
    ``meta`` (its ``world`` entry holds the engagement model's parameters).
    """

    def __init__(self, truth: Any, meta: dict[str, Any]) -> None:
        world = meta.get("world")
        if not world:
            raise ValueError("this dataset is not a synthetic world: it has no true model")
        cfg, cal = world["config"], world["calibration"]
        self.user_latent = np.asarray(truth.user_latent, dtype=np.float64)
        self.item_latent = np.asarray(truth.item_latent, dtype=np.float64)
        self.item_quality = np.asarray(truth.item_quality, dtype=np.float64)
        self.a = float(cfg["engagement_affinity"])
        self.q = float(cfg["engagement_quality"])
        self.mean, self.sd = float(cal["affinity_mean"]), float(cal["affinity_sd"])
        self.thresholds = np.asarray(cal["engagement_thresholds"], dtype=np.float64)
        self.noise = float(np.hypot(self.a * float(cfg["noise_std"]) / self.sd,
                                    float(cfg["engagement_noise"])))

    @classmethod
    def of(cls, ds: Dataset) -> TrueEngagement | None:
        """The true model of a generated world directory, or None (real data, no truth/)."""
        if ds.path is None or "world" not in ds.meta or not (ds.path / "truth").is_dir():
            return None
        from streamrec.data.world import load_truth

        return cls(load_truth(ds.path), ds.meta)

    def _expected(self, mu: np.ndarray) -> np.ndarray:
        z = (mu[..., None] - self.thresholds) / self.noise
        return 1.0 + ndtr(z).sum(-1)

    def expected(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Expected engagement (1..5) of the pairs ``users`` [n] x ``items`` [n] (same shape
        as the inputs, any shape)."""
        users, items = np.asarray(users), np.asarray(items)
        dot = np.einsum("...d,...d->...", self.user_latent[users], self.item_latent[items])
        mu = self.a * (dot - self.mean) / self.sd + self.q * self.item_quality[items]
        return self._expected(mu)

    def matrix(self, users: np.ndarray) -> np.ndarray:
        """Expected engagement of every item for ``users`` [B]: [B, n_items]."""
        dot = self.user_latent[np.asarray(users)] @ self.item_latent.T
        mu = self.a * (dot - self.mean) / self.sd + self.q * self.item_quality[None, :]
        return self._expected(mu)

    def oracle(self, users: np.ndarray, exclude: sp.csr_matrix, k: int,
               batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """The oracle's lists: the ``k`` items of largest expected engagement per user, never
        one in ``exclude`` (CSR [n_users, n_items], e.g. what the user consumed).
        Returns (items int64 [B, k], expected engagement [B, k])."""
        users = np.asarray(users, dtype=np.int64)
        out_i = np.empty((len(users), k), dtype=np.int64)
        out_v = np.empty((len(users), k))
        for s in range(0, len(users), batch):
            u = users[s : s + batch]
            m = self.matrix(u)
            rows = exclude[u].tocoo()
            m[rows.row, rows.col] = -np.inf
            part = np.argpartition(-m, k - 1, axis=1)[:, :k]
            vals = np.take_along_axis(m, part, 1)
            order = np.argsort(-vals, axis=1, kind="stable")
            out_i[s : s + len(u)] = np.take_along_axis(part, order, 1)
            out_v[s : s + len(u)] = np.take_along_axis(vals, order, 1)
        return out_i, out_v


def list_measures(
    lists: np.ndarray,
    users: np.ndarray,
    ds: Dataset,
    history: Dataset,
    truth: TrueEngagement | None = None,
    unit_embeddings: np.ndarray | None = None,
) -> dict[str, float]:
    """Measures of the lists ``lists`` [U, k] (item ids, -1 = empty slot) served to ``users`` [U].

    * ``true_engagement`` / ``oracle_engagement`` / ``engagement_ratio`` (with ``truth``): the
      mean expected engagement of a list's items, of the oracle's list, and their ratio
      (means over users);
    * ``ild``: intra-list diversity, the mean cosine distance between two items of a list
      (over the true item latents when there is a truth, else ``unit_embeddings``), averaged
      over the lists of two or more items;
    * ``category_coverage``: distinct categories in a list / its length (mean over users);
    * ``novelty``: mean ``-log2`` of an item's share of the ``history`` interactions (add-one);
    * ``catalogue_coverage``: the share of the catalogue in at least one list.
    """
    lists = np.asarray(lists, dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    valid = lists >= 0
    safe = np.where(valid, lists, 0)
    n_per = np.maximum(valid.sum(1), 1)
    out: dict[str, float] = {}
    if truth is not None:
        e = truth.expected(np.repeat(users[:, None], lists.shape[1], 1), safe)
        mine = (np.where(valid, e, 0.0).sum(1) / n_per)
        _, best = truth.oracle(users, history.csr(), lists.shape[1])
        out["true_engagement"] = float(mine.mean())
        out["oracle_engagement"] = float(best.mean())
        out["engagement_ratio"] = float(mine.mean() / best.mean())
        vecs = truth.item_latent
        vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    else:
        vecs = unit_embeddings
    if vecs is not None and lists.shape[1] > 1:
        v = vecs[safe] * valid[..., None]
        sims = np.einsum("ukd,ujd->ukj", v, v)
        pairs = valid[:, :, None] & valid[:, None, :] & ~np.eye(lists.shape[1], dtype=bool)
        n_pairs = pairs.sum((1, 2))
        has = n_pairs > 0
        if has.any():
            dist = 1.0 - (sims * pairs).sum((1, 2))[has] / n_pairs[has]
            out["ild"] = float(dist.mean())
    if "category" in ds.items:
        cats = np.asarray(ds.items["category"], dtype=np.int64)
        distinct = [len(np.unique(cats[row[row >= 0]])) for row in lists]
        out["category_coverage"] = float(np.mean(np.asarray(distinct) / n_per))
    counts = np.bincount(history.item, minlength=ds.n_items).astype(np.float64) + 1.0
    share = counts / counts.sum()
    out["novelty"] = float((np.where(valid, -np.log2(share[safe]), 0.0).sum(1) / n_per).mean())
    out["catalogue_coverage"] = float(len(np.unique(lists[valid])) / ds.n_items)
    return out
