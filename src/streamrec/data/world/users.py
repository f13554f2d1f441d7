"""The users of a world: :func:`_make_users`.

Each user gets an age group, three favourite categories with weights [n_users, 3], a latent
vector [n_users, n_latent_true] mixing those categories' centroids, an activity level, a
subscription tier, a platform and a signup time; the observable ones become the user table.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from streamrec.data.world.config import AGE_GROUPS, DAY, WorldConfig


def _make_users(cfg: WorldConfig, items: dict[str, Any], rng: np.random.Generator) -> dict:
    n, d, C = cfg.n_users, cfg.n_latent_true, cfg.n_categories
    T0 = cfg.start_ts
    age = rng.choice(len(AGE_GROUPS), size=n, p=[0.15, 0.25, 0.2, 0.17, 0.13, 0.1])
    tilt = 0.6 * rng.standard_normal((len(AGE_GROUPS), C))
    score = np.log(items["cat_share"])[None, :] + tilt[age] + rng.gumbel(size=(n, C))
    top = np.argsort(-score, axis=1)[:, :3]
    weights = np.sort(rng.dirichlet((3.0, 2.0, 1.5), size=n), axis=1)[:, ::-1]
    cen = items["centroids"].astype(np.float64)
    lat = np.einsum("nk,nkd->nd", weights, cen[top])
    lat += cfg.user_spread / np.sqrt(d) * rng.standard_normal((n, d))
    activity = np.exp(cfg.activity_sigma * rng.standard_normal(n) - cfg.activity_sigma**2 / 2)
    tier_score = 0.6 * np.log(activity) + rng.standard_normal(n)
    tier = np.searchsorted(np.quantile(tier_score, [0.6, 0.9]), tier_score).astype(np.int8)
    platform = rng.choice(3, size=n, p=[0.55, 0.30, 0.15]).astype(np.int8)
    before = rng.random(n) < cfg.signup_before_frac
    signup = np.where(
        before,
        T0 - cfg.history_days * DAY * rng.random(n) ** 1.5,
        T0 + cfg.signup_days * DAY * rng.random(n),
    ).astype(np.int64)
    t_end = T0 + int((cfg.signup_days + cfg.active_days) * DAY)
    return {
        "age": age.astype(np.int8),
        "top": top.astype(np.int64),
        "top_weights": weights.astype(np.float32),
        "latent": lat.astype(np.float32),
        "activity": activity,
        "tier": tier,
        "platform": platform,
        "signup": signup,
        "window_start": np.maximum(signup, T0),
        "browse": np.exp(0.5 * rng.standard_normal(n)),
        "tenure_days": ((t_end - signup) / DAY).astype(np.float32),
    }
