"""Padded item sequences for session models (GRU/LSTM/transformer), from one dataset view.

Conventions (shared by every sequence model):

* item ids are shifted by +1 so that ``0`` is padding; categories and engagement types too;
* sequences are **left-padded** to ``max_len``: the most recent event is always at the last
  position ``L - 1``, so "the last non-pad position" of every row is ``L - 1``;
* a training example is a window of one time-ordered sequence with inputs ``x[:-1]`` and
  targets ``x[1:]``: one causal pass trains every prefix at once (position ``t`` predicts the
  item after it). Histories longer than ``max_len + 1`` are cut into consecutive windows of
  ``max_len`` (input, target) pairs, the most recent window first, so every event of the
  training view is a target exactly once (except the first of each sequence).

Only the view passed in is read. Built from the **training view** of a split, no held-out item
can reach a training input or target (``tests/test_sequential.py`` checks it on a tiny LOO).

``session_gap_minutes`` cuts a user's history into sessions wherever two consecutive events
are more than that many minutes apart (``None``: the whole history is one sequence).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamrec.data.dataset import Dataset

PAD = 0


@dataclass
class SequenceBatch:
    """Left-padded sequences; every array is int64 [N, L] with 0 = padding (ids + 1).

    items: input item ids; targets: the next item of every input position (training only);
    category / engagement: per-event side ids (``None`` when the dataset has none).
    """

    items: np.ndarray
    targets: np.ndarray | None = None
    category: np.ndarray | None = None
    engagement: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def take(self, rows: np.ndarray) -> SequenceBatch:
        """The rows ``rows`` of every array."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return SequenceBatch(
            self.items[rows], pick(self.targets), pick(self.category), pick(self.engagement)
        )


def item_categories(ds: Dataset) -> np.ndarray | None:
    """Integer category of every item [n_items] (0-based), or ``None`` if there is none."""
    cat = ds.items.get("category")
    if cat is None:
        return None
    cat = np.asarray(cat)
    if cat.dtype.kind not in "iu":
        _, cat = np.unique(cat.astype(str), return_inverse=True)
    return cat.astype(np.int64)


def n_categories(ds: Dataset) -> int:
    """Number of category ids (0 when the dataset has no ``items["category"]``)."""
    cat = item_categories(ds)
    return 0 if cat is None or len(cat) == 0 else int(cat.max()) + 1


@dataclass
class UserSequences:
    """Every user's events in time order, CSR-style.

    indptr [n_users + 1]; items / category / engagement [n_events] (0-based ids, or ``None``);
    user ``u``'s events are ``indptr[u]:indptr[u + 1]``.
    """

    indptr: np.ndarray
    items: np.ndarray
    category: np.ndarray | None
    engagement: np.ndarray | None
    timestamp: np.ndarray


