"""Importers: real recommender data files -> one :class:`~streamrec.data.dataset.Dataset`.

Formats (``IMPORTERS``; details, file layouts and options in ``docs/data.md``):

``movielens-100k``  GroupLens ML-100K directory: ``u.data`` (+ ``u.item``, ``u.user``)
``movielens-1m``    GroupLens ML-1M directory: ``ratings.dat`` (optional), ``movies.dat``,
                    ``users.dat``, and the MeLU plots file ``movies_extrainfos.dat`` (optional)
``lightgcn``        LightGCN / NGCF ``train.txt`` + ``test.txt`` (``user item item ...``)
``recbole``         RecBole atomic files ``NAME.inter`` (+ ``NAME.item``, ``NAME.user``)
``unisrec``         UniSRec / CoWPiRec pre-split sequences ``NAME.{train,valid,test}.inter``
                    with ``NAME.item2index``, ``NAME.user2index`` and ``NAME.text``
``csv``/``parquet`` a generic table of interactions with a column mapping, and optional item
                    and user tables (``items=PATH``, ``users=PATH``)

Every reader opens ``.gz`` files (and any gzip-compressed file) transparently. Parsing is
vectorised (numpy over whole files); only when a file is malformed is it re-scanned line by
line, to report the exact place. Malformed input always ends in one :class:`DataFormatError`
that names the file, the line (1-based, where there is one) and the problem, raised before
anything is written, so ``import_dataset(..., out=DIR)`` never leaves a half-written ``DIR``.

Original ids are kept as strings (``Dataset.user_ids`` / ``item_ids``); internal ids are
assigned in sorted order of the original ids (numeric order when every id is a number, of any
length), so datasets whose ids are already ``0..n-1`` (LightGCN, UniSRec indices) keep them.
Numeric ids must not be negative; ratings must be finite; integer timestamps in milliseconds,
microseconds or nanoseconds are detected by magnitude and converted to seconds.

Modules: :mod:`~streamrec.data.importers.base` (errors, files, tables, ids, shared checks),
:mod:`~streamrec.data.importers.movielens`, :mod:`~streamrec.data.importers.lightgcn`,
:mod:`~streamrec.data.importers.recbole`, :mod:`~streamrec.data.importers.unisrec` and
:mod:`~streamrec.data.importers.tables` (csv / parquet).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamrec.data.dataset import Dataset
from streamrec.data.importers.base import DataFormatError, MissingFileError
from streamrec.data.importers.lightgcn import read_lightgcn
from streamrec.data.importers.movielens import read_movielens_1m, read_movielens_100k
from streamrec.data.importers.recbole import read_recbole
from streamrec.data.importers.tables import read_csv, read_parquet_table
from streamrec.data.importers.unisrec import read_unisrec

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
