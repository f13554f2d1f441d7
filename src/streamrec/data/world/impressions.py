"""Impressions of a world and their click model.

:func:`simulate_impressions` draws the impressions of a block of users: rows (user, item,
20 features [n, 20] float32 computed only from what the platform could observe at the
impression time, clicked int8, timestamp int64) and the true click probability of each. The
click probability is ``sigmoid(intercept + scale * lin)`` with ``lin`` the non-linear function
of the observed features weighted by :data:`CLICK_TERMS`; :func:`fit_click_model` calibrates
intercept and scale on a pilot so that the click rate and the expected oracle AUC hit their
targets, and the per-category click rates used as a feature.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from streamrec.data.world.config import DAY, WorldConfig

if TYPE_CHECKING:
    from streamrec.data.world.simulation import _World

_TIME_SPAN = np.int64(1) << np.int64(32)  # composite keys: user * _TIME_SPAN + seconds

IMPRESSION_FEATURES = (
    # user (10)
    "user_log_interactions_30d",
    "user_sessions_7d",
    "user_avg_session_minutes",
    "user_category_entropy",
    "user_log_recency_days",
    "user_tier",
    "user_platform_mobile",
    "user_platform_desktop",
    "user_platform_tablet",
    "user_tenure_days",
    # item (5)
    "item_log_popularity",
    "item_age_days",
    "item_duration_min",
    "item_category_ctr",
    "item_quality",
    # user x item (5)
    "ui_category_share",
    "ui_log_category_count",
    "ui_log_days_since_category",
    "ui_history_similarity",
    "ui_next_episode",
)
IMPRESSION_FEATURE_GROUPS = ("user",) * 10 + ("item",) * 5 + ("user_item",) * 5

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


def _xlogx(c: np.ndarray) -> np.ndarray:
    return c * np.log(np.maximum(c, 1.0))


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


def simulate_impressions(
    world: _World,
    users: np.ndarray,
    e_user: np.ndarray,
    e_item: np.ndarray,
    e_ts: np.ndarray,
    s_user: np.ndarray,
    s_start: np.ndarray,
    s_dur: np.ndarray,
    n_imp: int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """Impressions of the block's users with their 20 features and click outcome.

    Every feature is computed from what the platform could observe at impression time:
    the user's events before ``t``, the user's profile, and the item's public counters.
    """
    cfg, it, us = world.cfg, world.items, world.users
    C, nu = cfg.n_categories, len(users)
    T0 = np.int64(cfg.start_ts)
    act = us["activity"][users]
    iu = np.sort(rng.choice(nu, size=n_imp, p=act / act.sum()))
    gu = users[iu]
    t = (us["window_start"][gu] + rng.random(n_imp) * cfg.active_days * DAY).astype(np.int64)
    order = np.lexsort((t, iu))
    iu, gu, t = iu[order], gu[order], t[order]

    # the user's history before t
    ekey = e_user.astype(np.int64) * _TIME_SPAN + (e_ts - T0)
    u_first = np.searchsorted(e_user, np.arange(nu + 1), side="left")
    qbase = iu.astype(np.int64) * _TIME_SPAN - T0
    h_end = np.searchsorted(ekey, qbase + t, side="left")
    h_lo = u_first[iu]
    n_hist = h_end - h_lo
    n30 = h_end - np.maximum(np.searchsorted(ekey, qbase + t - 30 * DAY, side="left"), h_lo)
    skey = s_user.astype(np.int64) * _TIME_SPAN + (s_start.astype(np.int64) - T0)
    s_first = np.searchsorted(s_user, np.arange(nu + 1), side="left")[iu]
    s_end = np.searchsorted(skey, qbase + t, side="left")
    s7 = s_end - np.maximum(np.searchsorted(skey, qbase + t - 7 * DAY, side="left"), s_first)
    cdur = np.concatenate([[0.0], np.cumsum(s_dur)])
    n_past = s_end - s_first
    avg_min = np.where(
        n_past > 0, (cdur[s_end] - cdur[s_first]) / np.maximum(n_past, 1) / 60.0, 0.0
    )
    # per (user, category) order of the events: counts and entropy without [n, C] arrays
    e_cat = it["category"][e_item]
    uc_order = np.lexsort((e_ts, e_cat, e_user))
    uc_group = e_user[uc_order].astype(np.int64) * C + e_cat[uc_order]
    uc_key = uc_group * _TIME_SPAN + (e_ts[uc_order] - T0)
    starts = np.flatnonzero(np.concatenate([[True], uc_group[1:] != uc_group[:-1]]))
    run = np.diff(np.append(starts, len(uc_group)))
    rank = np.arange(len(uc_group)) - np.repeat(starts, run)  # 0-based, within (u, c)
    inc = np.empty(len(e_user))
    inc[uc_order] = _xlogx(rank + 1.0) - _xlogx(rank.astype(np.float64))
    inc_cum = np.concatenate([[0.0], np.cumsum(inc)])
    sum_xlogx = inc_cum[h_end] - inc_cum[h_lo]
    entropy = np.where(
        n_hist > 0, np.log(np.maximum(n_hist, 1)) - sum_xlogx / np.maximum(n_hist, 1), 0.0
    )
    entropy = np.maximum(entropy, 0.0)
    last_ts = e_ts[np.maximum(h_end - 1, 0)] if len(e_ts) else np.zeros(n_imp, np.int64)
    recency = np.where(n_hist > 0, (t - last_ts) / DAY, 60.0)
    tier = us["tier"][gu]
    plat = us["platform"][gu]
    tenure = (t - us["signup"][gu]) / DAY

    # which item is shown: next episode / personalised / globally popular
    kind = rng.random(n_imp)
    cats = world._pick_categories(gu, rng)
    pop_cats = rng.choice(C, size=n_imp, p=it["cat_mass"])
    cats = np.where(kind < 0.65, cats, pop_cats)
    recent = rng.random(n_imp) < cfg.recency_mix
    item = world._draw(cats, t, rng, recent)
    last_item = e_item[np.maximum(h_end - 1, 0)] if len(e_item) else np.zeros(n_imp, np.int64)
    nxt = it["successor"][last_item]
    use_next = (kind < 0.15) & (n_hist > 0) & (nxt >= 0)
    use_next &= it["release"][np.maximum(nxt, 0)] <= t
    item = np.where(use_next, nxt, item)
    icat = it["category"][item]

    # item features
    age_days = (t - it["release"][item]) / DAY
    dur = it["duration"][item]
    cat_ctr = world.click["category_ctr"]
    ctr_feat = cat_ctr[icat] if cat_ctr is not None else np.zeros(n_imp)

    # user x item features
    g = (iu.astype(np.int64) * C + icat) * _TIME_SPAN
    c_end = np.searchsorted(uc_key, g + (t - T0), side="left")
    c_cnt = c_end - np.searchsorted(uc_key, g, side="left")
    c_share = c_cnt / np.maximum(n_hist, 1)
    last_c = e_ts[uc_order][np.maximum(c_end - 1, 0)]
    days_c = np.where(c_cnt > 0, (t - last_c) / DAY, 365.0)
    lcum = np.zeros((len(e_item) + 1, cfg.n_latent_true), dtype=np.float32)
    np.cumsum(it["latent"][e_item], axis=0, out=lcum[1:])
    hist_vec = lcum[h_end] - lcum[h_lo]  # sum of the history's latents
    ilat = it["latent"][item]
    cos = (hist_vec * ilat).sum(axis=1) / np.maximum(
        np.linalg.norm(hist_vec, axis=1) * np.linalg.norm(ilat, axis=1), 1e-9
    )
    sim = np.where(n_hist > 0, cos + 0.15 * rng.standard_normal(n_imp), 0.0)
    pred = it["predecessor"][item]
    pkey = e_user.astype(np.int64) * cfg.n_items + e_item
    porder = np.argsort(pkey)
    pk_sorted = pkey[porder]
    q = iu.astype(np.int64) * cfg.n_items + np.maximum(pred, 0)
    jj = np.minimum(np.searchsorted(pk_sorted, q), max(len(pk_sorted) - 1, 0))
    if len(pk_sorted):
        next_ep = (pred >= 0) & (pk_sorted[jj] == q) & (e_ts[porder][jj] < t)
    else:
        next_ep = np.zeros(n_imp, dtype=bool)

    columns = (
        np.log1p(n30),
        s7,
        avg_min,
        entropy,
        np.log1p(recency),
        tier,
        plat == 0,
        plat == 1,
        plat == 2,
        tenure,
        it["log_pop_obs"][item],
        age_days,
        dur,
        ctr_feat,
        it["quality_obs"][item],
        c_share,
        np.log1p(c_cnt),
        np.log1p(days_c),
        sim,
        next_ep,
    )
    feats = np.empty((n_imp, len(columns)), dtype=np.float32)
    for j, col in enumerate(columns):
        feats[:, j] = col

    # the true click model: non-linear in the observed features only
    w = CLICK_TERMS
    log30 = np.log1p(n30)
    paid_sign = np.where(tier >= 1, 1.0, -1.0)
    lin = (
        w["history_similarity"] * sim
        + w["tier>=1 & category_share>0.2"] * ((tier >= 1) & (c_share > 0.2))
        + w["relu(log_interactions_30d - 2.3)"] * np.maximum(log30 - 2.3, 0.0)
        + w["recency_days>10 & category_share<0.1"] * ((recency > 10) & (c_share < 0.1))
        + w["next_episode"] * next_ep
        + w["relu(history_similarity - 0.3)"] * np.maximum(sim - 0.3, 0.0)
        + w["paid_sign * log(duration / 20)"] * paid_sign * np.log(dur / 20.0)
        + w["mobile & duration<10"] * ((plat == 0) & (dur < 10))
        + w["mobile & duration>40"] * ((plat == 0) & (dur > 40))
        + w["log_interactions_30d>2 & item_age_days<14"] * ((log30 > 2) & (age_days < 14))
        + w["quality_obs * (duration>30)"] * it["quality_obs"][item] * (dur > 30)
        + w["log1p(item_age_days / 30)"] * np.log1p(np.maximum(age_days, 0.0) / 30.0)
        + w["log_popularity_obs"] * it["log_pop_obs"][item]
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
