"""The ``unisrec`` importer: UniSRec / CoWPiRec pre-split sequences
``NAME.{train,valid,test}.inter`` (index numbers as tokens), ``NAME.item2index``,
``NAME.user2index`` and ``NAME.text``; each user's full sequence is rebuilt from the rows.
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
    _encode_ids,
    _find_file,
    _finish,
    _index_column,
    _read_bytes,
    _read_table,
    _split_lines,
    _src_dir,
    _Table,
)
from streamrec.data.importers.recbole import _recbole_file


def _index_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``ORIGINAL\\tINDEX`` per line (UniSRec ``.item2index`` / ``.user2index``)."""
    data = _read_bytes(path)
    lines = _split_lines(data)
    first = lines[0].split(b"\t") if lines else []
    skip = 1 if len(first) == 2 and not first[1].strip().isdigit() else 0  # a header
    t = _read_table(path, data, b"\t", ["original id", "index"], skip=skip)
    return t.strs(0), t.ids(1, "index")


def read_unisrec(src: str | Path, *, dataset: str = "Scientific",
                 name: str | None = None) -> Dataset:
    """UniSRec / CoWPiRec pre-split sequences (e.g. Amazon Scientific).

    Files ``NAME.{train,valid,test}.inter`` (``user_id:token\\titem_id_list:token_seq\\t
    item_id:token``; train has one row per prefix of a user's time-ordered sequence, valid
    and test one row per user: history + target), ``NAME.item2index`` / ``NAME.user2index``
    (``ASIN\\tindex``, ``reviewerID\\tindex``) and ``NAME.text`` (``item_id\\ttext``).
    The ``.inter`` files use the *index numbers* as tokens (the same id space for
    ``item_id_list`` and ``item_id``); they are mapped back to ASINs / reviewer ids.

    Each user's full sequence is rebuilt from the rows (histories cut to the last L items are
    chained back together), stored with ``timestamp`` = position in the sequence and
    ``given_split`` = the file a position was the target of (train 0, valid 1, test 2; the
    first item, never a target, is train).
    """
    src = _src_dir(src, "unisrec", f"{dataset}.train.inter, .valid.inter and .test.inter")
    rows: list[tuple[int, str, list[str], str, Path, int]] = []
    all_tokens: set[str] = set()
    tables = []
    for code, part in ((0, "train"), (1, "valid"), (2, "test")):
        path = _find_file(src, f"{dataset}.{part}.inter")
        table, fields = _recbole_file(path, "utf-8",
                                      required=("user_id", "item_id_list", "item_id"),
                                      allow_empty=part != "test")
        names = [f for f, _ in fields]
        u = table.strs(names.index("user_id"))
        h = table.strs(names.index("item_id_list"))
        t = table.strs(names.index("item_id"))
        _check_index_tokens(path, table, {"user_id": u, "item_id_list": h, "item_id": t})
        tables.append((code, path, table, u, h, t))
    for code, path, table, u, h, t in tables:
        for k, (uu, hh, tt) in enumerate(zip(u.tolist(), h.tolist(), t.tolist())):
            if not tt:
                raise DataFormatError(path, int(table.lines[k]), "item_id (the target) is empty")
            rows.append((code, uu, hh.split(), tt, path, int(table.lines[k])))
        all_tokens.update(" ".join(h.tolist()).split())
        all_tokens.update(t.tolist())

    f_items = _find_file(src, f"{dataset}.item2index", required=False)
    f_users = _find_file(src, f"{dataset}.user2index", required=False)
    item_map = user_map = None
    if f_items is not None:
        asin, idx = _index_file(f_items)
        item_map = dict(zip(idx.astype(str).tolist(), asin.tolist()))
        known = set(idx.astype(str).tolist())
        unknown = all_tokens - known
        if unknown:
            _raise_unknown_token(rows, unknown, "item", f_items, items=True)
    else:
        warnings.warn(f"{src / (dataset + '.item2index')} not found: item ids stay index "
                      "numbers", stacklevel=2)
    if f_users is not None:
        rid, uidx = _index_file(f_users)
        user_map = dict(zip(uidx.astype(str).tolist(), rid.tolist()))
        unknown = {r[1] for r in rows} - set(uidx.astype(str).tolist())
        if unknown:
            _raise_unknown_token(rows, unknown, "user", f_users, items=False)
    else:
        warnings.warn(f"{src / (dataset + '.user2index')} not found: user ids stay index "
                      "numbers", stacklevel=2)

    max_hist = max((len(r[2]) for r in rows), default=0)
    by_user: dict[str, list[tuple[int, list[str], str, Path, int]]] = {}
    for code, uu, hist, tgt, path, line in rows:
        by_user.setdefault(uu, []).append((code, hist, tgt, path, line))
    seq_users: list[np.ndarray] = []
    seq_items: list[str] = []
    seq_pos: list[np.ndarray] = []
    seq_split: list[np.ndarray] = []
    truncated_users = 0
    for uu, urows in by_user.items():
        seq, codes, chained = _rebuild_sequence(uu, urows, max_hist)
        truncated_users += chained
        seq_items += seq
        seq_users.append(np.full(len(seq), uu, dtype=object))
        seq_pos.append(np.arange(len(seq), dtype=np.int64))
        seq_split.append(codes)
    user_tok = np.concatenate(seq_users).astype(str)
    item_tok = np.array(seq_items, dtype=str)
    item_catalog = np.array(list(item_map), dtype=str) if item_map else None
    user_catalog = np.array(list(user_map), dtype=str) if user_map else None
    item_idx, (i_int,) = _encode_ids([item_tok], catalog=item_catalog)
    user_idx, (u_int,) = _encode_ids([user_tok], catalog=user_catalog)
    item_ids = np.array([item_map[i] for i in item_idx.tolist()]) if item_map else item_idx
    user_ids = np.array([user_map[u] for u in user_idx.tolist()]) if user_map else user_idx
    inter = {"user": u_int, "item": i_int, "timestamp": np.concatenate(seq_pos),
             "given_split": np.concatenate(seq_split).astype(np.int8)}
    items: dict[str, np.ndarray] = {"index": _index_column(item_idx)}
    users: dict[str, np.ndarray] = {"index": _index_column(user_idx)}
    meta: dict[str, Any] = {
        "timestamps": "position in the user's sequence (0 = first)",
        "id_mapping": "the .inter files hold index numbers (item2index / user2index); "
                      "item_ids/user_ids are the original ASIN / reviewerID, items['index'] "
                      "and users['index'] the UniSRec index",
        "unisrec_dataset": dataset,
        "sequences_rechained": truncated_users,
        "max_history_in_files": max_hist,
    }
    f_text = _find_file(src, f"{dataset}.text", required=False)
    if f_text is not None:
        table, fields = _recbole_file(f_text, "utf-8", required=("item_id", "text"))
        names = [f for f, _ in fields]
        keys, texts = table.strs(names.index("item_id")), table.strs(names.index("text"))
        lookup = {k: v.strip() for k, v in zip(keys.tolist(), texts.tolist())}
        items["text"] = np.array([lookup.get(i, "") for i in item_ids.tolist()], dtype=str)
        meta["items_with_text"] = int(sum(1 for i in item_ids.tolist() if i in lookup))
    return _finish(name or dataset, user_ids, item_ids, inter, items, users, meta)


