"""Importers: real recommender data files -> one :class:`~streamrec.data.dataset.Dataset`.

Formats (``IMPORTERS``; details, file layouts and options in ``docs/data.md``):

``movielens-100k``  GroupLens ML-100K directory: ``u.data`` (+ ``u.item``, ``u.user``)
``movielens-1m``    GroupLens ML-1M directory: ``ratings.dat`` (optional), ``movies.dat``,
                    ``users.dat``, and the MeLU plots file ``movies_extrainfos.dat`` (optional)
``lightgcn``        LightGCN / NGCF ``train.txt`` + ``test.txt`` (``user item item ...``)
``recbole``         RecBole atomic files ``NAME.inter`` (+ ``NAME.item``, ``NAME.user``)
``unisrec``         UniSRec / CoWPiRec pre-split sequences ``NAME.{train,valid,test}.inter``
                    with ``NAME.item2index``, ``NAME.user2index`` and ``NAME.text``
``csv``/``parquet`` a generic table of interactions with a column mapping

Every reader opens ``.gz`` files (and any gzip-compressed file) transparently. Parsing is
vectorised (numpy over whole files); only when a file is malformed is it re-scanned line by
line, to report the exact place. Malformed input always ends in one :class:`DataFormatError`
that names the file, the line (1-based, where there is one) and the problem, raised before
anything is written, so ``import_dataset(..., out=DIR)`` never leaves a half-written ``DIR``.

Original ids are kept as strings (``Dataset.user_ids`` / ``item_ids``); internal ids are
assigned in sorted order of the original ids (numeric order when every id is a number), so
datasets whose ids are already ``0..n-1`` (LightGCN, UniSRec indices) keep them.
"""

from __future__ import annotations

import csv
import errno
import gzip
import inspect
import io
import re
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset, DatasetError

__all__ = [
    "IMPORTERS",
    "DataFormatError",
    "MissingFileError",
    "import_dataset",
    "read_csv",
    "read_lightgcn",
    "read_movielens_100k",
    "read_movielens_1m",
    "read_parquet_table",
    "read_recbole",
    "read_unisrec",
]


# ---------------------------------------------------------------------- errors
class DataFormatError(DatasetError):
    """A data file is missing or malformed.

    Attributes: ``file`` (str), ``line`` (1-based line number, or ``None`` when the problem
    is not tied to one line) and ``problem`` (what is wrong). ``str()`` gives
    ``"FILE:LINE: PROBLEM"`` (or ``"FILE: PROBLEM"``).
    """

    def __init__(self, file: str | Path, line: int | None, problem: str) -> None:
        self.file = str(file)
        self.line = None if line is None else int(line)
        self.problem = problem
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.file}: {self.problem}"
        return f"{self.file}:{self.line}: {self.problem}"

    def __reduce__(self) -> tuple:
        return (DataFormatError, (self.file, self.line, self.problem))


class MissingFileError(DataFormatError, FileNotFoundError):
    """A required file is not there; also a :class:`FileNotFoundError` (``errno.ENOENT``)."""

    def __init__(self, file: str | Path, problem: str) -> None:
        DataFormatError.__init__(self, file, None, problem)
        self.errno = errno.ENOENT
        self.strerror = problem
        self.filename = str(file)

    def __str__(self) -> str:
        return DataFormatError.__str__(self)

    def __reduce__(self) -> tuple:
        return (MissingFileError, (self.file, self.problem))


# ---------------------------------------------------------------------- files
GZIP_MAGIC = b"\x1f\x8b"


def _src_dir(src: str | Path, fmt: str, expects: str) -> Path:
    src = Path(src)
    if not src.exists():
        raise MissingFileError(src, f"not found (the {fmt} importer expects a directory "
                                    f"with {expects})")
    if not src.is_dir():
        raise DataFormatError(src, None, f"not a directory (the {fmt} importer expects a directory "
                                         f"with {expects})")
    return src


def _find_file(directory: Path, name: str, required: bool = True) -> Path | None:
    """``directory/name`` or ``directory/name.gz``; :class:`MissingFileError` if required."""
    for cand in (name, name + ".gz"):
        path = directory / cand
        if path.is_file():
            return path
    if required:
        raise MissingFileError(directory / name, f"required file not found (looked for {name} "
                                                 f"and {name}.gz in {directory})")
    return None


