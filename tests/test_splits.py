"""Splits: determinism, shapes, and the proof that nothing held out reaches training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrec.data.splits import DROPPED, TEST, TRAIN, VALID, Split, make_split
from streamrec.eval.evaluator import evaluate_ranking
from streamrec.models.mf import MF, MFConfig
from streamrec.models.pop import PopConfig, Popularity
from streamrec.models.sampling import NegativeSampler

from conftest import random_dataset


def _pairs(ds, mask):
    return set(zip(ds.user[mask].tolist(), ds.item[mask].tolist()))


def test_loo_takes_last_two_by_time(small_ds):
    s = make_split(small_ds, "loo")
    for u in range(small_ds.n_users):
        rows = np.flatnonzero(small_ds.user == u)
        order = rows[np.lexsort((rows, small_ds.timestamp[rows]))]
        assigned = s.assign[order]
        if len(rows) >= 3:
            assert assigned[-1] == TEST and assigned[-2] == VALID
            assert np.all(assigned[:-2] == TRAIN)
        elif len(rows) == 2:
            assert list(assigned) == [TRAIN, TEST]


def test_temporal_cut_is_global(small_ds):
    s = make_split(small_ds, "temporal", valid_quantile=0.7, test_quantile=0.85)
    ts = small_ds.timestamp
    assert ts[s.mask("train")].max() < ts[s.mask("valid")].min()
    assert ts[s.mask("valid")].max() < ts[s.mask("test")].min()
    assert s.params["valid_time"] <= s.params["test_time"]


def test_random_ratios_and_determinism(small_ds):
    a = make_split(small_ds, "random", seed=3, ratios=(0.6, 0.2, 0.2))
    b = make_split(small_ds, "random", seed=3, ratios=(0.6, 0.2, 0.2))
    c = make_split(small_ds, "random", seed=4, ratios=(0.6, 0.2, 0.2))
    assert np.array_equal(a.assign, b.assign) and not np.array_equal(a.assign, c.assign)
    assert abs(a.mask("train").mean() - 0.6) < 0.1


def test_cold_items_never_in_training(small_ds):
    s = make_split(small_ds, "cold-items", seed=1, cold_frac=0.25)
    cold = set(s.cold_items.tolist())
    assert cold and not cold & set(small_ds.item[s.mask("train")].tolist())
    assert set(small_ds.item[s.mask("test")].tolist()) <= cold


def test_given_split_requires_column(small_ds):
    with pytest.raises(Exception, match="no given split"):
        make_split(small_ds, "given")


def test_bad_method_and_params(small_ds):
    with pytest.raises(ValueError, match="unknown split method"):
        make_split(small_ds, "kfold")
    with pytest.raises(ValueError, match="ratios"):
        make_split(small_ds, "random", ratios=(0.5, 0.5, 0.5))


def test_save_load_roundtrip(tmp_path, small_ds):
    s = make_split(small_ds, "cold-items", seed=2)
    s.save(tmp_path)
    t = Split.load(tmp_path)
    assert np.array_equal(s.assign, t.assign) and np.array_equal(s.cold_items, t.cold_items)
    assert t.protocol() == s.protocol()


@pytest.mark.parametrize("method", ["loo", "temporal", "random", "cold-items"])
def test_no_held_out_interaction_reaches_training(method):
    """Every path by which held-out data could leak into training, checked explicitly."""
    ds = random_dataset(n_users=80, n_items=30, per_user=12, repeats=True, seed=5)
    s = make_split(ds, method, seed=1)
    train = s.train(ds)
    held = _pairs(ds, s.assign > TRAIN)
    # 1. history: no held-out (user, item) pair is in the training view, not even as a repeat.
    assert not held & _pairs(train, np.ones(train.n_interactions, bool))
    assert (s.assign == DROPPED).any() or method == "cold-items"
    # the validation-stage history is the training view; test history adds validation only
    assert not _pairs(ds, s.mask("test")) & _pairs(
        s.history(ds, "test"), np.ones(s.history(ds, "test").n_interactions, bool)
    )
    # 2. negatives: the sampler knows only training positives, so held-out items can be drawn
    #    as negatives (it cannot avoid what it never saw) and training positives never are.
    sampler = NegativeSampler(train)
    hu = np.array([u for u, _ in held])
    hi = np.array([i for _, i in held])
    assert not sampler.is_positive(hu, hi).any()
    rng = np.random.default_rng(0)
    neg = sampler.sample(train.user.astype(np.int64), 5, rng)
    assert not sampler.is_positive(np.repeat(train.user, 5), neg.ravel()).any()
    # 3. statistics: a model's statistics are computed from the training view only.
    pop = Popularity(PopConfig(), train)
    pop.fit(train)
    expected = np.bincount(ds.item[s.mask("train")], minlength=ds.n_items)
    assert np.array_equal(pop.counts.numpy(), expected)
    # and the training view the model is built from has exactly the train rows
    assert train.n_interactions == int(s.mask("train").sum())


def test_evaluation_masks_history_and_truth():
    ds = random_dataset(n_users=50, n_items=30, per_user=10, seed=2)
    s = make_split(ds, "loo")
    torch.manual_seed(0)
    model = MF(MFConfig(dim=8), s.train(ds))
    res = evaluate_ranking(model, ds, s, "test", ks=(5, 30))
    # with K = n_items every eligible user's test item is found among the unmasked items
    assert res["metrics"]["hit@30"] == pytest.approx(1.0)
    assert res["protocol"]["masked"] == "train + valid items"
