"""Tests for streamrec.eval.metrics, mostly against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.metrics import roc_auc_score

from streamrec.eval.metrics import (
    RankingAccumulator,
    auc,
    hit_rate_at_k,
    hits_from_csr,
    hits_matrix,
    item_coverage_at_k,
    log_loss,
    log_loss_from_logits,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    recall_at_k,
)

L2 = math.log2
# Discounts 1/log2(i+2) for ranks i = 0..4:
#   1/log2(2) = 1, 1/log2(3) = 0.6309298, 1/log2(4) = 0.5, 1/log2(5) = 0.4306766,
#   1/log2(6) = 0.3868528


def csr_from_lists(rows: list[list[int]], n_items: int) -> sp.csr_matrix:
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    data = np.ones(len(indices))
    return sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_items))


# Hand-worked fixture, n_items = 12, K = 5:
#   user 0: relevant {2, 5, 9}        top-5 [5, 1, 9, 3, 7]   -> hits [1, 0, 1, 0, 0]
#   user 1: relevant {7}              top-5 [0, 4, 7, 8, 6]   -> hits [0, 0, 1, 0, 0] (rank 3)
#   user 2: relevant {0,1,2,3,4,5,6}  top-5 [0, 1, 11, 2, 10] -> hits [1, 1, 0, 1, 0] (7 > K)
#   user 3: relevant {3, 8}           top-5 [8, -1, -1, -1, -1] (padding) -> hits [1, 0, 0, 0, 0]
#   user 4: relevant {6}              top-5 [1, 2, 3, 4, 5]   -> hits [0, 0, 0, 0, 0]
TRUTH = [[2, 5, 9], [7], [0, 1, 2, 3, 4, 5, 6], [3, 8], [6]]
TOPK = np.array(
    [
        [5, 1, 9, 3, 7],
        [0, 4, 7, 8, 6],
        [0, 1, 11, 2, 10],
        [8, -1, -1, -1, -1],
        [1, 2, 3, 4, 5],
    ]
)
HITS = np.array(
    [
        [1, 0, 1, 0, 0],
        [0, 0, 1, 0, 0],
        [1, 1, 0, 1, 0],
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ],
    dtype=bool,
)
NREL = np.array([3, 1, 7, 2, 1])
N_ITEMS = 12


# --------------------------------------------------------------------------------------------
# hits
# --------------------------------------------------------------------------------------------
def test_hits_matrix_hand_case():
    truth = csr_from_lists(TRUTH, N_ITEMS)
    np.testing.assert_array_equal(hits_matrix(TOPK, truth.indptr, truth.indices), HITS)
    np.testing.assert_array_equal(hits_from_csr(TOPK, truth), HITS)
    assert hits_matrix(TOPK, truth.indptr, truth.indices).dtype == bool


def test_hits_padding_never_hits_even_if_truth_empty_or_full():
    # Row 0 only padding, row 1 has no relevant items at all, row 2 all padding but item 0 rel.
    topk = np.array([[-1, -1], [0, 1], [-1, -1]])
    indptr = np.array([0, 2, 2, 3])
    indices = np.array([0, 1, 0])
    np.testing.assert_array_equal(
        hits_matrix(topk, indptr, indices), [[False, False], [False, False], [False, False]]
    )


def test_hits_from_csr_handles_duplicates_explicit_zeros_and_other_formats():
    # COO with a duplicate entry (0, 3) twice and an explicit zero at (1, 2).
    rows = np.array([0, 0, 1, 1])
    cols = np.array([3, 3, 2, 4])
    data = np.array([1.0, 1.0, 0.0, 1.0])
    truth = sp.coo_matrix((data, (rows, cols)), shape=(2, 6))
    topk = np.array([[3, 2], [2, 4]])
    # user 0: relevant {3} -> [1, 0]; user 1: relevant {4} (2 is an explicit zero) -> [0, 1]
    np.testing.assert_array_equal(hits_from_csr(topk, truth), [[True, False], [False, True]])
    # n_relevant from canonical truth: duplicates merged, zeros dropped -> 1 and 1, so
    # recall@2 = 1/1 for both users.
    res = ranking_metrics(topk, truth, ks=[2], n_items=6, metrics=["recall"])
    assert res == {"recall@2": 1.0}


def test_hits_matrix_vs_naive_reference_random():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 300, 50, 20
    truth = sp.random(n_users, n_items, density=0.1, format="csr", random_state=rng)
    truth.data[:] = 1.0
    topk = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    topk[rng.random(topk.shape) < 0.1] = -1  # sprinkle padding
    got = hits_matrix(topk, truth.indptr, truth.indices)
    expected = np.zeros_like(got)
    for u in range(n_users):
        rel = set(truth.indices[truth.indptr[u] : truth.indptr[u + 1]].tolist())
        for i, item in enumerate(topk[u]):
            expected[u, i] = item >= 0 and int(item) in rel
    np.testing.assert_array_equal(got, expected)


def test_hits_matrix_validation():
    with pytest.raises(ValueError, match="U \\+ 1"):
        hits_matrix(np.array([[0]]), np.array([0, 1, 1]), np.array([0]))
    with pytest.raises(ValueError, match="2-D"):
        hits_matrix(np.array([0, 1]), np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="integer"):
        hits_matrix(np.array([[0.5]]), np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="-1"):
        hits_matrix(np.array([[-2]]), np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="CSR"):
        hits_matrix(np.array([[0]]), np.array([0, 2]), np.array([0]))


# --------------------------------------------------------------------------------------------
# per-user ranking metrics
# --------------------------------------------------------------------------------------------
def test_recall_hand():
    # hits in top-5 per user: 2, 1, 3, 1, 0 ; n_relevant 3, 1, 7, 2, 1
    # recall@5 = 2/3, 1/1, 3/7 (user 2 cannot reach 1: denominator is |rel| = 7, not K),
    #            1/2, 0/1
    np.testing.assert_allclose(recall_at_k(HITS, NREL, 5), [2 / 3, 1.0, 3 / 7, 0.5, 0.0])
    # recall@2: hits in top-2 = 1, 0, 2, 1, 0 -> 1/3, 0, 2/7, 1/2, 0
    np.testing.assert_allclose(recall_at_k(HITS, NREL, 2), [1 / 3, 0.0, 2 / 7, 0.5, 0.0])
    assert recall_at_k(HITS, NREL, 5).dtype == np.float64


def test_precision_hand():
    # precision@5 = 2/5, 1/5, 3/5, 1/5 (padding counts as a miss), 0/5
    np.testing.assert_allclose(precision_at_k(HITS, 5), [0.4, 0.2, 0.6, 0.2, 0.0])
    # precision@3 = 2/3, 1/3, 2/3, 1/3, 0
    np.testing.assert_allclose(precision_at_k(HITS, 3), [2 / 3, 1 / 3, 2 / 3, 1 / 3, 0.0])


def test_hit_rate_hand():
    # any hit in top-5: yes, yes, yes, yes, no
    np.testing.assert_array_equal(hit_rate_at_k(HITS, 5), [1.0, 1.0, 1.0, 1.0, 0.0])
    # top-2: user 1's first hit is at rank 3 -> 0
    np.testing.assert_array_equal(hit_rate_at_k(HITS, 2), [1.0, 0.0, 1.0, 1.0, 0.0])


def test_ndcg_hand():
    # user 0: hits [1,0,1,0,0], |rel| = 3
    #   DCG  = 1/log2(2) + 1/log2(4) = 1 + 0.5 = 1.5
    #   IDCG = 1/log2(2) + 1/log2(3) + 1/log2(4) = 1 + 0.6309298 + 0.5 = 2.1309298
    #   ndcg = 1.5 / 2.1309298 = 0.7039180
    u0 = 1.5 / (1 + 1 / L2(3) + 0.5)
    assert u0 == pytest.approx(0.7039180, abs=1e-7)
    # user 1: hits [0,0,1,0,0], |rel| = 1 -> DCG = 1/log2(4) = 0.5, IDCG = 1 -> 0.5
    u1 = 0.5
    # user 2: hits [1,1,0,1,0], |rel| = 7 > K = 5 -> IDCG capped at 5 terms
    #   DCG  = 1 + 1/log2(3) + 1/log2(5) = 1 + 0.6309298 + 0.4306766 = 2.0616064
    #   IDCG = 1 + 0.6309298 + 0.5 + 0.4306766 + 0.3868528 = 2.9484591
    #   ndcg = 2.0616064 / 2.9484591 = 0.6992148
    u2 = (1 + 1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3) + 0.5 + 1 / L2(5) + 1 / L2(6))
    assert u2 == pytest.approx(0.6992148, abs=1e-7)
    # user 3: hits [1,0,0,0,0], |rel| = 2 -> DCG = 1, IDCG = 1 + 0.6309298 -> 0.6131472
    u3 = 1 / (1 + 1 / L2(3))
    assert u3 == pytest.approx(0.6131472, abs=1e-7)
    # user 4: no hit -> 0
    np.testing.assert_allclose(ndcg_at_k(HITS, NREL, 5), [u0, u1, u2, u3, 0.0], rtol=1e-12)

    # k = 2: user 0 DCG = 1, IDCG = 1 + 0.6309298 (min(3,2)=2 terms) -> 0.6131472
    #        user 1 DCG = 0 -> 0 ; user 2 DCG = IDCG = 1 + 0.6309298 -> 1
    #        user 3 DCG = 1, IDCG (min(2,2)=2 terms) = 1.6309298 -> 0.6131472 ; user 4 -> 0
    np.testing.assert_allclose(ndcg_at_k(HITS, NREL, 2), [u3, 0.0, 1.0, u3, 0.0], rtol=1e-12)


def test_ndcg_perfect_ranking_is_one():
    # relevant {a, b}, both ranked first -> DCG = IDCG -> 1 for any k >= 2; k = 1 -> 1/1 = 1.
    hits = np.array([[1, 1, 0, 0]], dtype=bool)
    for k in (1, 2, 3, 4):
        assert ndcg_at_k(hits, np.array([2]), k)[0] == pytest.approx(1.0)


def test_mrr_hand():
    # first hit ranks (1-based): 1, 3, 1, 1, none -> 1, 1/3, 1, 1, 0
    np.testing.assert_allclose(mrr_at_k(HITS, 5), [1.0, 1 / 3, 1.0, 1.0, 0.0])
    # k = 2: user 1's first hit at rank 3 is outside -> 0
    np.testing.assert_allclose(mrr_at_k(HITS, 2), [1.0, 0.0, 1.0, 1.0, 0.0])
    # first hit at rank 4 -> 0.25
    assert mrr_at_k(np.array([[0, 0, 0, 1, 1]], dtype=bool), 5)[0] == 0.25


def test_coverage_hand():
    # top-5 items over all users (ignoring -1):
    #   {5,1,9,3,7} u {0,4,7,8,6} u {0,1,11,2,10} u {8} u {1,2,3,4,5}
    #   = {0,1,2,3,4,5,6,7,8,9,10,11} -> 12 / 12 = 1.0
    assert item_coverage_at_k(TOPK, 5, N_ITEMS) == 1.0
    # top-1: {5, 0, 0, 8, 1} = {0, 1, 5, 8} -> 4 / 12
    assert item_coverage_at_k(TOPK, 1, N_ITEMS) == pytest.approx(4 / 12)
    # top-2: {5,1} u {0,4} u {0,1} u {8} (2nd is padding) u {1,2} = {0,1,2,4,5,8} -> 6 / 20
    assert item_coverage_at_k(TOPK, 2, 20) == pytest.approx(6 / 20)
    # only padding -> 0
    assert item_coverage_at_k(np.full((3, 2), -1), 2, 10) == 0.0


def test_per_user_metric_validation():
    with pytest.raises(ValueError, match="n_relevant"):
        recall_at_k(HITS, np.array([3, 1, 0, 2, 1]), 5)
    with pytest.raises(ValueError, match="n_relevant"):
        ndcg_at_k(HITS, np.array([3, 1, 7, 2, 0]), 5)
    with pytest.raises(ValueError, match="shape"):
        recall_at_k(HITS, np.array([1, 2]), 5)
    for bad_k in (0, 6):
        with pytest.raises(ValueError, match="k must satisfy"):
            precision_at_k(HITS, bad_k)
        with pytest.raises(ValueError, match="k must satisfy"):
            mrr_at_k(HITS, bad_k)
        with pytest.raises(ValueError, match="k must satisfy"):
            item_coverage_at_k(TOPK, bad_k, N_ITEMS)
    with pytest.raises(ValueError, match="n_items"):
        item_coverage_at_k(TOPK, 5, 11)  # item 11 >= n_items
    with pytest.raises(ValueError, match="n_items"):
        item_coverage_at_k(TOPK, 5, 0)


# --------------------------------------------------------------------------------------------
# aggregation
# --------------------------------------------------------------------------------------------
def test_ranking_metrics_hand_skips_users_without_relevant():
    # Add a 6th user with NO relevant items (and a perfect-looking list): must be skipped.
    truth = csr_from_lists(TRUTH + [[]], N_ITEMS)
    topk = np.vstack([TOPK, [[6, 7, 8, 9, 10]]])
    res = ranking_metrics(topk, truth, ks=[2, 5], n_items=N_ITEMS)
    # Averages over the 5 users with >= 1 relevant item (per-user values from tests above):
    #   recall@5    = (2/3 + 1 + 3/7 + 1/2 + 0) / 5
    #   precision@5 = (0.4 + 0.2 + 0.6 + 0.2 + 0) / 5 = 1.4 / 5 = 0.28
    #   hit@5       = 4 / 5 = 0.8 ; hit@2 = 3 / 5 = 0.6
    #   mrr@5       = (1 + 1/3 + 1 + 1 + 0) / 5 = 0.6666667 ; mrr@2 = 3 / 5 = 0.6
    #   coverage@5  = 12 / 12 = 1 ; coverage@2 = |{0,1,2,4,5,8}| / 12 = 0.5
    assert set(res) == {
        f"{m}@{k}"
        for m in ("recall", "ndcg", "hit", "mrr", "precision", "coverage")
        for k in (2, 5)
    }
    assert res["recall@5"] == pytest.approx((2 / 3 + 1 + 3 / 7 + 0.5) / 5)
    assert res["recall@2"] == pytest.approx((1 / 3 + 0 + 2 / 7 + 0.5) / 5)
    assert res["precision@5"] == pytest.approx(0.28)
    assert res["hit@5"] == pytest.approx(0.8)
    assert res["hit@2"] == pytest.approx(0.6)
    assert res["mrr@5"] == pytest.approx((3 + 1 / 3) / 5)
    assert res["mrr@2"] == pytest.approx(0.6)
    assert res["coverage@5"] == 1.0
    assert res["coverage@2"] == pytest.approx(0.5)
    ndcg5 = np.mean(ndcg_at_k(HITS, NREL, 5))
    assert res["ndcg@5"] == pytest.approx(ndcg5)
    assert ndcg5 == pytest.approx((0.7039180 + 0.5 + 0.6992148 + 0.6131472) / 5, abs=1e-7)


def test_ranking_metrics_subset_and_validation():
    truth = csr_from_lists(TRUTH, N_ITEMS)
    res = ranking_metrics(TOPK, truth, ks=[5], n_items=N_ITEMS, metrics=("ndcg", "Hit"))
    assert list(res) == ["ndcg@5", "hit@5"]
    with pytest.raises(ValueError, match="unknown metric"):
        ranking_metrics(TOPK, truth, ks=[5], n_items=N_ITEMS, metrics=("auc",))
    with pytest.raises(ValueError, match="k must satisfy"):
        ranking_metrics(TOPK, truth, ks=[10], n_items=N_ITEMS)
    with pytest.raises(ValueError, match="rows"):
        ranking_metrics(TOPK[:3], truth, ks=[5], n_items=N_ITEMS)
    with pytest.raises(ValueError, match="columns"):
        ranking_metrics(TOPK, truth, ks=[5], n_items=20)


def _random_case(seed: int, n_users: int = 500, n_items: int = 200, k: int = 30):
    rng = np.random.default_rng(seed)
    truth = sp.random(n_users, n_items, density=0.03, format="csr", random_state=rng)
    truth.data[:] = 1.0
    scores = rng.random((n_users, n_items))
    topk = np.argsort(-scores, axis=1)[:, :k]
    topk[rng.random(topk.shape) < 0.05] = -1
    return topk, truth, n_items


def test_accumulator_batched_equals_one_shot():
    topk, truth, n_items = _random_case(1)
    ks = (5, 10, 30)
    one_shot = ranking_metrics(topk, truth, ks, n_items)
    n_valid = int((np.diff(truth.indptr) > 0).sum())
    assert 0 < n_valid < truth.shape[0]  # the case does contain users to skip

    acc = RankingAccumulator(ks, n_items)
    bounds = [0, 1, 7, 64, 65, 300, 499, 500]  # uneven batches, incl. size-1 and empty tail
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        acc.update(topk[lo:hi], truth[lo:hi])
    assert acc.n_users == n_valid
    assert acc.result() == one_shot  # bit-identical, not just close

    # Sanity check against a direct numpy mean over the valid users.
    keep = np.diff(truth.indptr) > 0
    hits = hits_from_csr(topk, truth)[keep]
    n_rel = np.diff(truth.indptr)[keep]
    np.testing.assert_allclose(one_shot["recall@10"], recall_at_k(hits, n_rel, 10).mean())
    np.testing.assert_allclose(one_shot["ndcg@30"], ndcg_at_k(hits, n_rel, 30).mean())
    np.testing.assert_allclose(one_shot["coverage@5"], item_coverage_at_k(topk[keep], 5, n_items))


def test_accumulator_empty_is_nan():
    acc = RankingAccumulator([5], 10, ("recall", "coverage"))
    assert acc.n_users == 0
    assert all(math.isnan(v) for v in acc.result().values())


# --------------------------------------------------------------------------------------------
# click metrics
# --------------------------------------------------------------------------------------------
def test_auc_hand_and_ties():
    # y = [0,0,1,1], s = [0.1,0.4,0.35,0.8]: pairs (pos, neg):
    #   (0.35 vs 0.1) win, (0.35 vs 0.4) loss, (0.8 vs 0.1) win, (0.8 vs 0.4) win -> 3/4
    # Mann-Whitney: ranks of s = [1,3,2,4]; pos rank sum = 2 + 4 = 6; U = 6 - 2*3/2 = 3; 3/4
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # With a tie: y = [0,1,0,1], s = [0.2,0.5,0.5,0.9]
    #   pairs: (0.5 vs 0.2) win, (0.5 vs 0.5) tie = 1/2, (0.9 vs 0.2) win, (0.9 vs 0.5) win
    #   -> 3.5 / 4 = 0.875. Average ranks [1, 2.5, 2.5, 4]: pos sum 6.5 - 3 = 3.5 -> 0.875
    assert auc(np.array([0, 1, 0, 1]), np.array([0.2, 0.5, 0.5, 0.9])) == pytest.approx(0.875)
    # all scores equal -> every pair ties -> 0.5
    assert auc([1, 0, 1, 0, 0], [3.0] * 5) == pytest.approx(0.5)
    # bool labels accepted; perfectly inverted ranking -> 0
    assert auc(np.array([True, False]), np.array([0.1, 0.9])) == 0.0


def test_auc_vs_sklearn_random_with_ties():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, size=2000)
    s = np.round(rng.normal(size=2000) + 0.5 * y, 1)  # rounding creates many ties
    assert auc(y, s) == pytest.approx(roc_auc_score(y, s), rel=1e-12)


def test_auc_errors():
    with pytest.raises(ValueError, match="only one class"):
        auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="only one class"):
        auc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="0/1"):
        auc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="elements"):
        auc([0, 1, 1], [0.1, 0.2])


def test_log_loss_hand_and_sklearn():
    # y = [1, 0], p = [0.8, 0.4]: -(ln 0.8 + ln 0.6) / 2 = (0.2231436 + 0.5108256) / 2 = 0.3669846
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(0.3669846, abs=1e-7)
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, size=1000)
    p = rng.uniform(0.01, 0.99, size=1000)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-12)
    # clipping: p = 0 for a positive -> -ln(1e-15) = 34.538776; p = 1 for a positive -> ~0
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-15))
    assert log_loss([1, 0], [1.0, 0.0]) == pytest.approx(0.0, abs=1e-14)
    with pytest.raises(ValueError):
        log_loss([0, 3], [0.5, 0.5])
    with pytest.raises(ValueError):
        log_loss([0, 1], [0.5, 0.5], eps=0.0)


def test_log_loss_from_logits():
    # z = 0 -> p = 0.5 -> loss ln 2 = 0.6931472 regardless of label
    assert log_loss_from_logits([0, 1], [0.0, 0.0]) == pytest.approx(math.log(2))
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, size=1000)
    z = rng.normal(scale=3.0, size=1000)
    p = 1.0 / (1.0 + np.exp(-z))
    assert log_loss_from_logits(y, z) == pytest.approx(log_loss(y, p), rel=1e-9)
    # numerically stable for huge logits: correct sign -> ~0, wrong sign -> |z|
    assert log_loss_from_logits([1, 0], [1000.0, -1000.0]) == pytest.approx(0.0, abs=1e-300)
    assert log_loss_from_logits([0], [1000.0]) == pytest.approx(1000.0)
    assert log_loss_from_logits([1], [-800.0]) == pytest.approx(800.0)
