"""The one in-memory dataset type of StreamRec, and its on-disk format.

A :class:`Dataset` holds

* ``user_ids`` / ``item_ids``: the original ids (strings), position = internal id ``0..n-1``;
* ``inter``: the interactions as parallel numpy columns; ``user`` (int32), ``item`` (int32) and
  ``timestamp`` (int64, seconds) always exist; optional columns are ``engagement`` (int8, see
  :data:`ENGAGEMENT_TYPES`), ``rating`` (float32), ``session`` (int64) and ``given_split``
  (int8: 0 train, 1 valid, 2 test — a split that came with the files, e.g. the LightGCN split);
* ``items`` / ``users``: side tables aligned with the internal ids (``category``, ``title``,
  ``text`` for items; features for users);
* ``impressions``: optional click data (``user``, ``item``, ``features`` [n, F], ``clicked``);
* ``meta``: a JSON-able dict (name, source, category names, ...).

On disk a dataset is a directory::

    meta.json               format tag, name, sizes, category names, source ...
    interactions.parquet    user, item (internal ids), timestamp, optional columns
    items.parquet           id (original, string) + item side columns
    users.parquet           id (original, string) + user side columns
    impressions.parquet     optional click data
    truth/                  optional ground truth of a synthetic world (never read by models)

Writes are atomic: everything goes to a temporary sibling directory that is renamed into
place only when complete, so an interrupted or failed write never leaves a half-written
dataset at ``out``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from streamrec.common import json_default

FORMAT = "streamrec-dataset/1"
ENGAGEMENT_TYPES = ("click", "partial_view", "full_view", "save", "share")
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}


class DatasetError(ValueError):
    """A dataset directory is missing, malformed or inconsistent."""


@dataclass
class Dataset:
    """Interactions plus side information, with ids mapped to ``0..n-1``.

    Parameters
    ----------
    name: short name used in reports.
    user_ids, item_ids: original ids as strings, shape [n_users] / [n_items].
    inter: interaction columns, each of shape [n_interactions]; must contain ``user``,
        ``item`` and ``timestamp``.
    items, users: side columns aligned with internal ids ([n_items, ...] / [n_users, ...]).
    impressions: optional click-prediction data; columns ``user`` [n], ``item`` [n],
        ``features`` [n, F] float32, ``clicked`` [n] int8; optionally ``timestamp``.
    meta: JSON-able metadata.
    path: the directory it was loaded from, if any.
    """

    name: str
    user_ids: np.ndarray
    item_ids: np.ndarray
    inter: dict[str, np.ndarray]
    items: dict[str, np.ndarray] = field(default_factory=dict)
    users: dict[str, np.ndarray] = field(default_factory=dict)
    impressions: dict[str, np.ndarray] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self) -> None:
        self.user_ids = np.asarray(self.user_ids).astype(str)
        self.item_ids = np.asarray(self.item_ids).astype(str)
        for col in ("user", "item", "timestamp"):
            if col not in self.inter:
                raise DatasetError(f"dataset {self.name!r}: interactions need a {col!r} column")
        self.inter["user"] = np.asarray(self.inter["user"], dtype=np.int32)
        self.inter["item"] = np.asarray(self.inter["item"], dtype=np.int32)
        self.inter["timestamp"] = np.asarray(self.inter["timestamp"], dtype=np.int64)
        n = len(self.inter["user"])
        for col, arr in self.inter.items():
            if len(arr) != n:
                raise DatasetError(
                    f"dataset {self.name!r}: column {col!r} has {len(arr)} rows, expected {n}"
                )
        if n:
            if self.inter["user"].min() < 0 or self.inter["user"].max() >= self.n_users:
                raise DatasetError(f"dataset {self.name!r}: user index out of range")
            if self.inter["item"].min() < 0 or self.inter["item"].max() >= self.n_items:
                raise DatasetError(f"dataset {self.name!r}: item index out of range")
        self._user_index: dict[str, int] | None = None
        self._item_index: dict[str, int] | None = None

    # ------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.inter["user"])

    @property
    def density(self) -> float:
        return self.n_interactions / max(1, self.n_users * self.n_items)

    @property
    def user(self) -> np.ndarray:
        return self.inter["user"]

    @property
    def item(self) -> np.ndarray:
        return self.inter["item"]

    @property
    def timestamp(self) -> np.ndarray:
        return self.inter["timestamp"]

    # ------------------------------------------------------------------ ids
    def user_index(self, original: str | int) -> int:
        """Internal index of an original user id; raises ``KeyError`` with a clear message."""
        if self._user_index is None:
            self._user_index = {u: i for i, u in enumerate(self.user_ids)}
        try:
            return self._user_index[str(original)]
        except KeyError:
            raise KeyError(f"unknown user id {original!r} in dataset {self.name!r}") from None

    def item_rows(
        self, items: Any, scores: Any, score_key: str = "score"
    ) -> list[dict[str, Any]]:
        """Ranked rows of internal item ids ``items`` with ``scores``, best first:
        ``[{"rank", "item" (original id), score_key, "title"?, "category"?}, ...]``.

        Stops at the first padding entry (an id < 0 or a score of -inf), as ranked lists padded
        by the evaluator or by masking end.
        """
        out: list[dict[str, Any]] = []
        for rank, (i, s) in enumerate(zip(np.asarray(items).tolist(),
                                          np.asarray(scores).tolist()), start=1):
            if i < 0 or s == float("-inf"):
                break
            row: dict[str, Any] = {"rank": rank, "item": str(self.item_ids[i]),
                                   score_key: float(s)}
            for col in ("title", "category"):
                if col in self.items:
                    v = self.items[col][i]
                    row[col] = v.item() if isinstance(v, np.generic) else v
            out.append(row)
        return out

    def item_index(self, original: str | int) -> int:
        """Internal index of an original item id; raises ``KeyError`` with a clear message."""
        if self._item_index is None:
            self._item_index = {it: i for i, it in enumerate(self.item_ids)}
        try:
            return self._item_index[str(original)]
        except KeyError:
            raise KeyError(f"unknown item id {original!r} in dataset {self.name!r}") from None

    # ------------------------------------------------------------------ views
    def subset(self, mask: np.ndarray) -> Dataset:
        """The same users, items and side tables with only the interactions where ``mask``.

        ``mask`` is a bool array [n_interactions] (or an index array). Impressions are kept
        as they are; click data carries its own split column.
        """
        inter = {k: v[mask] for k, v in self.inter.items()}
        return Dataset(
            name=self.name,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            inter=inter,
            items=self.items,
            users=self.users,
            impressions=self.impressions,
            meta=self.meta,
            path=self.path,
        )

    def csr(self, binary: bool = True) -> sp.csr_matrix:
        """User x item matrix [n_users, n_items] of the interactions (1.0 where any)."""
        data = np.ones(self.n_interactions, dtype=np.float32)
        m = sp.csr_matrix(
            (data, (self.user, self.item)), shape=(self.n_users, self.n_items), dtype=np.float32
        )
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def item_counts(self) -> np.ndarray:
        """Number of interactions per item, shape [n_items]."""
        return np.bincount(self.item, minlength=self.n_items)

    def user_counts(self) -> np.ndarray:
        """Number of interactions per user, shape [n_users]."""
        return np.bincount(self.user, minlength=self.n_users)

    def time_order(self) -> np.ndarray:
        """Permutation sorting interactions by (user, timestamp, original position)."""
        return np.lexsort((np.arange(self.n_interactions), self.timestamp, self.user))

    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """Time-ordered item sequences per user in CSR form.

        Returns ``(indptr [n_users+1], items [n_interactions])``: user ``u``'s items in time
        order are ``items[indptr[u]:indptr[u+1]]``.
        """
        order = self.time_order()
        counts = self.user_counts()
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return indptr, self.item[order]

    # ------------------------------------------------------------------ summary
    def info(self) -> dict[str, Any]:
        """Sizes and statistics as a JSON-able dict (what ``streamrec data info`` prints).

        Besides sizes: ``duplicate_interactions`` (rows repeating an earlier (user, item,
        timestamp)) and ``repeated_pairs`` (rows repeating an earlier (user, item) pair), both
        computed from the data, so they are there for datasets written by any version.
        """
        counts = self.user_counts()
        active = counts[counts > 0]
        seq = {
            "min": int(active.min()) if len(active) else 0,
            "median": float(np.median(active)) if len(active) else 0.0,
            "mean": float(active.mean()) if len(active) else 0.0,
            "p95": float(np.percentile(active, 95)) if len(active) else 0.0,
            "max": int(active.max()) if len(active) else 0,
        }
        # repeated (user, item) pairs; exact duplicates can only be among their rows
        repeated = duplicates = 0
        if self.n_interactions > 1:
            pair = self.user.astype(np.int64) * max(1, self.n_items) + self.item
            key = np.sort(pair)
            again = key[1:] == key[:-1]
            repeated = int(np.count_nonzero(again))
            if repeated:
                rows = np.flatnonzero(np.isin(pair, key[1:][again]))
                order = np.lexsort((self.timestamp[rows], pair[rows]))
                p, t = pair[rows][order], self.timestamp[rows][order]
                duplicates = int(np.count_nonzero((p[1:] == p[:-1]) & (t[1:] == t[:-1])))
        out: dict[str, Any] = {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "density": self.density,
            "active_users": int((counts > 0).sum()),
            "active_items": int((self.item_counts() > 0).sum()),
            "sequence_length": seq,
            "duplicate_interactions": duplicates,
            "repeated_pairs": repeated,
        }
        if self.n_interactions and self.timestamp.max() > 0:
            import datetime as dt

            lo, hi = int(self.timestamp.min()), int(self.timestamp.max())
            out["time_span"] = [
                dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d") for t in (lo, hi)
            ]
        if "session" in self.inter:
            out["sessions"] = int(len(np.unique(self.inter["session"])))
        if "given_split" in self.inter:
            gs = self.inter["given_split"]
            out["given_split"] = {
                name: int((gs == code).sum()) for name, code in SPLIT_CODES.items()
            }
        if "category" in self.items:
            out["categories"] = int(len(np.unique(self.items["category"])))
        out["item_text"] = "text" in self.items
        out["user_features"] = sorted(self.users)
        if self.impressions is not None:
            out["impressions"] = int(len(self.impressions["clicked"]))
            out["click_rate"] = float(np.mean(self.impressions["clicked"]))
        out["has_ground_truth"] = bool(self.path is not None and (self.path / "truth").is_dir())
        return out

    # ------------------------------------------------------------------ io
    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write the dataset directory atomically (see the module docstring)."""
        with atomic_dir(out, overwrite=overwrite) as tmp:
            write_dataset_files(self, tmp)
        self.path = Path(out)
        return self.path

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        """Read a dataset directory written by :meth:`save` (or by the world generator)."""
        return load_dataset(path)