def _read_bytes(path: Path) -> bytes:
    """The whole (decompressed) content of a file; gzip detected by its magic number."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise MissingFileError(path, "file not found") from None
    except IsADirectoryError:
        raise DataFormatError(path, None, "is a directory, expected a file") from None
    if data[:2] == GZIP_MAGIC or (path.name.endswith(".gz") and data):
        try:
            data = gzip.decompress(data)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
            kind = "truncated" if isinstance(e, EOFError) else "corrupt"
            raise DataFormatError(path, None, f"{kind} gzip file ({e}); re-download or "
                                              "re-compress it") from None
    return data


def _decode(path: Path, data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataFormatError(path, line, f"cannot decode byte {data[e.start:e.start + 1]!r} as "
                                          f"{encoding}; is the encoding right?") from None


def _check_encoding(path: Path, data: bytes, encoding: str) -> None:
    if encoding.lower().replace("-", "").replace("_", "") in ("latin1", "iso88591"):
        return  # every byte is valid Latin-1
    _decode(path, data, encoding)


# ---------------------------------------------------------------------- tables
_SEP_NAMES = {b"\t": "tab", b",": "comma", b"|": "'|'", b"::": "'::'", b" ": "space", b";": "';'"}


class _Table:
    """A delimited file with a fixed number of fields: a [n_rows, n_fields] bytes array."""

    def __init__(self, path: Path, cells: np.ndarray, lines: np.ndarray, names: Sequence[str]):
        self.path = path
        self.cells = cells  # bytes (numpy "S"), [n, n_fields]
        self.lines = lines  # int64 [n], 1-based line numbers
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.lines)

    def col(self, j: int) -> np.ndarray:
        return self.cells[:, j]

    def ints(self, j: int, what: str | None = None) -> np.ndarray:
        return _ints(self.path, self.cells[:, j], self.lines, what or self.names[j])

    def floats(self, j: int, what: str | None = None, allow_empty: bool = False) -> np.ndarray:
        return _floats(self.path, self.cells[:, j], self.lines, what or self.names[j], allow_empty)

    def strs(self, j: int, encoding: str = "utf-8") -> np.ndarray:
        return _strs(self.cells[:, j], encoding)


def _split_lines(data: bytes) -> list[bytes]:
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _read_table(path: Path, data: bytes, sep: bytes, names: Sequence[str], skip: int = 0,
                allow_empty: bool = False) -> _Table:
    """Parse ``data`` as rows of exactly ``len(names)`` fields separated by ``sep``.

    Blank lines are skipped; ``skip`` header lines are not parsed. The field count of every
    line is checked with numpy over the whole buffer (separator positions -> line numbers);
    the first bad line raises :class:`DataFormatError`.
    """
    ncols = len(names)
    if not data.strip():
        raise DataFormatError(path, None, "empty file")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    if not data.endswith(b"\n"):
        data += b"\n"
    work, wsep = data, sep
    if len(sep) > 1:  # e.g. "::": one byte that the data does not hold stands in for it
        wsep = next((bytes([c]) for c in (0x1F, 0x1E, 0x1D, 0x1C, 0x01) if bytes([c]) not in data),
                    None)
        if wsep is None:
            raise DataFormatError(path, None, "holds control bytes 0x1c-0x1f and 0x01; "
                                              "not a text file?")
        work = data.replace(sep, wsep)
    buf = np.frombuffer(work, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)  # one per line (the data ends with a newline)
    starts = np.r_[0, ends[:-1] + 1]
    line_idx = np.arange(skip, len(ends))
    keep = line_idx[ends[skip:] > starts[skip:]]  # non-blank lines
    if len(keep) == 0:
        if allow_empty:
            return _Table(path, np.zeros((0, ncols), dtype="S1"), np.zeros(0, np.int64), names)
        raise DataFormatError(path, None, "no data rows" + (" after the header" if skip else ""))
    if ncols > 1:
        seps = np.flatnonzero(buf == wsep[0])
        counts = np.bincount(np.searchsorted(ends, seps), minlength=len(ends)) + 1
        bad = keep[counts[keep] != ncols]
        if len(bad):
            i = int(bad[0])
            line = data[starts[i]:ends[i]] if work is data else \
                work[starts[i]:ends[i]].replace(wsep, sep)
            _raise_field_count(path, i + 1, line, sep, names, int(counts[i]))
    body = work[starts[keep[0]]:]
    if len(keep) != len(ends) - keep[0]:  # blank lines inside: drop them
        body = b"\n".join(ln for ln in body.split(b"\n") if ln) + b"\n"
    tokens = body[:-1].replace(b"\n", wsep).split(wsep) if ncols > 1 else body[:-1].split(b"\n")
    cells = np.array(tokens).reshape(len(keep), ncols)
    return _Table(path, cells, keep + 1, names)


def _raise_field_count(path: Path, line_no: int, line: bytes, sep: bytes, names: Sequence[str],
                       found: int) -> None:
    ncols = len(names)
    sep_name = _SEP_NAMES.get(sep, repr(sep.decode("latin-1")))
    problem = f"expected {ncols} {sep_name}-separated fields, found {found}"
    others = [s for s in (b"\t", b",", b";", b"|", b"::", b" ") if s != sep and s in line]
    if found == 1 or (found < ncols and others):
        problem += "; is the separator right?"
    shown = line[:80].decode("latin-1")
    problem += f" (fields: {', '.join(names)}; line: {shown!r})"
    raise DataFormatError(path, line_no, problem)


def _ints(path: Path, cells: np.ndarray, lines: np.ndarray, what: str) -> np.ndarray:
    try:
        return cells.astype(np.int64)
    except (ValueError, OverflowError):
        for i, tok in enumerate(cells.tolist()):
            try:
                int(tok)
            except (ValueError, OverflowError):
                problem = f"{what} must be an integer, found {tok.decode('latin-1')!r}"
                if not tok.strip():
                    problem = f"{what} is empty (a missing column?)"
                raise DataFormatError(path, int(lines[i]), problem) from None
        raise


def _floats(path: Path, cells: np.ndarray, lines: np.ndarray, what: str,
            allow_empty: bool = False) -> np.ndarray:
    if allow_empty:
        cells = np.where(np.char.strip(cells) == b"", b"nan", cells)
    try:
        return cells.astype(np.float64)
    except ValueError:
        for i, tok in enumerate(cells.tolist()):
            try:
                float(tok)
            except ValueError:
                problem = f"{what} must be a number, found {tok.decode('latin-1')!r}"
                if not tok.strip():
                    problem = f"{what} is empty (a missing column?)"
                raise DataFormatError(path, int(lines[i]), problem) from None
        raise


def _strs(cells: np.ndarray, encoding: str = "utf-8") -> np.ndarray:
    """Decode a bytes column (already checked to be valid in ``encoding``) to ``str``."""
    if len(cells) == 0:
        return np.zeros(0, dtype=str)
    try:
        return cells.astype(str)  # fast when the column is ASCII
    except UnicodeDecodeError:
        return np.char.decode(cells, encoding, "replace")


# ---------------------------------------------------------------------- ids
def _as_int_ids(part: np.ndarray) -> np.ndarray | None:
    """Integer view of an id column when every id is a canonical decimal number."""
    if part.dtype.kind in "iu":
        return part.astype(np.int64)
    if part.dtype.kind not in "SU" or len(part) == 0:
        return part.astype(np.int64) if len(part) == 0 else None
    lens = np.char.str_len(part)
    if lens.max() > 18 or lens.min() == 0 or not np.all(np.char.isdigit(part)):
        return None
    if np.any((lens > 1) & np.char.startswith(part, b"0" if part.dtype.kind == "S" else "0")):
        return None  # "007" must stay "007"
    return part.astype(np.int64)


def _encode_ids(arrays: Sequence[np.ndarray], catalog: np.ndarray | None = None,
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Map original ids to ``0..n-1``.

    ``arrays`` (ints, str or bytes) are mapped into the universe ``catalog ∪ arrays``, sorted
    numerically when every id is a decimal number, else lexicographically.
    Returns ``(original ids as str [n], [internal ids per array])``.
    """
    parts = [np.asarray(a) for a in arrays]
    if catalog is not None:
        parts = [np.asarray(catalog)] + parts
    sizes = [len(p) for p in parts]
    as_int = [_as_int_ids(p) for p in parts]
    if all(p is not None for p in as_int):
        allv = np.concatenate(as_int) if as_int else np.zeros(0, np.int64)
        uniq, inv = np.unique(allv, return_inverse=True)
        ids = uniq.astype(str)
    else:
        allv = np.concatenate([_strs(p) if p.dtype.kind == "S" else p.astype(str)
                               for p in parts])
        uniq, inv = np.unique(allv, return_inverse=True)
        ids = uniq
    inv = inv.reshape(-1).astype(np.int32)
    out = np.split(inv, np.cumsum(sizes)[:-1])
    if catalog is not None:
        out = out[1:]
    return ids, out


