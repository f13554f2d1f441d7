"""What the system knows of a user when it serves them: their events, and their blocks.

A :class:`UserState` is a user's events oldest first (items, times, engagement, sessions) and
the items they blocked. Offline (evaluation, building the ranker's training data) the states
come from a history :class:`~streamrec.data.dataset.Dataset` through a :class:`HistoryIndex`;
online (the service) from that history plus the events recorded since
(:meth:`UserState.with_events`). Both go through the same system code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamrec.data.dataset import Dataset

_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass
class UserState:
    """A user's events and blocks.

    user: internal user id, or -1 for a user the dataset does not know (a new user seen only
    through their events). items / timestamps: int64 [n], oldest first. engagement / session:
    int64 [n] or None. blocked: int64 item ids never to recommend to them.
    """

    user: int
    items: np.ndarray = field(default_factory=lambda: _EMPTY)
    timestamps: np.ndarray = field(default_factory=lambda: _EMPTY)
    engagement: np.ndarray | None = None
    session: np.ndarray | None = None
    blocked: np.ndarray = field(default_factory=lambda: _EMPTY)

    @property
    def n_events(self) -> int:
        return len(self.items)

    def consumed(self) -> np.ndarray:
        """The distinct items of the user's events, int64 [m]."""
        return np.unique(self.items)

    def last_time(self, default: int = 0) -> int:
        """The time of the latest event (``default`` without events)."""
        return int(self.timestamps[-1]) if len(self.timestamps) else int(default)

    def with_events(
        self,
        items: np.ndarray,
        timestamps: np.ndarray,
        engagement: np.ndarray | None = None,
    ) -> UserState:
        """A new state with these events appended (kept in time order; new events after old
        ones of the same time). Engagement defaults to 0 (click). A new event continues the
        previous event's session when it comes within 30 minutes of it, else starts one."""
        from streamrec.data.features import SESSION_GAP_SECONDS, sessions_from_gaps

        items = np.asarray(items, dtype=np.int64)
        timestamps = np.asarray(timestamps, dtype=np.int64)
        eng = np.zeros(len(items), np.int64) if engagement is None else \
            np.asarray(engagement, dtype=np.int64)
        old_eng = self.engagement if self.engagement is not None else \
            np.zeros(self.n_events, np.int64)
        old_sess = self.session if self.session is not None else \
            sessions_from_gaps(np.zeros(self.n_events, np.int64), self.timestamps)
        all_items = np.concatenate([self.items, items])
        all_ts = np.concatenate([self.timestamps, timestamps])
        all_eng = np.concatenate([old_eng, eng])
        order = np.argsort(all_ts, kind="stable")
        all_items, all_ts, all_eng = all_items[order], all_ts[order], all_eng[order]
        is_new = np.concatenate([np.zeros(self.n_events, bool), np.ones(len(items), bool)])[order]
        sess = np.concatenate([old_sess, np.full(len(items), -1, np.int64)])[order]
        next_id = int(old_sess.max()) + 1 if len(old_sess) else 0
        for j in np.flatnonzero(is_new):
            if j > 0 and all_ts[j] - all_ts[j - 1] <= SESSION_GAP_SECONDS:
                sess[j] = sess[j - 1]
            else:
                sess[j] = next_id
                next_id += 1
        return UserState(self.user, all_items, all_ts, all_eng, sess, self.blocked)


class HistoryIndex:
    """A history dataset sorted by (user, time) once, to cut per-user states from.

    history: the interactions visible at a stage; blocks: internal user id -> blocked items.
    """

    def __init__(self, history: Dataset, blocks: dict[int, np.ndarray] | None = None) -> None:
        self.history = history
        order = history.time_order()
        counts = history.user_counts()
        self.indptr = np.zeros(history.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=self.indptr[1:])
        self.items = history.item[order].astype(np.int64)
        self.timestamps = history.timestamp[order].astype(np.int64)
        inter = history.inter
        self.engagement = inter["engagement"][order].astype(np.int64) \
            if "engagement" in inter else None
        self.session = inter["session"][order].astype(np.int64) if "session" in inter else None
        self.blocks = blocks or {}
        self.max_time = int(history.timestamp.max()) if history.n_interactions else 0

    def state(self, user: int) -> UserState:
        """The state of internal ``user`` (its events in this history and its blocks)."""
        lo, hi = self.indptr[user], self.indptr[user + 1]
        return UserState(
            user=int(user),
            items=self.items[lo:hi],
            timestamps=self.timestamps[lo:hi],
            engagement=None if self.engagement is None else self.engagement[lo:hi],
            session=None if self.session is None else self.session[lo:hi],
            blocked=np.asarray(self.blocks.get(int(user), _EMPTY), dtype=np.int64),
        )

    def states(self, users: np.ndarray) -> list[UserState]:
        """The states of internal ``users`` [B]."""
        return [self.state(int(u)) for u in np.asarray(users)]
