"""Deterministic train / validation / test splits, recorded with every run.

A :class:`Split` assigns each interaction of a :class:`~streamrec.data.dataset.Dataset` to
``train`` (0), ``valid`` (1), ``test`` (2) or ``dropped`` (-1). Methods:

``loo``       leave-last-out per user, by time: the last interaction is test, the second last
              validation (users with 2 interactions give a test item only, users with 1 none).
``temporal``  one global cut in time: train before ``valid_time``, validation up to
              ``test_time``, test after; the cut times default to the 0.8 / 0.9 quantiles
              of the timestamps (``valid_quantile`` / ``test_quantile``).
``random``    random by ratio (``ratios=(0.8, 0.1, 0.1)``), with a seed.
``given``     the split that came with the files (``given_split`` column), e.g. the
              LightGCN Gowalla split or the UniSRec Amazon split.
``cold-items``a share of items (``cold_frac=0.2``) never reaches training: their interactions
              are the test set; validation is a random ``valid_frac`` of the warm interactions.

The one rule that holds for every method: no held-out (user, item) pair reaches training.
Where a user interacted with the same item more than once, earlier copies of a held-out pair
are dropped from training (``dropped``), so neither the history a model reads, nor its
negative-sampling exclusions, nor any statistic computed on the training part can contain it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset, DatasetError

TRAIN, VALID, TEST, DROPPED = 0, 1, 2, -1
METHODS = ("loo", "temporal", "random", "given", "cold-items")
#: the parameters each method accepts (besides ``seed``)
PARAMS = {
    "loo": (),
    "temporal": ("valid_quantile", "test_quantile", "valid_time", "test_time"),
    "random": ("ratios",),
    "given": (),
    "cold-items": ("cold_frac", "valid_frac"),
}


@dataclass
class Split:
    """Assignment of every interaction to train / valid / test (see the module docstring)."""

    method: str
    params: dict[str, Any]
    assign: np.ndarray  # int8 [n_interactions]
    cold_items: np.ndarray | None = None  # int [n_cold] for the cold-items split
    stats: dict[str, Any] = field(default_factory=dict)

    def mask(self, part: str) -> np.ndarray:
        """Boolean mask [n_interactions] of ``part`` in {"train", "valid", "test"}."""
        codes = {"train": TRAIN, "valid": VALID, "test": TEST}
        if part not in codes:
            raise ValueError(f"unknown split part {part!r}; choose train, valid or test")
        return self.assign == codes[part]

    def train(self, ds: Dataset) -> Dataset:
        """The training view: the only data a model may learn from."""
        return ds.subset(self.mask("train"))

    def part(self, ds: Dataset, part: str) -> Dataset:
        """The interactions of one part as a dataset (same ids and side tables)."""
        return ds.subset(self.mask(part))

    def history(self, ds: Dataset, stage: str) -> Dataset:
        """What a model may see when it is evaluated on ``stage``.

        For ``valid``: the training interactions. For ``test``: training plus validation
        interactions (the validation items are then also masked from the ranking).
        """
        if stage == "valid":
            return ds.subset(self.assign == TRAIN)
        if stage == "test":
            return ds.subset((self.assign == TRAIN) | (self.assign == VALID))
        raise ValueError(f"unknown evaluation stage {stage!r}; choose valid or test")

    def protocol(self) -> dict[str, Any]:
        """A JSON-able description of the split for reports."""
        return {"method": self.method, **self.params, **self.stats}

    # ------------------------------------------------------------------ io
    def save(self, path: str | Path) -> None:
        """Write ``split.npz`` (assignments) and ``split.json`` (method, params) into a dir."""
        path = Path(path)
        arrays = {"assign": self.assign}
        if self.cold_items is not None:
            arrays["cold_items"] = self.cold_items
        np.savez_compressed(path / "split.npz", **arrays)
        (path / "split.json").write_text(
            json.dumps(
                {"method": self.method, "params": self.params, "stats": self.stats}, indent=2
            )
        )

    @classmethod
    def load(cls, path: str | Path) -> Split:
        """Read ``split.json`` and ``split.npz`` of a directory; a missing or damaged file is a
        one-line :class:`~streamrec.data.dataset.DatasetError` naming it."""
        path = Path(path)
        for name in ("split.json", "split.npz"):
            if not (path / name).is_file():
                raise DatasetError(f"{path / name} is missing: the run's split is lost; "
                                   "retrain the run (streamrec train ... --overwrite)")
        try:
            spec = json.loads((path / "split.json").read_text())
            method, params = spec["method"], spec["params"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise DatasetError(f"{path / 'split.json'} is damaged (not the JSON of a split); "
                               "retrain the run (streamrec train ... --overwrite)") from None
        try:
            with np.load(path / "split.npz") as z:
                assign = np.asarray(z["assign"])
                cold = np.asarray(z["cold_items"]) if "cold_items" in z else None
        except Exception:  # noqa: BLE001 - zip, pickle and value errors: all mean damaged
            raise DatasetError(f"{path / 'split.npz'} is damaged (truncated or not a split "
                               "archive); retrain the run (streamrec train ... --overwrite)"
                               ) from None
        return cls(method, params, assign, cold, spec.get("stats", {}))


def default_split_spec(ds: Dataset) -> dict[str, Any]:
    """``{"method": "given"}`` when the files came with a split, else leave-last-out."""
    return {"method": "given"} if "given_split" in ds.inter else {"method": "loo"}


def split_from_spec(ds: Dataset, spec: dict[str, Any]) -> Split:
    """The split a run records as its spec: ``{"method": ..., "seed": ..., other params}``;
    a spec without ``method`` takes :func:`default_split_spec`'s."""
    spec = dict(spec)
    method = spec.pop("method", default_split_spec(ds)["method"])
    try:
        seed = int(spec.pop("seed", 0))
    except (TypeError, ValueError):
        raise ValueError("split.seed must be an integer") from None
    return make_split(ds, method, seed=seed, **spec)


