"""The ``lightgcn`` importer: LightGCN / NGCF split files (``train.txt``, ``test.txt``,
optional ``valid.txt``; one line ``user item item ...`` per user) with optional
``user_list.txt`` / ``item_list.txt``.

The ids are remapped non-negative integers; the files have no times (``timestamp`` is 0).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset
from streamrec.data.importers.base import (
    NEGATIVE_ID_HINT,
    DataFormatError,
    _align,
    _encode_ids,
    _find_file,
    _finish,
    _read_bytes,
    _read_table,
    _split_lines,
    _src_dir,
)

_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32]] = True


def _read_adjacency(path: Path, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``user item item ...`` lines -> (users of the lines [L], user [n], item [n]).

    Vectorised: token boundaries and their line numbers come from one pass of numpy over the
    bytes, the values from one ``np.fromstring``; only a file that does not parse is
    re-scanned token by token to name the offending line.
    """
    if not data.strip():
        raise DataFormatError(path, None, "empty file")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    buf = np.frombuffer(data, dtype=np.uint8)
    ws = _WS[buf]
    start = ~ws
    start[1:] &= ws[:-1]
    starts = np.flatnonzero(start)
    newlines = np.flatnonzero(buf == 10)
    line_of = np.searchsorted(newlines, starts)  # 0-based line of every token
    vals = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # older numpy only warns on a bad token
            vals = np.fromstring(data, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        pass
    big = np.iinfo(np.int64)
    if vals is None or len(vals) != len(starts) or (
            len(vals) and (vals.max() == big.max or vals.min() == big.min)):
        for k, tok in enumerate(data.split()):
            try:
                value = int(tok)
            except ValueError:
                raise DataFormatError(path, int(line_of[k]) + 1,
                                      f"expected integer ids 'user item item ...' separated by "
                                      f"spaces, found {tok.decode('latin-1')!r}") from None
            if not big.min <= value <= big.max:
                raise DataFormatError(path, int(line_of[k]) + 1,
                                      f"id {value} does not fit in a 64-bit integer; LightGCN "
                                      "files hold remapped ids 0..n-1")
        if vals is None or len(vals) != len(starts):
            raise DataFormatError(path, None, "cannot parse the integer ids")
    neg = np.flatnonzero(vals < 0)
    if len(neg):
        k = int(neg[0])
        raise DataFormatError(path, int(line_of[k]) + 1,
                              f"{'user' if k == 0 or line_of[k] != line_of[k - 1] else 'item'} "
                              f"id is negative ({vals[k]}); {NEGATIVE_ID_HINT}")
    first = np.ones(len(vals), dtype=bool)
    first[1:] = line_of[1:] != line_of[:-1]
    owner = np.cumsum(first) - 1
    line_users = vals[first]
    return line_users, line_users[owner[~first]], vals[~first]


def _read_id_list(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """LightGCN ``user_list.txt`` / ``item_list.txt``: header, then ``org_id remap_id``."""
    data = _read_bytes(path)
    lines = _split_lines(data)
    first = lines[0].split() if lines else []
    skip = 1 if first and not first[-1].isdigit() else 0  # the "org_id remap_id" header
    t = _read_table(path, data.replace(b"\t", b" "), b" ", ["org_id", "remap_id"], skip=skip)
    remap = t.ints(1, "remap_id")
    neg = np.flatnonzero(remap < 0)
    if len(neg):
        raise DataFormatError(path, int(t.lines[neg[0]]), f"remap_id is negative "
                                                          f"({remap[neg[0]]}); {NEGATIVE_ID_HINT}")
    return t.strs(0), remap


def read_lightgcn(src: str | Path, *, name: str | None = None) -> Dataset:
    """LightGCN / NGCF split files: ``train.txt`` (required), ``test.txt`` and optional
    ``valid.txt`` (each may be ``.gz``); one line per user: ``user item item ...``
    (space-separated integer ids; a line may hold only the user).

    The split that came with the files is kept in ``given_split`` (0 train, 1 valid, 2 test).
    The files have no times: ``timestamp`` is 0 everywhere (the file order is kept, and
    :meth:`Dataset.time_order` breaks ties by it). Optional ``user_list.txt`` /
    ``item_list.txt`` (``org_id remap_id``) add an ``org_id`` side column.
    """
    src = _src_dir(src, "lightgcn", "train.txt and test.txt")
    parts = []
    for fname, code, required in (("train.txt", 0, True), ("valid.txt", 1, False),
                                  ("test.txt", 2, False)):
        path = _find_file(src, fname, required=required)
        if path is None:
            if fname == "test.txt":
                warnings.warn(f"{src / 'test.txt'} not found: no test part", stacklevel=2)
            continue
        line_users, u, i = _read_adjacency(path, _read_bytes(path))
        parts.append((code, line_users, u, i))
    extra_cols: dict[str, dict[str, Any]] = {}
    catalogs: dict[str, np.ndarray] = {}
    for kind, fname in (("user", "user_list.txt"), ("item", "item_list.txt")):
        path = _find_file(src, fname, required=False)
        if path is not None:
            org, remap = _read_id_list(path)
            catalogs[kind] = remap
            extra_cols[kind] = {"org": org, "remap": remap}
    user_cat = np.concatenate([p[1] for p in parts] + [catalogs.get("user", np.zeros(0, int))])
    user_ids, (u_int,) = _encode_ids([np.concatenate([p[2] for p in parts])], catalog=user_cat)
    item_ids, (i_int,) = _encode_ids([np.concatenate([p[3] for p in parts])],
                                     catalog=catalogs.get("item"))
    given = np.concatenate([np.full(len(p[2]), p[0], dtype=np.int8) for p in parts])
    inter = {"user": u_int, "item": i_int, "timestamp": np.zeros(len(u_int), dtype=np.int64),
             "given_split": given}
    side: dict[str, dict[str, np.ndarray]] = {"user": {}, "item": {}}
    for kind, ids in (("user", user_ids), ("item", item_ids)):
        if kind in extra_cols:
            _, (pos,) = _encode_ids([extra_cols[kind]["remap"]], catalog=ids.astype(np.int64))
            side[kind]["org_id"] = _align(len(ids), pos, extra_cols[kind]["org"], "")
    meta = {"timestamps": "none in the files: all 0, file order kept",
            "given_split_parts": sorted({int(p[0]) for p in parts})}
    return _finish(name or src.name, user_ids, item_ids, inter, side["item"], side["user"], meta)
