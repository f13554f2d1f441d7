"""The full-ranking evaluator on cases small enough to check by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrec.data.dataset import Dataset
from streamrec.data.splits import make_split
from streamrec.eval.evaluator import evaluate_ranking, rank_users

from conftest import random_dataset


class FixedScores(torch.nn.Module):
    """A 'model' whose scores are a fixed matrix [n_users, n_items]."""

    name = "fixed"

    def __init__(self, scores: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("s", torch.as_tensor(scores, dtype=torch.float32))
        self.n_items = scores.shape[1]

    @property
    def device(self) -> torch.device:
        return self.s.device

    def score(self, users, history):
        return self.s[users]


def _two_user_world() -> Dataset:
    # user 0: items 0,1 (train) then 2 (valid) then 3 (test), by time
    # user 1: items 4 (train) then 0 (valid) then 5 (test)
    return Dataset(
        name="hand",
        user_ids=["a", "b"],
        item_ids=[f"i{i}" for i in range(6)],
        inter={
            "user": np.array([0, 0, 0, 0, 1, 1, 1]),
            "item": np.array([0, 1, 2, 3, 4, 0, 5]),
            "timestamp": np.array([1, 2, 3, 4, 1, 2, 3]),
        },
    )


def test_full_ranking_by_hand():
    ds = _two_user_world()
    split = make_split(ds, "loo")
    # user 0 prefers items 0 > 1 > 2 > 4 > 3 > 5; 0,1 (train) and 2 (valid) are masked at test
    # -> ranking [4, 3, 5]: test item 3 at rank 2: recall@1 = 0, recall@2 = 1, ndcg@2 = 1/log2(3)
    # user 1 prefers 5 > 0 > ...; 4 (train) and 0 (valid) masked -> 5 first: ndcg@1 = 1
    scores = np.array([[6, 5, 4, 2, 3, 1], [5, 1, 1, 1, 9, 8]], dtype=float)
    res = evaluate_ranking(FixedScores(scores), ds, split, "test", ks=(1, 2))
    m = res["metrics"]
    assert m["recall@1"] == pytest.approx(0.5)  # (0 + 1) / 2
    assert m["recall@2"] == pytest.approx(1.0)
    assert m["ndcg@2"] == pytest.approx((1 / np.log2(3) + 1) / 2)
    assert m["mrr@2"] == pytest.approx((0.5 + 1) / 2)
    assert m["precision@2"] == pytest.approx((0.5 + 0.5) / 2)
    # coverage@1: the two top-1 items are 4 and 5 -> 2 of 6 items
    assert m["coverage@1"] == pytest.approx(2 / 6)
    assert res["protocol"]["users_evaluated"] == 2
    assert res["evaluation"] == "full ranking"


def test_validation_stage_masks_train_only():
    ds = _two_user_world()
    split = make_split(ds, "loo")
    # user 0 valid item 2 competes with 3,4,5 (0,1 masked); user 1 valid item 0 vs 1,2,3,5
    scores = np.array([[9, 9, 1, 5, 4, 3], [2, 1, 1, 1, 9, 8]], dtype=float)
    m = evaluate_ranking(FixedScores(scores), ds, split, "valid", ks=(1, 4))["metrics"]
    assert m["hit@1"] == pytest.approx(0.0)
    assert m["mrr@4"] == pytest.approx((1 / 4 + 1 / 2) / 2)


def test_batching_does_not_change_results():
    ds = random_dataset(n_users=70, n_items=25, seed=3)
    split = make_split(ds, "random", seed=0)
    scores = np.random.default_rng(0).normal(size=(ds.n_users, ds.n_items))
    model = FixedScores(scores)
    a = evaluate_ranking(model, ds, split, "test", ks=(5, 10), batch_size=7)["metrics"]
    b = evaluate_ranking(model, ds, split, "test", ks=(5, 10), batch_size=1000)["metrics"]
    assert a == b


def test_sampled_evaluation_is_labelled_and_easier():
    ds = random_dataset(n_users=70, n_items=40, seed=4)
    split = make_split(ds, "loo")
    model = FixedScores(np.random.default_rng(1).normal(size=(ds.n_users, ds.n_items)))
    full = evaluate_ranking(model, ds, split, "test", ks=(5,))
    samp = evaluate_ranking(model, ds, split, "test", ks=(5,), sampled=5)
    assert samp["evaluation"].startswith("SAMPLED") and samp["protocol"]["sampled_negatives"] == 5
    assert "full ranking" in full["protocol"]["candidates"]
    # with the truth plus 5 negatives, hit@5 is at least 5/6-ish on random scores
    assert samp["metrics"]["hit@5"] > full["metrics"]["hit@5"]


def test_rank_users_excludes_and_pads():
    ds = _two_user_world()
    split = make_split(ds, "loo")
    scores = np.arange(12, dtype=float).reshape(2, 6)
    items, vals = rank_users(FixedScores(scores), np.array([0]), split.history(ds, "test"), k=5)
    # user 0 saw 0, 1, 2 -> remaining 5, 4, 3 then padding
    assert items[0].tolist() == [5, 4, 3, -1, -1]
    assert np.isneginf(vals[0, 3:]).all()


def test_bad_stage():
    ds = _two_user_world()
    with pytest.raises(ValueError, match="stage"):
        evaluate_ranking(FixedScores(np.zeros((2, 6))), ds, make_split(ds, "loo"), "train")
