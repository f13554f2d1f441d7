"""Click-prediction data: the split of impressions, feature standardisation, and click data
built from explicit ratings (MovieLens).

Impressions live in ``Dataset.impressions`` (``user`` [n], ``item`` [n], ``features`` [n, F]
float32, ``clicked`` [n] int8, optional ``timestamp`` [n] and ``split`` [n] int8). They are
split independently of the interactions (the ranking split never touches them):

``random``    a seeded permutation cut by ``ratios`` (default 0.8 / 0.1 / 0.1);
``temporal``  rows ordered by ``timestamp`` (ties by row), cut by ``ratios``: the model is
              trained on the past and tested on the future;
``given``     the ``split`` column of the impressions (0 train, 1 valid, 2 test), written by a
              builder whose features depend on the split (:func:`impressions_from_ratings`);
``auto``      ``given`` when the impressions carry a ``split`` column, else ``random``.

:class:`Standardizer` learns the per-feature mean and standard deviation from the **training
rows only**; models keep them as buffers, so a saved run standardises exactly as it trained.

:func:`impressions_from_ratings` turns a dataset of explicit ratings (MovieLens-100k) into
click data: every rating is an impression, ``clicked = rating >= threshold``, with user, item
and user x item features that never use a held-out label (see its docstring).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset, DatasetError

TRAIN, VALID, TEST = 0, 1, 2
STAGES = {"train": TRAIN, "valid": VALID, "test": TEST}
SPLIT_METHODS = ("auto", "random", "temporal", "given")
DAY = 86_400

__all__ = [
    "SPLIT_METHODS",
    "ClickArrays",
    "Standardizer",
    "build_click_dataset",
    "click_arrays",
    "click_split",
    "impressions_from_ratings",
    "require_impressions",
    "resolve_split_method",
]


# ---------------------------------------------------------------------------------- split
def require_impressions(ds: Dataset) -> dict[str, np.ndarray]:
    """``ds.impressions``, or a :class:`DatasetError` saying how to get click data."""
    if ds.impressions is None or len(ds.impressions.get("clicked", ())) == 0:
        raise DatasetError(
            f"dataset {ds.name!r} has no impressions (click data); generate a world "
            "(`streamrec world`) or build click data from ratings (`streamrec data clicks`)"
        )
    return ds.impressions


def resolve_split_method(ds: Dataset, method: str) -> str:
    """``auto`` -> ``given`` when the impressions have a ``split`` column, else ``random``."""
    if method not in SPLIT_METHODS:
        raise ValueError(
            f"unknown click split {method!r}; choose one of {', '.join(SPLIT_METHODS)}"
        )
    imp = require_impressions(ds)
    if method == "auto":
        return "given" if "split" in imp else "random"
    return method


def _check_ratios(ratios: tuple[float, float, float] | list[float]) -> np.ndarray:
    r = np.asarray(ratios, dtype=np.float64)
    if r.shape != (3,) or np.any(r < 0) or r[0] <= 0 or not np.isclose(r.sum(), 1.0):
        raise ValueError(f"ratios must be 3 non-negative numbers summing to 1, got {ratios}")
    return r


def _cut(order: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    n = len(order)
    n_train = int(round(ratios[0] * n))
    n_valid = int(round(ratios[1] * n))
    assign = np.full(n, TEST, dtype=np.int8)
    assign[order[:n_train]] = TRAIN
    assign[order[n_train : n_train + n_valid]] = VALID
    return assign


def click_split(
    ds: Dataset,
    method: str = "random",
    seed: int = 0,
    ratios: tuple[float, float, float] | list[float] = (0.8, 0.1, 0.1),
) -> np.ndarray:
    """Assign every impression to train (0), valid (1) or test (2).

    Deterministic: the same dataset, method, seed and ratios always give the same array.
    Returns int8 ``[n_impressions]``. See the module docstring for the methods.
    """
    imp = require_impressions(ds)
    method = resolve_split_method(ds, method)
    n = len(imp["clicked"])
    if method == "given":
        if "split" not in imp:
            raise DatasetError(f"dataset {ds.name!r}: impressions have no 'split' column")
        assign = np.asarray(imp["split"], dtype=np.int8)
        if assign.min() < 0 or assign.max() > 2:
            raise DatasetError(f"dataset {ds.name!r}: impression split codes must be 0, 1 or 2")
        return assign.copy()
    r = _check_ratios(ratios)
    if method == "random":
        order = np.random.default_rng(int(seed)).permutation(n)
    else:  # temporal
        if "timestamp" not in imp:
            raise DatasetError(f"dataset {ds.name!r}: a temporal click split needs timestamps")
        order = np.argsort(np.asarray(imp["timestamp"]), kind="stable")
    return _cut(order, r)


# ---------------------------------------------------------------------------------- arrays
@dataclasses.dataclass
class ClickArrays:
    """The impressions of one stage: ``rows`` (indices into the impressions) [m], ``user``
    [m], ``item`` [m], ``features`` [m, F] float32 (raw, not standardised), ``clicked`` [m]."""

    rows: np.ndarray
    user: np.ndarray
    item: np.ndarray
    features: np.ndarray
    clicked: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


def click_arrays(
    ds: Dataset, stage: str, assign: np.ndarray | None = None, **split: Any
) -> ClickArrays:
    """The impressions of ``stage`` (``train``, ``valid``, ``test`` or ``all``).

    ``assign`` is a precomputed :func:`click_split`; otherwise ``split`` (``method``, ``seed``,
    ``ratios``) is passed to it.
    """
    imp = require_impressions(ds)
    if stage == "all":
        rows = np.arange(len(imp["clicked"]))
    else:
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose train, valid, test or all")
        if assign is None:
            assign = click_split(ds, **split)
        rows = np.flatnonzero(assign == STAGES[stage])
    return ClickArrays(
        rows=rows,
        user=np.asarray(imp["user"])[rows].astype(np.int64),
        item=np.asarray(imp["item"])[rows].astype(np.int64),
        features=np.asarray(imp["features"], dtype=np.float32)[rows],
        clicked=np.asarray(imp["clicked"])[rows].astype(np.int8),
    )


@dataclasses.dataclass
class Standardizer:
    """Per-feature z-scoring ``(x - mean) / std``; fit it on training rows only.

    ``mean`` and ``std`` are float32 ``[F]``; a constant feature gets ``std = 1`` (it becomes 0).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, min_std: float = 1e-6) -> Standardizer:
        """Statistics of ``x`` ``[n, F]`` (population std, computed in float64)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) == 0:
            raise ValueError(f"Standardizer.fit needs a non-empty [n, F] array, got {x.shape}")
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std = np.where(std < min_std, 1.0, std)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """``[n, F] -> [n, F]`` float32."""
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)


# ---------------------------------------------------------------------------------- ratings
def _prior_counts(
    group: np.ndarray, ts: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each row, the sum of ``values`` ([n] or [n, k]) over the rows of the same ``group``
    with a strictly smaller timestamp, and the number of such rows.

    Vectorised: rows are sorted by (group, ts); a row's strictly-earlier rows are those before
    the first row of its (group, ts) run, found with ``searchsorted`` on a composite key.
    """
    n = len(group)
    order = np.lexsort((ts, group))
    key = group[order].astype(np.int64) * (np.int64(1) << 34) + (ts[order] - ts.min())
    first = np.searchsorted(key, key, side="left")  # first row of the same (group, ts)
    g_start = np.searchsorted(group[order], group[order], side="left")
    cum = np.zeros((n + 1,) + values.shape[1:], dtype=np.float64)
    np.cumsum(values[order], axis=0, out=cum[1:])
    sums_sorted = cum[first] - cum[g_start]
    sums = np.empty_like(sums_sorted)
    sums[order] = sums_sorted
    counts = np.empty(n, dtype=np.float64)
    counts[order] = first - g_start
    return sums, counts


