"""Building and writing worlds: the public entry points.

:func:`make_world_with_truth` builds a world in memory and returns its
:class:`~streamrec.data.dataset.Dataset` and :class:`WorldTruth`; :func:`make_world` returns
the dataset only; :func:`generate_world` writes a dataset directory atomically, chunk by chunk
(bounded memory), with the ground truth in ``truth/``. The same config and seed give the same
data in memory and on disk.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.common import json_default
from streamrec.data.dataset import FORMAT, Dataset, atomic_dir, write_parquet
from streamrec.data.world.config import WorldConfig, resolve_config
from streamrec.data.world.simulation import _block_top3, _World
from streamrec.data.world.truth import WorldTruth


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
        out["oracle_auc"] = _oracle_auc(clicked, p)
    return out


def _oracle_auc(clicked: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC of the clicks ranked by their true probability (NaN with one class only)."""
    from sklearn.metrics import roc_auc_score

    if len(np.unique(clicked)) < 2:
        return float("nan")
    return float(roc_auc_score(clicked, p))


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
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=json_default))
    say(f"wrote {out}")
    return out
