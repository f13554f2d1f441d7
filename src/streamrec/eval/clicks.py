"""Click-prediction evaluation: AUC and log-loss on held-out impressions, next to the oracle.

The oracle scores every impression with its **true** click probability (stored by the world
generator in ``DATASET/truth/impressions.npy``, aligned with the impression rows). No model
can beat its AUC in expectation: it is the best ranking of the impressions there is, and the
gap ``oracle_auc - auc`` is what a model leaves on the table. Real data has no oracle.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamrec.data.clicks import click_arrays, click_split, resolve_split_method
from streamrec.data.dataset import Dataset
from streamrec.eval.metrics import auc, log_loss, log_loss_from_logits
from streamrec.models.base import ClickModel, require

TRUTH_FILE = Path("truth") / "impressions.npy"


def true_click_probabilities(ds: Dataset) -> np.ndarray | None:
    """The true click probability of every impression ``[n_impressions]`` (float32), or None
    when the dataset has no ground truth (real data, or a world built in memory)."""
    if ds.path is None:
        return None
    f = Path(ds.path) / TRUTH_FILE
    if not f.is_file():
        return None
    p = np.load(f, mmap_mode="r")
    if ds.impressions is None or len(p) != len(ds.impressions["clicked"]):
        return None
    return p


@torch.no_grad()
def predict_click_logits(model: Any, users: np.ndarray, items: np.ndarray,
                         features: np.ndarray, batch_size: int = 65_536) -> np.ndarray:
    """Logits ``[n]`` (float64) of a click model for impressions (``features`` raw [n, F])."""
    device = model.device
    out = np.empty(len(users), dtype=np.float64)
    for s in range(0, len(users), batch_size):
        sl = slice(s, s + batch_size)
        u = torch.as_tensor(users[sl], dtype=torch.long, device=device)
        i = torch.as_tensor(items[sl], dtype=torch.long, device=device)
        x = torch.as_tensor(np.ascontiguousarray(features[sl]), device=device)
        out[sl] = model.click_logits(u, i, x).double().cpu().numpy()
    return out


def evaluate_clicks(
    model: Any,
    ds: Dataset,
    stage: str = "test",
    seed: int | None = None,
    split: dict[str, Any] | None = None,
    truth_p: np.ndarray | None = None,
    batch_size: int = 65_536,
) -> dict[str, Any]:
    """AUC and log-loss of a click model on the impressions of ``stage`` (valid / test).

    The click split is the model's own (``model.split_spec()``) unless ``split`` (the
    arguments of :func:`~streamrec.data.clicks.click_split`) or ``seed`` overrides it.
    ``truth_p`` ([n_impressions] true click probabilities) defaults to the dataset's
    ``truth/impressions.npy``; with it the result also has ``oracle_auc``,
    ``oracle_logloss`` and ``auc_gap`` (= oracle_auc - auc).

    Returns ``{"metrics": {...}, "evaluation": "click prediction", "protocol": {...},
    "seconds": s}``.
    """
    if stage not in ("valid", "test"):
        raise ValueError(f"stage must be 'valid' or 'test', not {stage!r}")
    t0 = time.perf_counter()
    require(model, ClickModel, "predict clicks of impressions")
    spec = dict(model.split_spec())
    if split:
        spec.update(split)
    if seed is not None:
        spec["seed"] = int(seed)
    method = resolve_split_method(ds, spec.get("method", "auto"))
    assign = click_split(ds, **spec)
    part = click_arrays(ds, stage, assign)
    if len(part) == 0:
        raise ValueError(f"no {stage} impressions in the click split {spec}")
    y = part.clicked
    was_training = model.training
    model.eval()
    try:
        logits = predict_click_logits(model, part.user, part.item, part.features, batch_size)
    finally:
        model.train(was_training)
    metrics: dict[str, float] = {
        "auc": auc(y, logits),
        "logloss": log_loss_from_logits(y, logits),
    }
    if truth_p is None:
        truth_p = true_click_probabilities(ds)
    if truth_p is not None:
        p = np.asarray(truth_p, dtype=np.float64)[part.rows]
        metrics["oracle_auc"] = auc(y, p)
        metrics["oracle_logloss"] = log_loss(y, p)
        metrics["auc_gap"] = metrics["oracle_auc"] - metrics["auc"]
    features = list(ds.meta.get("impression_features", []))
    protocol = {
        "dataset": ds.name,
        "split": {"of": "impressions", **spec, "method": method},
        "stage": stage,
        "n_impressions": int(len(part)),
        "click_rate": float(y.mean()),
        "features": features or int(part.features.shape[1]),
        "oracle": "true click probabilities (truth/impressions.npy)" if truth_p is not None
        else None,
        "model": model.name,
        **model.protocol(),
    }
    return {
        "metrics": metrics,
        "evaluation": "click prediction",
        "protocol": protocol,
        "seconds": time.perf_counter() - t0,
    }
