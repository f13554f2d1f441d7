"""Approximate nearest-neighbour (ANN) retrieval over item vectors with FAISS.

A :class:`~streamrec.models.base.VectorRetriever` (the two-tower model, MF) maps users and
items into one space where the score is the inner product ``<u, v>`` (for the two-tower, of
L2-normalised vectors, so inner product = cosine). Retrieval is maximum inner-product search:
the ``k`` items with the largest ``<u, v_i>``. Three index types:

``flat``  exact search (``IndexFlatIP``): every query is compared with every item,
          ``O(n d)`` per query. The reference the others are judged against.
``hnsw``  a Hierarchical Navigable Small World graph (Malkov & Yashunin 2018,
          ``IndexHNSWFlat``, inner-product metric). Each item links to ``M`` neighbours per
          layer (``2M`` on the bottom layer); ``efConstruction`` is the width of the beam
          search used while inserting, ``efSearch`` the beam width at query time (larger:
          higher recall, slower; it must be at least ``k``). Search cost grows like
          ``log n``.
``ivf``   an inverted file (``IndexIVFFlat``): k-means cuts the space into ``nlist`` cells
          (trained on the vectors); a query visits the ``nprobe`` cells whose centroids are
          closest and compares itself with their items exactly, ``~ n * nprobe / nlist`` items
          per query.

:class:`ItemIndex` bundles an index with its parameters; it searches with an exclusion list
per query (the user's already-seen items are over-fetched and dropped), and saves to / loads
from one ``.faiss`` file plus a JSON sidecar. :func:`run_index` builds a run's index on first
use and keeps it in ``RUN/index/KIND.faiss``; :func:`retrieve` is the Python API of
``streamrec retrieve RUN --user ID -k 100``. FAISS is imported inside the functions, so
importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.models.base import VectorRetriever, require
from streamrec.run import as_run
from streamrec.serve.embeddings import item_matrix, user_matrix

INDEX_KINDS = ("flat", "hnsw", "ivf")


@dataclasses.dataclass
class IndexParams:
    """Parameters of an item index (see the module docstring).

    nlist: IVF cells; ``None`` = ``4 * sqrt(n)`` rounded, at most ``n // 39`` (FAISS wants
    about 39 training points per centroid). threads: FAISS OpenMP threads (None: leave as is).
    """

    kind: str = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    nlist: int | None = None
    nprobe: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ValueError(f"unknown index kind {self.kind!r}; choose {', '.join(INDEX_KINDS)}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"index parameter {name} must be >= 1")
        if self.nlist is not None and int(self.nlist) < 1:
            raise ValueError("index parameter nlist must be >= 1 (or None for automatic)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ImportError("the ANN index needs the optional package 'faiss', which is not "
                          "installed: pip install 'streamrec[ann]'") from None
    return faiss


def auto_nlist(n: int) -> int:
    """The default number of IVF cells for ``n`` vectors: ``4 sqrt(n)``, >= 1, <= n / 39."""
    return int(max(1, min(round(4 * np.sqrt(n)), n // 39)))


def build_index(vectors: np.ndarray, params: IndexParams | None = None, **kwargs: Any) -> Any:
    """A FAISS inner-product index over ``vectors`` float32 [n, d] (row ``i`` = item ``i``).

    Give an :class:`IndexParams` or its fields as keyword arguments (``kind="hnsw"``, ...).
    """
    faiss = _faiss()
    p = params if params is not None else IndexParams(**kwargs)
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"build_index needs a non-empty [n, d] matrix, got shape {x.shape}")
    n, d = x.shape
    if p.kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif p.kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, int(p.hnsw_m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = int(p.ef_construction)
        index.hnsw.efSearch = int(p.ef_search)
    else:
        nlist = int(p.nlist) if p.nlist is not None else auto_nlist(n)
        nlist = max(1, min(nlist, n))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = int(p.seed)
        index.train(x)
        index.nprobe = min(int(p.nprobe), nlist)
    index.add(x)
    return index


@dataclasses.dataclass
class ItemIndex:
    """A FAISS index over the item vectors with its parameters."""

    index: Any
    params: IndexParams

    @classmethod
    def build(cls, vectors: np.ndarray, params: IndexParams | None = None, **kw: Any) -> ItemIndex:
        p = params if params is not None else IndexParams(**kw)
        return cls(build_index(vectors, p), p)

    @property
    def n_items(self) -> int:
        return int(self.index.ntotal)

    def set_search_params(self, ef_search: int | None = None, nprobe: int | None = None) -> None:
        """Change ``efSearch`` (hnsw) or ``nprobe`` (ivf) without rebuilding."""
        if ef_search is not None and self.params.kind == "hnsw":
            self.params.ef_search = int(ef_search)
            self.index.hnsw.efSearch = int(ef_search)
        if nprobe is not None and self.params.kind == "ivf":
            self.params.nprobe = int(nprobe)
            self.index.nprobe = int(nprobe)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items of each query by inner product, excluded items dropped.

        queries: float32 [Q, d]; exclude: one int array per query (e.g. its seen items).
        Returns ``(ids int64 [Q, k], scores float32 [Q, k])``, best first; missing slots hold
        ``-1`` / ``-inf``. Excluded items are removed by over-fetching ``k + max |exclude|``
        candidates (HNSW's ``efSearch`` is raised to that for the call when it is smaller).
        """
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = int(k)
        extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        fetch = min(self.n_items, k + extra)
        hnsw = self.params.kind == "hnsw"
        ef = self.index.hnsw.efSearch if hnsw else 0
        if hnsw and ef < fetch:
            self.index.hnsw.efSearch = fetch
        try:
            scores, ids = self.index.search(q, fetch)
        finally:
            if hnsw:
                self.index.hnsw.efSearch = ef
        out_ids = np.full((len(q), k), -1, dtype=np.int64)
        out_scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        if exclude is None:
            n = min(k, fetch)
            out_ids[:, :n], out_scores[:, :n] = ids[:, :n], scores[:, :n]
            return out_ids, out_scores
        for r in range(len(q)):  # only the (small) exclusion sets differ between queries
            keep = (ids[r] >= 0) & ~np.isin(ids[r], exclude[r])
            kept = ids[r][keep][:k]
            out_ids[r, : len(kept)] = kept
            out_scores[r, : len(kept)] = scores[r][keep][:k]
        return out_ids, out_scores

    # ------------------------------------------------------------------ io
    def to_bytes(self) -> bytes:
        """The serialised FAISS index."""
        return _faiss().serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, params: IndexParams) -> ItemIndex:
        index = _faiss().deserialize_index(np.frombuffer(data, dtype=np.uint8).copy())
        item_index = cls(index, params)
        item_index.set_search_params(params.ef_search, params.nprobe)
        return item_index

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (``.faiss``) and ``path.json`` (parameters)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_bytes())
        path.with_suffix(".json").write_text(json.dumps(self.params.to_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> ItemIndex:
        path = Path(path)
        params = IndexParams(**json.loads(path.with_suffix(".json").read_text()))
        return cls.from_bytes(path.read_bytes(), params)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-``k`` ids [Q, k] by inner product, with numpy (the brute-force reference)."""
    scores = np.atleast_2d(queries).astype(np.float32) @ np.asarray(vectors, np.float32).T
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1)


def recall_against_exact(approx: np.ndarray, exact: np.ndarray) -> float:
    """Mean ``|approx_q ∩ exact_q| / k`` over queries (the recall of an ANN index)."""
    k = exact.shape[1]
    hits = (approx[:, :, None] == exact[:, None, :]).any(axis=2).sum()
    return float(hits / (len(exact) * k))


# ====================================================================== run-level API
def index_path(run_dir: str | Path, kind: str) -> Path:
    """Where a run keeps its index of ``kind``: ``RUN/index/KIND.faiss`` (+ ``.json``)."""
    return Path(run_dir) / "index" / f"{kind}.faiss"


def index_params(model: Any, kind: str | None = None) -> IndexParams:
    """The :class:`IndexParams` of a :class:`~streamrec.models.base.VectorRetriever`: its own
    :meth:`~streamrec.models.base.VectorRetriever.index_options`, with ``kind`` replaced."""
    require(model, VectorRetriever, "retrieve from an ANN index")
    options = dict(model.index_options())
    if kind is not None:
        options["kind"] = kind
    return IndexParams(**options)


def run_index(run: Any, kind: str | None = None, save: bool = True) -> ItemIndex:
    """The run's item index of ``kind`` (default: the model's own ``index`` option).

    Loaded from ``RUN/index/`` when it is there; otherwise built from the model's item vectors
    (and saved there when ``save``). Indexes are kept on the :class:`~streamrec.run.Run`, so a
    process builds each one once.
    """
    params = index_params(run.model, kind)
    cache = run.cache.setdefault("indexes", {})
    if params.kind in cache:
        return cache[params.kind]
    path = index_path(run.path, params.kind) if run.path is not None else None
    if path is not None and path.is_file():
        idx = ItemIndex.load(path)
    else:
        idx = ItemIndex.build(item_matrix(run.model), params)
        if save and path is not None:
            idx.save(path)
    cache[params.kind] = idx
    return idx


def retrieve_users(
    run: Any,
    users: np.ndarray,
    k: int = 100,
    index: str | None = None,
    exclude_seen: bool = True,
    stage: str = "test",
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items of internal ``users`` [U] through the run's ANN index (batched).

    The user vectors read the history visible at ``stage`` (train + valid for ``test``), and
    the items in that history are filtered out when ``exclude_seen``. Returns
    ``(items int64 [U, k], scores float32 [U, k])`` with ``-1`` for missing slots.
    """
    run = as_run(run)
    idx = run_index(run, index)
    history = run.split.history(run.dataset, stage)
    users = np.asarray(users, dtype=np.int64)
    queries = user_matrix(run.model, users, history)
    exclude = None
    if exclude_seen:
        seen = history.csr()
        exclude = [seen.indices[seen.indptr[u] : seen.indptr[u + 1]] for u in users]
    return idx.search(queries, k, exclude)


def retrieve(
    run: Any,
    user: str | int,
    k: int = 100,
    index: str | None = None,
    exclude_seen: bool = True,
    stage: str = "test",
) -> list[dict[str, Any]]:
    """Top-``k`` items for an original user id from the run's ANN index.

    ``run``: a :class:`~streamrec.run.Run` or a run directory; ``index``: ``flat``, ``hnsw``,
    ``ivf`` or ``None`` (the model's own). Returns ``[{"rank", "item", "score", "title"?,
    "category"?}, ...]``, best first, without the user's seen items.
    """
    run = as_run(run)
    ds = run.dataset
    u = ds.user_index(user)
    items, scores = retrieve_users(run, np.array([u]), k, index, exclude_seen, stage)
    return ds.item_rows(items[0], scores[0])
