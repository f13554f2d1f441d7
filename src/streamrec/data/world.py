"""The synthetic StreamRec world: the built-in default data of the project.

A world is a streaming platform simulated from a known generative story, so that every model
has something real to learn and the ground truth is available to check it against:

* **items** belong to one of ``n_categories`` categories, carry a true latent vector (their
  category's centroid plus item-specific noise), a long-tailed popularity, a quality, a
  duration and a release time; about half of them are episodes of a *series* (episode ``i`` has
  a successor ``i + 1``). Each item has a short title and a synopsis of 20-100 tokens drawn from
  a category vocabulary, a shared general vocabulary, words tied to the item's own latent
  position, and its series' signature words.
* **users** prefer three categories (their latent is a mix of those centroids plus noise) and
  have an activity level, a subscription tier, a platform, an age group and a signup time.
* **behaviour**: time-stamped sessions of 5-50 events. A fresh pick chooses a category (the
  user's top 3 with probability ``top_category_share``, another one otherwise), draws
  ``n_candidates`` released items of it by popularity (part of them from the last
  ``recent_days``: the recency bias) and keeps one with probability proportional to
  ``exp(affinity / temperature)``, where ``affinity = user . item + N(0, noise_std^2)``.
  With probability ``p_follow`` the next event instead follows from the previous item: its
  series successor (``p_successor``) or one of its nearest latent neighbours in the same
  category. Only the first consumption of a (user, item) pair is kept. Each event has an
  engagement level (click < partial_view < full_view < save < share) from ordinal thresholds
  on the affinity.
* **impressions** for click prediction: (user, item, 20 hand-crafted features, clicked,
  timestamp); the click probability is a known non-linear function of the observed features
  alone (so the oracle AUC is the best any model can reach), calibrated to a target click rate
  and oracle AUC.

Entry points: :func:`generate_world` writes a dataset directory (chunks of users, bounded
memory, the ground truth in ``truth/``); :func:`make_world` builds a small world in memory and
:func:`make_world_with_truth` also returns its :class:`WorldTruth`. A world is a deterministic
function of its :class:`WorldConfig` and seed. See ``docs/world.md``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import (
    ENGAGEMENT_TYPES,
    FORMAT,
    Dataset,
    atomic_dir,
    write_parquet,
)

DAY = 86_400
_KEY_SPAN = np.int64(1) << np.int64(40)  # composite keys: group * _KEY_SPAN + seconds
_TIME_SPAN = np.int64(1) << np.int64(32)  # composite keys: user * _TIME_SPAN + seconds

CATEGORY_NAMES = (
    "news", "comedy", "documentary", "drama", "sports", "music", "science", "technology",
    "cooking", "travel", "kids", "history", "politics", "business", "health", "gaming",
    "fashion", "nature", "true_crime", "arts",
)  # fmt: skip
_CATEGORY_MINUTES = (
    4, 22, 55, 45, 15, 4, 25, 15, 12, 25, 12, 40, 20, 15, 15, 30, 8, 45, 40, 20,
)  # fmt: skip
PLATFORMS = ("mobile", "desktop", "tablet")
TIERS = ("free", "standard", "premium")
AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")

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

_WORD_ONSETS = (
    "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
    "br", "cr", "dr", "fl", "gr", "pl", "st", "tr", "sh", "ch", "th",
)  # fmt: skip
_WORD_VOWELS = ("a", "e", "i", "o", "u", "ai", "ou", "ea")
_WORD_CODAS = ("", "n", "r", "s", "l")
_NUMBER_WORDS = (
    "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen",
    "nineteen", "twenty",
)  # fmt: skip


# =============================================================================== config
@dataclass
class WorldConfig:
    """Every knob of the synthetic world. ``PRESETS`` holds the named ones.

    Sizes: ``n_interactions`` is the target number of (deduplicated) interactions; when it is
    ``None`` it is ``density * n_users * n_items``. ``chunk_users`` is how many users are
    simulated (and written) at once: it bounds memory and is part of the world's definition
    (the same config and seed give the same data whether it is written or built in memory).
    """

    name: str = "world"
    n_users: int = 10_000
    n_items: int = 5_000
    n_interactions: int | None = None
    density: float | None = 0.008
    n_categories: int = 20
    n_latent_true: int = 15
    noise_std: float = 0.3
    # items
    category_scale: float = 1.0  # norm of a category centroid
    item_spread: float = 0.8  # item-specific latent noise (norm) around the centroid
    episode_spread: float = 0.3  # an episode's noise around its series' latent
    popularity_sigma: float = 1.5  # log-normal sigma of item popularity (long tail)
    series_frac: float = 0.5  # share of items that are episodes of a series
    series_len: tuple[int, int] = (3, 12)
    new_item_frac: float = 0.15  # share of items released during the log
    catalogue_age_days: float = 730.0
    episode_interval_days: float = 7.0
    # text
    words_per_category: int = 300
    n_general_words: int = 2_000
    words_per_latent_group: int = 60
    text_len: tuple[int, int] = (20, 100)
    text_mean_len: float = 55.0
    # token kinds of a synopsis: category / general / latent / series words (a standalone
    # item's series share goes to latent words); a category token comes from the most similar
    # other category with probability text_cross_category (categories overlap, like real ones)
    text_mix: tuple[float, float, float, float] = (0.14, 0.46, 0.30, 0.10)
    text_cross_category: float = 0.4
    # users
    user_spread: float = 0.5
    activity_sigma: float = 0.8
    signup_before_frac: float = 0.5  # users who signed up before the log starts
    history_days: float = 1_095.0  # how far back those signups go
    signup_days: float = 180.0  # later signups spread over the first signup_days of the log
    active_days: float = 180.0  # each user's sessions spread over this many days
    start_ts: int = 1_704_067_200  # 2024-01-01T00:00:00Z, the start of the log
    # behaviour
    top_category_share: float = 0.7
    temperature: float = 0.25
    n_candidates: int = 16
    recency_mix: float = 0.35  # share of candidates drawn from the last recent_days
    recent_days: float = 30.0
    p_follow: float = 0.4
    p_successor: float = 0.65
    n_neighbours: int = 10
    neighbour_pool: int = 4_096
    session_len: tuple[int, int] = (5, 50)
    mean_session_len: float = 13.0
    # engagement: target shares of click / partial_view / full_view / save / share
    engagement_shares: tuple[float, ...] = (0.35, 0.25, 0.22, 0.12, 0.06)
    engagement_affinity: float = 1.0
    engagement_quality: float = 0.3
    engagement_noise: float = 0.8
    # impressions (click prediction)
    n_impressions: int = 300_000
    click_rate: float = 0.2
    oracle_auc: float = 0.8
    # mechanics
    chunk_users: int = 25_000
    pilot_users: int = 2_000
    pilot_impressions: int = 20_000

    def target_interactions(self) -> int:
        """The target number of interactions after deduplication."""
        if self.n_interactions is not None:
            return int(self.n_interactions)
        if self.density is None:
            raise ValueError("WorldConfig needs n_interactions or density")
        return int(round(self.density * self.n_users * self.n_items))

    def validate(self) -> None:
        """Raise ``ValueError`` with a clear message for an impossible configuration."""
        if self.n_users < 1 or self.n_items < 1:
            raise ValueError("WorldConfig: n_users and n_items must be positive")
        if self.n_categories < 4:
            raise ValueError("WorldConfig: n_categories must be at least 4 (top 3 + exploration)")
        if self.n_items < 2 * self.n_categories:
            raise ValueError("WorldConfig: n_items must be at least 2 * n_categories")
        lo, hi = self.session_len
        if not 1 <= lo <= hi or not lo < self.mean_session_len < hi:
            raise ValueError("WorldConfig: need 1 <= session_len[0] < mean_session_len < [1]")
        if len(self.engagement_shares) != len(ENGAGEMENT_TYPES):
            raise ValueError(f"WorldConfig: engagement_shares needs {len(ENGAGEMENT_TYPES)} values")
        if not 0.0 < self.click_rate < 1.0 or not 0.5 < self.oracle_auc < 1.0:
            raise ValueError("WorldConfig: need 0 < click_rate < 1 and 0.5 < oracle_auc < 1")
        for name in ("top_category_share", "p_follow", "p_successor", "recency_mix"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"WorldConfig: {name} must be in [0, 1]")
        if self.text_len[0] < 2 or self.text_len[0] > self.text_len[1]:
            raise ValueError("WorldConfig: bad text_len")
        if self.chunk_users < 1 or self.n_candidates < 1 or self.temperature <= 0:
            raise ValueError("WorldConfig: chunk_users, n_candidates, temperature must be > 0")
        self.target_interactions()


PRESETS: dict[str, WorldConfig] = {
    "tiny": WorldConfig(
        name="tiny", n_users=300, n_items=200, n_interactions=3_500, density=None,
        mean_session_len=10.0, n_impressions=5_000, pilot_impressions=5_000,
    ),
    "m0": WorldConfig(
        name="m0", n_users=10_000, n_items=5_000, n_latent_true=15, density=0.008,
        noise_std=0.3, n_impressions=1_000_000,
    ),
    "m5": WorldConfig(
        name="m5", n_users=50_000, n_items=20_000, n_interactions=500_000, density=None,
        n_categories=15, mean_session_len=8.0, n_impressions=200_000,
    ),
    "demo": WorldConfig(
        name="demo", n_users=6_000, n_items=3_500, n_interactions=200_000, density=None,
        n_impressions=200_000,
    ),
    "platform": WorldConfig(
        name="platform", n_users=1_000_000, n_items=200_000, n_interactions=40_000_000,
        density=None, n_impressions=1_000_000, chunk_users=25_000,
    ),
}  # fmt: skip


def resolve_config(config_or_preset: WorldConfig | str) -> WorldConfig:
    """A copy of the named preset, or of the given config; validated."""
    if isinstance(config_or_preset, WorldConfig):
        cfg = dataclasses.replace(config_or_preset)
    elif isinstance(config_or_preset, str):
        if config_or_preset not in PRESETS:
            raise ValueError(
                f"unknown world preset {config_or_preset!r}; choose one of {', '.join(PRESETS)}"
            )
        cfg = dataclasses.replace(PRESETS[config_or_preset])
    else:
        raise TypeError(f"expected a WorldConfig or a preset name, got {type(config_or_preset)}")
    cfg.validate()
    return cfg


# =============================================================================== truth
@dataclass
class WorldTruth:
    """The hidden ground truth of a world (saved in ``truth/``; never read by models).

    Shapes: item arrays [n_items], ``item_latent`` [n_items, d], ``user_latent`` [n_users, d],
    ``user_top_categories`` / ``user_top_weights`` [n_users, 3] (most preferred first),
    ``category_centroids`` [n_categories, d], ``session_length`` [n_sessions] (events per
    session id *before* deduplication), ``impression_p`` [n_impressions] (true click
    probabilities, aligned with the impression rows). ``item_successor`` / ``item_series`` are
    -1 where an item has no successor / is not in a series.
    """

    item_latent: np.ndarray
    item_popularity: np.ndarray
    item_quality: np.ndarray
    item_series: np.ndarray
    item_episode: np.ndarray
    item_successor: np.ndarray
    category_centroids: np.ndarray
    user_latent: np.ndarray
    user_top_categories: np.ndarray
    user_top_weights: np.ndarray
    session_length: np.ndarray
    impression_p: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    _ITEM = ("item_latent", "item_popularity", "item_quality", "item_series", "item_episode",
             "item_successor", "category_centroids")  # fmt: skip
    _USER = ("user_latent", "user_top_categories", "user_top_weights")

    def save(self, directory: str | Path) -> Path:
        """Write ``items.npz``, ``users.npz``, ``sessions.npy``, ``impressions.npy`` and
        ``world.json`` into ``directory`` (created if needed)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        np.savez(d / "items.npz", **{k: getattr(self, k) for k in self._ITEM})
        np.savez(d / "users.npz", **{k: getattr(self, k) for k in self._USER})
        np.save(d / "sessions.npy", self.session_length)
        np.save(d / "impressions.npy", self.impression_p)
        (d / "world.json").write_text(json.dumps(_jsonable(self.params), indent=2))
        return d

    @classmethod
    def load(cls, path: str | Path) -> WorldTruth:
        """Read ``truth/`` (or a dataset directory that contains one)."""
        d = Path(path)
        if (d / "truth").is_dir():
            d = d / "truth"
        if not (d / "items.npz").is_file():
            raise FileNotFoundError(f"{d} holds no world ground truth (items.npz)")
        kw: dict[str, Any] = {}
        with np.load(d / "items.npz") as z:
            kw.update({k: z[k] for k in cls._ITEM})
        with np.load(d / "users.npz") as z:
            kw.update({k: z[k] for k in cls._USER})
        kw["session_length"] = np.load(d / "sessions.npy")
        kw["impression_p"] = np.load(d / "impressions.npy")
        kw["params"] = json.loads((d / "world.json").read_text())
        return cls(**kw)


