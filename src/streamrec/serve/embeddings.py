"""Item embeddings out of a run: export to a file, nearest neighbours.

* :func:`item_matrix` — the [n_items, d] item embeddings of an
  :class:`~streamrec.models.base.ItemEmbedder` as a numpy array (a one-line
  :class:`~streamrec.models.base.CapabilityError` for a model that has none), and
  :func:`user_matrix` the user vectors of a :class:`~streamrec.models.base.VectorRetriever`;
* :func:`export_embeddings` — write them with the **original** item ids, as Parquet (columns
  ``item_id`` string, ``embedding`` fixed-size list of float32) or as ``.npy`` with a sidecar
  ``<name>.ids.json`` (``{"item_ids": [...], ...}``); :func:`load_embeddings` reads either back;
* :func:`nearest_neighbours` — top-k cosine neighbours of items (each item itself excluded);
* :func:`similar_items` — the neighbours of one original item id, with title and category.

The neighbour-quality measures (category precision, overlap with reference neighbours) are
metrics: :mod:`streamrec.eval.metrics`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from streamrec.models.base import ItemEmbedder, VectorRetriever, require
from streamrec.run import as_run

EMBEDDING_FORMATS = (".parquet", ".npy")


@torch.no_grad()
def item_matrix(model: Any) -> np.ndarray:
    """Item embeddings of ``model`` as float32 [n_items, d] (row ``i`` = internal item ``i``),
    computed in eval mode. :class:`~streamrec.models.base.CapabilityError` if the model is not
    an :class:`~streamrec.models.base.ItemEmbedder`."""
    require(model, ItemEmbedder, "give item embeddings")
    was = model.training
    model.eval()
    try:
        emb = model.item_embeddings()
    finally:
        model.train(was)
    return emb.detach().float().cpu().numpy()


@torch.no_grad()
def user_matrix(
    model: Any, users: np.ndarray, history: Any, batch_size: int = 4096
) -> np.ndarray:
    """User vectors float32 [len(users), d] of a :class:`~streamrec.models.base.VectorRetriever`
    from ``history``, in eval mode and batches."""
    require(model, VectorRetriever, "give user vectors")
    was = model.training
    model.eval()
    try:
        u = torch.as_tensor(np.asarray(users, dtype=np.int64), device=model.device)
        chunks = [model.user_embeddings(u[s : s + batch_size], history).float().cpu()
                  for s in range(0, len(u), batch_size)]
    finally:
        model.train(was)
    if not chunks:
        return np.zeros((0, item_matrix(model).shape[1]), dtype=np.float32)
    return torch.cat(chunks).numpy()


def export_embeddings(run: Any, out: str | Path, normalize: bool = False) -> Path:
    """Write a run's item embeddings with the original item ids; returns the written file.

    run: a :class:`~streamrec.run.Run` or a run directory. out: ``*.parquet`` (columns
    ``item_id``, ``embedding``) or ``*.npy`` (array [n_items, d], row ``i`` = ``item_ids[i]``
    of the sidecar ``*.ids.json``). normalize: L2-normalise the rows first.
    """
    run = as_run(run)
    out = Path(out)
    if out.suffix not in EMBEDDING_FORMATS:
        raise ValueError(f"{out}: the embedding file must end in .parquet or .npy")
    emb = item_matrix(run.model)
    if normalize:
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    ids = [str(i) for i in run.dataset.item_ids]
    meta = {
        "model": run.config.get("model"),
        "run": str(run.path) if run.path is not None else None,
        "dataset": run.dataset.name,
        "n_items": len(ids),
        "dim": int(emb.shape[1]),
        "normalized": bool(normalize),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = pa.array(np.ascontiguousarray(emb, dtype=np.float32).reshape(-1))
        table = pa.table(
            [pa.array(ids, pa.string()), pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])],
            names=["item_id", "embedding"],
        )
        table = table.replace_schema_metadata({"streamrec": json.dumps(meta)})
        pq.write_table(table, out)
    else:
        np.save(out, emb.astype(np.float32))
        _sidecar(out).write_text(json.dumps({**meta, "item_ids": ids}))
    return out


def _sidecar(npy: Path) -> Path:
    return npy.with_name(npy.name[: -len(".npy")] + ".ids.json")


def load_embeddings(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Read a file of :func:`export_embeddings`: ``(item_ids [n], embeddings float32 [n, d])``."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        col = table.column("embedding").combine_chunks()
        emb = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)
        return [str(i) for i in table.column("item_id").to_pylist()], emb.astype(np.float32)
    if path.suffix == ".npy":
        ids = json.loads(_sidecar(path).read_text())["item_ids"]
        return [str(i) for i in ids], np.load(path)
    raise ValueError(f"{path}: not an embedding file (.parquet or .npy)")


def nearest_neighbours(
    emb: np.ndarray | torch.Tensor,
    k: int = 10,
    queries: np.ndarray | None = None,
    batch_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` cosine neighbours among all items, each query item itself excluded.

    emb: [n_items, d]; queries: item ids [Q] (default: all). Returns ``(neighbours int64 [Q, k],
    cosines float32 [Q, k])``, best first. Items with a zero embedding have cosine 0 with all.
    """
    e = F.normalize(torch.as_tensor(np.asarray(emb), dtype=torch.float32), dim=1)
    q = np.arange(len(e)) if queries is None else np.asarray(queries, dtype=np.int64)
    k = min(k, len(e) - 1)
    nbr = np.empty((len(q), k), dtype=np.int64)
    cos = np.empty((len(q), k), dtype=np.float32)
    for s in range(0, len(q), batch_size):
        rows = torch.as_tensor(q[s : s + batch_size])
        sims = e[rows] @ e.T
        sims[torch.arange(len(rows)), rows] = float("-inf")
        top = torch.topk(sims, k, dim=1)
        nbr[s : s + len(rows)] = top.indices.numpy()
        cos[s : s + len(rows)] = top.values.numpy()
    return nbr, cos


def similar_items(run: Any, item_id: str | int, k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` items most similar to original item ``item_id`` by embedding cosine.

    Returns ``[{"rank", "item", "cosine", "title"?, "category"?, "category_name"?}, ...]``,
    best first, the item itself excluded. ``KeyError`` for an unknown id.
    """
    run = as_run(run)
    ds = run.dataset
    i = ds.item_index(item_id)
    emb = item_matrix(run.model)
    nbr, cos = nearest_neighbours(emb, k, queries=np.array([i]))
    names = ds.meta.get("categories")
    out = ds.item_rows(nbr[0], cos[0], score_key="cosine")
    for row in out:
        cat = row.get("category")
        if names and cat is not None and 0 <= int(cat) < len(names):
            row["category_name"] = str(names[int(cat)])
    return out
