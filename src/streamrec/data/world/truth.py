"""The hidden ground truth of a world: :class:`WorldTruth` (latents, popularity, series,
favourite categories, session lengths, true click probabilities) and :func:`load_truth`.

It is written to ``truth/`` inside a generated dataset directory and is never read by models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.common import json_default


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
        (d / "world.json").write_text(json.dumps(self.params, indent=2, default=json_default))
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