def load_truth(path: str | Path) -> WorldTruth:
    """The ground truth of a generated world directory (``path/truth``)."""
    return WorldTruth.load(path)


# =============================================================================== helpers
def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    return o


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


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of binary ``labels`` [n] ranked by ``scores`` [n] (ties count half)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    s_sorted = scores[order]
    new = np.concatenate([[True], s_sorted[1:] != s_sorted[:-1], [True]])
    bounds = np.flatnonzero(new)
    avg = 0.5 * (bounds[:-1] + bounds[1:] + 1)  # average 1-based rank of each tie group
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(avg, np.diff(bounds))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _zipf_cdf(n: int, a: float = 1.0) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** a
    c = np.cumsum(w)
    return c / c[-1]


def _zipf_draw(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


class _Guide:
    """``searchsorted(cum, x, side="right") - 1`` for a non-decreasing ``cum`` in O(1) per
    query (a guide table of 8 buckets per entry, then a short vectorised forward scan)."""

    def __init__(self, cum: np.ndarray) -> None:
        self.cum = np.asarray(cum, dtype=np.float64)
        self.padded = np.append(self.cum, np.inf)
        m = 8 * len(self.cum)
        self.scale = m / self.cum[-1] if self.cum[-1] > 0 else 0.0
        self.guide = np.searchsorted(self.cum, np.arange(m + 2) / max(self.scale, 1e-300),
                                     side="right") - 1  # fmt: skip
        self.steps = int(min(3, np.diff(self.guide).max(initial=0)))

    def search(self, x: np.ndarray) -> np.ndarray:
        shape = np.shape(x)
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        b = np.clip((x * self.scale).astype(np.int64), 0, len(self.guide) - 1)
        pos = self.guide[b]
        for _ in range(self.steps):
            pos += self.padded[pos + 1] <= x
        bad = np.flatnonzero(self.padded[pos + 1] <= x)
        if len(bad):
            pos[bad] = np.searchsorted(self.cum, x[bad], side="right") - 1
        return pos.reshape(shape)


def _segment_first(counts: np.ndarray) -> np.ndarray:
    """Start offsets of consecutive segments with the given lengths."""
    return np.cumsum(counts) - counts


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), *stream]))