def user_sequences(ds: Dataset) -> UserSequences:
    """Time-ordered events per user of ``ds`` (ties broken by the original row order)."""
    order = ds.time_order()
    counts = ds.user_counts()
    indptr = np.zeros(ds.n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    items = ds.item[order].astype(np.int64)
    cats = item_categories(ds)
    eng = ds.inter.get("engagement")
    return UserSequences(
        indptr=indptr,
        items=items,
        category=None if cats is None else cats[items],
        engagement=None if eng is None else np.asarray(eng)[order].astype(np.int64),
        timestamp=ds.timestamp[order],
    )


def _segments(seqs: UserSequences, session_gap_minutes: float | None) -> np.ndarray:
    """Start offsets of the sequences (users, or sessions within users), plus the end."""
    n = len(seqs.items)
    starts = np.zeros(n, dtype=bool)
    starts[seqs.indptr[:-1][seqs.indptr[:-1] < n]] = True
    if session_gap_minutes is not None and n > 1:
        gap = np.diff(seqs.timestamp) > session_gap_minutes * 60.0
        starts[1:] |= gap
    return np.append(np.flatnonzero(starts), n)


def build_training_sequences(
    train: Dataset, max_len: int = 50, session_gap_minutes: float | None = None
) -> SequenceBatch:
    """Training windows of the training view (see the module docstring).

    Returns a :class:`SequenceBatch` with ``items`` / ``targets`` (and side ids) of shape
    [n_windows, max_len]; a sequence of ``n`` events gives ``ceil((n - 1) / max_len)`` windows;
    sequences of one event give none.
    """
    return training_windows(train, max_len, session_gap_minutes)[0]


def training_windows(
    train: Dataset, max_len: int = 50, session_gap_minutes: float | None = None
) -> tuple[SequenceBatch, np.ndarray, np.ndarray]:
    """:func:`build_training_sequences` with where each window comes from:
    ``(windows, sequence [W], rank [W])``: ``sequence`` numbers the user history (or session)
    a window is cut from, ``rank`` is 0 for its most recent window, 1 for the one before, ...
    (windows of one sequence are consecutive rows, most recent first)."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    seqs = user_sequences(train)
    bounds = _segments(seqs, session_gap_minutes)
    start, length = bounds[:-1], np.diff(bounds)
    pairs = length - 1  # (input, target) pairs of each sequence
    keep = pairs > 0
    start, pairs = start[keep], pairs[keep]
    n_win = -(-pairs // max_len)
    seg = np.repeat(np.arange(len(start)), n_win)
    k = np.arange(len(seg)) - np.repeat(np.cumsum(n_win) - n_win, n_win)  # 0 = most recent
    end = pairs[seg] - k * max_len  # one past the window's last pair, within the sequence
    begin = np.maximum(0, end - max_len)
    j = np.arange(max_len)
    rel = end[:, None] - max_len + j[None, :]  # pair index of each slot [W, L]
    valid = rel >= begin[:, None]
    pos = start[seg][:, None] + np.where(valid, rel, 0)  # absolute event index of the input

    def gather(col: np.ndarray | None, shift: int) -> np.ndarray | None:
        if col is None:
            return None
        return np.where(valid, col[pos + shift] + 1, PAD).astype(np.int64)

    windows = SequenceBatch(
        items=gather(seqs.items, 0),
        targets=gather(seqs.items, 1),
        category=gather(seqs.category, 0),
        engagement=gather(seqs.engagement, 0),
    )
    return windows, seg.astype(np.int64), k.astype(np.int64)


def sample_windows(sequence: np.ndarray, rank: np.ndarray, cap: int | None,
                   rng: np.random.Generator) -> np.ndarray:
    """Indices of the windows one epoch trains on when each sequence gives at most ``cap``:
    its most recent window always, and ``cap - 1`` of its older ones drawn without replacement
    with ``rng`` (all of them for a sequence with ``cap`` or fewer; ``cap=None``: every
    window). The count, :func:`n_sampled_windows`, does not depend on ``rng``."""
    if cap is None:
        return np.arange(len(rank))
    keep = rank < 1 if cap >= 1 else np.zeros(len(rank), dtype=bool)
    if cap > 1:
        # a random key per older window; keep the cap - 1 smallest keys of each sequence
        key = rng.random(len(rank)) + sequence * 2.0  # sorted by sequence, then key
        older = rank > 0
        order = np.flatnonzero(older)[np.argsort(key[older], kind="stable")]
        seq_sorted = sequence[order]
        first = np.searchsorted(seq_sorted, seq_sorted, side="left")
        keep[order[np.arange(len(order)) - first < cap - 1]] = True
    return np.flatnonzero(keep)


def n_sampled_windows(sequence: np.ndarray, cap: int | None) -> int:
    """How many windows :func:`sample_windows` keeps per epoch."""
    if cap is None:
        return len(sequence)
    counts = np.bincount(sequence) if len(sequence) else np.zeros(0, dtype=np.int64)
    return int(np.minimum(counts, cap).sum())


def last_items(
    history: Dataset | UserSequences,
    users: np.ndarray,
    max_len: int = 50,
    session_gap_minutes: float | None = None,
) -> SequenceBatch:
    """The most recent ``max_len`` events of each user in ``history``, left-padded.

    users: int [B] internal ids. With ``session_gap_minutes``, only the events after the
    user's last inactivity gap (the current session) are kept. Returns a
    :class:`SequenceBatch` of [B, max_len] arrays (no targets); a user with no history gets an
    all-padding row.
    """
    seqs = history if isinstance(history, UserSequences) else user_sequences(history)
    users = np.asarray(users, dtype=np.int64)
    lo, hi = seqs.indptr[users], seqs.indptr[users + 1]
    if session_gap_minutes is not None and len(seqs.items) > 1:
        gap = np.zeros(len(seqs.items), dtype=bool)
        gap[1:] = np.diff(seqs.timestamp) > session_gap_minutes * 60.0
        # the last gap start at or before each user's end: cumulative max of gap positions
        last_gap = np.maximum.accumulate(np.where(gap, np.arange(len(gap)), -1))
        lo = np.where(hi > lo, np.maximum(lo, last_gap[np.maximum(hi - 1, 0)]), lo)
    j = np.arange(max_len)
    pos = hi[:, None] - max_len + j[None, :]  # [B, L]
    valid = pos >= lo[:, None]
    safe = np.where(valid, pos, 0)

    def gather(col: np.ndarray | None) -> np.ndarray | None:
        if col is None:
            return None
        if len(col) == 0:
            return np.zeros((len(users), max_len), dtype=np.int64)
        return np.where(valid, col[safe] + 1, PAD).astype(np.int64)

    return SequenceBatch(
        items=gather(seqs.items),
        category=gather(seqs.category),
        engagement=gather(seqs.engagement),
    )


def pad_session(
    item_ids: np.ndarray,
    max_len: int = 50,
    categories: np.ndarray | None = None,
    engagement: np.ndarray | None = None,
) -> SequenceBatch:
    """One ad-hoc session (0-based internal item ids, oldest first) as a [1, max_len] batch.

    categories: the category of every catalogue item [n_items] (or ``None``); engagement:
    per-event engagement ids [n] (or ``None``: then "click", id 0, is assumed when needed).
    """
    items = np.asarray(item_ids, dtype=np.int64)[-max_len:]
    n = len(items)
    row = np.zeros((1, max_len), dtype=np.int64)
    row[0, max_len - n :] = items + 1
    cat = None
    if categories is not None:
        cat = np.zeros_like(row)
        cat[0, max_len - n :] = categories[items] + 1
    eng = np.zeros_like(row)
    e = np.zeros(n, dtype=np.int64) if engagement is None else np.asarray(engagement)[-max_len:]
    eng[0, max_len - n :] = e + 1
    return SequenceBatch(items=row, category=cat, engagement=eng)
