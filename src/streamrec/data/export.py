"""Export a :class:`~streamrec.data.dataset.Dataset` (and a split) as RecBole atomic files.

So that the same data, and the same split, can be run through RecBole side by side
(``shared/peers/recbole_peer.py --data-dir OUT --dataset NAME --split benchmark``)::

    OUT/NAME.inter         user_id:token  item_id:token  [rating:float]  timestamp:float
    OUT/NAME.item          item_id:token  [category:token] [title:token_seq] [year:token]
                           [genres:token_seq] [text:token_seq]
    OUT/NAME.user          user_id:token  + one column per user feature
    OUT/NAME.train.inter   \
    OUT/NAME.valid.inter    > with a split: the rows of each part (benchmark_filename)
    OUT/NAME.test.inter    /
    OUT/NAME.export.json   what was written (sizes, split protocol, source)

Ids are the ORIGINAL ids (``Dataset.user_ids`` / ``item_ids``), so RecBole's own remapping
and ours can be compared through them. With ``history=N`` the benchmark files are written in
the UniSRec style for RecBole's sequential models instead: ``user_id:token
item_id_list:token_seq item_id:token``, one row per target with the last ``N`` earlier items.
The directory is written atomically (a failed export leaves nothing at ``out``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset, atomic_dir
from streamrec.data.splits import DROPPED, TEST, TRAIN, VALID, Split

__all__ = ["export_recbole"]

PARTS = (("train", TRAIN), ("valid", VALID), ("test", TEST))
_VOCAB_KEYS = {"gender": "genders", "occupation": "occupations"}


def _clean_array(values: Any) -> np.ndarray:
    """Strings safe inside a tab-separated field (tabs and newlines become spaces)."""
    out = np.asarray(values).astype(str)
    if len(out) == 0:
        return out
    joined = "".join(out.tolist())
    if "\t" in joined or "\n" in joined or "\r" in joined:
        for ch in ("\t", "\n", "\r"):
            out = np.char.replace(out, ch, " ")
    return out


def _clean(values: Any) -> list[str]:
    return _clean_array(values).tolist()


def _floats(values: np.ndarray) -> list[str]:
    arr = np.asarray(values)
    text = arr.astype(str)  # shortest repr of float32 values ("3.5", not "3.5000000...")
    text[~np.isfinite(arr)] = ""
    return text.tolist()


def _write(path: Path, header: list[str], columns: list[list[str]]) -> int:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(header) + "\n")
        if columns and columns[0]:
            f.write("\n".join(map("\t".join, zip(*columns))))
            f.write("\n")
    return len(columns[0]) if columns else 0


def _inter_columns(ds: Dataset, rows: np.ndarray) -> tuple[list[str], list[list[str]]]:
    header = ["user_id:token", "item_id:token"]
    uid, iid = _clean_array(ds.user_ids), _clean_array(ds.item_ids)
    cols = [uid[ds.user[rows]].tolist(), iid[ds.item[rows]].tolist()]
    if "rating" in ds.inter:
        header.append("rating:float")
        cols.append(_floats(ds.inter["rating"][rows]))
    header.append("timestamp:float")
    cols.append(ds.timestamp[rows].astype(str).tolist())
    return header, cols


def _vocab_names(codes: np.ndarray, vocab: Any) -> list[str] | None:
    """Codes translated through a vocabulary list, or None when it does not fit."""
    if not isinstance(vocab, list) or not len(vocab) or codes.dtype.kind not in "iu":
        return None
    names = np.asarray([str(v) for v in vocab] + [""])
    idx = np.where((codes >= 0) & (codes < len(vocab)), codes, len(vocab))
    return _clean(names[idx])


def _item_columns(ds: Dataset) -> tuple[list[str], list[list[str]]]:
    header, cols = ["item_id:token"], [_clean(ds.item_ids)]
    items = ds.items
    if "category" in items and items["category"].ndim == 1:
        cat = np.asarray(items["category"])
        header.append("category:token")
        cols.append(_vocab_names(cat, ds.meta.get("categories")) or _clean(cat))
    if "title" in items:
        header.append("title:token_seq")
        cols.append(_clean(items["title"]))
    if "year" in items:
        year = np.asarray(items["year"]).astype(np.int64)
        header.append("year:token")
        cols.append([str(y) if y >= 0 else "" for y in year.tolist()])
    if "genres" in items:
        header.append("genres:token_seq")
        cols.append([g.replace("|", " ") for g in _clean(items["genres"])])
    if "text" in items:
        header.append("text:token_seq")
        cols.append(_clean(items["text"]))
    return header, cols


def _user_columns(ds: Dataset) -> tuple[list[str], list[list[str]]]:
    header, cols = ["user_id:token"], [_clean(ds.user_ids)]
    for name, values in ds.users.items():
        arr = np.asarray(values)
        if arr.ndim != 1:
            continue
        safe = name.replace(":", "_")
        if arr.dtype.kind == "f":
            header.append(f"{safe}:float")
            cols.append(_floats(arr))
        elif arr.dtype.kind in "iub":
            vocab = ds.meta.get(_VOCAB_KEYS.get(name, f"{name}_values"))
            header.append(f"{safe}:token")
            cols.append(_vocab_names(arr, vocab) or _clean(arr.astype(np.int64)))
        else:
            header.append(f"{safe}:token")
            cols.append(_clean(arr))
    return header, cols


def _history_rows(ds: Dataset, assign: np.ndarray, history: int,
                  ) -> tuple[dict[int, list[list[str]]], dict[str, int]]:
    """UniSRec-style rows per part: (user, last ``history`` earlier items, target).

    A row of part P sees the user's earlier interactions (time order) of parts <= P
    (train <= valid <= test), never dropped ones; rows with an empty history are skipped.
    """
    order = ds.time_order()
    users, items, parts = ds.user[order], ds.item[order], assign[order]
    uid, iid = _clean_array(ds.user_ids), _clean_array(ds.item_ids)
    out: dict[int, list[list[str]]] = {code: [[], [], []] for _, code in PARTS}
    skipped = {"train": 0, "valid": 0, "test": 0}
    bounds = np.flatnonzero(np.diff(users)) + 1
    for start, stop in zip(np.r_[0, bounds], np.r_[bounds, len(users)]):
        seq_items = items[start:stop].tolist()
        seq_parts = parts[start:stop].tolist()
        user = uid[users[start]]
        seen: list[list[int]] = [[], [], []]  # earlier items visible to train / valid / test
        for item, code in zip(seq_items, seq_parts):
            if code == DROPPED:
                continue
            hist = seen[code][-history:]
            if hist:
                rows = out[code]
                rows[0].append(user)
                rows[1].append(" ".join(iid[hist].tolist()))
                rows[2].append(iid[item])
            else:
                skipped[("train", "valid", "test")[code]] += 1
            for level in range(code, 3):
                seen[level].append(item)
    return out, skipped


def export_recbole(ds: Dataset, out: str | Path, split: Split | None = None,
                   name: str | None = None, *, history: int | None = None,
                   overwrite: bool = False) -> Path:
    """Write ``ds`` (and ``split``'s parts) as RecBole atomic files into the directory ``out``.

    Parameters
    ----------
    ds: the dataset; interactions are written in its row order with original ids.
    out: the directory to create (atomically; ``overwrite`` replaces an existing one).
    split: optional; adds ``NAME.{train,valid,test}.inter`` with the rows of each part
        (dropped rows appear in no part) for RecBole's ``benchmark_filename``.
    name: the RecBole dataset name (file prefix); default ``ds.name``.
    history: with a split, write the benchmark files for sequential models instead:
        ``user_id item_id_list item_id``, histories cut to the last ``history`` items.

    Returns the directory. Timestamps are written as integers; note that RecBole keeps
    ``float`` fields as float32 (Unix seconds are rounded to 64-128 s, see the peer README).
    """
    name = name or ds.name
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"invalid RecBole dataset name {name!r}")
    if split is not None and len(split.assign) != ds.n_interactions:
        raise ValueError(f"split has {len(split.assign)} assignments but the dataset has "
                         f"{ds.n_interactions} interactions")
    if history is not None and (split is None or history < 1):
        raise ValueError("history=N needs a split and N >= 1")
    out = Path(out)
    report: dict[str, Any] = {"name": name, "users": ds.n_users, "items": ds.n_items,
                              "source": ds.meta.get("source")}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        header, cols = _inter_columns(ds, np.arange(ds.n_interactions))
        report["inter_rows"] = _write(tmp / f"{name}.inter", header, cols)
        header, cols = _item_columns(ds)
        _write(tmp / f"{name}.item", header, cols)
        header, cols = _user_columns(ds)
        _write(tmp / f"{name}.user", header, cols)
        if split is not None:
            report["split"] = split.protocol()
            rows_written = {}
            if history is None:
                for part, _code in PARTS:
                    header, cols = _inter_columns(ds, np.flatnonzero(split.mask(part)))
                    rows_written[part] = _write(tmp / f"{name}.{part}.inter", header, cols)
            else:
                rows, skipped = _history_rows(ds, np.asarray(split.assign), history)
                header = ["user_id:token", "item_id_list:token_seq", "item_id:token"]
                for part, code in PARTS:
                    rows_written[part] = _write(tmp / f"{name}.{part}.inter", header, rows[code])
                report["history"] = history
                report["skipped_no_history"] = skipped
            report["benchmark_rows"] = rows_written
        (tmp / f"{name}.export.json").write_text(json.dumps(report, indent=2, default=str))
    return out