def _make_vocab(cfg: WorldConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Pseudo-words: category vocabularies, general words, latent word groups, extras."""
    C, d = cfg.n_categories, cfg.n_latent_true
    names = category_names(C)
    reserved = set(names) | set(_NUMBER_WORDS) | {"part"}
    n_cat_words = C * cfg.words_per_category
    n_latent_words = d * 2 * cfg.words_per_latent_group
    n_needed = n_cat_words + cfg.n_general_words + n_latent_words
    n_syl = len(_WORD_ONSETS) * len(_WORD_VOWELS)
    space = n_syl * n_syl * len(_WORD_CODAS)
    idx = rng.choice(space, size=min(space, n_needed + 64), replace=False)
    syl = [o + v for o in _WORD_ONSETS for v in _WORD_VOWELS]
    words: list[str] = []
    for i in idx.tolist():
        a, rest = divmod(i, n_syl * len(_WORD_CODAS))
        b, c = divmod(rest, len(_WORD_CODAS))
        w = syl[a] + syl[b] + _WORD_CODAS[c]
        if w not in reserved:
            words.append(w)
    if len(words) < n_needed:
        raise ValueError("WorldConfig asks for a larger vocabulary than the word generator has")
    cat_words = np.array(words[:n_cat_words], dtype=object).reshape(C, cfg.words_per_category)
    cat_words[:, 0] = names  # each category's most frequent word is its own name
    general = words[n_cat_words : n_cat_words + cfg.n_general_words]
    latent = words[n_cat_words + cfg.n_general_words : n_needed]
    extras = ["part", *_NUMBER_WORDS]
    vocab = np.array(list(cat_words.reshape(-1)) + general + latent + extras, dtype=object)
    return {
        "vocab": vocab,
        "cat_base": 0,
        "general_base": n_cat_words,
        "latent_base": n_cat_words + cfg.n_general_words,
        "extra_base": n_needed,
    }


def category_names(n: int) -> list[str]:
    """The category names of a world with ``n`` categories."""
    return [CATEGORY_NAMES[i] if i < len(CATEGORY_NAMES) else f"category_{i}" for i in range(n)]


def _join_tokens(vocab: np.ndarray, ids: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """One space-joined string per row; row ``r`` has ``lens[r]`` consecutive ``ids``."""
    n = len(lens)
    if n == 0:
        return np.array([], dtype=object)
    words = vocab[ids]
    sep_pos = np.cumsum(lens)[:-1] + np.arange(n - 1)  # separator after each row but the last
    total = len(ids) + n - 1
    is_sep = np.zeros(total, dtype=bool)
    is_sep[sep_pos] = True
    seq = np.empty(total, dtype=object)
    seq[is_sep] = "\n"
    seq[~is_sep] = words
    return np.array(" ".join(seq.tolist()).split(" \n "), dtype=object)


# =============================================================================== items
def _make_items(cfg: WorldConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Catalogue: categories, series, latents, popularity, quality, times, text."""
    n, d, C = cfg.n_items, cfg.n_latent_true, cfg.n_categories
    T0 = cfg.start_ts
    t_end = T0 + int((cfg.signup_days + cfg.active_days) * DAY)
    centroids = rng.standard_normal((C, d)) * (cfg.category_scale / np.sqrt(d))
    cat_share = rng.gamma(4.0, 0.25, C)
    cat_share /= cat_share.sum()

    # series occupy the first "slots", standalone items the rest; ids are shuffled at the end
    lo, hi = cfg.series_len
    target = int(cfg.series_frac * n) if n - int(cfg.series_frac * n) >= C else max(0, n - C)
    lens = rng.integers(lo, hi + 1, size=target // max(1, lo) + 1)
    keep = np.searchsorted(np.cumsum(lens), target, side="right")
    ser_len = lens[:keep]
    n_ser = int(ser_len.sum())
    n_series = len(ser_len)
    ser_cat = rng.choice(C, size=n_series, p=cat_share)
    alone_cat = rng.choice(C, size=n - n_ser, p=cat_share)
    alone_cat[:C] = np.arange(C)  # every category has at least one (old) standalone item
    slot_series = np.concatenate([np.repeat(np.arange(n_series), ser_len),
                                  np.full(n - n_ser, -1)])  # fmt: skip
    slot_episode = np.full(n, -1)
    slot_episode[:n_ser] = np.arange(n_ser) - np.repeat(_segment_first(ser_len), ser_len)
    slot_cat = np.concatenate([ser_cat[slot_series[:n_ser]], alone_cat])
    in_ser = slot_series >= 0

    scale = 1.0 / np.sqrt(d)
    ser_lat = centroids[ser_cat] + cfg.item_spread * scale * rng.standard_normal((n_series, d))
    lat = centroids[slot_cat] + cfg.item_spread * scale * rng.standard_normal((n, d))
    lat[in_ser] = ser_lat[slot_series[in_ser]] + (
        cfg.episode_spread * scale * rng.standard_normal((n_ser, d))
    )

    ser_q = rng.standard_normal(n_series)
    quality = rng.standard_normal(n)
    quality[in_ser] = 0.8 * ser_q[slot_series[in_ser]] + 0.6 * quality[in_ser]
    eps = rng.standard_normal(n)
    ser_eps = rng.standard_normal(n_series)
    eps[in_ser] = ser_eps[slot_series[in_ser]]
    log_pop = cfg.popularity_sigma * (0.5 * quality + np.sqrt(0.75) * eps)
    log_pop[in_ser] += np.log(0.85) * slot_episode[in_ser]  # later episodes are watched less
    pop = np.exp(log_pop)
    pop /= pop.mean()

    # release times: most of the catalogue predates the log, a share arrives during it
    def release_times(m: int) -> np.ndarray:
        old = T0 - cfg.catalogue_age_days * DAY * rng.random(m) ** 2
        new = T0 + (t_end - T0) * rng.random(m)
        return np.where(rng.random(m) < cfg.new_item_frac, new, old)

    ser_start = release_times(n_series)
    release = release_times(n)
    release[in_ser] = ser_start[slot_series[in_ser]] + (
        slot_episode[in_ser] * cfg.episode_interval_days * DAY
    )
    release[n_ser : n_ser + C] = T0 - cfg.catalogue_age_days * DAY
    release = np.minimum(release, t_end).astype(np.int64)

    base_min = np.array([_CATEGORY_MINUTES[c % len(_CATEGORY_MINUTES)] for c in range(C)])
    ser_dur = base_min[ser_cat] * np.exp(0.35 * rng.standard_normal(n_series))
    duration = base_min[slot_cat] * np.exp(0.35 * rng.standard_normal(n))
    duration[in_ser] = ser_dur[slot_series[in_ser]] * np.exp(0.1 * rng.standard_normal(n_ser))
    duration = np.maximum(0.5, np.round(duration, 1))

    # shuffle: item id of slot j is perm[j]
    perm = rng.permutation(n)

    def by_id(a: np.ndarray) -> np.ndarray:
        out = np.empty_like(a)
        out[perm] = a
        return out

    successor = np.full(n, -1, dtype=np.int64)
    has_next = np.zeros(n, dtype=bool)
    has_next[:n_ser] = slot_episode[:n_ser] < np.repeat(ser_len, ser_len)[:n_ser] - 1
    successor[perm[np.flatnonzero(has_next)]] = perm[np.flatnonzero(has_next) + 1]
    predecessor = np.full(n, -1, dtype=np.int64)
    predecessor[successor[successor >= 0]] = np.flatnonzero(successor >= 0)

    items: dict[str, Any] = {
        "category": by_id(slot_cat).astype(np.int64),
        "series": by_id(slot_series),
        "episode": by_id(slot_episode),
        "latent": by_id(lat).astype(np.float32),
        "quality": by_id(quality),
        "popularity": by_id(pop),
        "release": by_id(release),
        "duration": by_id(duration).astype(np.float32),
        "successor": successor,
        "predecessor": predecessor,
        "centroids": centroids.astype(np.float32),
        "cat_share": cat_share,
        "n_series": n_series,
    }
    # observable platform counters used as impression features (noisy views of the truth)
    items["log_pop_obs"] = np.log(items["popularity"]) + 0.25 * rng.standard_normal(n)
    items["quality_obs"] = items["quality"] + 0.6 * rng.standard_normal(n)
    items["neighbours"] = _neighbours(items["latent"], items["category"], cfg, rng)
    items.update(_item_text(cfg, items, rng))
    # sampling structure: items sorted by (category, release) with a popularity cumsum
    order = np.lexsort((items["release"], items["category"]))
    r0 = int(items["release"].min()) - 1
    items["sample_order"] = order
    items["sample_key"] = items["category"][order] * _KEY_SPAN + (items["release"][order] - r0)
    items["sample_r0"] = r0
    items["sample_cum"] = np.concatenate([[0.0], np.cumsum(items["popularity"][order])])
    items["sample_guide"] = _Guide(items["sample_cum"])
    items["cat_lo"] = np.searchsorted(items["category"][order], np.arange(C), side="left")
    mass = np.bincount(items["category"], weights=items["popularity"], minlength=C)
    items["cat_mass"] = mass / mass.sum()
    return items


def _neighbours(
    latent: np.ndarray, category: np.ndarray, cfg: WorldConfig, rng: np.random.Generator
) -> np.ndarray:
    """[n_items, n_neighbours] nearest items by cosine within the same category (-1: none)."""
    n, k = len(latent), cfg.n_neighbours
    out = np.full((n, k), -1, dtype=np.int64)
    if k == 0:
        return out
    vn = latent / np.maximum(np.linalg.norm(latent, axis=1, keepdims=True), 1e-9)
    for c in range(cfg.n_categories):
        idx = np.flatnonzero(category == c)
        if len(idx) < 2:
            continue
        pool = idx
        if len(idx) > cfg.neighbour_pool:
            pool = np.sort(rng.choice(idx, size=cfg.neighbour_pool, replace=False))
        kk = min(k, len(pool) - 1)
        vp = vn[pool].T
        for b in range(0, len(idx), 2048):
            rows = idx[b : b + 2048]
            s = vn[rows] @ vp
            s[rows[:, None] == pool[None, :]] = -np.inf
            top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            out[rows, :kk] = pool[top]
    return out


def _item_text(cfg: WorldConfig, items: dict[str, Any], rng: np.random.Generator) -> dict:
    """Titles (2-6 words) and synopses (text_len tokens) as strings, plus the vocabulary."""
    voc = _make_vocab(cfg, rng)
    n, d = cfg.n_items, cfg.n_latent_true
    cat, series, episode = items["category"], items["series"], items["episode"]
    lat = items["latent"]
    wpc, wpl = cfg.words_per_category, cfg.words_per_latent_group
    cat_cdf = _zipf_cdf(wpc, 1.0)
    gen_cdf = _zipf_cdf(cfg.n_general_words, 1.1)
    lat_cdf = _zipf_cdf(wpl, 0.7)
    # each series has 3 signature words from its category's mid-frequency vocabulary
    n_series = items["n_series"]
    ser_cat = np.zeros(n_series, dtype=np.int64)
    ser_cat[series[series >= 0]] = cat[series >= 0]
    sig_rank = rng.integers(min(20, wpc - 1), wpc, size=(n_series, 3))
    ser_sig = voc["cat_base"] + ser_cat[:, None] * wpc + sig_rank
    # each category's most similar other category (by centroid cosine) shares some words
    cen = items["centroids"] / np.linalg.norm(items["centroids"], axis=1, keepdims=True)
    csim = cen @ cen.T
    np.fill_diagonal(csim, -np.inf)
    related = np.argmax(csim, axis=1)
    # latent-word dimension weights: strong coordinates dominate
    w = np.abs(lat).astype(np.float64) ** 3
    dim_cdf = np.cumsum(w, axis=1)
    dim_cdf /= dim_cdf[:, -1:]

    def tokens(owner: np.ndarray, p: tuple[float, float, float, float], top: int) -> np.ndarray:
        """Token ids for token owners (item ids) with kind probabilities
        (category, general, latent, series); category words restricted to the ``top`` ranks."""
        m = len(owner)
        kind = np.searchsorted(np.cumsum(p), rng.random(m), side="right")
        kind = np.where((kind == 3) & (series[owner] < 0), 2, np.minimum(kind, 3))
        ids = np.empty(m, dtype=np.int64)
        sel = np.flatnonzero(kind == 0)
        rank = _zipf_draw(rng, _zipf_cdf(top, 1.0) if top < wpc else cat_cdf, len(sel))
        c = cat[owner[sel]]
        c = np.where(rng.random(len(sel)) < cfg.text_cross_category, related[c], c)
        ids[sel] = voc["cat_base"] + c * wpc + rank
        sel = kind == 1
        ids[sel] = voc["general_base"] + _zipf_draw(rng, gen_cdf, int(sel.sum()))
        sel = np.flatnonzero(kind == 2)
        o = owner[sel]
        dim = (rng.random(len(sel))[:, None] > dim_cdf[o]).sum(axis=1)
        dim = np.minimum(dim, d - 1)
        sign = (lat[o, dim] > 0).astype(np.int64)
        ids[sel] = voc["latent_base"] + (dim * 2 + sign) * wpl + _zipf_draw(rng, lat_cdf, len(sel))
        sel = kind == 3
        ids[sel] = ser_sig[series[owner[sel]], rng.integers(0, 3, int(sel.sum()))]
        return ids

    lo, hi = cfg.text_len
    text_len = np.clip(np.round(rng.normal(cfg.text_mean_len, 0.35 * (hi - lo), n)), lo, hi)
    text_len = text_len.astype(np.int64)
    owner = np.repeat(np.arange(n), text_len)
    text_ids = tokens(owner, cfg.text_mix, wpc)
    text = _join_tokens(voc["vocab"], text_ids, text_len)

    # titles: series -> two signature words + "part" + number; others -> 2-5 words
    title_len = rng.integers(2, 6, size=n)
    is_ep = series >= 0
    title_len[is_ep] = 4
    owner = np.repeat(np.arange(n), title_len)
    title_ids = tokens(owner, (0.5, 0.1, 0.4, 0.0), min(60, wpc))
    first = _segment_first(title_len)
    ep_first = first[is_ep]
    title_ids[ep_first] = ser_sig[series[is_ep], 0]
    title_ids[ep_first + 1] = ser_sig[series[is_ep], 1]
    title_ids[ep_first + 2] = voc["extra_base"]
    title_ids[ep_first + 3] = voc["extra_base"] + 1 + np.minimum(episode[is_ep], 19)
    title = _join_tokens(voc["vocab"], title_ids, title_len)
    return {"title": title, "text": text, "vocab_size": len(voc["vocab"])}


# =============================================================================== users
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


# =============================================================================== the world
class _World:
    """Items, users and calibration constants; simulates blocks of users."""

    def __init__(self, cfg: WorldConfig, seed: int) -> None:
        self.cfg, self.seed = cfg, int(seed)
        self.items = _make_items(cfg, _rng(seed, 0))
        self.users = _make_users(cfg, self.items, _rng(seed, 1))
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
            lin = b2["imp_lin"]
            b0, s = _calibrate_click(lin, cfg.click_rate, cfg.oracle_auc)
            p = _sigmoid(b0 + s * lin)
            cats = b2["imp_cat"]
            k = 20.0
            num = np.bincount(cats, weights=p, minlength=cfg.n_categories) + k * p.mean()
            den = np.bincount(cats, minlength=cfg.n_categories) + k
            self.click = {"intercept": b0, "scale": s, "category_ctr": num / den}
        else:
            self.click = {
                "intercept": float(np.log(cfg.click_rate / (1 - cfg.click_rate))),
                "scale": 1.0,
                "category_ctr": np.full(cfg.n_categories, cfg.click_rate),
            }

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
                self._impressions(
                    users,
                    ev_user[keep],
                    ev_item[keep],
                    ev_ts[keep],
                    s_user,
                    s_start,
                    dur,
                    n_imp,
                    rng,
                )
            )
        return out

    # ------------------------------------------------------------------ impressions
    def _impressions(
        self,
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
        cfg, it, us = self.cfg, self.items, self.users
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
        cats = self._pick_categories(gu, rng)
        pop_cats = rng.choice(C, size=n_imp, p=it["cat_mass"])
        cats = np.where(kind < 0.65, cats, pop_cats)
        recent = rng.random(n_imp) < cfg.recency_mix
        item = self._draw(cats, t, rng, recent)
        last_item = e_item[np.maximum(h_end - 1, 0)] if len(e_item) else np.zeros(n_imp, np.int64)
        nxt = it["successor"][last_item]
        use_next = (kind < 0.15) & (n_hist > 0) & (nxt >= 0)
        use_next &= it["release"][np.maximum(nxt, 0)] <= t
        item = np.where(use_next, nxt, item)
        icat = it["category"][item]

        # item features
        age_days = (t - it["release"][item]) / DAY
        dur = it["duration"][item]
        cat_ctr = self.click["category_ctr"]
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
        p = _sigmoid(self.click["intercept"] + self.click["scale"] * lin)
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
                "config": _jsonable(dataclasses.asdict(cfg)),
                "calibration": self.calibration(),
            },
        }

    def calibration(self) -> dict[str, Any]:
        return _jsonable(
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


def _normal_quantiles(q: np.ndarray) -> np.ndarray:
    from scipy.special import ndtri

    return ndtri(np.asarray(q, dtype=np.float64))


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


def _ids(prefix: str, n: int) -> np.ndarray:
    width = len(str(max(n - 1, 0)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=object)


def _stats(
    blocks_top3: tuple[int, int], clicked: np.ndarray, p: np.ndarray, n_inter: int
) -> dict[str, Any]:
    hits, total = blocks_top3
    out: dict[str, Any] = {
        "interactions": n_inter,
        "top3_share": hits / max(1, total),
    }
    if len(p):
        out["click_rate"] = float(clicked.mean())
        out["oracle_auc"] = roc_auc(clicked, p)
    return out


def _block_top3(world: _World, blk: dict[str, Any]) -> tuple[int, int]:
    top = world.users["top"][blk["user"]]
    cat = world.items["category"][blk["item"]]
    return int((top == cat[:, None]).any(axis=1).sum()), len(cat)


# =============================================================================== public API
def make_world_with_truth(
    preset_or_config: WorldConfig | str, seed: int = 0
) -> tuple[Dataset, WorldTruth]:
    """Build a world in memory; returns the :class:`Dataset` and its :class:`WorldTruth`.

    Meant for small presets (``tiny``, ``demo``, ``m0``); use :func:`generate_world` for
    ``platform``. The data equal what :func:`generate_world` writes for the same config/seed.
    """
    cfg = resolve_config(preset_or_config)
    world = _World(cfg, seed)
    keys = ("user", "item", "timestamp", "engagement", "session")
    ikeys = ("imp_user", "imp_item", "imp_features", "imp_clicked", "imp_timestamp", "imp_p")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys + ikeys + ("session_length",)}
    hits = total = 0
    for blk in world.blocks():
        for k in keys + ("session_length",):
            parts[k].append(blk[k])
        if "imp_user" in blk:
            for k in ikeys:
                parts[k].append(blk[k])
        h, t = _block_top3(world, blk)
        hits, total = hits + h, total + t
    inter = {k: np.concatenate(parts[k]) for k in keys}
    impressions = None
    imp_p = np.zeros(0, dtype=np.float32)
    if parts["imp_user"]:
        imp = {k: np.concatenate(parts[k]) for k in ikeys}
        imp_p = imp.pop("imp_p")
        impressions = {k[4:]: v for k, v in imp.items()}
    item_ids, item_cols = world.item_table()
    user_ids, user_cols = world.user_table()
    meta = world.meta()
    clicked = impressions["clicked"] if impressions else np.zeros(0)
    meta["world"]["stats"] = _stats((hits, total), clicked, imp_p, len(inter["user"]))
    ds = Dataset(
        name=cfg.name,
        user_ids=user_ids,
        item_ids=item_ids,
        inter=inter,
        items=item_cols,
        users=user_cols,
        impressions=impressions,
        meta=meta,
    )
    return ds, world.truth(np.concatenate(parts["session_length"]), imp_p)


def make_world(preset_or_config: WorldConfig | str, seed: int = 0) -> Dataset:
    """Build a (small) world in memory; see :func:`make_world_with_truth`."""
    return make_world_with_truth(preset_or_config, seed)[0]


def _arrow_table(cols: dict[str, np.ndarray]) -> Any:
    import pyarrow as pa

    arrays, names = [], []
    for name, arr in cols.items():
        if arr.ndim == 2:
            flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, arr.shape[1]))
        else:
            arrays.append(pa.array(arr))
        names.append(name)
    return pa.table(arrays, names=names)


