"""Candidate sources: each proposes up to ``quota`` items per user, best first, under its name.

A source reaches its model only through the contract (:mod:`streamrec.models.base`); the kind
of source follows from what the model can do:

=============== ================================== ===============================================
kind            model                              proposes
=============== ================================== ===============================================
``retrieval``   a ``VectorRetriever`` (two-tower)  the ANN index's nearest items to the user vector
``session``     a ``SessionRecommender``           the next items after the user's recent events
``scores``      any ``Recommender`` (LightGCN,     the model's top items for the user (from the
                GF-CF, MF, ...)                    history the system was built on)
``neighbours``  an ``ItemEmbedder`` (cnn-text)     the nearest items to the user's recent items:
                                                   the path by which new items (no interactions
                                                   yet, but a text) reach users
``popular``     none                               the most consumed items (optionally trending:
                                                   counts decayed by a half-life): the fallback
                                                   for users nothing else knows
=============== ================================== ===============================================

Sources receive the items a user must not get (consumed, blocked, unavailable) so that no quota
is spent on them; the filter stage of the system still checks. ``retrieval`` and ``scores``
need the user in the dataset; ``session``, ``neighbours`` and ``popular`` also serve a user
known only by the events recorded since.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from streamrec.data.dataset import Dataset
from streamrec.models.base import (
    ItemEmbedder,
    Recommender,
    SessionRecommender,
    VectorRetriever,
    require,
)
from streamrec.serve.state import UserState

#: one user's proposal: (items int64 [m], scores float32 [m]), best first
Proposal = tuple[np.ndarray, np.ndarray]
_NONE: Proposal = (np.zeros(0, np.int64), np.zeros(0, np.float32))


def _top_rows(scores: torch.Tensor, exclude: list[np.ndarray], quota: int) -> list[Proposal]:
    """Top-``quota`` items per row of ``scores`` [B, n_items] after masking ``exclude``."""
    scores = scores.float().clone()
    for r, ex in enumerate(exclude):
        if len(ex):
            scores[r, torch.as_tensor(ex, device=scores.device)] = float("-inf")
    k = min(quota, scores.shape[1])
    top = torch.topk(scores, k, dim=1)
    items, vals = top.indices.cpu().numpy(), top.values.cpu().numpy()
    out = []
    for r in range(len(items)):
        ok = np.isfinite(vals[r])
        out.append((items[r][ok].astype(np.int64), vals[r][ok].astype(np.float32)))
    return out


class Source:
    """Base class of the candidate sources (see the module docstring)."""

    kind: ClassVar[str] = "base"

    def __init__(self, name: str, quota: int) -> None:
        if quota < 1:
            raise ValueError(f"source {name!r}: quota must be >= 1, got {quota}")
        self.name = name
        self.quota = int(quota)

    def propose(
        self, states: list[UserState], exclude: list[np.ndarray], history: Dataset
    ) -> list[Proposal]:
        """Up to ``quota`` items per state, best first, none of them in ``exclude``.

        history: the interactions the system was built on (what model-scored sources read).
        """
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "quota": self.quota}


class ModelSource(Source):
    """A source backed by a trained run."""

    capability: ClassVar[type] = Recommender
    doing: ClassVar[str] = "be a candidate source"

    def __init__(self, name: str, quota: int, run: Any) -> None:
        super().__init__(name, quota)
        require(run.model, self.capability, f"{self.doing} (source {name!r})")
        self.run = run
        self.model = run.model

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model": self.run.config["model"],
                "run": str(self.run.path) if self.run.path is not None else None}


class ScoresSource(ModelSource):
    """The top items of any recommender's scores for the user (known users only)."""

    kind = "scores"
    doing = "rank the catalogue"

    @torch.no_grad()
    def propose(self, states: list[UserState], exclude: list[np.ndarray],
                history: Dataset) -> list[Proposal]:
        out = [_NONE] * len(states)
        known = [r for r, s in enumerate(states) if s.user >= 0]
        if not known:
            return out
        users = torch.as_tensor([states[r].user for r in known], device=self.model.device)
        scores = self.model.score(users, history)
        for r, prop in zip(known, _top_rows(scores, [exclude[r] for r in known], self.quota)):
            out[r] = prop
        return out


