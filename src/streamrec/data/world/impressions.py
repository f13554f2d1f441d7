"""Impressions of a world and their click model.

:func:`simulate_impressions` draws the impressions of a block of users: rows (user, item,
20 features [n, 20] float32, clicked int8, timestamp int64) and the true click probability of
each. The features are :func:`streamrec.data.features.click_features` of what the platform
observed before the impression (the user's events and profile, the item's catalogue entry as
the dataset publishes it), so a served ranker computes them with the same function. The
click probability is ``sigmoid(intercept + scale * lin)`` with ``lin`` the non-linear function
of the observed features weighted by :data:`CLICK_TERMS`; :func:`fit_click_model` calibrates
intercept and scale on a pilot so that the click rate and the expected oracle AUC hit their
targets, and the per-category click rates used as a feature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.data.features import (
    FEATURE_GROUPS,
    FEATURE_NAMES,
    Catalogue,
    Events,
    Profiles,
    click_features,
)
from streamrec.data.world.config import DAY, WorldConfig

if TYPE_CHECKING:
    from streamrec.data.world.simulation import _World

#: the 20 impression features: those of :mod:`streamrec.data.features`
IMPRESSION_FEATURES = FEATURE_NAMES
IMPRESSION_FEATURE_GROUPS = FEATURE_GROUPS

# The click model: logit = intercept + scale * sum(weight * term), documented in docs/world.md.
# Every term is a function of the 20 observed impression features, so the true click
# probability is the Bayes-optimal score given the features: the oracle AUC is the best any
# model of the features can do. (The hidden latents shape the features, e.g. the history
# similarity, but do not enter the click model directly.)
CLICK_TERMS = {
    "history_similarity": 1.5,
    "tier>=1 & category_share>0.2": 1.2,
    "relu(log_interactions_30d - 2.3)": 0.8,
    "recency_days>10 & category_share<0.1": -1.3,
    "next_episode": 1.0,
    "relu(history_similarity - 0.3)": 1.0,
    "paid_sign * log(duration / 20)": 1.0,
    "mobile & duration<10": 0.5,
    "mobile & duration>40": -0.5,
    "log_interactions_30d>2 & item_age_days<14": 0.6,
    "quality_obs * (duration>30)": 0.5,
    "log1p(item_age_days / 30)": -0.25,
    "log_popularity_obs": 0.2,
}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _expected_auc(p: np.ndarray) -> float:
    """AUC expected when labels are drawn as Bernoulli(p) and ranked by p itself."""
    ps = np.sort(np.asarray(p, dtype=np.float64))
    neg = 1.0 - ps
    below = np.cumsum(neg) - neg
    pos_total, neg_total = ps.sum(), neg.sum()
    denom = pos_total * neg_total - float((ps * neg).sum())
    return float((ps * below).sum() / denom) if denom > 0 else 0.5


def _calibrate_click(lin: np.ndarray, ctr: float, auc: float) -> tuple[float, float]:
    """Intercept and scale such that mean p = ``ctr`` and the expected oracle AUC = ``auc``."""

    def intercept(s: float) -> float:
        lo, hi = -30.0, 30.0
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if _sigmoid(mid + s * lin).mean() < ctr:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    lo, hi = 1e-3, 20.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if _expected_auc(_sigmoid(intercept(mid) + mid * lin)) < auc:
            lo = mid
        else:
            hi = mid
    s = 0.5 * (lo + hi)
    return intercept(s), s


def fit_click_model(lin: np.ndarray, cats: np.ndarray, cfg: WorldConfig) -> dict[str, Any]:
    """The click model calibrated on pilot impressions: ``lin`` [n] (the weighted terms) and
    ``cats`` [n] (the shown item's category) -> ``{"intercept", "scale", "category_ctr"
    [n_categories]}`` (category click rates shrunk towards the mean with 20 pseudo-counts)."""
    b0, s = _calibrate_click(lin, cfg.click_rate, cfg.oracle_auc)
    p = _sigmoid(b0 + s * lin)
    k = 20.0
    num = np.bincount(cats, weights=p, minlength=cfg.n_categories) + k * p.mean()
    den = np.bincount(cats, minlength=cfg.n_categories) + k
    return {"intercept": b0, "scale": s, "category_ctr": num / den}


def default_click_model(cfg: WorldConfig) -> dict[str, Any]:
    """The click model of a world without pilot impressions: the target click rate
    everywhere."""
    return {
        "intercept": float(np.log(cfg.click_rate / (1 - cfg.click_rate))),
        "scale": 1.0,
        "category_ctr": np.full(cfg.n_categories, cfg.click_rate),
    }


def world_catalogue(world: _World) -> Catalogue:
    """The world's observable item catalogue, as the feature function reads it (the same
    columns :meth:`_World.item_table` writes into the dataset)."""
    it = world.items
    ctr = world.click["category_ctr"]
    return Catalogue(
        category=it["category"].astype(np.int64),
        release_ts=it["release"].astype(np.int64),
        duration_min=it["duration"].astype(np.float32).astype(np.float64),
        log_popularity=it["log_pop_obs"].astype(np.float32).astype(np.float64),
        quality=it["quality_obs"].astype(np.float32).astype(np.float64),
        predecessor=it["predecessor"].astype(np.int64),
        vectors=it["vector"],
        category_ctr=np.zeros(world.cfg.n_categories) if ctr is None else np.asarray(ctr),
    )


def world_profiles(world: _World) -> Profiles:
    """The world's user profiles (tier, platform, signup time)."""
    us = world.users
    return Profiles(us["tier"].astype(np.int64), us["platform"].astype(np.int64),
                    us["signup"].astype(np.int64))