# ---------------------------------------------------------------------- files
@contextmanager
def atomic_dir(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``out`` on success, deleted on error."""
    out = Path(out)
    if out.exists() and not overwrite:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            raise FileExistsError(f"{out} already exists (pass overwrite=True / --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _table_from_columns(cols: dict[str, np.ndarray]) -> Any:
    import pyarrow as pa

    arrays, names = [], []
    for name, arr in cols.items():
        arr = np.asarray(arr)
        if arr.ndim == 2:
            arrays.append(
                pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])
            )
        elif arr.dtype.kind in "OUS":
            arrays.append(pa.array(arr.astype(str)))
        else:
            arrays.append(pa.array(arr))
        names.append(name)
    return pa.table(arrays, names=names)


def _columns_from_table(table: Any) -> dict[str, np.ndarray]:
    import pyarrow as pa

    cols: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
            cols[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            cols[name] = np.asarray(col.to_pylist(), dtype=object)
        else:
            cols[name] = col.to_numpy(zero_copy_only=False)
    return cols


def write_parquet(path: Path, cols: dict[str, np.ndarray]) -> None:
    """Write numpy columns (1-D, or 2-D as fixed-size lists) to one Parquet file."""
    import pyarrow.parquet as pq

    pq.write_table(_table_from_columns(cols), path)


def read_parquet(path: Path) -> dict[str, np.ndarray]:
    """Read a Parquet file written by :func:`write_parquet` back into numpy columns."""
    import pyarrow.parquet as pq

    return _columns_from_table(pq.read_table(path))


def write_dataset_files(ds: Dataset, directory: Path) -> None:
    """Write all files of ``ds`` into an existing (empty) directory."""
    directory = Path(directory)
    write_parquet(directory / "interactions.parquet", ds.inter)
    write_parquet(directory / "items.parquet", {"id": ds.item_ids, **ds.items})
    write_parquet(directory / "users.parquet", {"id": ds.user_ids, **ds.users})
    if ds.impressions is not None:
        write_parquet(directory / "impressions.parquet", ds.impressions)
    meta = dict(ds.meta)
    meta.update(
        format=FORMAT,
        name=ds.name,
        n_users=ds.n_users,
        n_items=ds.n_items,
        n_interactions=ds.n_interactions,
    )
    (directory / "meta.json").write_text(json.dumps(meta, indent=2, default=json_default))


def load_dataset(path: str | Path) -> Dataset:
    """Load a dataset directory; clear :class:`DatasetError` if it is not one."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise DatasetError(
            f"{path} is not a StreamRec dataset directory (no meta.json); create one with "
            "`streamrec world` or `streamrec data import`"
        )
    meta = json.loads(meta_file.read_text())
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{meta_file}: unknown format {meta.get('format')!r}, want {FORMAT!r}")
    for required in ("interactions.parquet", "items.parquet", "users.parquet"):
        if not (path / required).is_file():
            raise DatasetError(f"{path}: missing {required}")
    inter = read_parquet(path / "interactions.parquet")
    items = read_parquet(path / "items.parquet")
    users = read_parquet(path / "users.parquet")
    item_ids = items.pop("id")
    user_ids = users.pop("id")
    impressions = None
    if (path / "impressions.parquet").is_file():
        impressions = read_parquet(path / "impressions.parquet")
    return Dataset(
        name=meta.get("name", path.name),
        user_ids=user_ids,
        item_ids=item_ids,
        inter=inter,
        items=items,
        users=users,
        impressions=impressions,
        meta=meta,
        path=path,
    )
