"""Top-k recommendations of a run for a user or for an ad-hoc session (original ids).

* :func:`recommend_user` — any :class:`~streamrec.models.base.Recommender`: the model scores the
  catalogue from the history visible at a stage, seen items are masked;
* :func:`recommend_session` — a :class:`~streamrec.models.base.SessionRecommender` (gru, lstm,
  transformer): the next items after a list of recent items, which need not be any user's.

Both return ranked rows ``[{"rank", "item", "score", "title"?, "category"?}, ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from streamrec.eval.evaluator import rank_users
from streamrec.models.base import Recommender, Session, SessionRecommender, require
from streamrec.run import as_run


def check_k(k: int) -> int:
    """``k`` as an int >= 1, or a one-line ``ValueError``."""
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def recommend_user(
    run: Any, user: str | int, k: int = 10, exclude_seen: bool = True, stage: str = "test"
) -> list[dict[str, Any]]:
    """Top-``k`` items for an original user id, from everything the model may see at ``stage``
    (default ``test``: train + valid); the user's seen items are masked unless
    ``exclude_seen=False``."""
    run = as_run(run)
    k = check_k(k)
    require(run.model, Recommender, "rank the catalogue for a user (it scores impressions; "
            "evaluate it with `streamrec evaluate`)")
    ds = run.dataset
    u = ds.user_index(user)
    history = run.split.history(ds, stage)
    exclude = history.csr() if exclude_seen else sp.csr_matrix((ds.n_users, ds.n_items))
    items, scores = rank_users(run.model, np.array([u]), history, k, exclude=exclude)
    return ds.item_rows(items[0], scores[0])


def recommend_session(
    run: Any, item_ids: Sequence[str | int], k: int = 10, exclude_seen: bool = True
) -> list[dict[str, Any]]:
    """Top-``k`` items after an ad-hoc session of **original** item ids (oldest first); the
    session's own items are not recommended unless ``exclude_seen=False``."""
    run = as_run(run)
    k = check_k(k)
    model = run.model
    require(model, SessionRecommender, "recommend for an ad-hoc session")
    ds = run.dataset
    if not len(item_ids):
        raise ValueError("the session is empty: give at least one item id")
    items = np.array([ds.item_index(i) for i in item_ids], dtype=np.int64)
    scores = model.score_session(Session(items)).clone()
    if exclude_seen:
        scores[torch.as_tensor(items, device=scores.device)] = float("-inf")
    top = torch.topk(scores, min(k, len(scores)))
    return ds.item_rows(top.indices.cpu().numpy(), top.values.cpu().numpy())