def _check_index_tokens(path: Path, table: _Table, cols: dict[str, np.ndarray]) -> None:
    """Every token of ``user_id``, ``item_id_list`` and ``item_id`` [n rows] must be a
    non-negative integer (an index of ``.user2index`` / ``.item2index``)."""
    for what, col in cols.items():
        seq = what == "item_id_list"
        flat = np.char.replace(col, " ", "") if seq else col
        ok = np.char.isdigit(flat) | ((np.char.str_len(flat) == 0) if seq else False)
        bad = np.flatnonzero(~ok)
        if not len(bad):
            continue
        i = int(bad[0])
        line = int(table.lines[i])
        tok = next(x for x in col[i].split() if not x.isdigit()) if seq else str(col[i])
        if not tok:
            problem = f"{what} is empty" + (" (the target)" if what == "item_id" else "")
        elif tok[0] == "-" and tok[1:].isdigit():
            problem = f"{what} index {tok} is negative; {NEGATIVE_ID_HINT}"
        else:
            problem = (f"{what} must hold integer indices (UniSRec .inter files use the index "
                       f"numbers of .item2index / .user2index), found {tok!r}")
        raise DataFormatError(path, line, problem)


def _raise_unknown_token(rows: list, unknown: set[str], kind: str, mapping: Path,
                         items: bool) -> None:
    for _, uu, hist, tgt, path, line in rows:
        toks = hist + [tgt] if items else [uu]
        for tok in toks:
            if tok in unknown:
                raise DataFormatError(path, line, f"{kind} index {tok!r} is not in {mapping}")


def _rebuild_sequence(user: str, rows: list[tuple[int, list[str], str, Path, int]],
                      max_hist: int) -> tuple[list[str], np.ndarray, int]:
    """One user's full sequence from (code, history, target) rows; see :func:`read_unisrec`.

    Rows whose history is shorter than ``max_hist`` are anchored at the start (target at
    position ``len(history)``); rows with a full-length history may have been cut to the last
    ``max_hist`` items, so they are chained on: the row whose history equals the last
    ``max_hist`` items of the sequence so far supplies the next item.
    """
    anchored = [r for r in rows if len(r[1]) < max_hist]
    windows = [r for r in rows if len(r[1]) >= max_hist]
    if anchored:  # the longest anchored row (from the latest file on ties) is the reference
        ref = max(anchored, key=lambda r: (len(r[1]), r[0]))
    else:
        ref = max(windows, key=lambda r: r[0])
        windows.remove(ref)
        anchored = [ref]
    seq = ref[1] + [ref[2]]
    codes = {}
    for code, hist, tgt, path, line in anchored:
        n = len(hist)
        if seq[:n + 1] != hist + [tgt]:
            raise DataFormatError(path, line, f"user {user}: history + target is not a prefix of "
                                              f"the user's sequence as given by "
                                              f"{ref[3].name}:{ref[4]} (the files disagree)")
        codes[n] = max(code, codes.get(n, 0))
    pending: dict[tuple[str, ...], list[tuple[int, str]]] = {}
    for code, hist, tgt, _path, _line in windows:
        pending.setdefault(tuple(hist[-max_hist:]), []).append((code, tgt))
    chained = 0
    while pending and max_hist:
        key = tuple(seq[-max_hist:])
        nxt = pending.get(key)
        if not nxt:
            break
        code, tgt = nxt.pop(0)
        if not nxt:
            del pending[key]
        codes[len(seq)] = code
        seq.append(tgt)
        chained = 1
    if pending:
        code, hist, tgt, path, line = next(
            r for r in windows if tuple(r[1][-max_hist:]) in pending)
        raise DataFormatError(path, line, f"user {user}: cannot place this row in the user's "
                                          "sequence (its history matches no prefix)")
    out = np.zeros(len(seq), dtype=np.int8)
    for pos, code in codes.items():
        out[pos] = code
    return seq, out, chained
