"""The ``csv`` and ``parquet`` importers: a generic table of interactions with a column
mapping, and optional item and user tables beside it (one's own catalogue).

Interactions: one row per interaction, columns mapped to the roles ``user``, ``item``
(required), ``timestamp`` and ``rating``. Item table (``items=PATH``): one row per item,
``id`` and optionally ``title``, ``text``, ``category``, ``available`` and numeric features.
User table (``users=PATH``): one row per user, ``id`` and numeric or few-valued features.
Either table is CSV/TSV or Parquet by its suffix (``.gz`` allowed). Ids are strings.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset
from streamrec.data.importers.base import (
    DataFormatError,
    Locator,
    MissingFileError,
    _align,
    _decode,
    _encode_ids,
    _fill_for,
    _finish,
    _genre_text,
    _is_number,
    _n_missing,
    _read_bytes,
    _vocab_key,
    _warn_missing,
    check_finite,
    check_no_negative_ids,
    fail_at,
    float_timestamps,
    to_seconds,
)

_DEFAULT_COLUMNS = {
    "user": ("user", "user_id", "userId", "userid", "uid", "UserID"),
    "item": ("item", "item_id", "itemId", "itemid", "iid", "movieId", "MovieID"),
    "timestamp": ("timestamp", "time", "ts", "Timestamp"),
    "rating": ("rating", "score", "Rating"),
}
#: roles of an item table's columns and the names they are looked up among (any case)
ITEM_ROLES = {
    "id": ("item", "item_id", "itemid", "iid", "movieid", "id"),
    "title": ("title", "name"),
    "text": ("text", "description", "synopsis", "overview"),
    "category": ("category", "genre", "genres"),
    "available": ("available",),
}
USER_ID_NAMES = ("user", "user_id", "userid", "uid", "id")
_TRUE = ("true", "1", "yes", "y", "t")
_FALSE = ("false", "0", "no", "n", "f")
_FEW_VALUES = 64  # a user table's string column with at most this many values becomes codes


def _mapping(available: list[str], columns: dict[str, Any] | None, given: dict[str, Any],
             path: Path, header_line: int | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    given = {k: v for k, v in given.items() if v is not None}
    for key, value in {**(columns or {}), **given}.items():
        if key not in _DEFAULT_COLUMNS:
            raise ValueError(f"unknown column role {key!r}; choose user, item, timestamp, rating")
        mapping[key] = str(value)
    for key, candidates in _DEFAULT_COLUMNS.items():
        if key not in mapping:
            found = next((c for c in candidates if c in available), None)
            if found is not None:
                mapping[key] = found
    for key in ("user", "item"):
        if key not in mapping:
            raise DataFormatError(path, header_line, f"no {key} column: pass {key}=COLUMN; "
                                                     f"available columns: {', '.join(available)}")
    for key, col in mapping.items():
        if col not in available:
            raise DataFormatError(path, header_line, f"missing column {col!r} (mapped to {key}); "
                                                     f"available columns: {', '.join(available)}")
    return mapping


def _check_unique_names(path: Path, names: list[str], header_line: int | None) -> None:
    seen: dict[str, int] = {}
    for j, col in enumerate(names):
        if col in seen:
            raise DataFormatError(path, header_line,
                                  f"column name {col!r} appears twice in the header (columns "
                                  f"{seen[col] + 1} and {j + 1}); rename one")
        seen[col] = j


# ---------------------------------------------------------------------- reading tables
@dataclass
class _Loaded:
    """A table read from CSV or Parquet: the pyarrow table, where each row is, and the
    header line (``None`` for Parquet or a CSV without header)."""

    path: Path
    table: Any
    loc: Locator
    header_line: int | None


def _csv_header(path: Path, sep: str, header: bool, encoding: str) -> tuple[str, list[str]]:
    """The decoded text of a CSV file and its column names (checked: one separator, unique)."""
    if not path.is_file():
        raise MissingFileError(path, "file not found" if not path.exists() else "not a file")
    data = _read_bytes(path)
    if not data.strip():
        raise DataFormatError(path, None, "empty file")
    text = _decode(path, data, encoding).removeprefix("\ufeff")  # a byte-order mark
    first = next(csv.reader(io.StringIO(text), delimiter=sep))
    names = [c.strip() for c in first] if header else [str(i) for i in range(len(first))]
    if len(names) == 1 and any(s in first[0] for s in (",", "\t", ";", "|")):
        raise DataFormatError(path, 1, f"found 1 column {first[0]!r}; is the separator "
                                       f"right? (sep={sep!r})")
    if header:
        _check_unique_names(path, names, 1)
    return text, names


def _csv_read(path: Path, text: str, names: list[str], sep: str, header: bool,
              string_cols: list[str], include: list[str] | None) -> _Loaded:
    """Parse the CSV text with pyarrow: ``string_cols`` as strings (ids), the rest inferred;
    only ``include`` columns (all when ``None``)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    convert = pacsv.ConvertOptions(column_types={c: pa.string() for c in string_cols},
                                   strings_can_be_null=True)
    if include is not None:
        convert.include_columns = include
    try:
        table = pacsv.read_csv(
            pa.py_buffer(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if header else 0),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=convert,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        _csv_rescan(path, text, sep, len(names), header, e)
        raise DataFormatError(path, None, f"cannot parse: {e}") from None
    if table.num_rows == 0:
        raise DataFormatError(path, None, "no data rows" + (" after the header" if header else ""))
    row_lines = _csv_row_lines(text, sep) if "\n" in text else []
    skip = 1 if header else 0

    def loc(row: int) -> tuple[int | None, str]:
        i = row + skip
        if i < len(row_lines):
            return row_lines[i], f"line {row_lines[i]}"
        return None, f"row {row + 1}"

    return _Loaded(path, table, loc, 1 if header else None)


def _parquet_read(path: Path) -> _Loaded:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise MissingFileError(path, "file not found" if not path.exists() else "not a file")
    data = _read_bytes(path)
    if not data:
        raise DataFormatError(path, None, "empty file")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise DataFormatError(path, None, f"not a readable Parquet file ({e})") from None
    _check_unique_names(path, list(table.column_names), None)
    return _Loaded(path, table, lambda row: (None, f"row {row + 1}"), None)


def _csv_row_lines(text: str, sep: str) -> list[int]:
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    out = []
    start = 1
    for row in reader:
        if row:
            out.append(start)
        start = reader.line_num + 1
    return out


def _csv_rescan(path: Path, text: str, sep: str, ncols: int, header: bool, err: Exception) -> None:
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    start = 1
    for row in reader:
        if row and len(row) != ncols:
            problem = f"expected {ncols} fields separated by {sep!r}, found {len(row)}"
            if len(row) == 1 or len(row) < ncols:
                problem += "; is the separator right? (or a missing column?)"
            raise DataFormatError(path, start, problem)
        start = reader.line_num + 1


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv", ".tsv", ".txt", ".parquet"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


# ---------------------------------------------------------------------- checked columns
def _col(loaded: _Loaded, name: str) -> Any:
    return loaded.table.column(name).combine_chunks()


def _nulls(col: Any) -> np.ndarray:
    return col.is_null().to_numpy(zero_copy_only=False)


def _id_strings(loaded: _Loaded, name: str, what: str) -> np.ndarray:
    """An id column as str [n]: no empty ids, no negative integers."""
    import pyarrow as pa

    col = _col(loaded, name)
    empty = _nulls(col)
    ids = np.asarray(col.cast(pa.string()).fill_null("").to_pylist(), dtype=str)
    empty |= np.char.str_len(np.char.strip(ids)) == 0
    if empty.any():
        fail_at(loaded.path, loaded.loc, int(np.flatnonzero(empty)[0]),
                f"column {name!r} ({what}) is missing (empty, NA or null); drop those rows")
    check_no_negative_ids(loaded.path, ids, loaded.loc, f"column {name!r} ({what})")
    return ids


def _timestamps(loaded: _Loaded, name: str) -> tuple[np.ndarray, str]:
    """A timestamp column in seconds (int64 [n]) and the unit it was in."""
    import pyarrow as pa
    import pyarrow.compute as pc

    path, loc, what = loaded.path, loaded.loc, f"column {name!r} (timestamp)"
    col = _col(loaded, name)
    nulls = _nulls(col)
    if nulls.any():
        fail_at(path, loc, int(np.flatnonzero(nulls)[0]),
                f"{what} is missing (empty, NA or null); drop those rows")
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        unit = col.type.unit if pa.types.is_timestamp(col.type) else "day"
        ts = pc.cast(col, pa.timestamp("s")) if pa.types.is_date(col.type) else col
        ts = ts.cast(pa.timestamp("s"), safe=False).cast(pa.int64()).to_numpy()
        return ts, f"{unit} (column type)"
    if pa.types.is_unsigned_integer(col.type):
        raw = col.to_numpy(zero_copy_only=False)
        big = np.flatnonzero(raw > np.iinfo(np.int64).max)
        if len(big):
            fail_at(path, loc, int(big[0]), f"{what} {raw[big[0]]} does not fit in a 64-bit "
                                            "integer")
        return to_seconds(path, raw.astype(np.int64), loc, what)
    if pa.types.is_integer(col.type):
        return to_seconds(path, col.cast(pa.int64()).to_numpy(), loc, what)
    if pa.types.is_floating(col.type):
        values = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        return to_seconds(path, float_timestamps(path, values, loc, what), loc, what)
    strs = np.asarray(col.cast(pa.string()).to_pylist(), dtype=str)
    try:
        return to_seconds(path, strs.astype(np.int64), loc, what)
    except (ValueError, OverflowError):
        pass
    try:
        values = strs.astype(np.float64)
    except ValueError:
        pass
    else:
        return to_seconds(path, float_timestamps(path, values, loc, what), loc, what)
    try:
        return strs.astype("datetime64[s]").astype(np.int64), "s (ISO dates)"
    except ValueError:
        bad = np.array([not _is_time(s) for s in strs.tolist()])
        i = int(np.flatnonzero(bad)[0])
        fail_at(path, loc, i, f"{what} must be a number or an ISO date/time, found "
                              f"{str(strs[i])!r}")
    raise AssertionError("unreachable")


def _ratings(loaded: _Loaded, name: str) -> np.ndarray:
    """A rating column: finite numbers (float64 [n])."""
    import pyarrow as pa

    path, loc, what = loaded.path, loaded.loc, f"column {name!r} (rating)"
    col = _col(loaded, name)
    nulls = _nulls(col)
    if nulls.any():
        fail_at(path, loc, int(np.flatnonzero(nulls)[0]),
                f"{what} is missing (empty, NaN, NA or null); drop those rows, or import "
                "without the rating column")
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        r = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
    else:
        strs = np.asarray(col.cast(pa.string()).to_pylist(), dtype=str)
        ok = np.array([_is_number(s) for s in strs.tolist()])
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            fail_at(path, loc, i, f"{what} must be a number, found {str(strs[i])!r}")
        r = strs.astype(np.float64)
    check_finite(path, r, loc, what)
    return r


def _is_time(s: str) -> bool:
    try:
        np.datetime64(s)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------- side tables
@dataclass
class _Side:
    """An item or user table: its rows' ids (str [m]) and the table itself."""

    kind: str  # "item" / "user"
    loaded: _Loaded
    id_col: str
    ids: np.ndarray
    roles: dict[str, str] = field(default_factory=dict)


def _read_side(kind: str, src: str | Path, id_col: str | None, inter_col: str,
               columns: dict[str, Any] | None, sep: str, encoding: str) -> _Side:
    """Read an item (``kind="item"``) or user table and find its id and role columns."""
    path = Path(str(src))  # str(): a CLI value like items=2024 arrives as an int
    option = f"{kind}s_id"
    base = path.name.removesuffix(".gz").lower()
    if base.endswith(".parquet"):
        loaded = _parquet_read(path)
        names = list(loaded.table.column_names)
    elif base.endswith((".csv", ".tsv", ".txt")):
        side_sep = "\t" if base.endswith(".tsv") else sep
        text, names = _csv_header(path, side_sep, True, encoding)
        loaded = None
    else:
        raise DataFormatError(path, None, f"unknown {kind} table format; name it .csv, .tsv or "
                                          ".parquet (optionally .gz)")
    header_line = None if loaded is not None else 1
    lower = {n.lower(): n for n in reversed(names)}
    roles: dict[str, str] = {}
    given = dict(columns or {})
    if id_col is not None:
        given["id"] = id_col
    known = ITEM_ROLES if kind == "item" else {"id": USER_ID_NAMES}
    for role, col in given.items():
        if role not in known:
            raise ValueError(f"unknown {kind} table role {role!r}; choose "
                             f"{', '.join(known)}")
        if str(col) not in names:
            raise DataFormatError(path, header_line, f"missing column {str(col)!r} (mapped to "
                                                     f"{kind} {role}); available columns: "
                                                     f"{', '.join(names)}")
        roles[role] = str(col)
    if "id" not in roles and inter_col in names:
        roles["id"] = inter_col  # the interactions' id column name, when the table has it
    for role, candidates in known.items():
        if role not in roles:
            found = next((lower[c] for c in candidates if c in lower), None)
            if found is not None and found not in roles.values():
                roles[role] = found
    if "id" not in roles:
        raise DataFormatError(path, header_line, f"no {kind} id column: pass {option}=COLUMN; "
                                                 f"available columns: {', '.join(names)}")
    if loaded is None:
        loaded = _csv_read(path, text, names, side_sep, True, [roles["id"]], None)
    ids = _id_strings(loaded, roles["id"], f"{kind} id")
    order = np.argsort(ids, kind="stable")
    again = order[1:][ids[order][1:] == ids[order][:-1]]  # rows repeating an earlier row's id
    if len(again):
        second = int(again.min())
        first = int(np.flatnonzero(ids == ids[second])[0])
        fail_at(path, loaded.loc, second, f"{kind} id {str(ids[second])!r} appears twice "
                                          f"({loaded.loc(first)[1]} and "
                                          f"{loaded.loc(second)[1]}); the {kind} table needs "
                                          f"one row per {kind}")
    return _Side(kind, loaded, roles["id"], ids, roles)


def _strings(loaded: _Loaded, name: str) -> np.ndarray:
    import pyarrow as pa

    return np.asarray(_col(loaded, name).cast(pa.string()).fill_null("").to_pylist(), dtype=str)


def _bools(loaded: _Loaded, name: str, what: str) -> np.ndarray:
    """A true/false column (bool, 0/1, or the words true/false, yes/no) as bool [m]."""
    import pyarrow as pa

    col = _col(loaded, name)
    nulls = _nulls(col)
    if nulls.any():
        fail_at(loaded.path, loaded.loc, int(np.flatnonzero(nulls)[0]),
                f"{what} is missing (empty, NA or null)")
    if pa.types.is_boolean(col.type):
        return col.to_numpy(zero_copy_only=False).astype(bool)
    words = np.char.lower(np.char.strip(_strings(loaded, name)))
    yes, no = np.isin(words, _TRUE), np.isin(words, _FALSE)
    bad = np.flatnonzero(~(yes | no))
    if len(bad):
        fail_at(loaded.path, loaded.loc, int(bad[0]), f"{what} must be true or false (or 1/0, "
                                                      f"yes/no), found {str(words[bad[0]])!r}")
    return yes


def _feature(loaded: _Loaded, name: str) -> np.ndarray | None:
    """A numeric column as a feature: float32, the smallest int type that holds it, bool, or
    int64 epoch seconds for a date/time column; ``None`` for any other type."""
    import pyarrow as pa

    col = _col(loaded, name)
    if pa.types.is_boolean(col.type) and not _nulls(col).any():
        return col.to_numpy(zero_copy_only=False).astype(bool)
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        if _nulls(col).any():
            return None
        ts = col.cast(pa.timestamp("s"), safe=False) if pa.types.is_date(col.type) else col
        return ts.cast(pa.timestamp("s"), safe=False).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(col.type) and not _nulls(col).any():
        return _small_int(col.to_numpy(zero_copy_only=False))
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        return col.cast(pa.float64()).to_numpy(zero_copy_only=False).astype(np.float32)
    return None


def _small_int(values: np.ndarray) -> np.ndarray:
    if not len(values):
        return values.astype(np.int64)
    lo, hi = int(values.min()), int(values.max())
    for dtype in (np.int8, np.int16, np.int32):
        if np.iinfo(dtype).min <= min(lo, -1) and hi <= np.iinfo(dtype).max:  # -1: missing
            return values.astype(dtype)
    return values.astype(np.int64)


def _categories(side: _Side, n: int, pos: np.ndarray,
                ) -> tuple[np.ndarray, list[str], np.ndarray | None]:
    """Category codes [n] (int16/int32), their names, and ``"|"``-joined genres [n] when
    values list several categories (``"Drama|Comedy"``: the first is the category).

    Integer categories >= 0 keep their value (names ``"0"``, ``"1"``, ...); strings get codes
    in sorted order of their names. Items without a category (not in the table, or an empty
    cell) get a category named ``""`` (the last code), so every code is a valid index.
    """
    import pyarrow as pa

    loaded, name = side.loaded, side.roles["category"]
    col = _col(loaded, name)
    present = ~_nulls(col)
    genres = None
    ints = col.to_numpy(zero_copy_only=False)[present] if pa.types.is_integer(col.type) else None
    if ints is not None and (not len(ints) or (ints.min() >= 0 and ints.max() < 32767)):
        raw = col.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        vocab = [str(c) for c in range(int(raw.max(initial=-1)) + 1)]
        codes = raw
    else:
        values = np.char.strip(_strings(loaded, name))
        present &= np.char.str_len(values) > 0
        if np.any(np.char.find(values, "|") >= 0):
            genres = np.array(["|".join(t.strip() for t in v.split("|") if t.strip())
                               for v in values.tolist()], dtype=str)
            values = np.array([g.split("|")[0] if g else "" for g in genres.tolist()], dtype=str)
            present &= np.char.str_len(values) > 0
        vocab = sorted(set(values[present].tolist()))
        lookup = {v: i for i, v in enumerate(vocab)}
        codes = np.array([lookup.get(v, -1) for v in values.tolist()], dtype=np.int64)
        codes[~present] = -1
    full = _align(n, pos, codes, -1)
    if (full < 0).any():
        full[full < 0] = len(vocab)
        vocab.append("")
    dtype = np.int16 if len(vocab) < 32768 else np.int32
    genres_full = None if genres is None else _align(n, pos, genres, "")
    return full.astype(dtype), vocab, genres_full


def _item_columns(side: _Side, n: int, pos: np.ndarray,
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Item side columns [n] from the item table (rows at internal ids ``pos``)."""
    loaded, roles = side.loaded, side.roles
    items: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    if "title" in roles:
        items["title"] = _align(n, pos, _strings(loaded, roles["title"]), "")
    if "category" in roles:
        codes, vocab, genres = _categories(side, n, pos)
        items["category"] = codes
        meta["categories"] = vocab
        if genres is not None:
            items["genres"] = genres
    if "text" in roles:
        items["text"] = _align(n, pos, np.char.strip(_strings(loaded, roles["text"])), "")
    if "title" in roles:  # no text: "Title. Genre, Genre." as the MovieLens / RecBole importers
        if "genres" in items:
            genres = items["genres"].tolist()
        elif "category" in items:
            genres = [meta["categories"][c] for c in items["category"].tolist()]
        else:
            genres = [""] * n
        given = items["text"].tolist() if "text" in items else [""] * n
        text = [g or (_genre_text(t, c) if t else "")
                for g, t, c in zip(given, items["title"].tolist(), genres)]
        items["text"] = np.array(text, dtype=str)
    if "available" in roles:
        what = f"column {roles['available']!r} (available)"
        items["available"] = _align(n, pos, _bools(loaded, roles["available"], what), False)
    skipped = []
    for name in loaded.table.column_names:
        if name in roles.values():
            continue
        values = _feature(loaded, name)
        if values is None:
            skipped.append(name)
        elif name in items:
            skipped.append(name)  # a feature named like a role column
        else:
            items[name] = _align(n, pos, values, _fill_for(values))
    if skipped:
        meta["columns_skipped"] = skipped
    return items, meta


def _user_columns(side: _Side, n: int, pos: np.ndarray,
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """User side columns [n]: numeric columns as features, few-valued strings as int16 codes
    (vocabulary in ``meta``); users not in the table get -1 (NaN for floats)."""
    loaded = side.loaded
    users: dict[str, np.ndarray] = {}
    vocabs: dict[str, list[str]] = {}
    skipped = []
    for name in loaded.table.column_names:
        if name == side.id_col:
            continue
        values = _feature(loaded, name)
        if values is None:
            strs = np.char.strip(_strings(loaded, name))
            uniq = np.unique(strs)
            if len(uniq) > _FEW_VALUES or len(uniq) > max(2, len(strs) // 2):
                skipped.append(name)
                continue
            vocab = [v for v in uniq.tolist() if v]
            lookup = {v: i for i, v in enumerate(vocab)}
            values = np.array([lookup.get(v, -1) for v in strs.tolist()], dtype=np.int16)
            vocabs[name] = vocab
        if values.dtype == bool:
            values = values.astype(np.int8)
        users[name] = _align(n, pos, values, _fill_for(values))
    meta: dict[str, Any] = {"vocabularies": vocabs} if vocabs else {}
    if skipped:
        meta["columns_skipped"] = skipped
    return users, meta


# ---------------------------------------------------------------------- the dataset
def _table_to_dataset(loaded: _Loaded, mapping: dict[str, str], name: str,
                      items_side: _Side | None = None,
                      users_side: _Side | None = None) -> Dataset:
    ids = {key: _id_strings(loaded, mapping[key], key) for key in ("user", "item")}
    n = len(ids["user"])
    meta: dict[str, Any] = {"columns": mapping}
    if "timestamp" in mapping:
        ts, meta["timestamp_unit"] = _timestamps(loaded, mapping["timestamp"])
    else:
        ts = np.arange(n, dtype=np.int64)
        meta["timestamps"] = "no timestamp column: the row number is used"
    inter: dict[str, np.ndarray] = {"timestamp": ts}
    if "rating" in mapping:
        inter["rating"] = _ratings(loaded, mapping["rating"]).astype(np.float32)
    empty = np.zeros(0, dtype=str)
    user_ids, (u_int, u_pos) = _encode_ids(
        [ids["user"], users_side.ids if users_side is not None else empty])
    item_ids, (i_int, i_pos) = _encode_ids(
        [ids["item"], items_side.ids if items_side is not None else empty])
    inter = {"user": u_int, "item": i_int, **inter}
    items: dict[str, np.ndarray] = {}
    users: dict[str, np.ndarray] = {}
    catalogue: dict[str, Any] = {}
    for side, kind, all_ids, pos, n_inter_ids in (
            (items_side, "item", item_ids, i_pos, len(np.unique(i_int))),
            (users_side, "user", user_ids, u_pos, len(np.unique(u_int)))):
        if side is None:
            continue
        m = len(all_ids)
        if kind == "item":
            items, side_meta = _item_columns(side, m, pos)
            meta.update({k: v for k, v in side_meta.items() if k == "categories"})
        else:
            users, side_meta = _user_columns(side, m, pos)
            for col, vocab in side_meta.get("vocabularies", {}).items():
                key = _vocab_key(col)
                meta["user_" + key if key in meta or key == "categories" else key] = vocab
        missing = _n_missing(pos, m)
        catalogue[f"{kind}s"] = {
            "file": str(side.loaded.path),
            "rows": len(side.ids),
            "columns": side.roles,
            "only_in_table": m - n_inter_ids,  # no interactions (yet): cold
            "not_in_table": missing,
            **({"columns_skipped": side_meta["columns_skipped"]}
               if "columns_skipped" in side_meta else {}),
        }
        _warn_missing(missing, f"{kind}s", loaded.path.name, side.loaded.path)
    if catalogue:
        meta["catalogue"] = catalogue
    return _finish(name, user_ids, item_ids, inter, items, users, meta)


def _sides(items: str | Path | None, users: str | Path | None, items_id: str | None,
           users_id: str | None, items_columns: dict[str, str] | None,
           mapping: dict[str, str], sep: str, encoding: str) -> tuple[_Side | None, _Side | None]:
    if items_columns is not None and items is None:
        raise ValueError("items_columns needs an item table: pass items=PATH")
    for opt, table, value in (("items_id", items, items_id), ("users_id", users, users_id)):
        if value is not None and table is None:
            raise ValueError(f"{opt} needs a table: pass {opt.removesuffix('_id')}=PATH")
    item_side = user_side = None
    if items is not None:
        item_side = _read_side("item", items, None if items_id is None else str(items_id),
                               mapping["item"], items_columns, sep, encoding)
    if users is not None:
        user_side = _read_side("user", users, None if users_id is None else str(users_id),
                               mapping["user"], None, sep, encoding)
    return item_side, user_side


# ---------------------------------------------------------------------- readers
def read_csv(src: str | Path, *, columns: dict[str, str] | None = None, user: str | None = None,
             item: str | None = None, timestamp: str | None = None, rating: str | None = None,
             sep: str = ",", header: bool = True, encoding: str = "utf-8",
             items: str | Path | None = None, users: str | Path | None = None,
             items_id: str | None = None, users_id: str | None = None,
             items_columns: dict[str, str] | None = None, name: str | None = None) -> Dataset:
    """A delimited table of interactions, one per row (``.gz`` allowed), with optional item
    and user tables.

    The columns are given by ``columns={"user": COL, "item": COL, "timestamp": COL,
    "rating": COL}`` or by the keywords ``user=``, ``item=``, ``timestamp=``, ``rating=``
    (these win); unnamed roles are looked up among common names (``user_id``, ``userId``,
    ``item_id``, ``movieId``, ``timestamp``, ``rating`` ...). ``timestamp`` is optional
    (default: the row order); it may be numbers (epoch seconds; ms / us / ns are detected by
    magnitude and converted) or ISO dates. Ratings must be finite numbers. Without a header
    (``header=False``) columns are named by position: ``"0"``, ``"1"``, ...

    ``items=PATH`` / ``users=PATH``: an item / user table (CSV with a header, TSV or Parquet by
    suffix; a CSV side table uses ``sep`` unless it is ``.tsv``). Its id column is
    ``items_id`` / ``users_id``, else the interactions' id column name, else a common name
    (``item_id``, ``id``, ...). Item columns by role (``items_columns={"title": COL, "text":
    COL, "category": COL, "available": COL}`` overrides the lookup among ``title``/``name``,
    ``text``/``description``/``synopsis``/``overview``, ``category``/``genre``/``genres``,
    ``available``), other numeric columns as features. See ``docs/data.md``.
    """
    path = Path(src)
    text, available = _csv_header(path, sep, header, encoding)
    header_line = 1 if header else None
    mapping = _mapping(available, columns, {"user": user, "item": item, "timestamp": timestamp,
                                            "rating": rating}, path, header_line)
    item_side, user_side = _sides(items, users, items_id, users_id, items_columns, mapping,
                                  sep, encoding)
    loaded = _csv_read(path, text, available, sep, header, [mapping["user"], mapping["item"]],
                       list(dict.fromkeys(mapping.values())))
    return _table_to_dataset(loaded, mapping, name or _stem(path), item_side, user_side)


def read_parquet_table(src: str | Path, *, columns: dict[str, str] | None = None,
                       user: str | None = None, item: str | None = None,
                       timestamp: str | None = None, rating: str | None = None,
                       items: str | Path | None = None, users: str | Path | None = None,
                       items_id: str | None = None, users_id: str | None = None,
                       items_columns: dict[str, str] | None = None,
                       name: str | None = None) -> Dataset:
    """A Parquet table of interactions (``.gz`` allowed); columns, item and user tables as
    for :func:`read_csv` (a CSV side table is comma-separated, ``.tsv`` tab-separated).
    Parquet has no lines: errors name the row (``row N``, 1-based) instead."""
    path = Path(src)
    loaded = _parquet_read(path)
    mapping = _mapping(list(loaded.table.column_names), columns,
                       {"user": user, "item": item, "timestamp": timestamp, "rating": rating},
                       path, None)
    if loaded.table.num_rows == 0:
        raise DataFormatError(path, None, "no rows")
    item_side, user_side = _sides(items, users, items_id, users_id, items_columns, mapping,
                                  ",", "utf-8")
    return _table_to_dataset(loaded, mapping, name or _stem(path), item_side, user_side)
