"""The one click-feature function: a case worked by hand, and offline = online."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.data.features import (
    DAY,
    FEATURE_NAMES,
    Catalogue,
    Events,
    Profiles,
    click_features,
    sessions_from_gaps,
)

from conftest import random_dataset


def small_catalogue() -> Catalogue:
    return Catalogue(
        category=np.array([0, 0, 1, 1]),
        release_ts=np.array([-10 * DAY, -5 * DAY, 0, DAY]),
        duration_min=np.array([10.0, 20.0, 30.0, 40.0]),
        log_popularity=np.array([1.0, 2.0, 3.0, 4.0]),
        quality=np.array([0.1, 0.2, 0.3, 0.4]),
        predecessor=np.array([-1, 0, -1, 2]),
        vectors=np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [0.0, 1.0]]),
        category_ctr=np.array([0.2, 0.3]),
    )


PROFILES = Profiles(tier=np.array([2, 0]), platform=np.array([0, 2]),
                    signup_ts=np.array([-30 * DAY, -DAY]))


def test_features_worked_by_hand():
    cat = small_catalogue()
    # user 0: item 0 at 0 s and item 2 at 100 s in one session, item 3 two days later
    ev = Events(np.array([0, 0, 0]), np.array([0, 2, 3]), np.array([0, 100, 2 * DAY]),
                np.array([10, 10, 11]), cat)
    t = 3 * DAY
    f = click_features(ev, cat, PROFILES, np.array([0, 1, 0]), np.array([1, 2, 1]),
                       np.array([t, t, 50]))
    got = dict(zip(FEATURE_NAMES, f[0].astype(np.float64)))
    p = np.array([1 / 3, 2 / 3])
    v = np.array([1.0, 0.0]) + np.array([0.0, 1.0]) + np.array([0.0, 1.0])  # unit vectors summed
    want = {
        "user_log_interactions_30d": np.log1p(3),
        "user_sessions_7d": 2,
        "user_avg_session_minutes": 100 / 2 / 60,  # sessions of 100 s and 0 s
        "user_category_entropy": -(p * np.log(p)).sum(),
        "user_log_recency_days": np.log1p(1.0),
        "user_tier": 2,
        "user_platform_mobile": 1,
        "user_platform_desktop": 0,
        "user_platform_tablet": 0,
        "user_tenure_days": 33,
        "item_log_popularity": 2.0,
        "item_age_days": 8,
        "item_duration_min": 20,
        "item_category_ctr": 0.2,
        "item_quality": 0.2,
        "ui_category_share": 1 / 3,
        "ui_log_category_count": np.log1p(1),
        "ui_log_days_since_category": np.log1p(3.0),
        "ui_history_similarity": v @ np.array([1, 1]) / np.sqrt(2) / np.linalg.norm(v),
        "ui_next_episode": 1,  # item 1 follows item 0, consumed before t
    }
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    # a user without events: defaults
    none = dict(zip(FEATURE_NAMES, f[1].astype(np.float64)))
    assert none["user_log_interactions_30d"] == 0 and none["user_sessions_7d"] == 0
    assert none["user_log_recency_days"] == pytest.approx(np.log1p(60))
    assert none["ui_log_days_since_category"] == pytest.approx(np.log1p(365))
    assert none["ui_history_similarity"] == 0 and none["user_platform_tablet"] == 1
    # at t = 50 s only the first event is in the past
    early = dict(zip(FEATURE_NAMES, f[2].astype(np.float64)))
    assert early["user_log_interactions_30d"] == pytest.approx(np.log1p(1))
    assert early["user_sessions_7d"] == 1 and early["user_avg_session_minutes"] == 0
    assert early["ui_category_share"] == 1 and early["ui_next_episode"] == 1


def test_sessions_from_gaps():
    user = np.array([0, 0, 0, 1, 1])
    ts = np.array([0, 60, 60 + 31 * 60, 0, 10])
    assert sessions_from_gaps(user, ts).tolist() == [0, 0, 1, 2, 2]


@pytest.mark.parametrize("with_sessions", [True, False])
def test_offline_batch_equals_online_per_user(with_sessions):
    """The features of a query are the same whether the event log holds every user (as when
    training data is built) or only the user's own events (as at request time), and whatever
    the row order."""
    ds = random_dataset(n_users=40, n_items=30, per_user=12, seed=3)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((ds.n_items, 5))
    cat = Catalogue.from_dataset(ds, vectors=vectors)
    prof = Profiles.from_dataset(ds)
    session = (ds.user.astype(np.int64) * 100 + ds.timestamp // 3000) if with_sessions else None
    full = Events(ds.user, ds.item, ds.timestamp, session, cat)
    users = rng.integers(0, ds.n_users, 200)
    items = rng.integers(0, ds.n_items, 200)
    t = rng.integers(0, 12_000, 200)
    offline = click_features(full, cat, prof, users, items, t)
    perm = rng.permutation(ds.n_interactions)
    shuffled = Events(ds.user[perm], ds.item[perm], ds.timestamp[perm],
                      None if session is None else session[perm], cat)
    np.testing.assert_array_equal(click_features(shuffled, cat, prof, users, items, t), offline)
    for q in range(len(users)):
        own = ds.user == users[q]
        one = Events(ds.user[own], ds.item[own], ds.timestamp[own],
                     None if session is None else session[own], cat)
        online = click_features(one, cat, prof, users[q : q + 1], items[q : q + 1], t[q])
        np.testing.assert_allclose(online[0], offline[q], rtol=1e-6, atol=1e-6)


def test_catalogue_defaults_for_real_data():
    ds = random_dataset(n_users=10, n_items=8, per_user=4, seed=1)
    cat = Catalogue.from_dataset(ds)
    assert cat.vectors.shape == (8, 0) and (cat.predecessor == -1).all()
    assert np.allclose(cat.log_popularity, np.log1p(np.bincount(ds.item, minlength=8)))
    ev = Events(ds.user, ds.item, ds.timestamp, None, cat)
    f = click_features(ev, cat, Profiles.from_dataset(ds), np.arange(10),
                       np.zeros(10, dtype=np.int64), 20_000)
    assert f.shape == (10, 20) and np.isfinite(f).all()
    assert (f[:, FEATURE_NAMES.index("ui_history_similarity")] == 0).all()


def test_world_impressions_are_the_feature_function_of_the_published_dataset():
    """The world's click models learn from features the system recomputes exactly from the
    dataset it publishes: no train / serve skew."""
    from streamrec.data.world import make_world

    ds = make_world("tiny", seed=0)
    cat, prof = Catalogue.from_dataset(ds), Profiles.from_dataset(ds)
    ev = Events(ds.user, ds.item, ds.timestamp, ds.inter["session"], cat)
    imp = ds.impressions
    again = click_features(ev, cat, prof, imp["user"], imp["item"], imp["timestamp"])
    np.testing.assert_array_equal(again, imp["features"])
