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

Modules: :mod:`~streamrec.data.world.config` (``WorldConfig``, ``PRESETS``, names),
:mod:`~streamrec.data.world.items` (catalogue and text), :mod:`~streamrec.data.world.users`,
:mod:`~streamrec.data.world.simulation` (sessions, calibration),
:mod:`~streamrec.data.world.impressions` (features and click model),
:mod:`~streamrec.data.world.truth` (``WorldTruth``) and :mod:`~streamrec.data.world.generate`
(``make_world``, ``generate_world``).
"""

from __future__ import annotations

from streamrec.data.world.config import (
    AGE_GROUPS,
    CATEGORY_NAMES,
    DAY,
    PLATFORMS,
    PRESETS,
    TIERS,
    WorldConfig,
    category_names,
    resolve_config,
)
from streamrec.data.world.generate import generate_world, make_world, make_world_with_truth
from streamrec.data.world.impressions import (
    CLICK_TERMS,
    IMPRESSION_FEATURE_GROUPS,
    IMPRESSION_FEATURES,
)
from streamrec.data.world.truth import WorldTruth, load_truth

__all__ = [
    "AGE_GROUPS",
    "CATEGORY_NAMES",
    "CLICK_TERMS",
    "DAY",
    "IMPRESSION_FEATURES",
    "IMPRESSION_FEATURE_GROUPS",
    "PLATFORMS",
    "PRESETS",
    "TIERS",
    "WorldConfig",
    "WorldTruth",
    "category_names",
    "generate_world",
    "load_truth",
    "make_world",
    "make_world_with_truth",
    "resolve_config",
]