def make_split(ds: Dataset, method: str = "loo", seed: int = 0, **params: Any) -> Split:
    """Split ``ds`` with ``method`` (see the module docstring); deterministic for a seed."""
    if method not in METHODS:
        raise ValueError(f"unknown split method {method!r}; choose one of {', '.join(METHODS)}")
    unknown = sorted(set(params) - set(PARAMS[method]))
    if unknown:
        accepted = ", ".join(PARAMS[method]) or "none besides seed"
        raise ValueError(f"split option(s) {', '.join(unknown)} do not apply to the {method!r} "
                         f"split; it accepts: {accepted}")
    for name, value in params.items():
        values = value if name == "ratios" and isinstance(value, list | tuple) else [value]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
                   for v in values):
            raise ValueError(f"split.{name} must be a number{'s' if name == 'ratios' else ''}, "
                             f"got {value!r}")
    n = ds.n_interactions
    if n == 0:
        raise DatasetError(f"dataset {ds.name!r} has no interactions to split")
    assign = np.full(n, TRAIN, dtype=np.int8)
    cold = None
    recorded: dict[str, Any] = {}
    if method == "loo":
        order = ds.time_order()
        users = ds.user[order]
        counts = np.bincount(users, minlength=ds.n_users)
        ends = np.cumsum(counts)  # one past the last position of each user in `order`
        has_test = counts >= 2
        has_valid = counts >= 3
        assign[order[ends[has_test] - 1]] = TEST
        assign[order[ends[has_valid] - 2]] = VALID
    elif method == "temporal":
        ts = ds.timestamp
        vq = float(params.get("valid_quantile", 0.8))
        tq = float(params.get("test_quantile", 0.9))
        if not 0 < vq <= tq < 1:
            raise ValueError("temporal split needs 0 < valid_quantile <= test_quantile < 1")
        valid_time = int(params.get("valid_time", np.quantile(ts, vq)))
        test_time = int(params.get("test_time", np.quantile(ts, tq)))
        if valid_time > test_time:
            raise ValueError("temporal split needs valid_time <= test_time")
        assign[ts >= valid_time] = VALID
        assign[ts >= test_time] = TEST
        recorded = {"valid_time": valid_time, "test_time": test_time}
    elif method == "random":
        ratios = np.asarray(params.get("ratios", (0.8, 0.1, 0.1)), dtype=np.float64)
        if ratios.shape != (3,) or np.any(ratios < 0) or not np.isclose(ratios.sum(), 1.0):
            raise ValueError("random split needs three non-negative ratios summing to 1")
        rng = np.random.default_rng(seed)
        u = rng.random(n)
        assign[u >= ratios[0]] = VALID
        assign[u >= ratios[0] + ratios[1]] = TEST
        recorded = {"ratios": ratios.tolist()}
    elif method == "given":
        if "given_split" not in ds.inter:
            raise DatasetError(
                f"dataset {ds.name!r} has no given split; use loo, temporal or random"
            )
        assign[:] = ds.inter["given_split"].astype(np.int8)
    elif method == "cold-items":
        frac = float(params.get("cold_frac", 0.2))
        vfrac = float(params.get("valid_frac", 0.1))
        if not 0 < frac < 1:
            raise ValueError("cold-items split needs 0 < cold_frac < 1")
        rng = np.random.default_rng(seed)
        active = np.flatnonzero(ds.item_counts() > 0)
        cold = np.sort(
            rng.choice(active, size=max(1, int(round(frac * len(active)))), replace=False)
        )
        is_cold = np.zeros(ds.n_items, dtype=bool)
        is_cold[cold] = True
        cold_inter = is_cold[ds.item]
        assign[cold_inter] = TEST
        warm = np.flatnonzero(~cold_inter)
        assign[warm[rng.random(len(warm)) < vfrac]] = VALID
        recorded = {"cold_frac": frac, "valid_frac": vfrac, "n_cold_items": int(len(cold))}
    _drop_leaking_duplicates(ds, assign)
    stats = {
        "n_train": int((assign == TRAIN).sum()),
        "n_valid": int((assign == VALID).sum()),
        "n_test": int((assign == TEST).sum()),
        "n_dropped": int((assign == DROPPED).sum()),
    }
    if method in ("random", "cold-items"):
        recorded["seed"] = seed
    merged = {k: v for k, v in params.items() if k not in recorded} | recorded
    return Split(method, merged, assign, cold, stats)


def _drop_leaking_duplicates(ds: Dataset, assign: np.ndarray) -> None:
    """Mark as dropped every training copy of a (user, item) pair that is held out."""
    key = ds.user.astype(np.int64) * ds.n_items + ds.item
    held = assign > TRAIN
    if not held.any():
        return
    held_keys = np.unique(key[held])
    leak = (assign == TRAIN) & np.isin(key, held_keys)
    assign[leak] = DROPPED
    # A pair held out twice (valid and test) stays in the later part only.
    both = (assign == VALID) & np.isin(key, np.unique(key[assign == TEST]))
    assign[both] = DROPPED