def _align(n: int, pos: np.ndarray, values: np.ndarray, fill: Any) -> np.ndarray:
    """An array [n] holding ``values`` at ``pos`` and ``fill`` elsewhere."""
    values = np.asarray(values)
    if values.dtype.kind == "U":
        out = np.full(n, fill, dtype=object)
        out[pos] = values
        return out.astype(str)
    out = np.full(n, fill, dtype=values.dtype)
    out[pos] = values
    return out


def _count_duplicates(user: np.ndarray, item: np.ndarray, n_items: int) -> int:
    if len(user) == 0:
        return 0
    key = np.sort(user.astype(np.int64) * max(1, n_items) + item)
    return int(len(key) - 1 - np.count_nonzero(key[1:] != key[:-1]))


def _n_missing(pos: np.ndarray, n: int) -> int:
    """How many of ``0..n-1`` do not occur in ``pos``."""
    return int(n - np.count_nonzero(np.bincount(pos, minlength=n)))


def _warn_missing(n_missing: int, kind: str, where: str, side: Path) -> None:
    if n_missing:
        warnings.warn(f"{n_missing} {kind} appear in {where} but not in {side}; their side "
                      "columns are left empty", stacklevel=3)


def _vocab_codes(values: np.ndarray, vocab: Sequence[str] | None = None,
                 ) -> tuple[np.ndarray, list[str]]:
    """Codes of string ``values`` in ``vocab`` (extended with unseen values, in sorted order)."""
    values = np.asarray(values).astype(str)
    vocab = list(vocab) if vocab is not None else []
    known = set(vocab)
    vocab += sorted(set(values.tolist()) - known)
    lookup = np.array(vocab)
    order = np.argsort(lookup)
    codes = order[np.searchsorted(lookup[order], values)] if len(values) else np.zeros(0, int)
    return codes.astype(np.int16 if len(vocab) < 32768 else np.int32), vocab


