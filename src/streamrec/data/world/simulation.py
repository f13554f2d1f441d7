"""The simulation of a world: :class:`_World`.

``_World(cfg, seed)`` builds the catalogue and the users, calibrates the session rate, the
top-3 category share, the engagement thresholds and the click model on pilot runs, and then
:meth:`_World.blocks` simulates the users ``chunk_users`` at a time: time-stamped sessions of
fresh picks and follows (series successors, latent neighbours), deduplicated to the first
consumption of each (user, item) pair, with an engagement level per event, and the block's
impressions. It also gives the item / user tables, ``meta`` and the :class:`WorldTruth`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from streamrec.common import json_default
from streamrec.data.dataset import ENGAGEMENT_TYPES
from streamrec.data.world.config import (
    AGE_GROUPS,
    DAY,
    PLATFORMS,
    TIERS,
    WorldConfig,
    category_names,
)
from streamrec.data.world.impressions import (
    CLICK_TERMS,
    IMPRESSION_FEATURE_GROUPS,
    IMPRESSION_FEATURES,
    default_click_model,
    fit_click_model,
    simulate_impressions,
)
from streamrec.data.world.items import _KEY_SPAN, _make_items, _segment_first, platform_vectors
from streamrec.data.world.truth import WorldTruth
from streamrec.data.world.users import _make_users


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *stream]))


def _plain(o: Any) -> Any:
    """``o`` as plain JSON values (tuples -> lists, numpy -> Python), as ``json.loads`` gives
    them back, so that in-memory ``meta`` equals the ``meta`` of a loaded dataset."""
    return json.loads(json.dumps(o, default=json_default))


def _normal_quantiles(q: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri(np.asarray(q, dtype=np.float64))


def _ids(prefix: str, n: int) -> np.ndarray:
    width = len(str(max(n - 1, 0)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=object)


class _World:
    """Items, users and calibration constants; simulates blocks of users."""

    def __init__(self, cfg: WorldConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, int(seed)
        self.items = _make_items(cfg, _rng(seed, 0))
        self.users = _make_users(cfg, self.items, _rng(seed, 1))
        self.items["vector"] = platform_vectors(self.items["latent"], _rng(seed, 7))
        r = _rng(seed, 2)
        m = 200_000
        ru, ri = r.integers(0, cfg.n_users, m), r.integers(0, cfg.n_items, m)
        dots = (self.users["latent"][ru] * self.items["latent"][ri]).sum(axis=1, dtype=np.float64)
        self.aff_mean, self.aff_sd = float(dots.mean()), float(dots.std() + 1e-9)
        lo, hi = cfg.session_len
        self.geo_p = 1.0 / (cfg.mean_session_len - lo + 1.0)
        k = np.arange(1, hi - lo + 1)
        self.session_mean = float(lo + ((1.0 - self.geo_p) ** k).sum())
        cum = np.cumsum(cfg.engagement_shares)[:-1] / np.sum(cfg.engagement_shares)
        self.eng_thresholds = _normal_quantiles(cum) * np.sqrt(
            cfg.engagement_affinity**2 + cfg.engagement_quality**2 + cfg.engagement_noise**2
        )
        self.click = {"intercept": -1.5, "scale": 1.0, "category_ctr": None}
        self.rate = 0.0
        self.top_share = cfg.top_category_share
        self._calibrate()

    # ------------------------------------------------------------------ calibration
    def _session_rate(self, events: float) -> float:
        """Scale c such that sessions ~ max(1, Poisson(c * activity)) give ``events`` events."""
        act = self.users["activity"]
        want = events / self.session_mean
        if want <= len(act):
            return 0.0
        lo, hi = 0.0, 2.0 * want / act.sum() + 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lam = mid * act
            if float((lam + np.exp(-lam)).sum()) < want:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    def _calibrate(self) -> None:
        """Pilot runs on the first ``pilot_users`` users: duplicate rate, engagement thresholds
        and the click model's intercept / scale / category click rates."""
        cfg = self.cfg
        target = cfg.target_interactions()
        pilot = np.arange(min(cfg.pilot_users, cfg.n_users))
        self.rate = self._session_rate(target)
        b1 = self._simulate(pilot, _rng(self.seed, 4, 1), 0, with_impressions=False)
        keep1 = b1["n_kept"] / max(1, b1["n_raw"])
        # dropping repeats removes more top-3 events (a user's favourite categories are where
        # they repeat themselves): raise the internal share so the *observed* one is on target
        want = cfg.top_category_share
        self.top_share = float(np.clip(want + (want - self._top3_share(b1)), 0.0, 1.0))
        z = b1["eng_z"]
        cum = np.cumsum(cfg.engagement_shares)[:-1] / np.sum(cfg.engagement_shares)
        self.eng_thresholds = np.quantile(z, cum) if len(z) > 10 else self.eng_thresholds
        self.rate = self._session_rate(target / max(keep1, 0.05))
        n_imp = cfg.pilot_impressions if cfg.n_impressions > 0 else 0
        b2 = self._simulate(pilot, _rng(self.seed, 4, 2), 0, n_imp, with_impressions=n_imp > 0)
        keep2 = b2["n_kept"] / max(1, b2["n_raw"])
        self.top_share = float(np.clip(self.top_share + (want - self._top3_share(b2)), 0.0, 1.0))
        self.rate = self._session_rate(target / max(keep2, 0.05))
        self.pilot_keep_rate = keep2
        if n_imp > 0 and len(b2["imp_lin"]):
            self.click = fit_click_model(b2["imp_lin"], b2["imp_cat"], cfg)
        else:
            self.click = default_click_model(cfg)

    def _top3_share(self, blk: dict[str, Any]) -> float:
        hits, total = _block_top3(self, blk)
        return hits / max(1, total)

    # ------------------------------------------------------------------ candidates
    def _draw(
        self, cats: np.ndarray, t: np.ndarray, rng: np.random.Generator, recent: np.ndarray
    ) -> np.ndarray:
        """Items of category ``cats`` released by time ``t``, by popularity; where ``recent``,
        only among those released in the last ``recent_days`` (if any). Shapes broadcast."""
        it = self.items
        key, cum, order = it["sample_key"], it["sample_cum"], it["sample_order"]
        base = cats.astype(np.int64) * _KEY_SPAN - it["sample_r0"]
        tt = np.asarray(t, dtype=np.int64)
        lo = it["cat_lo"][cats]
        hi = np.searchsorted(key, base + tt, side="right")
        hi = np.maximum(hi, lo + 1)
        lo_rec = np.searchsorted(key, base + tt - int(self.cfg.recent_days * DAY), side="right")
        lo_eff = np.where(recent & (lo_rec < hi), lo_rec, lo)
        target = cum[lo_eff] + rng.random(lo_eff.shape) * (cum[hi] - cum[lo_eff])
        pos = it["sample_guide"].search(target)
        pos = np.clip(pos, lo_eff, hi - 1)
        return order[pos]

    def _explore_categories(self, top: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
        """A category outside each row's top 3, uniformly."""
        c = rng.integers(0, self.cfg.n_categories - 3, n)
        for t in np.sort(top, axis=1).T:
            c = c + (c >= t)
        return c

    def _pick_categories(self, users: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The user's top 3 (by their weights) with probability ``self.top_share`` (the
        configured share, corrected for deduplication), else an exploration category."""
        top = self.users["top"][users]
        w = np.cumsum(self.users["top_weights"][users], axis=1)
        which = np.minimum((rng.random(len(users))[:, None] > w).sum(axis=1), 2)
        cat = top[np.arange(len(users)), which]
        explore = rng.random(len(users)) >= self.top_share
        if explore.any():
            cat[explore] = self._explore_categories(top[explore], rng, int(explore.sum()))
        return cat

    # ------------------------------------------------------------------ one block
    def _simulate(
        self,
        users: np.ndarray,
        rng: np.random.Generator,
        session_base: int,
        n_imp: int = 0,
        with_impressions: bool = True,
    ) -> dict[str, Any]:
        """Simulate the sessions (and impressions) of a block of users ``users`` (global ids,
        ascending). Returns events in (user, time) order, deduplicated, and block statistics."""
        cfg, it, us = self.cfg, self.items, self.users
        nu = len(users)
        lo_len, hi_len = cfg.session_len
        lam = self.rate * us["activity"][users]
        n_sess = np.maximum(1, rng.poisson(lam))
        S = int(n_sess.sum())
        s_user = np.repeat(np.arange(nu), n_sess)  # local user of each session
        s_len = lo_len + np.minimum(rng.geometric(self.geo_p, S) - 1, hi_len - lo_len)
        u01 = rng.random(S)
        u01 = u01[np.argsort(s_user + u01, kind="stable")]  # increasing within each user
        start = us["window_start"][users][s_user] + u01 * cfg.active_days * DAY
        s_off = _segment_first(s_len)
        E = int(s_len.sum())

        # step through sessions: at step k the active sessions are a prefix (longest first)
        proc = np.argsort(-s_len, kind="stable")
        p_len = s_len[proc]
        p_user = users[s_user[proc]]
        p_ulat = us["latent"][p_user]
        p_browse = us["browse"][p_user]
        p_start = start[proc]
        p_off = s_off[proc]
        offset = np.zeros(S)
        prev = np.full(S, -1, dtype=np.int64)
        ev_item = np.empty(E, dtype=np.int64)
        ev_aff = np.empty(E, dtype=np.float32)
        ev_z = np.empty(E, dtype=np.float32)
        ev_offset = np.empty(E, dtype=np.float64)
        n_active = np.searchsorted(-p_len, -np.arange(hi_len + 1), side="left")
        frac = np.array([0.03, 0.3, 0.9, 1.0, 1.0])
        K = cfg.n_candidates
        for k in range(int(p_len.max()) if S else 0):
            A = int(n_active[k])
            t = (p_start[:A] + offset[:A]).astype(np.int64)
            item = np.full(A, -1, dtype=np.int64)
            if k > 0 and cfg.p_follow > 0:
                follow = np.flatnonzero(rng.random(A) < cfg.p_follow)
                pv = prev[follow]
                succ = it["successor"][pv]
                ok = (succ >= 0) & (rng.random(len(follow)) < cfg.p_successor)
                ok &= it["release"][np.maximum(succ, 0)] <= t[follow]
                item[follow[ok]] = succ[ok]
                rest = follow[~ok]
                if cfg.n_neighbours > 0 and len(rest):
                    nb = it["neighbours"][prev[rest], rng.integers(0, cfg.n_neighbours, len(rest))]
                    ok = (nb >= 0) & (it["release"][np.maximum(nb, 0)] <= t[rest])
                    item[rest[ok]] = nb[ok]
            aff = np.empty(A, dtype=np.float32)
            followed = np.flatnonzero(item >= 0)
            fresh = np.flatnonzero(item < 0)
            if len(fresh):
                cats = self._pick_categories(p_user[fresh], rng)
                recent = rng.random((len(fresh), K)) < cfg.recency_mix
                cand = self._draw(cats[:, None], t[fresh][:, None], rng, recent)
                a = np.einsum("fkd,fd->fk", it["latent"][cand], p_ulat[fresh])
                a += cfg.noise_std * rng.standard_normal(a.shape, dtype=np.float32)
                g = -np.log(-np.log(rng.random(a.shape, dtype=np.float32) + 1e-12))
                score = a / cfg.temperature + g
                j = np.argmax(score, axis=1)
                item[fresh] = cand[np.arange(len(fresh)), j]
                aff[fresh] = a[np.arange(len(fresh)), j]
            if len(followed):
                a = (it["latent"][item[followed]] * p_ulat[followed]).sum(axis=1)
                aff[followed] = a + cfg.noise_std * rng.standard_normal(len(followed))
            aff_std = (aff - self.aff_mean) / self.aff_sd
            z = (
                cfg.engagement_affinity * aff_std
                + cfg.engagement_quality * it["quality"][item]
                + cfg.engagement_noise * rng.standard_normal(A)
            )
            eng = np.searchsorted(self.eng_thresholds, z)
            watch = it["duration"][item] * 60.0 * frac[eng] * rng.uniform(0.8, 1.0, A)
            gap = 3.0 + 20.0 * p_browse[:A] * rng.exponential(1.0, A) + np.minimum(watch, 10_800)
            pos = p_off[:A] + k
            ev_item[pos] = item
            ev_aff[pos] = aff
            ev_z[pos] = z
            ev_offset[pos] = offset[:A]
            offset[:A] += gap
            prev[:A] = item

        # place sessions in time: a user's sessions never overlap
        dur = np.empty(S)
        dur[proc] = offset
        cum = np.cumsum(dur + 60.0) - (dur + 60.0)
        first = _segment_first(n_sess)
        s_start = start + cum - np.repeat(cum[first], n_sess)
        ev_sess = np.repeat(np.arange(S), s_len)
        ev_ts = np.floor(s_start[ev_sess] + ev_offset).astype(np.int64)
        ev_user = s_user[ev_sess]

        # keep the first consumption of each (user, item) pair (rows are in time order)
        pair = ev_user.astype(np.int64) * cfg.n_items + ev_item
        _, first_idx = np.unique(pair, return_index=True)
        keep = np.zeros(E, dtype=bool)
        keep[first_idx] = True
        eng_all = np.searchsorted(self.eng_thresholds, ev_z).astype(np.int8)
        out: dict[str, Any] = {
            "user": users[ev_user[keep]].astype(np.int32),
            "item": ev_item[keep].astype(np.int32),
            "timestamp": ev_ts[keep],
            "engagement": eng_all[keep],
            "session": (session_base + ev_sess[keep]).astype(np.int64),
            "n_raw": E,
            "n_kept": int(keep.sum()),
            "n_sessions": S,
            "session_length": s_len,
            "eng_z": ev_z,
        }
        if with_impressions and n_imp > 0:
            out.update(
                simulate_impressions(
                    self,
                    users,
                    ev_user[keep],
                    ev_item[keep],
                    ev_ts[keep],
                    session_base + ev_sess[keep],
                    n_imp,
                    rng,
                )
            )
        return out

    # ------------------------------------------------------------------ blocks
    def blocks(self) -> Iterator[dict[str, Any]]:
        """Simulate all users, ``chunk_users`` at a time (in user order)."""
        cfg = self.cfg
        n_blocks = -(-cfg.n_users // cfg.chunk_users)
        session_base = 0
        for b in range(n_blocks):
            lo = b * cfg.chunk_users
            hi = min(cfg.n_users, lo + cfg.chunk_users)
            n_imp = (cfg.n_impressions * hi) // cfg.n_users
            n_imp -= (cfg.n_impressions * lo) // cfg.n_users
            blk = self._simulate(np.arange(lo, hi), _rng(self.seed, 10, b), session_base, n_imp)
            blk["block"], blk["n_blocks"] = b, n_blocks
            session_base += blk["n_sessions"]
            yield blk

    # ------------------------------------------------------------------ tables
    def item_table(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        it, n = self.items, self.cfg.n_items
        ids = _ids("i", n)
        cols = {
            "category": it["category"].astype(np.int16),
            "title": it["title"],
            "text": it["text"],
            "duration_min": it["duration"].astype(np.float32),
            "release_ts": it["release"].astype(np.int64),
            # what the platform observes (the click features read these): noisy popularity
            # and quality counters, the series order, and its own item vectors
            "log_popularity": it["log_pop_obs"].astype(np.float32),
            "quality": it["quality_obs"].astype(np.float32),
            "predecessor": it["predecessor"].astype(np.int32),
            "vector": it["vector"],
        }
        return ids, cols

    def user_table(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        us, n = self.users, self.cfg.n_users
        ids = _ids("u", n)
        cols = {
            "activity": us["activity"].astype(np.float32),
            "tier": us["tier"].astype(np.int8),
            "platform": us["platform"].astype(np.int8),
            "tenure_days": us["tenure_days"].astype(np.float32),
            "signup_ts": us["signup"].astype(np.int64),
            "age_group": us["age"].astype(np.int8),
        }
        return ids, cols

    def meta(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "source": "streamrec-world",
            "categories": category_names(cfg.n_categories),
            "platforms": list(PLATFORMS),
            "tiers": list(TIERS),
            "age_groups": list(AGE_GROUPS),
            "engagement_types": list(ENGAGEMENT_TYPES),
            "impression_features": list(IMPRESSION_FEATURES),
            "impression_feature_groups": list(IMPRESSION_FEATURE_GROUPS),
            "vocab_size": int(self.items["vocab_size"]),
            "world": {
                "preset": cfg.name,
                "seed": self.seed,
                "config": _plain(dataclasses.asdict(cfg)),
                "calibration": self.calibration(),
            },
        }

    def calibration(self) -> dict[str, Any]:
        return _plain(
            {
                "affinity_mean": self.aff_mean,
                "affinity_sd": self.aff_sd,
                "session_rate": self.rate,
                "pilot_keep_rate": getattr(self, "pilot_keep_rate", None),
                "top_category_share_internal": self.top_share,
                "engagement_thresholds": np.asarray(self.eng_thresholds),
                "click_intercept": self.click["intercept"],
                "click_scale": self.click["scale"],
                "click_terms": CLICK_TERMS,
                "category_ctr": self.click["category_ctr"],
            }
        )

    def truth(self, session_length: np.ndarray, impression_p: np.ndarray) -> WorldTruth:
        it, us = self.items, self.users
        return WorldTruth(
            item_latent=it["latent"],
            item_popularity=it["popularity"].astype(np.float32),
            item_quality=it["quality"].astype(np.float32),
            item_series=it["series"].astype(np.int32),
            item_episode=it["episode"].astype(np.int32),
            item_successor=it["successor"].astype(np.int32),
            category_centroids=it["centroids"],
            user_latent=us["latent"],
            user_top_categories=us["top"].astype(np.int16),
            user_top_weights=us["top_weights"],
            session_length=session_length.astype(np.int16),
            impression_p=impression_p.astype(np.float32),
            params={
                "preset": self.cfg.name,
                "seed": self.seed,
                "config": dataclasses.asdict(self.cfg),
                "calibration": self.calibration(),
            },
        )


def _block_top3(world: _World, blk: dict[str, Any]) -> tuple[int, int]:
    top = world.users["top"][blk["user"]]
    cat = world.items["category"][blk["item"]]
    return int((top == cat[:, None]).any(axis=1).sum()), len(cat)