class RetrievalSource(ModelSource):
    """The ANN index's nearest items to the user's vector (known users only)."""

    kind = "retrieval"
    capability = VectorRetriever
    doing = "retrieve from an ANN index"

    def __init__(self, name: str, quota: int, run: Any, index: str | None = None) -> None:
        from streamrec.serve.index import run_index

        super().__init__(name, quota, run)
        self.index = run_index(run, index)

    def propose(self, states: list[UserState], exclude: list[np.ndarray],
                history: Dataset) -> list[Proposal]:
        from streamrec.serve.embeddings import user_matrix

        out = [_NONE] * len(states)
        known = [r for r, s in enumerate(states) if s.user >= 0]
        if not known:
            return out
        queries = user_matrix(self.model, np.array([states[r].user for r in known]), history)
        items, scores = self.index.search(queries, self.quota, [exclude[r] for r in known])
        for j, r in enumerate(known):
            ok = items[j] >= 0
            out[r] = (items[j][ok].astype(np.int64), scores[j][ok].astype(np.float32))
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "index": self.index.params.kind}


class SessionSource(ModelSource):
    """The next items after the user's recent events (any user with events)."""

    kind = "session"
    capability = SessionRecommender
    doing = "recommend for a session"

    def sessions(self, states: list[UserState]) -> list[Any]:
        """The session the model reads from each state's events."""
        return [self.model.session_from_events(s.items, s.timestamps, s.engagement)
                for s in states]

    @torch.no_grad()
    def propose(self, states: list[UserState], exclude: list[np.ndarray],
                history: Dataset) -> list[Proposal]:
        out = [_NONE] * len(states)
        active = [r for r, s in enumerate(states) if s.n_events]
        if not active:
            return out
        scores = self.model.score_sessions(self.sessions([states[r] for r in active]))
        for r, prop in zip(active, _top_rows(scores, [exclude[r] for r in active], self.quota)):
            out[r] = prop
        return out


class NeighboursSource(ModelSource):
    """The nearest items (by embedding cosine) to the user's ``recent`` latest items.

    A candidate's score is the largest ``cosine x decay**age`` over the recent items it is a
    neighbour of (``age`` = 0 for the latest item), from a table of each item's ``per_item``
    nearest neighbours computed once.
    """

    kind = "neighbours"
    capability = ItemEmbedder
    doing = "give item embeddings"

    def __init__(self, name: str, quota: int, run: Any, recent: int = 5,
                 per_item: int = 50, decay: float = 0.8,
                 table: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__(name, quota, run)
        self.recent, self.per_item, self.decay = int(recent), int(per_item), float(decay)
        if table is None:
            from streamrec.serve.embeddings import item_matrix, nearest_neighbours

            table = nearest_neighbours(item_matrix(self.model), self.per_item)
        self.neighbours, self.cosines = table

    def propose(self, states: list[UserState], exclude: list[np.ndarray],
                history: Dataset) -> list[Proposal]:
        out = []
        for s, ex in zip(states, exclude):
            if not s.n_events:
                out.append(_NONE)
                continue
            _, first = np.unique(s.items[::-1], return_index=True)
            recent = s.items[::-1][np.sort(first)][: self.recent]  # latest distinct first
            weight = self.decay ** np.arange(len(recent))
            cand = self.neighbours[recent].ravel()
            score = (self.cosines[recent] * weight[:, None]).ravel()
            keep = ~np.isin(cand, ex)
            cand, score = cand[keep], score[keep]
            order = np.lexsort((cand, -score))  # best first; ties by id
            cand, score = cand[order], score[order]
            _, first = np.unique(cand, return_index=True)  # the best score of each item
            first = np.sort(first)[: self.quota]
            out.append((cand[first].astype(np.int64), score[first].astype(np.float32)))
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "recent": self.recent, "per_item": self.per_item,
                "decay": self.decay}


class PopularSource(Source):
    """The most consumed items of the history (``half_life_days``: counts decayed by age,
    a "trending" list); the same list for everyone, minus what each user must not get."""

    kind = "popular"

    def __init__(self, name: str, quota: int, history: Dataset,
                 half_life_days: float | None = None) -> None:
        super().__init__(name, quota)
        weights = None
        if half_life_days is not None and history.n_interactions:
            age = (history.timestamp.max() - history.timestamp) / 86_400.0
            weights = np.power(0.5, age / float(half_life_days))
        counts = np.bincount(history.item, weights=weights, minlength=history.n_items)
        self.order = np.lexsort((np.arange(len(counts)), -counts)).astype(np.int64)
        self.counts = counts.astype(np.float32)
        self.half_life_days = half_life_days

    def propose(self, states: list[UserState], exclude: list[np.ndarray],
                history: Dataset) -> list[Proposal]:
        head = self.order[: self.quota + max((len(e) for e in exclude), default=0)]
        out = []
        for ex in exclude:
            items = head[~np.isin(head, ex)][: self.quota]
            out.append((items, self.counts[items]))
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "half_life_days": self.half_life_days}
