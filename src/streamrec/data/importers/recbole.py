"""The ``recbole`` importer: RecBole atomic files ``NAME.inter`` (or the benchmark files
``NAME.{train,valid,test}.inter``), ``NAME.item`` and ``NAME.user``: tab-separated with typed
headers ``field:type``. :func:`_recbole_file` also parses the UniSRec files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset
from streamrec.data.importers.base import (
    DataFormatError,
    MissingFileError,
    _align,
    _check_encoding,
    _encode_ids,
    _fill_for,
    _find_file,
    _finish,
    _genre_text,
    _is_number,
    _n_missing,
    _read_bytes,
    _read_table,
    _split_lines,
    _src_dir,
    _Table,
    _vocab_codes,
    _vocab_key,
    _warn_missing,
)

RECBOLE_TYPES = ("token", "float", "token_seq", "float_seq")
_RECBOLE_INTER = re.compile(r"^(?P<name>.+?)(?:\.(?P<part>train|valid|test))?\.inter(?:\.gz)?$")
_TITLE_COLS = ("title", "movie_title", "name", "item_name", "product_name")
_CATEGORY_COLS = ("category", "categories", "class", "genre", "genres", "cate_id", "cat")
_YEAR_COLS = ("release_year", "year")


def _recbole_file(path: Path, encoding: str, required: Sequence[str] = (),
                  allow_empty: bool = False) -> tuple[_Table, list[tuple[str, str]]]:
    """Parse one RecBole atomic file: a typed tab-separated header, then rows."""
    data = _read_bytes(path)
    _check_encoding(path, data, encoding)
    lines = _split_lines(data)
    if not lines or not any(lines):
        raise DataFormatError(path, None, "empty file")
    header = lines[0].decode(encoding).split("\t")
    fields: list[tuple[str, str]] = []
    for h in header:
        if ":" not in h:
            problem = (f"header field {h!r} has no ':type' (RecBole atomic files need typed "
                       f"headers like 'user_id:token', tab-separated)")
            if len(header) == 1 and any(s in h for s in (",", " ", ";")):
                problem += "; is the separator right?"
            raise DataFormatError(path, 1, problem)
        fname, ftype = h.rsplit(":", 1)
        if ftype not in RECBOLE_TYPES:
            raise DataFormatError(path, 1, f"field {fname!r} has unknown type {ftype!r} "
                                           f"(choose {', '.join(RECBOLE_TYPES)})")
        fields.append((fname, ftype))
    names = [f for f, _ in fields]
    for req in required:
        if req not in names:
            raise DataFormatError(path, 1, f"missing column {req!r}; the header has "
                                           f"{', '.join(names)}")
    table = _read_table(path, data, b"\t", [f"{a}:{b}" for a, b in fields], skip=1,
                        allow_empty=allow_empty)
    return table, fields


def _recbole_side(table: _Table, fields: list[tuple[str, str]], skip: set[str], encoding: str,
                  kind: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Generic side columns: floats -> float32; int tokens -> int32; other tokens ->
    categorical codes (vocabulary in meta) or, when nearly unique, strings; token_seq ->
    ``"|"``-joined strings; float_seq columns are skipped."""
    cols: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for j, (fname, ftype) in enumerate(fields):
        if fname in skip:
            continue
        if ftype == "float":
            cols[fname] = table.floats(j, fname, allow_empty=True).astype(np.float32)
        elif ftype == "token":
            vals = table.strs(j, encoding)
            try:
                cols[fname] = vals.astype(np.int64).astype(np.int32)
                continue
            except (ValueError, OverflowError):
                pass
            uniq = set(vals.tolist())
            if fname.startswith("zip") or len(uniq) > max(1000, len(vals) // 2):
                cols[fname] = vals
            else:
                codes, vocab = _vocab_codes(vals)
                cols[fname] = codes
                meta[_vocab_key(fname)] = vocab
        elif ftype == "token_seq":
            cols[fname] = np.char.replace(table.strs(j, encoding), " ", "|")
        else:
            meta.setdefault(f"{kind}_columns_skipped", []).append(f"{fname}:{ftype}")
    return cols, meta



def _recbole_name(src: Path, dataset: str | None) -> tuple[Path, str]:
    if dataset is not None:
        for folder in (src / dataset, src):
            if folder.is_dir() and any(_RECBOLE_INTER.match(p.name) and
                                       _RECBOLE_INTER.match(p.name).group("name") == dataset
                                       for p in folder.iterdir()):
                return folder, dataset
        raise MissingFileError(src / f"{dataset}.inter",
                               f"required file not found (looked for {dataset}.inter[.gz] "
                               f"and {dataset}.{{train,valid,test}}.inter in {src} and "
                               f"{src / dataset})")
    names = sorted({m.group("name") for p in src.iterdir() if p.is_file()
                    and (m := _RECBOLE_INTER.match(p.name))})
    if not names:
        raise MissingFileError(src / "NAME.inter", f"no RecBole .inter file in {src}")
    if len(names) > 1:
        raise DataFormatError(src, None, f"several RecBole datasets here ({', '.join(names)}); "
                                         "pass dataset=NAME")
    return src, names[0]


def read_recbole(src: str | Path, *, dataset: str | None = None, benchmark: bool | None = None,
                 encoding: str = "utf-8", name: str | None = None) -> Dataset:
    """RecBole atomic files ``NAME.inter`` (required), ``NAME.item``, ``NAME.user`` (optional).

    Tab-separated with typed headers ``field:type`` (token, float, token_seq, float_seq).
    ``dataset=NAME`` (default: the one dataset whose ``.inter`` file is in ``src``; ``src/NAME/``
    is also searched). Interactions: ``user_id``, ``item_id`` (required), ``timestamp``
    (rounded to int seconds; ms / us / ns epochs are detected by magnitude and converted;
    without it the row number), ``rating`` (float32, finite).
    With ``benchmark=True`` (or when ``NAME.inter`` is absent) the benchmark files
    ``NAME.{train,valid,test}.inter`` are read instead and their part is kept as
    ``given_split``. Items: ``title`` (from title/movie_title/name), ``category``/``genres``
    (from category/categories/class/genre: the first token of a token_seq, codes index
    ``meta["categories"]``), ``year`` (release_year/year), ``text`` (a ``text`` column, else
    title + genres), other columns generically. Users: all columns generically (ints stay
    ints, few-valued tokens become codes with their vocabulary in ``meta``).
    """
    src = _src_dir(src, "recbole", "NAME.inter")
    folder, ds_name = _recbole_name(src, dataset)
    main = _find_file(folder, f"{ds_name}.inter", required=False)
    parts: list[tuple[int, Path]] = []
    if benchmark or main is None:
        for code, part in ((0, "train"), (1, "valid"), (2, "test")):
            p = _find_file(folder, f"{ds_name}.{part}.inter",
                           required=main is None or bool(benchmark))
            if p is not None:
                parts.append((code, p))
    else:
        parts.append((-1, main))
    users_l, items_l, ts_l, rating_l, given_l = [], [], [], [], []
    has_ts = has_rating = True
    units: list[str] = []
    offset = 0
    for code, path in parts:
        table, fields = _recbole_file(path, encoding, required=("user_id", "item_id"),
                                      allow_empty=code >= 0)
        names = [f for f, _ in fields]
        if "item_id_list" in names:
            raise DataFormatError(path, 1, "has an item_id_list column (pre-built sequential "
                                           "histories, UniSRec style); import it with the "
                                           "'unisrec' format")
        users_l.append(table.col(names.index("user_id")))  # bytes; decoded in _encode_ids
        items_l.append(table.col(names.index("item_id")))
        for col in ("user_id", "item_id"):
            vals = users_l[-1] if col == "user_id" else items_l[-1]
            empty = np.flatnonzero(np.char.str_len(vals) == 0)
            if len(empty):
                raise DataFormatError(path, int(table.lines[empty[0]]), f"{col} is empty")
        if "timestamp" in names:
            ts, unit = table.timestamps(names.index("timestamp"), "timestamp")
            ts_l.append(ts)
            units.append(unit)
        else:
            has_ts = False
            ts_l.append(np.arange(offset, offset + len(table), dtype=np.int64))
        if "rating" in names:
            rating_l.append(table.ratings(names.index("rating"), "rating"))
        else:
            has_rating = False
        given_l.append(np.full(len(table), code, dtype=np.int8))
        offset += len(table)
    main_path = parts[0][1]

    f_item = _find_file(folder, f"{ds_name}.item", required=False)
    f_user = _find_file(folder, f"{ds_name}.user", required=False)
    item_side = user_side = None
    if f_item is not None:
        item_side = _recbole_file(f_item, encoding, required=("item_id",), allow_empty=True)
    if f_user is not None:
        user_side = _recbole_file(f_user, encoding, required=("user_id",), allow_empty=True)

    def catalog(side: tuple[_Table, list] | None, col: str) -> np.ndarray:
        if side is None:
            return np.zeros(0, dtype=str)
        names = [f for f, _ in side[1]]
        return side[0].strs(names.index(col), encoding)

    item_cat, user_cat = catalog(item_side, "item_id"), catalog(user_side, "user_id")
    user_ids, (u_int, u_pos) = _encode_ids([np.concatenate(users_l), user_cat])
    item_ids, (i_int, i_pos) = _encode_ids([np.concatenate(items_l), item_cat])
    inter: dict[str, np.ndarray] = {"user": u_int, "item": i_int, "timestamp": np.concatenate(ts_l)}
    if has_rating:
        inter["rating"] = np.concatenate(rating_l).astype(np.float32)
    if parts[0][0] >= 0:
        inter["given_split"] = np.concatenate(given_l)
    meta: dict[str, Any] = {"recbole_dataset": ds_name}
    if not has_ts:
        meta["timestamps"] = "no timestamp column: the row number is used"
    else:
        meta["timestamp_unit"] = "/".join(dict.fromkeys(units))

    items: dict[str, np.ndarray] = {}
    if item_side is not None:
        table, fields = item_side
        names = [f for f, _ in fields]
        n = len(item_ids)
        used = {"item_id"}
        title = next((c for c in _TITLE_COLS if c in names), None)
        cat = next((c for c in _CATEGORY_COLS if c in names), None)
        year = next((c for c in _YEAR_COLS if c in names), None)
        titles = table.strs(names.index(title), encoding) if title else None
        genre_str = None
        if title:
            items["title"] = _align(n, i_pos, titles, "")
            used.add(title)
        if cat:
            def token_lists(col: str) -> list[list[str]]:
                raw = table.strs(names.index(col), encoding).tolist()
                if fields[names.index(col)][1] == "token_seq":
                    return [v.split() for v in raw]
                return [[v] if v else [] for v in raw]

            lists = token_lists(cat)
            # genres: a token_seq genre-like column when there is one (e.g. next to an
            # exported category:token), else the category column itself
            gcol = next((c for c in ("genres", "genre", "class", "categories") if c in names
                         and fields[names.index(c)][1] == "token_seq"), cat)
            glists = lists if gcol == cat else token_lists(gcol)
            firsts = np.array([lst[0] if lst else "" for lst in lists], dtype=str)
            seq = fields[names.index(cat)][1] == "token_seq"
            if not seq and len(firsts) and np.all(np.char.isdigit(firsts)) and \
                    firsts.astype(np.int64).max() < 32768:
                codes = firsts.astype(np.int64)
                vocab = [str(c) for c in range(int(codes.max()) + 1)]
            else:
                vocab = sorted({t for lst in lists for t in lst}
                               | ({""} if "" in firsts else set()))
                codes, vocab = _vocab_codes(firsts, vocab)
            genre_str = np.array(["|".join(lst) for lst in glists], dtype=str)
            items["category"] = _align(n, i_pos, codes.astype(np.int16), 0)
            items["genres"] = _align(n, i_pos, genre_str, "")
            meta["categories"] = vocab
            used.update({cat, gcol})
        if year:
            ys = table.strs(names.index(year), encoding)
            yv = np.array([int(float(y)) if _is_number(y) else -1 for y in ys.tolist()],
                          dtype=np.int16)
            items["year"] = _align(n, i_pos, yv, -1)
            used.add(year)
        if "text" in names:
            items["text"] = _align(n, i_pos, table.strs(names.index("text"), encoding), "")
            used.add("text")
        elif titles is not None:
            g = genre_str if genre_str is not None else np.full(len(titles), "", dtype=str)
            text = np.array([_genre_text(a, b) for a, b in zip(titles.tolist(), g.tolist())],
                            dtype=str)
            items["text"] = _align(n, i_pos, text, "")
        other, other_meta = _recbole_side(table, fields, used, encoding, "item")
        for k, v in other.items():
            items.setdefault(k, _align(n, i_pos, v, _fill_for(v)))
        meta.update({k: v for k, v in other_meta.items() if k not in meta})
        _warn_missing(_n_missing(i_pos, n), "items", main_path.name, f_item)
    users: dict[str, np.ndarray] = {}
    if user_side is not None:
        table, fields = user_side
        n = len(user_ids)
        cols, umeta = _recbole_side(table, fields, {"user_id"}, encoding, "user")
        users = {k: _align(n, u_pos, v, _fill_for(v)) for k, v in cols.items()}
        meta.update({k: v for k, v in umeta.items() if k not in meta})
        _warn_missing(_n_missing(u_pos, n), "users", main_path.name, f_user)
    return _finish(name or ds_name, user_ids, item_ids, inter, items, users, meta)
