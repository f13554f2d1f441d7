"""Shared fixtures: small generated datasets (tests never use real data)."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.data.dataset import Dataset


def random_dataset(
    n_users: int = 60, n_items: int = 40, per_user: int = 8, seed: int = 0, repeats: bool = False
) -> Dataset:
    """Users with ``per_user`` time-stamped interactions each (optionally with repeated items)."""
    rng = np.random.default_rng(seed)
    users, items, ts = [], [], []
    for u in range(n_users):
        k = rng.integers(2, per_user + 1)
        its = rng.choice(n_items, size=k, replace=repeats)
        users += [u] * k
        items += list(its)
        ts += list(np.sort(rng.integers(0, 10_000, size=k)))
    order = rng.permutation(len(users))  # rows in no particular order
    return Dataset(
        name="random",
        user_ids=[f"u{u}" for u in range(n_users)],
        item_ids=[f"i{i}" for i in range(n_items)],
        inter={
            "user": np.array(users)[order],
            "item": np.array(items)[order],
            "timestamp": np.array(ts)[order],
        },
        items={"category": (np.arange(n_items) % 5).astype(np.int16)},
    )


@pytest.fixture
def small_ds() -> Dataset:
    return random_dataset()
