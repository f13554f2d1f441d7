"""What every importer shares: the errors, reading (gzip-transparent) files, parsing
delimited tables with numpy, checked columns (ids, timestamps, ratings), id encoding and
:func:`_finish`, which builds the :class:`~streamrec.data.dataset.Dataset`.

Every check raises one :class:`DataFormatError` naming the file, the line (1-based; or the
row, for tables without lines) and the column, before anything is written.
"""

from __future__ import annotations

import errno
import gzip
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset, DatasetError

#: where row ``i`` of a column is, for messages: ``(line or None, "line N" / "row N")``
Locator = Callable[[int], tuple[int | None, str]]

NEGATIVE_ID_HINT = "a negative id is usually a missing-value sentinel; drop those rows"

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

    def ids(self, j: int, what: str | None = None) -> np.ndarray:
        """Non-negative integer ids: int64, or decimal strings when one does not fit int64."""
        return _int_ids(self.path, self.cells[:, j], self.lines, what or self.names[j])

    def timestamps(self, j: int, what: str | None = None) -> tuple[np.ndarray, str]:
        """Epoch timestamps in seconds (int64) and the unit they were written in."""
        what = what or self.names[j]
        ts = _timestamp_cells(self.path, self.cells[:, j], self.lines, what)
        return to_seconds(self.path, ts, line_locator(self.lines), what)

    def ratings(self, j: int, what: str | None = None) -> np.ndarray:
        """A rating column: finite numbers (float64)."""
        what = what or self.names[j]
        values = self.floats(j, what)
        check_finite(self.path, values, line_locator(self.lines), what)
        return values

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
        pass
    for i, tok in enumerate(cells.tolist()):
        value = _int_or_fail(path, int(lines[i]), tok, what)
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise DataFormatError(path, int(lines[i]), f"{what} {value} does not fit in a 64-bit "
                                                       "integer")
    raise DataFormatError(path, None, f"cannot parse {what} as integers")


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _int_or_fail(path: Path, line: int, tok: bytes, what: str) -> int:
    try:
        return int(tok)
    except ValueError:
        problem = f"{what} must be an integer, found {tok.decode('latin-1')!r}"
        if not tok.strip():
            problem = f"{what} is empty (a missing column?)"
        raise DataFormatError(path, line, problem) from None


def _int_ids(path: Path, cells: np.ndarray, lines: np.ndarray, what: str) -> np.ndarray:
    """A column of non-negative integer ids [n] (bytes cells): int64 when every id fits, else
    every id as a decimal string (ids are strings in a Dataset; :func:`_encode_ids` keeps
    their numeric order). A non-integer or a negative id raises :class:`DataFormatError`."""
    try:
        vals = cells.astype(np.int64)
    except (ValueError, OverflowError):
        vals = None
    if vals is not None:
        neg = np.flatnonzero(vals < 0)
        if len(neg):
            i = int(neg[0])
            raise DataFormatError(path, int(lines[i]), f"{what} is negative ({vals[i]}); "
                                                       f"{NEGATIVE_ID_HINT}")
        return vals
    big = []
    for i, tok in enumerate(cells.tolist()):  # a bad token, or ids beyond int64
        value = _int_or_fail(path, int(lines[i]), tok, what)
        if value < 0:
            raise DataFormatError(path, int(lines[i]), f"{what} is negative ({value}); "
                                                       f"{NEGATIVE_ID_HINT}")
        big.append(str(value))
    return np.array(big, dtype=str)


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
    numerically when every id is a decimal number without leading zeros (of any length: ids
    beyond int64 are ordered by length, then digits), else lexicographically.
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
        if len(uniq) and _all_decimal(uniq):  # decimal ids too long for int64: numeric order
            order = np.lexsort((uniq, np.char.str_len(uniq)))
            rank = np.empty(len(order), dtype=np.int64)
            rank[order] = np.arange(len(order))
            uniq, inv = uniq[order], rank[inv.reshape(-1)]
        ids = uniq
    inv = inv.reshape(-1).astype(np.int32)
    out = np.split(inv, np.cumsum(sizes)[:-1])
    if catalog is not None:
        out = out[1:]
    return ids, out


def _all_decimal(ids: np.ndarray) -> bool:
    """Whether every str id is a decimal number without leading zeros ("0" itself allowed)."""
    lens = np.char.str_len(ids)
    return bool(lens.min() > 0 and np.all(np.char.isdigit(ids))
                and not np.any((lens > 1) & np.char.startswith(ids, "0")))


def _index_column(ids: np.ndarray) -> np.ndarray:
    """Decimal id strings [n] as int32 (int64 when one does not fit, strings beyond int64)."""
    try:
        values = np.asarray(ids).astype(np.int64)
    except (ValueError, OverflowError):
        return np.asarray(ids).astype(str)
    if len(values) and values.max() > np.iinfo(np.int32).max:
        return values
    return values.astype(np.int32)


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



