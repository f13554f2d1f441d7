"""The 20 click features of a (user, item) pair at a time ``t``: one function, everywhere.

:func:`click_features` computes them from what a platform observes before ``t``: the user's
events (item, time, session), the user's profile and the item's catalogue entry. The same
function builds

* the features of the synthetic world's impressions (the click models' training data),
* the features the system's ranker scores candidates with at request time, and
* the features of the candidates the ranker is retrained on,

so there is no train / serve skew: the inputs are the same tables and the same code.

Features (in :data:`FEATURE_NAMES` order; "before t" = strictly earlier events):

============================== ==================================================================
user (10)                      log(1 + events in the 30 days before t); sessions started in the 7
                               days before t; mean minutes of the user's sessions so far (first to
                               last event before t); entropy of the categories of past events;
                               log(1 + days since the last event), 60 days without events;
                               subscription tier; platform one-hot (mobile, desktop, tablet);
                               days since signup
item (5)                       observed log popularity; days since release; duration in minutes;
                               the category's click rate; observed quality
user x item (5)                the item category's share of the user's past events; log(1 +
                               their count); log(1 + days since the last of them), 365 without;
                               cosine of the item's vector with the sum of the past events'
                               vectors (0 without history or vectors); whether the user consumed
                               the item's predecessor (previous episode) before t
============================== ==================================================================

Sessions come from the event log's session ids (or, without them, from gaps of 30 minutes
between a user's events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset

DAY = 86_400
SESSION_GAP_SECONDS = 30 * 60
_TIME_SPAN = np.int64(1) << np.int64(33)  # composite keys: group * _TIME_SPAN + (ts - t0)

FEATURE_NAMES = (
    # user (10)
    "user_log_interactions_30d",
    "user_sessions_7d",
    "user_avg_session_minutes",
    "user_category_entropy",
    "user_log_recency_days",
    "user_tier",
    "user_platform_mobile",
    "user_platform_desktop",
    "user_platform_tablet",
    "user_tenure_days",
    # item (5)
    "item_log_popularity",
    "item_age_days",
    "item_duration_min",
    "item_category_ctr",
    "item_quality",
    # user x item (5)
    "ui_category_share",
    "ui_log_category_count",
    "ui_log_days_since_category",
    "ui_history_similarity",
    "ui_next_episode",
)
FEATURE_GROUPS = ("user",) * 10 + ("item",) * 5 + ("user_item",) * 5


@dataclass
class Profiles:
    """The users' observable profiles, all [n_users]: ``tier`` int, ``platform`` int (0 mobile,
    1 desktop, 2 tablet, -1 unknown), ``signup_ts`` int64 seconds."""

    tier: np.ndarray
    platform: np.ndarray
    signup_ts: np.ndarray

    @classmethod
    def from_dataset(cls, ds: Dataset) -> Profiles:
        """The profiles of a dataset's users (a missing column: tier 0, platform unknown,
        signup at time 0)."""
        users, m = ds.users, ds.n_users

        def col(name: str, dtype: Any, fill: Any) -> np.ndarray:
            return np.asarray(users[name]).astype(dtype) if name in users else \
                np.full(m, fill, dtype=dtype)

        return cls(col("tier", np.int64, 0), col("platform", np.int64, -1),
                   col("signup_ts", np.int64, 0))

    def take(self, users: np.ndarray, unknown: Profiles | None = None) -> Profiles:
        """The profiles of ``users`` [B] (internal ids; -1: a user the dataset does not know,
        who gets tier 0, platform unknown and the signup time in ``unknown``, if given)."""
        users = np.asarray(users, dtype=np.int64)
        known = users >= 0
        safe = np.where(known, users, 0)
        tier = np.where(known, self.tier[safe] if len(self.tier) else 0, 0)
        plat = np.where(known, self.platform[safe] if len(self.platform) else -1, -1)
        sign = np.where(known, self.signup_ts[safe] if len(self.signup_ts) else 0, 0)
        if unknown is not None:
            sign = np.where(known, sign, unknown.signup_ts)
        return Profiles(tier.astype(np.int64), plat.astype(np.int64), sign.astype(np.int64))


@dataclass
class Catalogue:
    """The observable item tables the features read, all [n_items]: ``category`` int64,
    ``release_ts`` int64 (seconds), ``duration_min`` float, ``log_popularity`` float,
    ``quality`` float, ``predecessor`` int64 (the previous episode, -1 for none), ``vectors``
    float32 [n_items, d] (the platform's item vectors; d = 0 for none); ``category_ctr`` float
    [n_categories].
    """

    category: np.ndarray
    release_ts: np.ndarray
    duration_min: np.ndarray
    log_popularity: np.ndarray
    quality: np.ndarray
    predecessor: np.ndarray
    vectors: np.ndarray
    category_ctr: np.ndarray
    #: unit-normalised ``vectors`` (computed once)
    unit_vectors: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        v = np.asarray(self.vectors, dtype=np.float32)
        if v.ndim != 2:
            v = np.zeros((len(self.category), 0), dtype=np.float32)
        self.vectors = v
        norms = np.linalg.norm(v, axis=1, keepdims=True) if v.shape[1] else np.ones((len(v), 1))
        self.unit_vectors = (v / np.maximum(norms, 1e-12)).astype(np.float32)

    @property
    def n_items(self) -> int:
        return len(self.category)

    @classmethod
    def from_dataset(
        cls, ds: Dataset, vectors: np.ndarray | None = None, history: Dataset | None = None
    ) -> Catalogue:
        """The catalogue of a dataset; a column it lacks gets a neutral value.

        Item columns read: ``category``, ``release_ts``, ``duration_min``, ``log_popularity``
        (else ``log(1 + interactions in history)``), ``quality`` (else the mean rating in
        history, centred, or 0), ``predecessor``, ``vector`` (the platform's item vectors; or
        ``vectors`` given here, e.g. a trained model's item embeddings); the category click
        rates ``meta["category_ctr"]`` (a world's are in its calibration).
        ``history``: the interactions popularity and quality may be counted from (default:
        ``ds``); pass the training view so nothing held out leaks into the features.
        """
        n = ds.n_items
        items = ds.items
        hist = ds if history is None else history
        cat = np.asarray(items["category"], dtype=np.int64) if "category" in items else \
            np.zeros(n, dtype=np.int64)
        n_cat = int(max(cat.max(initial=-1) + 1, len(ds.meta.get("categories", []) or [])))
        if "log_popularity" in items:
            log_pop = np.asarray(items["log_popularity"], dtype=np.float64)
        else:
            log_pop = np.log1p(np.bincount(hist.item, minlength=n)).astype(np.float64)
        if "quality" in items:
            quality = np.asarray(items["quality"], dtype=np.float64)
        elif "rating" in hist.inter and hist.n_interactions:
            r = hist.inter["rating"].astype(np.float64)
            s = np.bincount(hist.item, weights=r, minlength=n)
            c = np.bincount(hist.item, minlength=n)
            quality = np.where(c > 0, s / np.maximum(c, 1) - r.mean(), 0.0)
        else:
            quality = np.zeros(n)
        if vectors is None and "vector" in items:
            vectors = np.asarray(items["vector"], dtype=np.float32)
        world = ds.meta.get("world") or {}
        ctr = np.asarray(ds.meta.get("category_ctr", world.get("calibration", {}).get(
            "category_ctr") or []), dtype=np.float64)
        if len(ctr) < n_cat:
            ctr = np.concatenate([ctr, np.zeros(n_cat - len(ctr))])

        def col(name: str, dtype: Any, fill: Any) -> np.ndarray:
            return np.asarray(items[name]).astype(dtype) if name in items else \
                np.full(n, fill, dtype=dtype)

        return cls(
            category=cat,
            release_ts=col("release_ts", np.int64, 0),
            duration_min=col("duration_min", np.float64, 0.0),
            log_popularity=log_pop,
            quality=quality,
            predecessor=col("predecessor", np.int64, -1),
            vectors=vectors if vectors is not None else np.zeros((n, 0), np.float32),
            category_ctr=ctr,
        )


def sessions_from_gaps(user: np.ndarray, ts: np.ndarray, gap: int = SESSION_GAP_SECONDS
                       ) -> np.ndarray:
    """Session ids int64 [E] for events sorted by (user, time): a new session starts at a
    user's first event and after every gap longer than ``gap`` seconds."""
    new = np.ones(len(user), dtype=bool)
    if len(user) > 1:
        new[1:] = (user[1:] != user[:-1]) | (np.diff(ts) > gap)
    return np.cumsum(new) - 1


class Events:
    """An event log sorted by (user, time), with the running sums the features need.

    user, item, ts: int arrays [E] (global ids, seconds); session: int [E] (ids; ``None``:
    from 30-minute gaps); catalogue: for the item categories and vectors. Rows need not be
    sorted (they are sorted here, ties kept in input order).
    """

    def __init__(self, user: np.ndarray, item: np.ndarray, ts: np.ndarray,
                 session: np.ndarray | None, catalogue: Catalogue) -> None:
        order = np.lexsort((np.arange(len(user)), ts, user))
        self.user = np.asarray(user, dtype=np.int64)[order]
        self.item = np.asarray(item, dtype=np.int64)[order]
        self.ts = np.asarray(ts, dtype=np.int64)[order]
        if session is None:
            session = sessions_from_gaps(self.user, self.ts)
        else:
            session = np.asarray(session, dtype=np.int64)[order]
        self.t0 = np.int64(self.ts.min()) - 400 * DAY if len(self.ts) else np.int64(0)
        E = len(self.user)
        # a session starts at a user's first event and wherever the session id changes
        first = np.ones(E, dtype=bool)
        if E > 1:
            first[1:] = (self.user[1:] != self.user[:-1]) | (session[1:] != session[:-1])
        start_idx = np.maximum.accumulate(np.where(first, np.arange(E), 0))
        # minutes since the session's first event: its increment per event telescopes, so a
        # prefix sum over events before t is the summed length of the sessions so far
        elapsed = (self.ts - self.ts[start_idx]).astype(np.float64)
        step = np.zeros(E)
        if E > 1:
            same = ~first[1:]
            step[1:] = np.where(same, elapsed[1:] - elapsed[:-1], 0.0)
        self.cum_elapsed = np.concatenate([[0.0], np.cumsum(step)])
        self.cum_first = np.concatenate([[0], np.cumsum(first)])
        self.key = self.user * _TIME_SPAN + (self.ts - self.t0)
        # per (user, category): order, keys and the entropy increments
        self.category = catalogue.category[self.item] if E else np.zeros(0, np.int64)
        self.n_categories = max(1, len(catalogue.category_ctr),
                                int(catalogue.category.max(initial=-1)) + 1)
        uc_order = np.lexsort((np.arange(E), self.ts, self.category, self.user))
        group = self.user[uc_order] * self.n_categories + self.category[uc_order]
        self.uc_order = uc_order
        self.uc_key = group * _TIME_SPAN + (self.ts[uc_order] - self.t0)
        starts = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]])) \
            if E else np.zeros(0, np.int64)
        run = np.diff(np.append(starts, E))
        rank = np.arange(E) - np.repeat(starts, run)  # 0-based within (user, category)
        inc = np.empty(E)
        inc[uc_order] = _xlogx(rank + 1.0) - _xlogx(rank.astype(np.float64))
        self.cum_xlogx = np.concatenate([[0.0], np.cumsum(inc)])
        # running sum of the events' unit vectors
        d = catalogue.unit_vectors.shape[1]
        self.cum_vec = np.zeros((E + 1, d), dtype=np.float64)
        if d and E:
            np.cumsum(catalogue.unit_vectors[self.item], axis=0, out=self.cum_vec[1:])
        # (user, item) pairs for the next-episode feature
        n_items = catalogue.n_items
        pair = self.user * n_items + self.item
        self.pair_order = np.argsort(pair, kind="stable")
        self.pair_sorted = pair[self.pair_order]
        self.n_items = n_items

    def __len__(self) -> int:
        return len(self.user)

    def history_range(self, users: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``[lo, end)`` of each user's events strictly before ``t`` (ints [n] each)."""
        users = np.asarray(users, dtype=np.int64)
        t_rel = np.clip(np.asarray(t, dtype=np.int64) - self.t0, 0, _TIME_SPAN - 1)
        base = users * _TIME_SPAN
        lo = np.searchsorted(self.key, base, side="left")
        return lo, np.searchsorted(self.key, base + t_rel, side="left")

    def last_item_before(self, users: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Each user's latest item strictly before ``t``, int64 [n] (-1 without one)."""
        lo, end = self.history_range(users, t)
        if not len(self.item):
            return np.full(len(lo), -1, dtype=np.int64)
        return np.where(end > lo, self.item[np.maximum(end - 1, 0)], -1)


def _xlogx(c: np.ndarray) -> np.ndarray:
    return c * np.log(np.maximum(c, 1.0))


def click_features(
    events: Events,
    catalogue: Catalogue,
    profiles: Profiles,
    users: np.ndarray,
    items: np.ndarray,
    t: Any,
) -> np.ndarray:
    """The 20 features (:data:`FEATURE_NAMES`) of each query (user, item, time), float32 [n, 20].

    users: int [n] ids of the event log and rows of ``profiles``; items: int [n] item ids; t: int
    [n] seconds, or one time for every query. Only the user's events strictly before ``t`` count.
    See the module docstring for the definitions.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    n = len(users)
    t = np.broadcast_to(np.asarray(t, dtype=np.int64), (n,)).copy()
    cat = catalogue
    ev = events
    t_rel = np.clip(t - ev.t0, 0, _TIME_SPAN - 1)  # times before the log start see no events
    base = users * _TIME_SPAN
    h_lo, h_end = ev.history_range(users, t)
    n_hist = h_end - h_lo
    has = n_hist > 0
    n30 = h_end - np.maximum(np.searchsorted(ev.key, base + t_rel - 30 * DAY, side="left"), h_lo)
    i7 = np.maximum(np.searchsorted(ev.key, base + t_rel - 7 * DAY, side="left"), h_lo)
    sessions7 = ev.cum_first[h_end] - ev.cum_first[i7]
    n_sess = ev.cum_first[h_end] - ev.cum_first[h_lo]
    total_sec = ev.cum_elapsed[h_end] - ev.cum_elapsed[h_lo]
    avg_min = np.where(n_sess > 0, total_sec / np.maximum(n_sess, 1) / 60.0, 0.0)
    sum_xlogx = ev.cum_xlogx[h_end] - ev.cum_xlogx[h_lo]
    entropy = np.where(has, np.log(np.maximum(n_hist, 1)) - sum_xlogx / np.maximum(n_hist, 1),
                       0.0)
    entropy = np.maximum(entropy, 0.0)
    last = np.maximum(h_end - 1, 0)
    last_ts = ev.ts[last] if len(ev) else np.zeros(n, np.int64)
    recency = np.where(has, (t - last_ts) / DAY, 60.0)
    tier = profiles.tier[users]
    plat = profiles.platform[users]
    tenure = (t - profiles.signup_ts[users]) / DAY

    icat = cat.category[items]
    age_days = (t - cat.release_ts[items]) / DAY
    ctr = cat.category_ctr[icat] if len(cat.category_ctr) else np.zeros(n)

    g = (users * ev.n_categories + icat) * _TIME_SPAN
    c_end = np.searchsorted(ev.uc_key, g + t_rel, side="left")
    c_cnt = c_end - np.searchsorted(ev.uc_key, g, side="left")
    c_share = c_cnt / np.maximum(n_hist, 1)
    last_c = ev.ts[ev.uc_order][np.maximum(c_end - 1, 0)] if len(ev) else np.zeros(n, np.int64)
    days_c = np.where(c_cnt > 0, (t - last_c) / DAY, 365.0)
    if cat.unit_vectors.shape[1]:
        hist_vec = ev.cum_vec[h_end] - ev.cum_vec[h_lo]
        ivec = cat.unit_vectors[items].astype(np.float64)
        cos = (hist_vec * ivec).sum(axis=1) / np.maximum(
            np.linalg.norm(hist_vec, axis=1) * np.linalg.norm(ivec, axis=1), 1e-12)
        sim = np.where(has, cos, 0.0)
    else:
        sim = np.zeros(n)
    pred = cat.predecessor[items]
    q = users * ev.n_items + np.maximum(pred, 0)
    if len(ev):
        j = np.minimum(np.searchsorted(ev.pair_sorted, q), len(ev) - 1)
        next_ep = (pred >= 0) & (ev.pair_sorted[j] == q) & (ev.ts[ev.pair_order][j] < t)
    else:
        next_ep = np.zeros(n, dtype=bool)

    columns = (
        np.log1p(n30), sessions7, avg_min, entropy, np.log1p(np.maximum(recency, 0.0)),
        tier, plat == 0, plat == 1, plat == 2, tenure,
        cat.log_popularity[items], age_days, cat.duration_min[items], ctr, cat.quality[items],
        c_share, np.log1p(c_cnt), np.log1p(np.maximum(days_c, 0.0)), sim, next_ep,
    )  # fmt: skip
    out = np.empty((n, len(columns)), dtype=np.float32)
    for j_col, col in enumerate(columns):
        out[:, j_col] = col
    return out