def _finish(name: str, user_ids: np.ndarray, item_ids: np.ndarray, inter: dict[str, np.ndarray],
            items: dict[str, np.ndarray], users: dict[str, np.ndarray], meta: dict[str, Any],
            ) -> Dataset:
    meta = dict(meta)
    # strings as object arrays, as Dataset.load gives them (fixed-width numpy strings would
    # pad every text to the longest one)
    items = {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in items.items()}
    users = {k: v.astype(object) if v.dtype.kind == "U" else v for k, v in users.items()}
    meta["duplicates"] = _count_duplicates(inter["user"], inter["item"], len(item_ids))
    return Dataset(name=name, user_ids=user_ids, item_ids=item_ids, inter=inter, items=items,
                   users=users, meta=meta)


# ---------------------------------------------------------------------- MovieLens
ML100K_GENRES = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
]
ML1M_GENRES = ML100K_GENRES[1:]
ML1M_OCCUPATIONS = [
    "other or not specified", "academic/educator", "artist", "clerical/admin",
    "college/grad student", "customer service", "doctor/health care", "executive/managerial",
    "farmer", "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
    "scientist", "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed",
    "writer",
]
ML1M_AGES = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55",
             56: "56+"}
GENDERS = ["F", "M"]
_YEAR_IN_TITLE = re.compile(r"\((\d{4})\)\s*$")


def _lookup_lines(path: Path | None, default: list[str], encoding: str = "latin-1") -> list[str]:
    """``name|code`` lookup files (u.genre) or one name a line (u.occupation)."""
    if path is None:
        return list(default)
    text = _decode(path, _read_bytes(path), encoding)
    names = [ln.split("|")[0].strip() for ln in text.splitlines() if ln.strip()]
    return names or list(default)


def _genre_text(title: str, genres: str) -> str:
    return f"{title}. {genres.replace('|', ', ')}." if genres else f"{title}."


