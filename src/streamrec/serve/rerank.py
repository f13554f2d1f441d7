"""The re-ranker: diversity (MMR), a per-category cap and a freshness boost over a ranked list.

Given the ranker's order of a user's candidates with relevance ``r`` (min-max scaled to [0, 1]
over the list), the re-ranker fills the first ``k`` slots greedily (Carbonell & Goldstein's
maximal marginal relevance): at each step it takes the candidate with the largest

    (1 - diversity) * (r_i + freshness * exp(-age_i / fresh_days)) - diversity * max_j cos(e_i, e_j)

over the items ``j`` already placed (``e``: unit item embeddings), skipping a candidate whose
category already holds ``category_cap`` of the placed items (while another candidate is left).
After the first ``k`` the rest follow in the ranker's order. Every weight at 0 (and no cap)
returns the ranker's order unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamrec.common import Options, at_least, in_range


@dataclass
class RerankOptions(Options):
    """Weights of the re-ranker (0 = off): ``diversity`` in [0, 1), ``category_cap`` (items of
    one category in the first ``k``; 0 = no cap), ``freshness`` (boost of a new item, in
    relevance units) with its time scale ``fresh_days``, and ``depth`` (how many of the ranked
    candidates are considered for the first ``k``)."""

    kind = "re-ranker option"

    diversity: float = 0.0
    category_cap: int = 0
    freshness: float = 0.0
    fresh_days: float = 30.0
    depth: int = 100

    def check(self) -> list[str]:
        return [*in_range("diversity", self.diversity, 0, 1, high_open=True),
                *at_least("category_cap", self.category_cap, 0),
                *at_least("freshness", self.freshness, 0),
                *at_least("fresh_days", self.fresh_days, 0, strict=True),
                *at_least("depth", self.depth, 1)]

    @property
    def active(self) -> bool:
        return bool(self.diversity or self.category_cap or self.freshness)


def rerank(
    items: np.ndarray,
    relevance: np.ndarray,
    k: int,
    options: RerankOptions,
    unit_embeddings: np.ndarray | None = None,
    categories: np.ndarray | None = None,
    age_days: np.ndarray | None = None,
) -> np.ndarray:
    """The re-ranked order of a ranked list: positions into ``items`` [n] (a permutation).

    items: int [n] in the ranker's order; relevance: float [n] (the ranker's scores, any scale);
    unit_embeddings: float [n_items, d] unit rows (needed for diversity); categories: int
    [n_items] (for the cap); age_days: float [n] days since each candidate's release (for
    freshness).
    """
    n = len(items)
    if n == 0 or not options.active:
        return np.arange(n)
    depth = min(n, max(options.depth, k))
    rel = np.asarray(relevance[:depth], dtype=np.float64)
    span = rel.max() - rel.min()
    rel = (rel - rel.min()) / span if span > 0 else np.ones(depth)
    if options.freshness and age_days is not None:
        rel = rel + options.freshness * np.exp(-np.maximum(age_days[:depth], 0.0)
                                               / options.fresh_days)
    use_div = options.diversity > 0 and unit_embeddings is not None and unit_embeddings.shape[1]
    emb = unit_embeddings[items[:depth]] if use_div else None
    cats = categories[items[:depth]] if options.category_cap and categories is not None else None
    chosen: list[int] = []
    left = np.ones(depth, dtype=bool)
    max_sim = np.zeros(depth)
    per_cat: dict[int, int] = {}
    for _ in range(min(k, depth)):
        value = (1 - options.diversity) * rel - options.diversity * max_sim
        value = np.where(left, value, -np.inf)
        if cats is not None:
            full = np.array([per_cat.get(int(c), 0) >= options.category_cap for c in cats])
            if (left & ~full).any():
                value = np.where(full, -np.inf, value)
        j = int(np.argmax(value))
        chosen.append(j)
        left[j] = False
        if cats is not None:
            per_cat[int(cats[j])] = per_cat.get(int(cats[j]), 0) + 1
        if emb is not None:
            max_sim = np.maximum(max_sim, emb @ emb[j])
    placed = set(chosen)
    rest = [j for j in range(n) if j not in placed]
    return np.asarray(chosen + rest, dtype=np.int64)
