"""GroupLens MovieLens importers: ``movielens-100k`` (``u.data``, ``u.item``, ``u.user``) and
``movielens-1m`` (``ratings.dat``, ``movies.dat``, ``users.dat`` and the MeLU plots file).

User and item ids are non-negative integers (kept as strings in the dataset; ids beyond int64
are kept too); ratings must be finite; timestamps are epoch seconds (or ms / us / ns, detected
by magnitude and converted).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.data.dataset import Dataset
from streamrec.data.importers.base import (
    DataFormatError,
    MissingFileError,
    _align,
    _decode,
    _encode_ids,
    _find_file,
    _finish,
    _genre_text,
    _n_missing,
    _read_bytes,
    _read_table,
    _src_dir,
    _Table,
    _vocab_codes,
    _warn_missing,
)

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



def _users_table(table: _Table, id_col: int, age_col: int, gender_col: int, occ_col: int,
                 zip_col: int, occupations: list[str] | None, occ_is_code: bool,
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    ids = table.ids(id_col, "user id")
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
    user, item = t.ids(0, "user id"), t.ids(1, "item id")
    rating, (ts, unit) = t.ratings(2, "rating"), t.timestamps(3, "timestamp")
    if min_rating is not None:
        keep = rating >= float(min_rating)
        user, item, rating, ts = user[keep], item[keep], rating[keep], ts[keep]

    genres = _lookup_lines(_find_file(src, "u.genre", required=False), ML100K_GENRES)
    f_item = _find_file(src, "u.item", required=False)
    item_cat = None
    if f_item is not None:
        ti = _read_table(f_item, _read_bytes(f_item), b"|",
                         ["id", "title", "release date", "video date", "URL"] + genres)
        item_cat = ti.ids(0, "item id")
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
    meta: dict[str, Any] = {"categories": genres, "rating_scale": [1, 5], "timestamp_unit": unit}
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
        user, item = t.ids(0, "user id"), t.ids(1, "movie id")
        rating, (ts, unit) = t.ratings(2, "rating"), t.timestamps(3, "timestamp")
    else:
        warnings.warn(f"{src / 'ratings.dat'} not found: importing the items and users of "
                      f"MovieLens-1M with zero interactions", stacklevel=2)
        user = item = ts = np.zeros(0, dtype=np.int64)
        rating = np.zeros(0, dtype=np.float64)
        unit = "s"

    tm = _read_table(f_movies, _read_bytes(f_movies), b"::", ["MovieID", "Title", "Genres"])
    movie_ids = tm.ids(0, "movie id")
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
                            "ages": {str(k): v for k, v in ML1M_AGES.items()},
                            "timestamp_unit": unit}
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
