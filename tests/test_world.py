"""The synthetic StreamRec world: determinism, shapes, and the structure it promises.

Only the ``tiny`` preset and small custom configs are generated here (each in well under a
second), so the whole file runs in a few seconds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from streamrec.data.dataset import ENGAGEMENT_TYPES, load_dataset
from streamrec.data.world import (
    IMPRESSION_FEATURE_GROUPS,
    IMPRESSION_FEATURES,
    PRESETS,
    WorldConfig,
    WorldTruth,
    generate_world,
    load_truth,
    make_world,
    make_world_with_truth,
    resolve_config,
)
from streamrec.eval.metrics import auc


@pytest.fixture(scope="module")
def tiny():
    return make_world_with_truth("tiny", seed=0)


@pytest.fixture(scope="module")
def medium():
    """A slightly larger catalogue, for statistics that need more than 200 items."""
    cfg = WorldConfig(
        name="medium", n_users=500, n_items=1_500, n_interactions=8_000, density=None,
        n_impressions=3_000, pilot_impressions=3_000,
    )  # fmt: skip
    return make_world_with_truth(cfg, seed=3)


def _arrays_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)


def _assert_same_data(x, y) -> None:
    np.testing.assert_array_equal(x.user_ids, y.user_ids)
    np.testing.assert_array_equal(x.item_ids, y.item_ids)
    _arrays_equal(x.inter, y.inter)
    _arrays_equal(x.items, y.items)
    _arrays_equal(x.users, y.users)
    assert (x.impressions is None) == (y.impressions is None)
    if x.impressions is not None:
        _arrays_equal(x.impressions, y.impressions)


# ---------------------------------------------------------------------------- config
def test_presets_match_the_book():
    assert {"tiny", "m0", "m5", "demo", "platform"} <= set(PRESETS)
    for cfg in PRESETS.values():
        cfg.validate()
    m0 = PRESETS["m0"]
    assert (m0.n_users, m0.n_items, m0.n_latent_true) == (10_000, 5_000, 15)
    assert m0.density == 0.008 and m0.noise_std == 0.3
    assert m0.target_interactions() == 400_000
    m5 = PRESETS["m5"]
    assert (m5.n_users, m5.n_items, m5.target_interactions(), m5.n_categories) == (
        50_000, 20_000, 500_000, 15,
    )  # fmt: skip
    p = PRESETS["platform"]
    assert (p.n_users, p.n_items, p.target_interactions()) == (1_000_000, 200_000, 40_000_000)
    assert p.chunk_users < p.n_users  # written in chunks
    demo = PRESETS["demo"]
    assert 150_000 <= demo.target_interactions() <= 250_000


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="unknown world preset"):
        resolve_config("nope")
    with pytest.raises(ValueError, match="n_categories"):
        resolve_config(WorldConfig(n_categories=3))
    with pytest.raises(ValueError, match="click_rate"):
        resolve_config(WorldConfig(click_rate=1.5))
    # resolving copies: changing the copy leaves the preset alone
    cfg = resolve_config("tiny")
    cfg.n_users = 1
    assert PRESETS["tiny"].n_users == 300


# ---------------------------------------------------------------------------- determinism
def test_deterministic_for_a_seed(tiny):
    ds, truth = tiny
    again, truth2 = make_world_with_truth("tiny", seed=0)
    _assert_same_data(ds, again)
    np.testing.assert_array_equal(truth.impression_p, truth2.impression_p)
    np.testing.assert_array_equal(truth.item_latent, truth2.item_latent)
    other = make_world("tiny", seed=1)
    assert other.n_interactions != ds.n_interactions or not np.array_equal(other.item, ds.item)
    assert not np.array_equal(other.items["category"], ds.items["category"])


# The digest of the tiny world (seed 0). Any change to the generator that changes the data must
# update it on purpose (and say so in docs/world.md). Last change: the impressions' features
# come from streamrec.data.features and the catalogue publishes what they read (observed
# popularity and quality, predecessors, platform vectors); interactions and the rest of the
# item table are unchanged.
TINY_SEED0_SHA256 = "091c06dafe729c6c6cb9ad394449271a80b6251159bde5e7fd8e15498ed9c5e1"


def world_digest(ds, truth) -> str:
    """SHA-256 over every array of the dataset and its truth, and ``meta`` without ``stats``."""
    h = hashlib.sha256()

    def add(name, a):
        a = np.asarray(a)
        h.update(name.encode())
        h.update(str(a.dtype if a.dtype.kind != "O" else "O").encode())
        h.update(str(a.shape).encode())
        if a.dtype.kind in "OU":
            h.update("\x00".join(map(str, a.reshape(-1).tolist())).encode())
        else:
            h.update(np.ascontiguousarray(a).tobytes())

    add("user_ids", ds.user_ids)
    add("item_ids", ds.item_ids)
    for part in ("inter", "items", "users", "impressions"):
        cols = getattr(ds, part) or {}
        for k in sorted(cols):
            add(f"{part}.{k}", cols[k])
    for k in ("item_latent", "item_popularity", "item_quality", "item_series", "item_episode",
              "item_successor", "category_centroids", "user_latent", "user_top_categories",
              "user_top_weights", "session_length", "impression_p"):  # fmt: skip
        add(f"truth.{k}", getattr(truth, k))
    meta = json.loads(json.dumps(ds.meta))
    meta["world"].pop("stats")  # the realised oracle AUC may differ in the last bit
    h.update(json.dumps(meta, sort_keys=True).encode())
    return h.hexdigest()


def test_tiny_world_is_bit_identical_to_the_reference(tiny):
    assert world_digest(*tiny) == TINY_SEED0_SHA256
    stats = tiny[0].meta["world"]["stats"]
    assert stats["interactions"] == 3298
    assert stats["oracle_auc"] == pytest.approx(0.7983139256293525, abs=1e-12)


# ---------------------------------------------------------------------------- shapes
def test_sizes_and_dtypes(tiny):
    ds, truth = tiny
    cfg = PRESETS["tiny"]
    assert (ds.n_users, ds.n_items) == (300, 200)
    assert 2_000 <= ds.n_interactions <= 6_000
    assert abs(ds.n_interactions - cfg.target_interactions()) / cfg.target_interactions() < 0.1
    assert len(np.unique(ds.user)) == ds.n_users  # every user has a history
    expect = {"user": np.int32, "item": np.int32, "timestamp": np.int64,
              "engagement": np.int8, "session": np.int64}  # fmt: skip
    assert {k: v.dtype for k, v in ds.inter.items()} == expect
    assert ds.items["category"].dtype == np.int16
    assert ds.items["duration_min"].dtype == np.float32
    assert ds.items["release_ts"].dtype == np.int64
    assert set(ds.items) == {"category", "title", "text", "duration_min", "release_ts",
                             "log_popularity", "quality", "predecessor", "vector"}
    assert ds.items["vector"].shape == (ds.n_items, PRESETS["tiny"].n_latent_true)
    users = {"activity": np.float32, "tier": np.int8, "platform": np.int8,
             "tenure_days": np.float32, "signup_ts": np.int64, "age_group": np.int8}  # fmt: skip
    assert {k: v.dtype for k, v in ds.users.items()} == users  # observable features only
    assert set(np.unique(ds.users["tier"])) <= {0, 1, 2}
    assert set(np.unique(ds.users["platform"])) <= {0, 1, 2}
    assert ds.meta["source"] == "streamrec-world"
    assert ds.meta["categories"][:3] == ["news", "comedy", "documentary"]
    assert len(ds.meta["categories"]) == 20 and len(np.unique(ds.items["category"])) == 20
    assert ds.meta["platforms"] == ["mobile", "desktop", "tablet"]
    assert ds.meta["world"]["seed"] == 0 and ds.meta["world"]["config"]["n_users"] == 300
    json.dumps(ds.meta)  # JSON-able as it is
    d = cfg.n_latent_true
    assert truth.item_latent.shape == (200, d) and truth.user_latent.shape == (300, d)
    assert truth.user_top_categories.shape == (300, 3)
    assert truth.item_popularity.min() > 0


# ---------------------------------------------------------------------------- behaviour
def test_sessions(tiny):
    ds, truth = tiny
    lens = truth.session_length
    assert lens.min() >= 5 and lens.max() <= 50  # before deduplication
    sess, user, ts = ds.inter["session"], ds.user, ds.timestamp
    assert sess.max() < len(lens)
    kept = np.bincount(sess, minlength=len(lens))
    assert np.all(kept <= lens)
    # a session belongs to one user, and its events are seconds to minutes apart, in order
    order = np.lexsort((ts, sess))
    s, u, t = sess[order], user[order], ts[order]
    same = s[1:] == s[:-1]
    assert np.all(u[1:][same] == u[:-1][same])
    gaps = (t[1:] - t[:-1])[same]
    assert gaps.min() > 0
    assert np.median(gaps) < 3_600
    # stored order is (user, time)
    assert np.all(np.diff(user) >= 0)
    assert np.all(np.diff(ts)[np.diff(user) == 0] >= 0)
    # sessions fall within ~180 days of the user's window and after signup
    assert np.all(ts >= ds.users["signup_ts"][user])


def test_no_repeated_pairs(tiny):
    ds, _ = tiny
    pairs = ds.user.astype(np.int64) * ds.n_items + ds.item
    assert len(np.unique(pairs)) == len(pairs)


def test_items_are_released_before_they_are_consumed(tiny):
    ds, _ = tiny
    assert np.all(ds.items["release_ts"][ds.item] <= ds.timestamp)


def test_engagement_follows_affinity(tiny):
    ds, truth = tiny
    eng = ds.inter["engagement"]
    assert eng.min() >= 0 and eng.max() < len(ENGAGEMENT_TYPES)
    assert set(np.unique(eng)) == set(range(len(ENGAGEMENT_TYPES)))
    aff = (truth.user_latent[ds.user] * truth.item_latent[ds.item]).sum(axis=1)
    means = [aff[eng == e].mean() for e in range(len(ENGAGEMENT_TYPES))]
    assert means[-1] > means[0]
    assert np.corrcoef(aff, eng)[0, 1] > 0.1


def test_top3_category_share(tiny, medium):
    for ds, truth in (tiny, medium):
        cat = ds.items["category"][ds.item]
        in_top = (truth.user_top_categories[ds.user] == cat[:, None]).any(axis=1)
        assert abs(in_top.mean() - 0.7) < 0.06, in_top.mean()


def test_sequential_signal(medium):
    ds, truth = medium
    order = np.lexsort((ds.timestamp, ds.inter["session"]))
    s, it = ds.inter["session"][order], ds.item[order]
    same = s[1:] == s[:-1]
    prev, nxt = it[:-1][same], it[1:][same]
    p_succ = np.mean(truth.item_successor[prev] == nxt)
    assert p_succ > 0.04 and p_succ > 50.0 / ds.n_items  # chance is about 1 / n_items
    # consecutive items share their category far more often than the top-3 mix explains
    cat = ds.items["category"]
    assert np.mean(cat[prev] == cat[nxt]) > 0.35


def test_popularity_is_long_tailed(medium):
    ds, truth = medium
    counts = np.sort(ds.item_counts())[::-1]
    top10 = counts[: len(counts) // 10].sum() / counts.sum()
    assert top10 > 0.3  # the top 10% of items take well over 10% of the interactions
    assert np.corrcoef(np.log(truth.item_popularity), np.log1p(ds.item_counts()))[0, 1] > 0.4


# ---------------------------------------------------------------------------- text
def test_text_lengths_and_titles(tiny):
    ds, _ = tiny
    lens = np.array([len(t.split()) for t in ds.items["text"]])
    assert lens.min() >= 20 and lens.max() <= 100
    tl = np.array([len(t.split()) for t in ds.items["title"]])
    assert tl.min() >= 2 and tl.max() <= 6
    assert ds.meta["vocab_size"] > 5_000


def test_text_carries_category_signal(tiny):
    from sklearn.feature_extraction.text import TfidfVectorizer

    ds, _ = tiny
    x = TfidfVectorizer().fit_transform(ds.items["text"]).toarray()
    y = ds.items["category"].astype(int)
    perm = np.random.default_rng(0).permutation(len(y))
    tr, te = perm[:130], perm[130:]
    # TF-IDF + nearest class centroid (cosine): a fast linear text classifier
    cent = np.zeros((20, x.shape[1]))
    np.add.at(cent, y[tr], x[tr])
    cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-9)
    acc = np.mean(np.argmax(x[te] @ cent.T, axis=1) == y[te])
    assert acc > 0.6  # chance is 0.05


def test_text_carries_latent_signal(medium):
    """Items close in the true latent space share more words than random pairs."""
    ds, truth = medium
    sets = [set(t.split()) for t in ds.items["text"][:300]]
    lat = truth.item_latent[:300]
    cat = ds.items["category"][:300]
    sim = lat @ lat.T
    np.fill_diagonal(sim, -np.inf)
    jac_near, jac_far = [], []
    for i in range(100):
        same = np.flatnonzero((cat == cat[i]) & (np.arange(300) != i))
        if len(same) < 4:
            continue
        near = same[np.argmax(sim[i, same])]
        far = same[np.argmin(sim[i, same])]
        for j, out in ((near, jac_near), (far, jac_far)):
            out.append(len(sets[i] & sets[j]) / len(sets[i] | sets[j]))
    assert np.mean(jac_near) > np.mean(jac_far)


# ---------------------------------------------------------------------------- impressions
def test_impressions(tiny):
    ds, truth = tiny
    imp = ds.impressions
    assert imp is not None
    n = len(imp["clicked"])
    assert n == PRESETS["tiny"].n_impressions
    assert imp["features"].shape == (n, 20) and imp["features"].dtype == np.float32
    assert np.isfinite(imp["features"]).all()
    assert imp["clicked"].dtype == np.int8 and imp["timestamp"].dtype == np.int64
    assert ds.meta["impression_features"] == list(IMPRESSION_FEATURES)
    assert ds.meta["impression_feature_groups"] == list(IMPRESSION_FEATURE_GROUPS)
    groups = ds.meta["impression_feature_groups"]
    assert groups.count("user") == 10 and groups.count("item") == 5
    assert groups.count("user_item") == 5
    rate = imp["clicked"].mean()
    assert 0.1 <= rate <= 0.3
    assert len(truth.impression_p) == n
    assert abs(truth.impression_p.mean() - rate) < 0.03
    oracle = auc(imp["clicked"], truth.impression_p)
    assert 0.75 <= oracle <= 0.86
    # no single feature comes close to the oracle
    best = max(
        max(a, 1 - a) for a in (auc(imp["clicked"], imp["features"][:, j]) for j in range(20))
    )
    assert best < oracle - 0.03
    f = {name: imp["features"][:, j] for j, name in enumerate(IMPRESSION_FEATURES)}
    assert np.all(f["item_age_days"] >= 0)  # only released items are shown
    onehot = f["user_platform_mobile"] + f["user_platform_desktop"] + f["user_platform_tablet"]
    assert np.all(onehot == 1)
    np.testing.assert_array_equal(f["user_tier"], ds.users["tier"][imp["user"]])


def test_impressions_are_skippable():
    cfg = dataclasses.replace(PRESETS["tiny"], n_impressions=0)
    ds, truth = make_world_with_truth(cfg)
    assert ds.impressions is None and len(truth.impression_p) == 0


# ---------------------------------------------------------------------------- io
def test_save_load_round_trip(tiny, tmp_path):
    ds, _ = tiny
    ds.save(tmp_path / "w")
    back = load_dataset(tmp_path / "w")
    _assert_same_data(ds, back)
    assert back.meta["world"] == ds.meta["world"]


def test_generate_world_chunked(tmp_path):
    cfg = dataclasses.replace(PRESETS["tiny"], chunk_users=50)
    out = generate_world(cfg, tmp_path / "chunked", seed=2)
    ds = load_dataset(out)
    assert pq.ParquetFile(out / "interactions.parquet").metadata.num_row_groups == 6
    ref, ref_truth = make_world_with_truth(cfg, seed=2)
    _assert_same_data(ds, ref)  # the written world is the in-memory one
    truth = load_truth(out)
    assert isinstance(truth, WorldTruth)
    np.testing.assert_array_equal(truth.impression_p, ref_truth.impression_p)
    np.testing.assert_array_equal(truth.session_length, ref_truth.session_length)
    assert truth.params["seed"] == 2
    # consistent across chunks: session ids are global, pairs unique, sizes in meta
    sess_user = {}
    for s, u in zip(ds.inter["session"].tolist(), ds.user.tolist()):
        assert sess_user.setdefault(s, u) == u
    pairs = ds.user.astype(np.int64) * ds.n_items + ds.item
    assert len(np.unique(pairs)) == len(pairs)
    assert ds.meta["n_interactions"] == ds.n_interactions
    assert ds.info()["has_ground_truth"]
    assert ds.meta["world"]["stats"]["interactions"] == ds.n_interactions
    # refusing to overwrite, and overwriting on request
    with pytest.raises(FileExistsError):
        generate_world(cfg, out, seed=2)
    generate_world("tiny", out, seed=2, overwrite=True)
    assert load_dataset(out).meta["world"]["config"]["chunk_users"] == PRESETS["tiny"].chunk_users


def test_chunking_changes_nothing_but_the_streams():
    """A different chunk size is a different (equally valid) world of the same shape."""
    a = make_world(dataclasses.replace(PRESETS["tiny"], chunk_users=100))
    assert abs(a.n_interactions - PRESETS["tiny"].target_interactions()) < 600
    np.testing.assert_array_equal(a.items["category"], make_world("tiny").items["category"])
