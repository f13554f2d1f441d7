"""Judging lists against the world's truth: the expected engagement against a simulation of
the ordinal model, the oracle, and the list measures on a case worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.data.dataset import Dataset
from streamrec.data.world import make_world_with_truth
from streamrec.eval.truth import TrueEngagement, list_measures


@pytest.fixture(scope="module")
def world():
    return make_world_with_truth("tiny", seed=0)


def test_expected_engagement_matches_a_simulation_of_the_world(world):
    ds, truth = world
    te = TrueEngagement(truth, ds.meta)
    cfg, cal = ds.meta["world"]["config"], ds.meta["world"]["calibration"]
    rng = np.random.default_rng(0)
    users, items = np.array([3, 3, 40]), np.array([5, 77, 120])
    n = 200_000
    for u, i in zip(users, items):
        aff = (truth.user_latent[u] @ truth.item_latent[i]
               + cfg["noise_std"] * rng.standard_normal(n))
        z = (cfg["engagement_affinity"] * (aff - cal["affinity_mean"]) / cal["affinity_sd"]
             + cfg["engagement_quality"] * truth.item_quality[i]
             + cfg["engagement_noise"] * rng.standard_normal(n))
        level = np.searchsorted(cal["engagement_thresholds"], z) + 1
        assert te.expected(np.array([u]), np.array([i]))[0] == pytest.approx(level.mean(),
                                                                            abs=0.01)
    m = te.matrix(users)
    assert m.shape == (3, ds.n_items) and np.allclose(m[np.arange(3), items],
                                                     te.expected(users, items))


def test_oracle_never_lists_excluded_items(world):
    ds, truth = world
    te = TrueEngagement(truth, ds.meta)
    seen = ds.csr()
    items, values = te.oracle(np.arange(10), seen, 5)
    for u in range(10):
        assert not np.isin(items[u], seen[u].indices).any()
        assert (np.diff(values[u]) <= 0).all()
        rest = np.setdiff1d(np.arange(ds.n_items), np.concatenate([items[u], seen[u].indices]))
        assert values[u, -1] >= te.expected(np.full(len(rest), u), rest).max() - 1e-12


def test_list_measures_by_hand():
    ds = Dataset(name="x", user_ids=["a", "b"], item_ids=["i0", "i1", "i2", "i3"],
                 inter={"user": np.array([0, 0, 0, 1]), "item": np.array([0, 0, 1, 2]),
                        "timestamp": np.arange(4)},
                 items={"category": np.array([0, 0, 1, 1])})
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    lists = np.array([[0, 2], [1, -1]])
    out = list_measures(lists, np.array([0, 1]), ds, ds, None, emb)
    # list 0: items 0, 2 (orthogonal: distance 1); list 1 has one item: no pair, not counted
    assert out["ild"] == pytest.approx(1.0)
    assert out["category_coverage"] == pytest.approx((2 / 2 + 1 / 1) / 2)
    share = (np.array([2, 1, 1, 0]) + 1) / 8
    nov = ((-np.log2(share[0]) - np.log2(share[2])) / 2 - np.log2(share[1])) / 2
    assert out["novelty"] == pytest.approx(nov)
    assert out["catalogue_coverage"] == pytest.approx(3 / 4)
    assert "true_engagement" not in out
