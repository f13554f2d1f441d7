"""The per-epoch cap on training windows of long histories (sequence models)."""

from __future__ import annotations

import numpy as np

from streamrec.data.dataset import Dataset
from streamrec.data.sequences import (
    build_training_sequences,
    n_sampled_windows,
    sample_windows,
    training_windows,
)


def long_histories() -> Dataset:
    """User 0: 41 events (ceil(40 / 4) = 10 windows of 4), user 1: 9 (2), user 2: 2 (1)."""
    users = np.repeat([0, 1, 2], [41, 9, 2])
    rng = np.random.default_rng(0)
    return Dataset(name="long", user_ids=np.arange(3), item_ids=np.arange(30),
                   inter={"user": users, "item": rng.integers(0, 30, len(users)),
                          "timestamp": np.arange(len(users))})


def test_windows_know_their_sequence_and_rank():
    ds = long_histories()
    windows, sequence, rank = training_windows(ds, max_len=4)
    assert len(windows) == 13 and np.array_equal(np.bincount(sequence), [10, 2, 1])
    assert np.array_equal(rank[:10], np.arange(10)) and np.array_equal(rank[10:], [0, 1, 0])
    assert np.array_equal(windows.items, build_training_sequences(ds, 4).items)


def test_cap_keeps_the_latest_and_samples_the_rest_deterministically():
    _, sequence, rank = training_windows(long_histories(), max_len=4)
    assert n_sampled_windows(sequence, 3) == 3 + 2 + 1
    assert n_sampled_windows(sequence, None) == 13
    a = sample_windows(sequence, rank, 3, np.random.default_rng([0, 5]))
    b = sample_windows(sequence, rank, 3, np.random.default_rng([0, 5]))
    assert np.array_equal(a, b) and len(a) == 6  # the same epoch draws the same windows
    assert {0, 10, 11, 12} <= set(a.tolist())  # every latest window; user 1's two; user 2's
    assert np.all(sequence[a[a < 10]] == 0) and (a < 10).sum() == 3
    seen = set()
    for epoch in range(30):  # over epochs every older window of user 0 comes up
        seen |= set(sample_windows(sequence, rank, 3, np.random.default_rng([0, epoch])).tolist())
    assert seen == set(range(13))
    assert np.array_equal(sample_windows(sequence, rank, None, np.random.default_rng(0)),
                          np.arange(13))
    assert np.array_equal(sample_windows(sequence, rank, 1, np.random.default_rng(0)),
                          [0, 10, 12])


def test_gru_epoch_matches_its_batch_count():
    from streamrec.models.rnn import GRU, RNNConfig

    ds = long_histories()
    model = GRU(RNNConfig(max_len=4, d_model=8, max_windows_per_sequence=2), ds)
    assert model.num_batches(ds, 1) == 2 + 2 + 1
    batches = list(model.batches(ds, 2, np.random.default_rng(0)))
    assert len(batches) == model.num_batches(ds, 2) == 3
    assert sum(len(b["items"]) for b in batches) == 5