def generate_world(
    config_or_preset: WorldConfig | str,
    out: str | Path,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Generate a world and write it as a dataset directory at ``out`` (atomically).

    Users are simulated ``chunk_users`` at a time and their interactions / impressions are
    appended to the Parquet files chunk by chunk, so memory stays bounded for ``platform``.
    The ground truth goes to ``out/truth/``. Returns ``out``.
    """
    import pyarrow.parquet as pq

    cfg = resolve_config(config_or_preset)
    out = Path(out)
    t_start = time.perf_counter()

    def say(msg: str) -> None:
        if progress:
            print(f"[world {cfg.name}] {msg} ({time.perf_counter() - t_start:.1f}s)",
                  file=sys.stderr, flush=True)  # fmt: skip

    with atomic_dir(out, overwrite=overwrite) as tmp:
        world = _World(cfg, seed)
        say(f"catalogue of {cfg.n_items:,} items and {cfg.n_users:,} users ready")
        item_ids, item_cols = world.item_table()
        write_parquet(tmp / "items.parquet", {"id": item_ids, **item_cols})
        user_ids, user_cols = world.user_table()
        write_parquet(tmp / "users.parquet", {"id": user_ids, **user_cols})
        del item_ids, item_cols, user_ids, user_cols
        keys = ("user", "item", "timestamp", "engagement", "session")
        ikeys = ("user", "item", "features", "clicked", "timestamp")
        w_inter = w_imp = None
        n_inter, hits, total = 0, 0, 0
        sess_len: list[np.ndarray] = []
        imp_p: list[np.ndarray] = []
        imp_clicked: list[np.ndarray] = []
        try:
            for blk in world.blocks():
                table = _arrow_table({k: blk[k] for k in keys})
                if w_inter is None:
                    w_inter = pq.ParquetWriter(tmp / "interactions.parquet", table.schema)
                w_inter.write_table(table)
                n_inter += len(blk["user"])
                sess_len.append(blk["session_length"].astype(np.int16))
                h, t = _block_top3(world, blk)
                hits, total = hits + h, total + t
                if "imp_user" in blk and len(blk["imp_user"]):
                    table = _arrow_table({k: blk["imp_" + k] for k in ikeys})
                    if w_imp is None:
                        w_imp = pq.ParquetWriter(tmp / "impressions.parquet", table.schema)
                    w_imp.write_table(table)
                    imp_p.append(blk["imp_p"])
                    imp_clicked.append(blk["imp_clicked"])
                say(f"users block {blk['block'] + 1}/{blk['n_blocks']}: {n_inter:,} interactions")
                del blk, table
        finally:
            if w_inter is not None:
                w_inter.close()
            if w_imp is not None:
                w_imp.close()
        p_all = np.concatenate(imp_p) if imp_p else np.zeros(0, np.float32)
        clicked = np.concatenate(imp_clicked) if imp_clicked else np.zeros(0, np.int8)
        world.truth(np.concatenate(sess_len), p_all).save(tmp / "truth")
        meta = world.meta()
        meta["world"]["stats"] = _stats((hits, total), clicked, p_all, n_inter)
        meta.update(
            format=FORMAT,
            name=cfg.name,
            n_users=cfg.n_users,
            n_items=cfg.n_items,
            n_interactions=n_inter,
        )
        (tmp / "meta.json").write_text(json.dumps(_jsonable(meta), indent=2))
    say(f"wrote {out}")
    return out