def simulate_impressions(
    world: _World,
    users: np.ndarray,
    e_user: np.ndarray,
    e_item: np.ndarray,
    e_ts: np.ndarray,
    e_session: np.ndarray,
    n_imp: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Impressions of the block's users with their 20 features and click outcome.

    users: the block's global user ids; e_user (local: positions in ``users``), e_item, e_ts,
    e_session: the block's events. The features are
    :func:`~streamrec.data.features.click_features` of the user's events before the impression
    time and the catalogue the dataset publishes: the same function the system's ranker uses.
    """
    cfg, it, us = world.cfg, world.items, world.users
    C, nu = cfg.n_categories, len(users)
    act = us["activity"][users]
    iu = np.sort(rng.choice(nu, size=n_imp, p=act / act.sum()))
    gu = users[iu]
    t = (us["window_start"][gu] + rng.random(n_imp) * cfg.active_days * DAY).astype(np.int64)
    order = np.lexsort((t, iu))
    iu, gu, t = iu[order], gu[order], t[order]
    catalogue = world_catalogue(world)
    events = Events(users[e_user], e_item, e_ts, e_session, catalogue)

    # which item is shown: next episode / personalised / globally popular
    kind = rng.random(n_imp)
    cats = world._pick_categories(gu, rng)
    pop_cats = rng.choice(C, size=n_imp, p=it["cat_mass"])
    cats = np.where(kind < 0.65, cats, pop_cats)
    recent = rng.random(n_imp) < cfg.recency_mix
    item = world._draw(cats, t, rng, recent)
    last_item = events.last_item_before(gu, t)
    nxt = np.where(last_item >= 0, it["successor"][np.maximum(last_item, 0)], -1)
    use_next = (kind < 0.15) & (nxt >= 0)
    use_next &= it["release"][np.maximum(nxt, 0)] <= t
    item = np.where(use_next, nxt, item)
    icat = it["category"][item]

    feats = click_features(events, catalogue, world_profiles(world), gu, item, t)
    f = {name: feats[:, j].astype(np.float64) for j, name in enumerate(IMPRESSION_FEATURES)}

    # the true click model: non-linear in the observed features only
    w = CLICK_TERMS
    sim, log30, c_share = f["ui_history_similarity"], f["user_log_interactions_30d"], \
        f["ui_category_share"]
    recency = np.expm1(f["user_log_recency_days"])
    tier, dur, age_days = f["user_tier"], f["item_duration_min"], f["item_age_days"]
    mobile = f["user_platform_mobile"] > 0
    paid_sign = np.where(tier >= 1, 1.0, -1.0)
    lin = (
        w["history_similarity"] * sim
        + w["tier>=1 & category_share>0.2"] * ((tier >= 1) & (c_share > 0.2))
        + w["relu(log_interactions_30d - 2.3)"] * np.maximum(log30 - 2.3, 0.0)
        + w["recency_days>10 & category_share<0.1"] * ((recency > 10) & (c_share < 0.1))
        + w["next_episode"] * f["ui_next_episode"]
        + w["relu(history_similarity - 0.3)"] * np.maximum(sim - 0.3, 0.0)
        + w["paid_sign * log(duration / 20)"] * paid_sign * np.log(dur / 20.0)
        + w["mobile & duration<10"] * (mobile & (dur < 10))
        + w["mobile & duration>40"] * (mobile & (dur > 40))
        + w["log_interactions_30d>2 & item_age_days<14"] * ((log30 > 2) & (age_days < 14))
        + w["quality_obs * (duration>30)"] * f["item_quality"] * (dur > 30)
        + w["log1p(item_age_days / 30)"] * np.log1p(np.maximum(age_days, 0.0) / 30.0)
        + w["log_popularity_obs"] * f["item_log_popularity"]
    )
    p = _sigmoid(world.click["intercept"] + world.click["scale"] * lin)
    clicked = (rng.random(n_imp) < p).astype(np.int8)
    return {
        "imp_user": gu.astype(np.int32),
        "imp_item": item.astype(np.int32),
        "imp_features": feats,
        "imp_clicked": clicked,
        "imp_timestamp": t,
        "imp_p": p.astype(np.float32),
        "imp_lin": lin,
        "imp_cat": icat,
    }
