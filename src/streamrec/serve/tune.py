"""Choosing the re-ranker's weights on validation users, with the truth table.

For each setting of a small grid (diversity x category cap x freshness), the system's ranked
candidates of the tuning users (validation users the ranker did not learn from; history =
training view) are re-ranked and judged: NDCG@10 / Recall@10 of the held-out validation item
and the list measures of :func:`~streamrec.eval.truth.list_measures` (on a world, the true
expected engagement). The rule: among the settings whose NDCG@10 and (on a world) true
engagement ratio are both within ``slack`` of the best setting's, take the one with the most
intra-list diversity. Diversity is bought only where it costs (almost) nothing.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset
from streamrec.data.splits import Split
from streamrec.eval.truth import TrueEngagement, list_measures
from streamrec.serve.rerank import RerankOptions, rerank
from streamrec.serve.state import HistoryIndex

GRID = {"diversity": (0.0, 0.1, 0.2, 0.3), "category_cap": (0, 3), "freshness": (0.0, 0.1)}


def tune_reranker(
    system: Any,
    ds: Dataset,
    split: Split,
    users: np.ndarray,
    console: Any = None,
    k: int = 10,
    slack: float = 0.02,
    max_users: int = 2000,
    grid: dict[str, tuple] | None = None,
) -> tuple[RerankOptions, list[dict[str, Any]]]:
    """The chosen :class:`RerankOptions` and the table of every setting (see the module
    docstring). ``users``: the tuning users (at most ``max_users`` of them are used)."""
    grid = grid or GRID
    users = np.asarray(users, dtype=np.int64)[:max_users]
    if not len(users):
        return system.reranker, []
    train = split.train(ds)
    valid = split.part(ds, "valid")
    target = np.full(ds.n_users, -1, dtype=np.int64)
    target[valid.user] = valid.item
    index = HistoryIndex(train, system.blocks)
    truth = TrueEngagement.of(ds)
    lists: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for s in range(0, len(users), 256):
        states = index.states(users[s : s + 256])
        t = system.default_times(states, int(train.timestamp.max()) + 1)
        for served, tt in zip(system.serve(states, train, k=k, t=t, stages=("ranker",)), t):
            ages = (tt - system.catalogue.release_ts[served.items]) / 86_400.0
            lists.append((served.items, served.scores, ages))
    rows = []
    base = dict(system.reranker.to_dict())
    for values in itertools.product(*grid.values()):
        opts = RerankOptions.from_dict({**base, **dict(zip(grid, values))})
        top = np.full((len(users), k), -1, dtype=np.int64)
        for r, (items, scores, ages) in enumerate(lists):
            order = rerank(items, scores, k, opts, system.unit_embeddings,
                           system.catalogue.category, ages)[:k]
            top[r, : len(order)] = items[order]
        hit = top == target[users][:, None]
        pos = np.argmax(hit, axis=1)
        found = hit.any(1)
        ndcg = np.where(found, 1.0 / np.log2(pos + 2.0), 0.0)
        row = {**dict(zip(grid, values)), f"ndcg@{k}": float(ndcg.mean()),
               f"recall@{k}": float(found.mean()),
               **list_measures(top, users, ds, train, truth, system.unit_embeddings)}
        rows.append(row)
    keys = [f"ndcg@{k}"] + (["engagement_ratio"] if truth is not None else [])
    best = {key: max(r[key] for r in rows) for key in keys}
    ok = [r for r in rows if all(r[key] >= (1 - slack) * best[key] for key in keys)]
    chosen = max(ok, key=lambda r: (r.get("ild", 0.0), -r["diversity"], -r["freshness"]))
    for r in rows:
        r["chosen"] = r is chosen
    if console is not None:
        shown = "; ".join(f"{key} {chosen[key]:.4f} (best {best[key]:.4f})" for key in keys)
        console.print(f"re-ranker: chose {', '.join(f'{g}={chosen[g]}' for g in grid)} "
                      f"({shown}; ild {chosen.get('ild', 0):.3f})")
    return RerankOptions.from_dict({**base, **{g: chosen[g] for g in grid}}), rows
