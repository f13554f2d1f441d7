"""Configuration of the synthetic world: :class:`WorldConfig`, the named :data:`PRESETS` and
:func:`resolve_config`, plus the fixed names of the world (categories, platforms, tiers, age
groups) and the length of a day in seconds.

A preset is a :class:`WorldConfig` with every knob set; a world is a deterministic function of
its config and seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from streamrec.data.dataset import ENGAGEMENT_TYPES

DAY = 86_400

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


def category_names(n: int) -> list[str]:
    """The category names of a world with ``n`` categories."""
    return [CATEGORY_NAMES[i] if i < len(CATEGORY_NAMES) else f"category_{i}" for i in range(n)]


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
