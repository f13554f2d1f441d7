"""Shared fixtures: small generated datasets (tests never use real data)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from streamrec.data.dataset import Dataset
from streamrec.data.splits import make_split
from streamrec.data.world import make_world


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


# ------------------------------------------------------- the tiny world, for text and towers
@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Small models on a shared machine: one torch thread avoids OpenMP spin-waiting (small
    convolutions ran 30x slower with two). Opt in with ``usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    """The ``tiny`` world (seed 0), in memory."""
    return make_world("tiny", seed=0)


@pytest.fixture(scope="module")
def tiny_dir(tiny: Dataset, tmp_path_factory: pytest.TempPathFactory) -> object:
    """The ``tiny`` world saved as a dataset directory."""
    return tiny.save(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="module")
def cold(tiny: Dataset) -> tuple:
    """A cold-items split of the tiny world (seed 0) and its training view."""
    split = make_split(tiny, "cold-items", seed=0)
    return split, split.train(tiny)


# ------------------------------------------------------------ a small system, for the service
@pytest.fixture(scope="session")
def service_system(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A small system directory on the tiny world (session, scores via MF, content neighbours,
    popularity, a learned logistic-regression ranker): built once for the service tests (a few
    seconds). Tests that write events use a log of their own (``events=``)."""
    from streamrec.run import train_run
    from streamrec.serve.system import build_system

    root = tmp_path_factory.mktemp("service")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        make_world("tiny", seed=0).save(root / "data")
        runs = {"tr": ("transformer", ["epochs=2", "d_model=16", "n_heads=2"]),
                "mf": ("mf", ["epochs=2", "dim=16"]),
                "tfidf": ("tfidf-svd", ["dim=16"])}
        for name, (model, options) in runs.items():
            train_run(model, root / "data", root / name, overrides=options, progress=False)
        cfg = {"k": 10,
               "sources": [{"name": "session", "run": str(root / "tr"), "quota": 30},
                           {"name": "mf", "run": str(root / "mf"), "quota": 30},
                           {"name": "content", "kind": "neighbours", "run": str(root / "tfidf"),
                            "quota": 20},
                           {"name": "popular", "kind": "popular", "quota": 20}],
               "ranker": {"kind": "learned", "model": "logreg"},
               "reranker": {"diversity": 0.1, "category_cap": 3}}
        build_system(cfg, root / "system")
    finally:
        torch.set_num_threads(n)
    return root / "system"