def _users_table(table: _Table, id_col: int, age_col: int, gender_col: int, occ_col: int,
                 zip_col: int, occupations: list[str] | None, occ_is_code: bool,
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    ids = table.ints(id_col, "user id")
    age = table.ints(age_col, "age").astype(np.int16)
    gender, genders = _vocab_codes(table.strs(gender_col, "latin-1"), GENDERS)
    if occ_is_code:
        occ = table.ints(occ_col, "occupation").astype(np.int16)
        occ_names = list(occupations or [])
    else:
        occ, occ_names = _vocab_codes(table.strs(occ_col, "latin-1"), occupations)
    cols = {"age": age, "gender": gender.astype(np.int8), "occupation": occ.astype(np.int16),
            "zip": table.strs(zip_col, "latin-1")}
    return ids, cols, {"genders": genders, "occupations": occ_names}


def read_movielens_100k(src: str | Path, *, min_rating: float | None = None,
                        name: str = "ml-100k") -> Dataset:
    """GroupLens MovieLens-100K directory.

    Files: ``u.data`` (required; ``user\\titem\\trating\\ttimestamp``), ``u.item`` (Latin-1,
    ``|``-separated: id, title, release date, video date, URL, 19 genre flags), ``u.user``
    (``id|age|gender|occupation|zip``), optional ``u.genre`` / ``u.occupation`` lookups; each
    may be ``.gz``. ``min_rating`` keeps only ratings ``>= min_rating`` (default: all).

    Interactions: ``rating`` float32, ``timestamp`` from the file. Items: ``title``, ``year``
    (int16, -1 unknown), ``category`` (int16: the first genre flag set, index into
    ``meta["categories"]``), ``genres`` (``"|"``-joined names), ``text`` (title + genres).
    Users: ``age`` int16, ``gender`` int8 (index into ``meta["genders"]``), ``occupation``
    int16 (index into ``meta["occupations"]``), ``zip`` str.
    """
    src = _src_dir(src, "movielens-100k", "u.data, u.item and u.user")
    f_data = _find_file(src, "u.data")
    t = _read_table(f_data, _read_bytes(f_data), b"\t", ["user", "item", "rating", "timestamp"])
    user, item = t.ints(0, "user id"), t.ints(1, "item id")
    rating, ts = t.floats(2, "rating"), t.ints(3, "timestamp")
    if min_rating is not None:
        keep = rating >= float(min_rating)
        user, item, rating, ts = user[keep], item[keep], rating[keep], ts[keep]

    genres = _lookup_lines(_find_file(src, "u.genre", required=False), ML100K_GENRES)
    f_item = _find_file(src, "u.item", required=False)
    item_cat = None
    if f_item is not None:
        ti = _read_table(f_item, _read_bytes(f_item), b"|",
                         ["id", "title", "release date", "video date", "URL"] + genres)
        item_cat = ti.ints(0, "item id")
    else:
        warnings.warn(f"{src / 'u.item'} not found: items get no titles or genres", stacklevel=2)
    occupations = _lookup_lines(_find_file(src, "u.occupation", required=False), [])
    f_user = _find_file(src, "u.user", required=False)
    user_cat = None
    if f_user is not None:
        tu = _read_table(f_user, _read_bytes(f_user), b"|",
                         ["id", "age", "gender", "occupation", "zip"])
        user_cat, ucols, umeta = _users_table(tu, 0, 1, 2, 3, 4, occupations or None, False)
    else:
        warnings.warn(f"{src / 'u.user'} not found: users get no features", stacklevel=2)

    user_ids, (u_int, u_side) = _encode_ids([user, user_cat if user_cat is not None else user[:0]])
    item_ids, (i_int, i_side) = _encode_ids([item, item_cat if item_cat is not None else item[:0]])
    meta: dict[str, Any] = {"categories": genres, "rating_scale": [1, 5]}
    items: dict[str, np.ndarray] = {}
    if f_item is not None:
        n = len(item_ids)
        flags = np.stack([ti.ints(5 + g, f"genre flag {genres[g]!r}") for g in range(len(genres))],
                         axis=1) > 0
        category = np.where(flags.any(axis=1), flags.argmax(axis=1), 0).astype(np.int16)
        names = np.array(genres)
        genre_str = np.array(["|".join(names[f]) for f in flags], dtype=str)
        titles = ti.strs(1, "latin-1")
        dates = ti.strs(2, "latin-1")
        year = np.array([int(d[-4:]) if d[-4:].isdigit() else -1 for d in dates], dtype=np.int16)
        text = np.array([_genre_text(a, b) for a, b in zip(titles, genre_str)], dtype=str)
        items = {"title": _align(n, i_side, titles, ""), "year": _align(n, i_side, year, -1),
                 "category": _align(n, i_side, category, 0),
                 "genres": _align(n, i_side, genre_str, ""), "text": _align(n, i_side, text, "")}
        _warn_missing(_n_missing(i_side, n), "items", f_data.name, f_item)
    users: dict[str, np.ndarray] = {}
    if f_user is not None:
        n = len(user_ids)
        fills = {"age": -1, "gender": -1, "occupation": -1, "zip": ""}
        users = {k: _align(n, u_side, v, fills[k]) for k, v in ucols.items()}
        meta.update(umeta)
        _warn_missing(_n_missing(u_side, n), "users", f_data.name, f_user)
    if min_rating is not None:
        meta["min_rating"] = float(min_rating)
    inter = {"user": u_int, "item": i_int, "timestamp": ts, "rating": rating.astype(np.float32)}
    return _finish(name, user_ids, item_ids, inter, items, users, meta)


def _read_plots(path: Path) -> dict[int, dict[str, str]]:
    """MeLU ``movies_extrainfos.dat``: movie_id::title::year::rated::released::genres::
    director::writers::actors::plot::poster_url (UTF-8). The poster URL contains ``:`` (and a
    plot could contain ``::``): the first 9 fields are split from the left, the URL is the last
    field, the plot is what lies between."""
    data = _read_bytes(path)
    text = _decode(path, data, "utf-8")
    out: dict[int, dict[str, str]] = {}
    rows = 0
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("::")
        if len(parts) < 11:
            raise DataFormatError(path, no, f"expected 11 '::'-separated fields (movie_id, title, "
                                            f"year, rated, released, genres, director, writers, "
                                            f"actors, plot, poster_url), found {len(parts)}")
        try:
            mid = int(parts[0])
        except ValueError:
            raise DataFormatError(path, no, f"movie_id must be an integer, found "
                                            f"{parts[0]!r}") from None
        plot = "::".join(parts[9:-1]).strip()
        rec = {"plot": "" if plot in ("", "N/A") else plot,
               "director": "" if parts[6] in ("", "N/A") else parts[6].strip(),
               "actors": "" if parts[8] in ("", "N/A") else parts[8].strip()}
        out[mid] = rec
        rows += 1
    if not rows:
        raise DataFormatError(path, None, "empty file")
    return out


def read_movielens_1m(src: str | Path, *, plots: str | Path | None = None,
                      name: str = "ml-1m") -> Dataset:
    """GroupLens MovieLens-1M directory.

    Files (``::``-separated; each may be ``.gz``): ``ratings.dat``
    (``UserID::MovieID::Rating::Timestamp``; optional: without it the dataset has the items
    and users and zero interactions, with a warning), ``movies.dat`` (Latin-1,
    ``MovieID::Title::Genres``), ``users.dat`` (``UserID::Gender::Age::Occupation::Zip``) and
    the optional MeLU plots file ``movies_extrainfos.dat`` (in ``src`` or given as ``plots``).

    Items: ``title``, ``year`` (from the title), ``category`` (first genre in the canonical
    ML genre order), ``genres``, ``plot`` (when the plots file is there) and ``text``
    (title + genres + plot). Users: ``age`` (ML-1M age-bracket code: 1, 18, 25, ...),
    ``gender``, ``occupation`` (code 0..20 = ``meta["occupations"]``), ``zip``.
    """
    src = _src_dir(src, "movielens-1m", "ratings.dat, movies.dat and users.dat")
    f_movies = _find_file(src, "movies.dat")
    f_users = _find_file(src, "users.dat")
    f_ratings = _find_file(src, "ratings.dat", required=False)
    if plots is not None:
        f_plots: Path | None = Path(plots)
        if not f_plots.is_file():
            raise MissingFileError(f_plots, "plots file not found")
    else:
        f_plots = _find_file(src, "movies_extrainfos.dat", required=False)

    if f_ratings is not None:
        t = _read_table(f_ratings, _read_bytes(f_ratings), b"::",
                        ["user", "item", "rating", "timestamp"])
        user, item = t.ints(0, "user id"), t.ints(1, "movie id")
        rating, ts = t.floats(2, "rating"), t.ints(3, "timestamp")
    else:
        warnings.warn(f"{src / 'ratings.dat'} not found: importing the items and users of "
                      f"MovieLens-1M with zero interactions", stacklevel=2)
        user = item = ts = np.zeros(0, dtype=np.int64)
        rating = np.zeros(0, dtype=np.float64)

    tm = _read_table(f_movies, _read_bytes(f_movies), b"::", ["MovieID", "Title", "Genres"])
    movie_ids = tm.ints(0, "movie id")
    titles = tm.strs(1, "latin-1")
    genre_lists = [g.split("|") if g else [] for g in tm.strs(2, "latin-1").tolist()]
    genres = list(ML1M_GENRES)
    for gl in genre_lists:
        for g in gl:
            if g not in genres:
                genres.append(g)
    gindex = {g: i for i, g in enumerate(genres)}
    category = np.array([min((gindex[g] for g in gl), default=0) for gl in genre_lists],
                        dtype=np.int16)
    genre_str = np.array(["|".join(gl) for gl in genre_lists], dtype=str)
    years = np.array([int(m.group(1)) if (m := _YEAR_IN_TITLE.search(s)) else -1 for s in titles],
                     dtype=np.int16)

    tu = _read_table(f_users, _read_bytes(f_users), b"::",
                     ["UserID", "Gender", "Age", "Occupation", "Zip"])
    user_cat, ucols, umeta = _users_table(tu, 0, 2, 1, 3, 4, ML1M_OCCUPATIONS, True)

    user_ids, (u_int, u_side) = _encode_ids([user, user_cat])
    item_ids, (i_int, i_side) = _encode_ids([item, movie_ids])
    n = len(item_ids)
    items = {"title": _align(n, i_side, titles, ""), "year": _align(n, i_side, years, -1),
             "category": _align(n, i_side, category, 0),
             "genres": _align(n, i_side, genre_str, "")}
    meta: dict[str, Any] = {"categories": genres, "rating_scale": [1, 5], **umeta,
                            "ages": {str(k): v for k, v in ML1M_AGES.items()}}
    plot_col = np.full(n, "", dtype=object)
    if f_plots is not None:
        extra = _read_plots(f_plots)
        pos = {int(mid): i for mid, i in zip(movie_ids.tolist(), i_side.tolist())}
        matched = 0
        for mid, rec in extra.items():
            if mid in pos:
                plot_col[pos[mid]] = rec["plot"]
                matched += 1
        items["plot"] = plot_col.astype(str)
        meta["plots"] = {"file": str(f_plots), "matched": matched,
                         "with_plot": int(sum(1 for p in plot_col if p))}
    gtext = [_genre_text(a, b) for a, b in zip(items["title"], items["genres"])]
    items["text"] = np.array([f"{g} {p}" if p else g for g, p in zip(gtext, plot_col)], dtype=str)
    nu = len(user_ids)
    fills = {"age": -1, "gender": -1, "occupation": -1, "zip": ""}
    users = {k: _align(nu, u_side, v, fills[k]) for k, v in ucols.items()}
    if f_ratings is not None:
        _warn_missing(_n_missing(i_side, n), "items", f_ratings.name, f_movies)
        _warn_missing(_n_missing(u_side, nu), "users", f_ratings.name, f_users)
    else:
        meta["no_interactions"] = "ratings.dat was not found"
    inter = {"user": u_int, "item": i_int, "timestamp": ts, "rating": rating.astype(np.float32)}
    return _finish(name, user_ids, item_ids, inter, items, users, meta)


# ---------------------------------------------------------------------- LightGCN
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
                int(tok)
            except (ValueError, OverflowError):
                raise DataFormatError(path, int(line_of[k]) + 1,
                                      f"expected integer ids 'user item item ...' separated by "
                                      f"spaces, found {tok.decode('latin-1')!r}") from None
        raise DataFormatError(path, None, "cannot parse the integer ids")
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
    return t.strs(0), t.ints(1, "remap_id")


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


# ---------------------------------------------------------------------- RecBole
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


def _vocab_key(col: str) -> str:
    return {"gender": "genders", "occupation": "occupations"}.get(col, f"{col}_values")


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
    (rounded to int seconds; without it the row number), ``rating`` (float32).
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
            ts = table.floats(names.index("timestamp"), "timestamp")
            if not np.all(np.isfinite(ts)):
                bad = int(np.flatnonzero(~np.isfinite(ts))[0])
                raise DataFormatError(path, int(table.lines[bad]), "timestamp is not finite")
            ts_l.append(np.rint(ts).astype(np.int64))
        else:
            has_ts = False
            ts_l.append(np.arange(offset, offset + len(table), dtype=np.int64))
        if "rating" in names:
            rating_l.append(table.floats(names.index("rating"), "rating", allow_empty=True))
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


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _fill_for(values: np.ndarray) -> Any:
    kind = np.asarray(values).dtype.kind
    return {"f": np.nan, "i": -1, "u": 0}.get(kind, "")


# ---------------------------------------------------------------------- UniSRec
def _index_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``ORIGINAL\\tINDEX`` per line (UniSRec ``.item2index`` / ``.user2index``)."""
    data = _read_bytes(path)
    lines = _split_lines(data)
    first = lines[0].split(b"\t") if lines else []
    skip = 1 if len(first) == 2 and not first[1].strip().isdigit() else 0  # a header
    t = _read_table(path, data, b"\t", ["original id", "index"], skip=skip)
    return t.strs(0), t.ints(1, "index")


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
    items: dict[str, np.ndarray] = {"index": item_idx.astype(np.int64).astype(np.int32)}
    users: dict[str, np.ndarray] = {"index": user_idx.astype(np.int64).astype(np.int32)}
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


# ---------------------------------------------------------------------- CSV / Parquet
_DEFAULT_COLUMNS = {
    "user": ("user", "user_id", "userId", "userid", "uid", "UserID"),
    "item": ("item", "item_id", "itemId", "itemid", "iid", "movieId", "MovieID"),
    "timestamp": ("timestamp", "time", "ts", "Timestamp"),
    "rating": ("rating", "score", "Rating"),
}


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


def _table_to_dataset(table: Any, mapping: dict[str, str], path: Path, name: str,
                      row_line: Callable[[int], int | None]) -> Dataset:
    import pyarrow as pa
    import pyarrow.compute as pc

    def where(row: int) -> tuple[int | None, str]:
        line = row_line(row)
        return line, ("" if line is not None else f"row {row + 1}: ")

    def fail(col: str, key: str, mask: np.ndarray, problem: str) -> None:
        row = int(np.flatnonzero(mask)[0])
        line, prefix = where(row)
        raise DataFormatError(path, line, f"{prefix}column {col!r} ({key}) {problem}")

    ids = {}
    for key in ("user", "item"):
        col = table.column(mapping[key])
        nulls = col.is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            fail(mapping[key], key, nulls, "is empty")
        ids[key] = np.asarray(col.cast(pa.string()).to_pylist(), dtype=str)
    n = len(ids["user"])
    if "timestamp" in mapping:
        col = table.column(mapping["timestamp"]).combine_chunks()
        nulls = col.is_null().to_numpy(zero_copy_only=False)
        if nulls.any():
            fail(mapping["timestamp"], "timestamp", nulls, "is empty")
        if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
            ts = pc.cast(col, pa.timestamp("s")) if pa.types.is_date(col.type) else col
            ts = ts.cast(pa.timestamp("s"), safe=False).cast(pa.int64()).to_numpy()
        elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            ts = np.rint(col.cast(pa.float64()).to_numpy(zero_copy_only=False)).astype(np.int64)
        else:
            strs = np.asarray(col.cast(pa.string()).to_pylist(), dtype=str)
            try:
                ts = np.rint(strs.astype(np.float64)).astype(np.int64)
            except ValueError:
                try:
                    ts = strs.astype("datetime64[s]").astype(np.int64)
                except ValueError:
                    bad = np.array([not _is_time(s) for s in strs.tolist()])
                    fail(mapping["timestamp"], "timestamp", bad,
                         f"must be a number or an ISO date/time, found "
                         f"{str(strs[np.flatnonzero(bad)[0]])!r}")
    else:
        ts = np.arange(n, dtype=np.int64)
    inter: dict[str, np.ndarray] = {"timestamp": ts}
    if "rating" in mapping:
        col = table.column(mapping["rating"]).combine_chunks()
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            r = col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
        else:
            strs = np.asarray(col.cast(pa.string()).fill_null("nan").to_pylist(), dtype=str)
            ok = np.array([_is_number(s) for s in strs.tolist()])
            if not ok.all():
                fail(mapping["rating"], "rating", ~ok,
                     f"must be a number, found {str(strs[np.flatnonzero(~ok)[0]])!r}")
            r = strs.astype(np.float64)
        inter["rating"] = r.astype(np.float32)
    user_ids, (u_int,) = _encode_ids([ids["user"]])
    item_ids, (i_int,) = _encode_ids([ids["item"]])
    inter = {"user": u_int, "item": i_int, **inter}
    meta: dict[str, Any] = {"columns": mapping}
    if "timestamp" not in mapping:
        meta["timestamps"] = "no timestamp column: the row number is used"
    return _finish(name, user_ids, item_ids, inter, {}, {}, meta)


def _is_time(s: str) -> bool:
    try:
        np.datetime64(s)
    except ValueError:
        return False
    return True


def read_csv(src: str | Path, *, columns: dict[str, str] | None = None, user: str | None = None,
             item: str | None = None, timestamp: str | None = None, rating: str | None = None,
             sep: str = ",", header: bool = True, encoding: str = "utf-8",
             name: str | None = None) -> Dataset:
    """A delimited table of interactions, one per row (``.gz`` allowed).

    The columns are given by ``columns={"user": COL, "item": COL, "timestamp": COL,
    "rating": COL}`` or by the keywords ``user=``, ``item=``, ``timestamp=``, ``rating=``
    (these win); unnamed roles are looked up among common names (``user_id``, ``userId``,
    ``item_id``, ``movieId``, ``timestamp``, ``rating`` ...). ``timestamp`` is optional
    (default: the row order); it may be numbers (seconds) or ISO dates. Without a header
    (``header=False``) columns are named by position: ``"0"``, ``"1"``, ...
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(src)
    if not path.is_file():
        raise MissingFileError(path, "file not found" if not path.exists() else "not a file")
    data = _read_bytes(path)
    if not data.strip():
        raise DataFormatError(path, None, "empty file")
    text = _decode(path, data, encoding).removeprefix("\ufeff")  # a byte-order mark
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    first = next(reader)
    if header:
        available = [c.strip() for c in first]
    else:
        available = [str(i) for i in range(len(first))]
    header_line = 1 if header else None
    if len(available) == 1 and any(s in first[0] for s in (",", "\t", ";", "|")):
        raise DataFormatError(path, 1, f"found 1 column {first[0]!r}; is the separator "
                                       f"right? (sep={sep!r})")
    mapping = _mapping(available, columns, {"user": user, "item": item, "timestamp": timestamp,
                                            "rating": rating}, path, header_line)
    string_cols = {mapping["user"]: pa.string(), mapping["item"]: pa.string()}
    try:
        table = pacsv.read_csv(
            pa.py_buffer(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=available, skip_rows=1 if header else 0),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(column_types=string_cols,
                                                 include_columns=list(dict.fromkeys(mapping.values())),
                                                 strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        _csv_rescan(path, text, sep, len(available), header, e)
        raise DataFormatError(path, None, f"cannot parse: {e}") from None
    if table.num_rows == 0:
        raise DataFormatError(path, None, "no data rows" + (" after the header" if header else ""))
    row_lines = _csv_row_lines(text, sep) if "\n" in text else None

    def row_line(row: int) -> int | None:
        if row_lines is None:
            return None
        i = row + (1 if header else 0)
        return row_lines[i] if i < len(row_lines) else None

    return _table_to_dataset(table, mapping, path, name or _stem(path), row_line)


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


def read_parquet_table(src: str | Path, *, columns: dict[str, str] | None = None,
                       user: str | None = None, item: str | None = None,
                       timestamp: str | None = None, rating: str | None = None,
                       name: str | None = None) -> Dataset:
    """A Parquet table of interactions (``.gz`` allowed); columns as for :func:`read_csv`.
    Parquet has no lines: errors name the row (``row N``, 1-based) instead."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(src)
    if not path.is_file():
        raise MissingFileError(path, "file not found" if not path.exists() else "not a file")
    data = _read_bytes(path)
    if not data:
        raise DataFormatError(path, None, "empty file")
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as e:
        raise DataFormatError(path, None, f"not a readable Parquet file ({e})") from None
    mapping = _mapping(table.column_names, columns, {"user": user, "item": item,
                                                     "timestamp": timestamp, "rating": rating},
                       path, None)
    if table.num_rows == 0:
        raise DataFormatError(path, None, "no rows")
    return _table_to_dataset(table, mapping, path, name or _stem(path), lambda row: None)


# ---------------------------------------------------------------------- entry point
IMPORTERS: dict[str, Callable[..., Dataset]] = {
    "movielens-100k": read_movielens_100k,
    "movielens-1m": read_movielens_1m,
    "lightgcn": read_lightgcn,
    "recbole": read_recbole,
    "unisrec": read_unisrec,
    "csv": read_csv,
    "parquet": read_parquet_table,
}


def import_dataset(fmt: str, src: str | Path, out: str | Path | None = None,
                   overwrite: bool = False, **options: Any) -> Dataset:
    """Parse ``src`` in format ``fmt`` (a key of :data:`IMPORTERS`) into a :class:`Dataset`.

    ``options`` go to the format's reader (see each ``read_*`` function and
    ``docs/data.md``). With ``out``, the dataset is then written there atomically (nothing is
    written when parsing fails). ``meta["source"] = {"format": fmt, "path": str(src)}``.
    Raises :class:`DataFormatError` for malformed input, ``ValueError`` for an unknown
    format or option, ``FileExistsError`` when ``out`` exists and ``overwrite`` is false.
    """
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown data format {fmt!r}; choose one of {', '.join(IMPORTERS)}")
    reader = IMPORTERS[fmt]
    accepted = [p.name for p in inspect.signature(reader).parameters.values()
                if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for format {fmt!r}; "
                         f"accepted: {', '.join(accepted)}")
    if out is not None:
        out_path = Path(out)
        if out_path.exists() and not overwrite and not (out_path.is_dir()
                                                        and not any(out_path.iterdir())):
            raise FileExistsError(f"{out_path} already exists (pass overwrite=True / --overwrite)")
    ds = reader(src, **options)
    ds.meta["source"] = {"format": fmt, "path": str(src)}
    if options:
        ds.meta["import_options"] = {k: v if isinstance(v, (int, float, str, bool, dict,
                                                             type(None))) else str(v)
                                     for k, v in options.items()}
    if out is not None:
        ds.save(out, overwrite=overwrite)
    return ds