def impressions_from_ratings(
    ds: Dataset,
    threshold: float = 4.0,
    split: str = "random",
    seed: int = 0,
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    prior_strength: float = 10.0,
) -> Dataset:
    """Click data from explicit ratings: each rating is an impression, clicked iff
    ``rating >= threshold``.

    The impressions get a ``split`` column (``random`` or ``temporal`` by rating time, with
    ``seed`` / ``ratios``) because some features use training labels. No feature ever uses a
    validation or test label, nor anything that happened at or after the impression's time:

    * user: ``age`` (years), gender one-hot, occupation one-hot (from ``u.user``);
      ``user_log_prior_ratings`` (how many ratings the user made strictly before),
      ``user_days_active`` (days since the user's first earlier rating, 0 if none) and
      ``user_prior_like_rate`` (the share of the user's earlier **training** ratings that are
      clicks, shrunk to the global training click rate with ``prior_strength`` pseudo-counts);
    * item: the 19 genre flags, ``item_age_years`` at rating time (release year from
      ``u.item``; unknown -> median), ``item_log_prior_ratings`` and ``item_prior_like_rate``
      (the same two statistics per item);
    * user x item: ``ui_genre_share`` (mean over the item's genres of the share of the user's
      earlier ratings in that genre) and ``ui_genre_like_rate`` (the user's shrunk training
      click rate in the item's genres, from earlier ratings).

    "Earlier" means a strictly smaller timestamp, so rows rated in the same second never see
    each other. A training row's own label never enters its features (it is not earlier than
    itself), so the training features are computed exactly as the test ones are.

    Shapes: the result has the interactions, users and items of ``ds`` and impressions with
    ``user``/``item`` [n_ratings], ``features`` [n_ratings, F], ``clicked``, ``timestamp``,
    ``split``; ``meta["impression_features"]`` / ``["impression_feature_groups"]`` name the
    F columns.
    """
    if "rating" not in ds.inter:
        raise DatasetError(f"dataset {ds.name!r} has no 'rating' column to derive clicks from")
    n = ds.n_interactions
    if n == 0:
        raise DatasetError(f"dataset {ds.name!r} has no ratings")
    user = ds.user.astype(np.int64)
    item = ds.item.astype(np.int64)
    ts = ds.timestamp.astype(np.int64)
    clicked = (np.asarray(ds.inter["rating"], dtype=np.float64) >= threshold).astype(np.int8)

    # the split of the ratings (= impressions), needed before any label-based feature
    tmp = Dataset(name=ds.name, user_ids=ds.user_ids, item_ids=ds.item_ids, inter=dict(ds.inter),
                  impressions={"user": user, "item": item, "clicked": clicked, "timestamp": ts,
                               "features": np.zeros((n, 0), np.float32)})
    assign = click_split(tmp, split, seed, ratios)
    is_train = (assign == TRAIN).astype(np.float64)
    train_click = is_train * clicked
    base_rate = float(train_click.sum() / max(is_train.sum(), 1.0))
    a = float(prior_strength)

    names: list[str] = []
    groups: list[str] = []
    cols: list[np.ndarray] = []

    def add(name: str, group: str, col: np.ndarray) -> None:
        names.append(name)
        groups.append(group)
        cols.append(np.asarray(col, dtype=np.float64))

    # -- user side table
    users = ds.users
    if "age" in users:
        age = np.asarray(users["age"], dtype=np.float64)
        known = age >= 0
        fill = float(np.median(age[known])) if known.any() else 0.0
        add("user_age", "user", np.where(known, age, fill)[user])
    for col, meta_key in (("gender", "genders"), ("occupation", "occupations")):
        if col not in users:
            continue
        labels = list(ds.meta.get(meta_key, []))  # one-hot, one column per known code
        codes = np.asarray(users[col], dtype=np.int64)
        for c in range(max(len(labels), int(codes.max()) + 1 if len(codes) else 0)):
            label = labels[c] if c < len(labels) else str(c)
            add(f"user_{col}_{label}", "user", (codes == c)[user])
    # -- user history (strictly earlier ratings)
    (u_sums, u_cnt) = _prior_counts(user, ts, np.c_[is_train, train_click])
    add("user_log_prior_ratings", "user", np.log1p(u_cnt))
    first_ts = np.full(ds.n_users, np.iinfo(np.int64).max)
    np.minimum.at(first_ts, user, ts)
    add("user_days_active", "user", np.where(u_cnt > 0, (ts - first_ts[user]) / DAY, 0.0))
    add("user_prior_like_rate", "user", (u_sums[:, 1] + a * base_rate) / (u_sums[:, 0] + a))

    # -- item side table: genres and release year
    genre_names = list(ds.meta.get("categories", []))
    flags = np.zeros((ds.n_items, 0))
    if "genres" in ds.items and genre_names:
        gs = [str(s).split("|") if str(s) else [] for s in ds.items["genres"]]
        flags = np.array([[g in row for g in genre_names] for row in gs], dtype=np.float64)
        flags = flags.reshape(ds.n_items, len(genre_names))
        for j, g in enumerate(genre_names):
            add(f"item_genre_{g}", "item", flags[item, j])
    if "year" in ds.items:
        year = np.asarray(ds.items["year"], dtype=np.float64)
        known = year > 0
        fill = float(np.median(year[known])) if known.any() else 0.0
        year = np.where(known, year, fill)
        rating_year = 1970.0 + ts / (365.25 * DAY)
        add("item_age_years", "item", rating_year - year[item])
    (i_sums, i_cnt) = _prior_counts(item, ts, np.c_[is_train, train_click])
    add("item_log_prior_ratings", "item", np.log1p(i_cnt))
    add("item_prior_like_rate", "item", (i_sums[:, 1] + a * base_rate) / (i_sums[:, 0] + a))

    # -- user x item: the user's earlier ratings in the item's genres
    if flags.shape[1]:
        f_row = flags[item]  # [n, G]
        vals = np.concatenate([f_row, f_row * is_train[:, None], f_row * train_click[:, None]], 1)
        g_sums, _ = _prior_counts(user, ts, vals)
        G = flags.shape[1]
        g_cnt, g_train, g_click = g_sums[:, :G], g_sums[:, G : 2 * G], g_sums[:, 2 * G :]
        n_genres = np.maximum(f_row.sum(1), 1.0)
        share = (g_cnt / np.maximum(u_cnt, 1.0)[:, None] * f_row).sum(1) / n_genres
        add("ui_genre_share", "user_item", share)
        tr_in = (g_train * f_row).sum(1)
        cl_in = (g_click * f_row).sum(1)
        add("ui_genre_like_rate", "user_item", (cl_in + a * base_rate) / (tr_in + a))

    features = np.stack(cols, axis=1).astype(np.float32)
    impressions = {
        "user": user.astype(np.int32),
        "item": item.astype(np.int32),
        "features": features,
        "clicked": clicked,
        "timestamp": ts,
        "split": assign,
    }
    meta = dict(ds.meta)
    meta.update(
        impression_features=names,
        impression_feature_groups=groups,
        clicks={
            "source": "ratings",
            "threshold": float(threshold),
            "split": {"method": split, "seed": int(seed), "ratios": list(map(float, ratios))},
            "prior_strength": a,
            "train_click_rate": base_rate,
            "features": "earlier ratings only (strict timestamp); label-based features from "
            "training rows only",
        },
    )
    return Dataset(
        name=f"{ds.name}-clicks",
        user_ids=ds.user_ids,
        item_ids=ds.item_ids,
        inter=dict(ds.inter),
        items=dict(ds.items),
        users=dict(ds.users),
        impressions=impressions,
        meta=meta,
    )


def build_click_dataset(
    src_dir: str | Path,
    out_dir: str | Path,
    threshold: float = 4.0,
    split: str = "random",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """``streamrec data clicks SRC --out DIR``: click data from a ratings dataset.

    ``src_dir`` is a StreamRec dataset directory with a ``rating`` column, or a raw
    MovieLens-100k directory (``u.data``, ``u.item``, ``u.user``). Writes a dataset directory
    at ``out_dir`` (atomically) and returns it.
    """
    from streamrec.data.dataset import load_dataset

    src = Path(src_dir)
    if (src / "meta.json").is_file():
        ds = load_dataset(src)
    else:
        from streamrec.data.importers import read_movielens_100k

        ds = read_movielens_100k(src)
    clicks = impressions_from_ratings(ds, threshold=threshold, split=split, seed=seed)
    return clicks.save(out_dir, overwrite=overwrite)