def _genre_text(title: str, genres: str) -> str:
    return f"{title}. {genres.replace('|', ', ')}." if genres else f"{title}."



def _vocab_key(col: str) -> str:
    return {"gender": "genders", "occupation": "occupations"}.get(col, f"{col}_values")



def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _fill_for(values: np.ndarray) -> Any:
    kind = np.asarray(values).dtype.kind
    return {"f": np.nan, "i": -1, "u": 0}.get(kind, "")


# ---------------------------------------------------------------------- checked columns
_UNIT_BOUNDS = (1e11, 1e14, 1e17)  # above: milliseconds, microseconds, nanoseconds
_UNITS = ("s", "ms", "us", "ns")
_UNIT_WORDS = ("seconds", "milliseconds", "microseconds", "nanoseconds")


def line_locator(lines: np.ndarray) -> Locator:
    """A :data:`Locator` for rows with known 1-based line numbers ``lines`` [n]."""
    return lambda i: (int(lines[i]), f"line {int(lines[i])}")


def fail_at(path: Path, loc: Locator, i: int, problem: str) -> None:
    """Raise the :class:`DataFormatError` of row ``i``: ``FILE:LINE: PROBLEM``, or
    ``FILE: row N: PROBLEM`` when the row has no line."""
    line, label = loc(i)
    raise DataFormatError(path, line, problem if line is not None else f"{label}: {problem}")


def _timestamp_cells(path: Path, cells: np.ndarray, lines: np.ndarray, what: str) -> np.ndarray:
    """Raw int64 timestamps from text cells: integers exactly, other numbers rounded."""
    try:
        return cells.astype(np.int64)
    except (ValueError, OverflowError):
        pass
    values = _floats(path, cells, lines, what)
    return float_timestamps(path, values, line_locator(lines), what, _strs(cells))


def float_timestamps(path: Path, values: np.ndarray, loc: Locator, what: str,
                     raw: np.ndarray | None = None) -> np.ndarray:
    """Float timestamps [n] rounded to int64; NaN, infinite or beyond-int64 values raise
    (``raw`` [n]: the values as written, for the message)."""
    bad = np.flatnonzero(~np.isfinite(values) | (np.abs(values) >= 2.0**63))
    if len(bad):
        i = int(bad[0])
        shown = str(raw[i]).strip() if raw is not None else repr(float(values[i]))
        kind = "not a finite number" if not np.isfinite(values[i]) else \
            "beyond the 64-bit integer range"
        fail_at(path, loc, i, f"{what} {shown} is {kind}; timestamps must be epoch seconds, "
                              "milliseconds, microseconds or nanoseconds")
    return np.rint(values).astype(np.int64)


def to_seconds(path: Path, ts: np.ndarray, loc: Locator, what: str) -> tuple[np.ndarray, str]:
    """Epoch timestamps [n] (int64) -> seconds [n] and the unit they were in.

    The unit is read from the magnitude: values above 1e17 are nanoseconds, above 1e14
    microseconds, above 1e11 milliseconds (1e11 seconds is the year 5138; 1e11 milliseconds
    1973), else seconds; they are converted exactly by integer floor division. A column whose
    values fall in different classes (e.g. a 0 among nanoseconds) is ambiguous and raises
    :class:`DataFormatError` naming both rows.
    """
    ts = np.asarray(ts, dtype=np.int64)
    if len(ts) == 0:
        return ts, "s"
    unit = np.searchsorted(_UNIT_BOUNDS, np.abs(ts.astype(np.float64)), side="right")
    top = int(unit.max())
    if top == 0:
        return ts, "s"
    odd = np.flatnonzero(unit != top)
    if len(odd):
        i, j = int(odd[0]), int(np.argmax(unit == top))
        fail_at(path, loc, i, f"{what} {ts[i]} looks like {_UNIT_WORDS[int(unit[i])]} but "
                              f"{ts[j]} ({loc(j)[1]}) looks like {_UNIT_WORDS[top]}: the "
                              "column mixes units; convert it to one (or drop those rows)")
    return ts // (10 ** (3 * top)), _UNITS[top]


def check_finite(path: Path, values: np.ndarray, loc: Locator, what: str) -> None:
    """Raise for the first NaN or infinite value of a rating column ``values`` [n]."""
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        i = int(bad[0])
        fail_at(path, loc, i, f"{what} is {float(values[i])!r}, not a finite number; fix the "
                              "value or drop those rows")


def check_no_negative_ids(path: Path, ids: np.ndarray, loc: Locator, what: str) -> None:
    """Raise for the first id [n] (str) that is a negative integer (``-1``, ``-42``)."""
    ids = np.asarray(ids).astype(str)
    cand = np.flatnonzero(np.char.startswith(ids, "-"))
    for i in cand.tolist():
        if ids[i][1:].isdigit():
            fail_at(path, loc, i, f"{what} is negative ({ids[i]}); {NEGATIVE_ID_HINT}")
