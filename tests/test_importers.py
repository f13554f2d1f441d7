"""Importers and the RecBole export, on tiny handwritten files (never real data).

A few smoke tests at the end also import the real files under ``shared/data`` when they are
there (skipped otherwise) and check their sizes.
"""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamrec.data.dataset import Dataset
from streamrec.data.export import export_recbole
from streamrec.data.importers import (
    IMPORTERS,
    DataFormatError,
    MissingFileError,
    import_dataset,
)
from streamrec.data.splits import Split, make_split

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


# ---------------------------------------------------------------------- helpers
def write(path: Path, text: str, encoding: str = "utf-8", gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode(encoding)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def originals(ds: Dataset) -> list[tuple[str, str, int]]:
    """The interactions as (original user, original item, timestamp), in row order."""
    return list(zip(ds.user_ids[ds.user].tolist(), ds.item_ids[ds.item].tolist(),
                    ds.timestamp.tolist()))


def assert_fails(fmt, src, tmp_path, file_name, line, *words, **options):
    """One DataFormatError naming the file, the line and the problem; nothing at out."""
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataFormatError) as info:
            import_dataset(fmt, src, out=out, **options)
    err = info.value
    msg = str(err)
    assert Path(err.file).name == file_name, msg
    assert file_name in msg
    assert err.line == line, msg
    if line is not None:
        assert msg.startswith(f"{err.file}:{line}: "), msg
    else:
        assert msg.startswith(f"{err.file}: "), msg
    for word in words:
        assert word in msg, msg
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]
    return err


GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def item_line(mid: int, title: str, date: str, genres: list[str]) -> str:
    flags = ["1" if g in genres else "0" for g in GENRES]
    return "|".join([str(mid), title, date, "", "http://x/" + str(mid)] + flags)


def ml100k(root: Path, gz: bool = False, data: str | None = None) -> Path:
    d = root / "ml100k"
    write(d / "u.data", data if data is not None else
          "1\t10\t5\t100\n1\t20\t3\t200\n2\t10\t4\t150\n2\t30\t1\t50\n3\t20\t2\t300\n"
          "1\t10\t4\t400\n", gz=gz)
    write(d / "u.item", "\n".join([
        item_line(10, "Toy Story (1995)", "01-Jan-1995", ["Animation", "Children's", "Comedy"]),
        item_line(20, "Café Society (1996)", "02-Feb-1996", ["Drama"]),
        item_line(30, "unknown", "", ["unknown"]),
    ]) + "\n", encoding="latin-1")
    write(d / "u.user", "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|T8H1N\n")
    return d


# ---------------------------------------------------------------------- registry
def test_registry_and_unknown_format(tmp_path):
    assert set(IMPORTERS) == {"movielens-100k", "movielens-1m", "lightgcn", "recbole",
                              "unisrec", "csv", "parquet"}
    with pytest.raises(ValueError, match="choose one of movielens-100k"):
        import_dataset("netflix", tmp_path)


def test_unknown_option_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown option.*min_ratin.*accepted: min_rating"):
        import_dataset("movielens-100k", ml100k(tmp_path), min_ratin=3)


def test_error_attributes_and_str():
    e = DataFormatError("/d/u.data", 3, "bad")
    assert (e.file, e.line, e.problem, str(e)) == ("/d/u.data", 3, "bad", "/d/u.data:3: bad")
    assert str(DataFormatError("/d/u.data", None, "empty file")) == "/d/u.data: empty file"
    m = MissingFileError("/d/u.data", "required file not found")
    assert isinstance(m, FileNotFoundError) and isinstance(m, DataFormatError)
    assert m.line is None and str(m) == "/d/u.data: required file not found"


# ---------------------------------------------------------------------- MovieLens-100k
def test_movielens_100k_round_trip(tmp_path):
    src = ml100k(tmp_path)
    out = tmp_path / "ds"
    ds = import_dataset("movielens-100k", src, out=out)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 3, 6)
    assert list(ds.user_ids) == ["1", "2", "3"] and list(ds.item_ids) == ["10", "20", "30"]
    assert originals(ds)[0] == ("1", "10", 100) and originals(ds)[3] == ("2", "30", 50)
    assert ds.inter["rating"].dtype == np.float32
    assert ds.inter["rating"].tolist() == [5, 3, 4, 1, 2, 4]
    assert ds.meta["duplicates"] == 1  # (1, 10) twice: kept
    assert ds.meta["source"] == {"format": "movielens-100k", "path": str(src)}
    items = ds.items
    assert items["title"][1] == "Café Society (1996)"  # Latin-1 decoded
    assert items["year"].tolist() == [1995, 1996, -1]
    assert items["category"].tolist() == [GENRES.index("Animation"), GENRES.index("Drama"), 0]
    assert items["genres"][0] == "Animation|Children's|Comedy"
    assert "Toy Story" in items["text"][0] and "Comedy" in items["text"][0]
    assert ds.meta["categories"] == GENRES
    users = ds.users
    assert users["age"].dtype == np.int16 and users["age"].tolist() == [24, 53, 23]
    assert users["gender"].dtype == np.int8
    assert [ds.meta["genders"][g] for g in users["gender"]] == ["M", "F", "M"]
    assert users["occupation"].dtype == np.int16
    assert [ds.meta["occupations"][o] for o in users["occupation"]] == [
        "technician", "other", "writer"]
    assert users["zip"].tolist() == ["85711", "94043", "T8H1N"]
    back = Dataset.load(out)
    assert originals(back) == originals(ds)
    assert back.items["title"].tolist() == ds.items["title"].tolist()
    assert back.meta["source"]["format"] == "movielens-100k"


def test_movielens_100k_min_rating_keeps_all_users(tmp_path):
    ds = import_dataset("movielens-100k", ml100k(tmp_path), min_rating=4)
    assert ds.inter["rating"].min() >= 4 and ds.n_interactions == 3
    assert ds.n_users == 3  # users come from u.user too


def test_gzip_is_transparent(tmp_path):
    plain = import_dataset("movielens-100k", ml100k(tmp_path / "a"))
    zipped = import_dataset("movielens-100k", ml100k(tmp_path / "b", gz=True))
    assert (tmp_path / "b" / "ml100k" / "u.data.gz").is_file()
    assert originals(plain) == originals(zipped)


# ---------------------------------------------------------------------- malformed input
def test_missing_field(tmp_path):
    src = ml100k(tmp_path, data="1\t10\t5\t100\n1\t20\t3\n")
    assert_fails("movielens-100k", src, tmp_path, "u.data", 2,
                 "expected 4 tab-separated fields, found 3")


def test_wrong_separator(tmp_path):
    src = ml100k(tmp_path, data="1,10,5,100\n1,20,3,200\n")
    assert_fails("movielens-100k", src, tmp_path, "u.data", 1,
                 "expected 4 tab-separated fields, found 1; is the separator right?")


def test_non_numeric_id(tmp_path):
    src = ml100k(tmp_path, data="1\t10\t5\t100\n\n1\t20\t3\t200\nabc\t10\t4\t150\n")
    assert_fails("movielens-100k", src, tmp_path, "u.data", 4,
                 "user id must be an integer, found 'abc'")


def test_empty_file(tmp_path):
    src = ml100k(tmp_path, data="")
    assert_fails("movielens-100k", src, tmp_path, "u.data", None, "empty file")


def test_truncated_gzip(tmp_path):
    src = ml100k(tmp_path, gz=True, data="1\t10\t5\t100\n" * 2000)
    f = src / "u.data.gz"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    assert_fails("movielens-100k", src, tmp_path, "u.data.gz", None, "truncated gzip")


def test_missing_required_file(tmp_path):
    src = ml100k(tmp_path)
    (src / "u.data").unlink()
    err = assert_fails("movielens-100k", src, tmp_path, "u.data", None,
                       "required file not found", str(src / "u.data"))
    assert isinstance(err, FileNotFoundError)


def test_out_exists_is_refused_before_parsing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        import_dataset("movielens-100k", ml100k(tmp_path), out=out)
    assert (out / "keep.txt").read_text() == "x"
    ds = import_dataset("movielens-100k", ml100k(tmp_path), out=out, overwrite=True)
    assert Dataset.load(out).n_interactions == ds.n_interactions


def test_failed_import_leaves_an_existing_out_untouched(tmp_path):
    out = tmp_path / "out"
    import_dataset("movielens-100k", ml100k(tmp_path / "good"), out=out)
    bad = ml100k(tmp_path / "bad", data="1\t10\n")
    with pytest.raises(DataFormatError):
        import_dataset("movielens-100k", bad, out=out, overwrite=True)
    assert Dataset.load(out).n_interactions == 6


# ---------------------------------------------------------------------- MovieLens-1M
PLOT_LINE = ("10::Toy Story::1995::G::22 Nov 1995::Animation, Comedy::John Lasseter::W::"
             "Tom Hanks::A toy cowboy is jealous.::https://m.media-amazon.com/images/M/"
             "MV5B@._V1_SX300.jpg")


def ml1m(root: Path, ratings: bool = True, plots: bool = True) -> Path:
    d = root / "ml1m"
    if ratings:
        write(d / "ratings.dat", "1::10::5::978300760\n1::20::3::978302109\n"
                                 "2::10::4::978301968\n")
    write(d / "movies.dat", "10::Toy Story (1995)::Animation|Children's|Comedy\n"
                            "20::Amélie (2001)::Romance|Comedy\n30::Heat (1995)::Action\n",
          encoding="latin-1")
    write(d / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    if plots:
        write(d / "movies_extrainfos.dat",
              PLOT_LINE + "\n20::Amélie::2001::R::N/A::Comedy::N/A::N/A::N/A::N/A::N/A\n",
              gz=True)
    return d


def test_movielens_1m_round_trip(tmp_path):
    ds = import_dataset("movielens-1m", ml1m(tmp_path))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 3)
    assert originals(ds)[1] == ("1", "20", 978302109)
    assert ds.items["title"][1] == "Amélie (2001)"
    assert ds.items["year"].tolist() == [1995, 2001, 1995]
    cats = [ds.meta["categories"][c] for c in ds.items["category"]]
    assert cats == ["Animation", "Comedy", "Action"]  # first in the canonical genre order
    assert ds.items["plot"].tolist() == ["A toy cowboy is jealous.", "", ""]
    assert ds.items["text"][0].endswith("A toy cowboy is jealous.")
    assert "Toy Story" in ds.items["text"][0] and "Comedy" in ds.items["text"][0]
    assert ds.users["age"].tolist() == [1, 56]
    assert ds.meta["occupations"][ds.users["occupation"][0]] == "K-12 student"
    assert [ds.meta["genders"][g] for g in ds.users["gender"]] == ["F", "M"]


def test_movielens_1m_without_ratings_warns(tmp_path):
    src = ml1m(tmp_path, ratings=False, plots=False)
    plots = write(tmp_path / "elsewhere" / "extra.dat", PLOT_LINE + "\n")
    with pytest.warns(UserWarning, match="ratings.dat not found"):
        ds = import_dataset("movielens-1m", src, plots=plots)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 0)
    assert ds.items["plot"][0] == "A toy cowboy is jealous."
    assert ds.info()["interactions"] == 0


def test_movielens_1m_bad_plots_line(tmp_path):
    src = ml1m(tmp_path, plots=False)
    write(src / "movies_extrainfos.dat", PLOT_LINE + "\n11::Jumanji::1995\n")
    assert_fails("movielens-1m", src, tmp_path, "movies_extrainfos.dat", 2,
                 "expected 11 '::'-separated fields", "found 3")


def test_movielens_1m_separator_and_types(tmp_path):
    src = ml1m(tmp_path)
    write(src / "ratings.dat", "1::10::5::978300760\n1::x20::3::978302109\n")
    assert_fails("movielens-1m", src, tmp_path, "ratings.dat", 2,
                 "movie id must be an integer, found 'x20'")
    write(src / "ratings.dat", "1::10::5::978300760\n1\t20\t3\t978302109\n")
    assert_fails("movielens-1m", src, tmp_path, "ratings.dat", 2,
                 "expected 4 '::'-separated fields, found 1; is the separator right?")


# ---------------------------------------------------------------------- LightGCN
def test_lightgcn_round_trip(tmp_path):
    d = tmp_path / "lg"
    write(d / "train.txt", "0 0 1 2\n1 2 3\n2\n3 1 \n", gz=True)
    write(d / "test.txt", "0 3\n1 0 1\n2 4\n3\n")
    ds = import_dataset("lightgcn", d)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (4, 5, 10)
    assert list(ds.user_ids) == ["0", "1", "2", "3"]
    assert list(ds.item_ids) == ["0", "1", "2", "3", "4"]
    assert [(u, i) for u, i, _ in originals(ds)] == [
        ("0", "0"), ("0", "1"), ("0", "2"), ("1", "2"), ("1", "3"), ("3", "1"),
        ("0", "3"), ("1", "0"), ("1", "1"), ("2", "4")]
    assert ds.inter["given_split"].tolist() == [0] * 6 + [2] * 4
    assert ds.timestamp.tolist() == [0] * 10
    assert ds.info()["given_split"] == {"train": 6, "valid": 0, "test": 4}
    split = make_split(ds, "given")
    assert split.mask("test").sum() == 4


def test_lightgcn_bad_token(tmp_path):
    d = tmp_path / "lg"
    write(d / "train.txt", "0 0 1 2\n1 2 x3\n")
    write(d / "test.txt", "0 3\n")
    assert_fails("lightgcn", d, tmp_path, "train.txt", 2, "expected integer ids", "'x3'")


def test_lightgcn_empty_and_missing(tmp_path):
    d = tmp_path / "lg"
    write(d / "train.txt", "\n")
    assert_fails("lightgcn", d, tmp_path, "train.txt", None, "empty file")
    (d / "train.txt").unlink()
    assert_fails("lightgcn", d, tmp_path, "train.txt", None, "required file not found")


# ---------------------------------------------------------------------- RecBole
def recbole_dir(root: Path) -> Path:
    d = root / "rb"
    write(d / "tiny.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                            "u1\ti1\t4\t881250949\nu1\ti2\t3.5\t881250950\nu2\ti1\t1\t5\n",
          gz=True)
    write(d / "tiny.item", "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
                           "class:token_seq\ni1\tToy Story\t1995\tAnimation Comedy\n"
                           "i2\tHeat\t1995\tAction\ni3\tUnseen\t\tDrama\n")
    write(d / "tiny.user", "user_id:token\tage:token\tgender:token\nu1\t24\tM\nu2\t53\tF\n")
    return d


def test_recbole_round_trip(tmp_path):
    ds = import_dataset("recbole", recbole_dir(tmp_path))  # name inferred: tiny
    assert ds.name == "tiny"
    assert originals(ds) == [("u1", "i1", 881250949), ("u1", "i2", 881250950), ("u2", "i1", 5)]
    assert ds.inter["rating"].tolist() == [4.0, 3.5, 1.0]
    assert list(ds.item_ids) == ["i1", "i2", "i3"]  # i3 only in .item: kept, no interactions
    assert ds.items["title"].tolist() == ["Toy Story", "Heat", "Unseen"]
    assert ds.items["year"].tolist() == [1995, 1995, -1]
    cats = [ds.meta["categories"][c] for c in ds.items["category"]]
    assert cats == ["Animation", "Action", "Drama"]
    assert ds.items["genres"][0] == "Animation|Comedy"
    assert ds.items["text"][0] == "Toy Story. Animation, Comedy."
    assert ds.users["age"].tolist() == [24, 53]
    assert [ds.meta["genders"][g] for g in ds.users["gender"]] == ["M", "F"]


def test_recbole_needs_typed_header_and_right_fields(tmp_path):
    d = tmp_path / "rb"
    write(d / "x.inter", "user_id\titem_id\n1\t2\n")
    assert_fails("recbole", d, tmp_path, "x.inter", 1, "has no ':type'")
    write(d / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\n")
    assert_fails("recbole", d, tmp_path, "x.inter", 3, "expected 3 tab-separated fields, found 2")
    write(d / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\tsoon\n")
    assert_fails("recbole", d, tmp_path, "x.inter", 2, "timestamp must be a number, found 'soon'")
    write(d / "x.inter", "user_id:token\ttimestamp:float\n1\t3\n")
    assert_fails("recbole", d, tmp_path, "x.inter", 1, "missing column 'item_id'")
    (d / "x.inter").write_bytes(b"user_id:token\titem_id:token\n1\t2\n1\tcaf\xe9\n")
    assert_fails("recbole", d, tmp_path, "x.inter", 3, "cannot decode", "utf-8")


def test_recbole_dataset_option_and_ambiguity(tmp_path):
    d = recbole_dir(tmp_path)
    write(d / "other.inter", "user_id:token\titem_id:token\na\tb\n")
    err = assert_fails("recbole", d, tmp_path, "rb", None, "several RecBole datasets")
    assert "dataset=NAME" in str(err)
    assert import_dataset("recbole", d, dataset="other").n_interactions == 1
    with pytest.raises(MissingFileError):
        import_dataset("recbole", d, dataset="nope")


# ---------------------------------------------------------------------- export
def test_export_recbole_reimports_the_same_interactions(tmp_path):
    ds = import_dataset("movielens-100k", ml100k(tmp_path))
    out = export_recbole(ds, tmp_path / "rb", name="ml")
    assert (out / "ml.inter").read_text().splitlines()[0] == (
        "user_id:token\titem_id:token\trating:float\ttimestamp:float")
    back = import_dataset("recbole", out)
    assert originals(back) == originals(ds)
    assert back.inter["rating"].tolist() == ds.inter["rating"].tolist()
    assert list(back.item_ids) == list(ds.item_ids)
    assert back.items["title"].tolist() == ds.items["title"].tolist()
    assert back.items["genres"].tolist() == ds.items["genres"].tolist()
    names = lambda d: [d.meta["categories"][c] for c in d.items["category"]]  # noqa: E731
    assert names(back) == names(ds)
    assert [back.meta["occupations"][o] for o in back.users["occupation"]] == [
        ds.meta["occupations"][o] for o in ds.users["occupation"]]


def test_export_with_split_writes_benchmark_files(tmp_path):
    ds = import_dataset("recbole", recbole_dir(tmp_path))
    split = make_split(ds, "random", seed=1, ratios=(0.34, 0.33, 0.33))
    out = export_recbole(ds, tmp_path / "exp", split=split)
    for part in ("train", "valid", "test"):
        lines = (out / f"tiny.{part}.inter").read_text().splitlines()
        assert lines[0].startswith("user_id:token\titem_id:token")
        assert len(lines) - 1 == int(split.mask(part).sum())
    back = import_dataset("recbole", out, benchmark=True)
    kept = split.assign >= 0
    assert sorted(originals(back)) == sorted(r for r, k in zip(originals(ds), kept) if k)
    got = {(u, i, t): g for (u, i, t), g in zip(originals(back), back.inter["given_split"])}
    for row, code in zip(originals(ds), split.assign):
        if code >= 0:
            assert got[row] == code
    assert (tmp_path / "exp" / "tiny.export.json").is_file()


def test_export_is_atomic_and_refuses_existing(tmp_path):
    ds = import_dataset("recbole", recbole_dir(tmp_path))
    out = export_recbole(ds, tmp_path / "exp")
    with pytest.raises(FileExistsError):
        export_recbole(ds, out)
    wrong = Split("given", {}, np.zeros(ds.n_interactions + 1, dtype=np.int8))
    with pytest.raises(ValueError):
        export_recbole(ds, tmp_path / "exp2", split=wrong)
    assert not (tmp_path / "exp2").exists()


# ---------------------------------------------------------------------- UniSRec
def unisrec_dir(root: Path) -> Path:
    """Two users; histories cut to the last 3 items (user 0 has 7 items, 2 rows cut)."""
    d = root / "sci"
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    write(d / "Sci.train.inter", head + "0\t0\t1\n0\t0 1\t2\n0\t0 1 2\t3\n0\t1 2 3\t4\n"
                                        "1\t5\t2\n")
    write(d / "Sci.valid.inter", head + "0\t2 3 4\t5\n1\t5 2\t6\n")
    write(d / "Sci.test.inter", head + "0\t3 4 5\t6\n1\t5 2 6\t2\n")
    write(d / "Sci.item2index", "".join(f"B00{i}\t{i}\n" for i in range(7)))
    write(d / "Sci.user2index", "AUSERZERO\t0\nAUSERONE\t1\n")
    write(d / "Sci.text", "item_id:token\ttext:token_seq\n" +
          "".join(f"B00{i}\tthing {i}. Scientific. Brand.\n" for i in range(7)))
    return d


def test_unisrec_rebuilds_sequences(tmp_path):
    ds = import_dataset("unisrec", unisrec_dir(tmp_path), dataset="Sci")
    assert list(ds.user_ids) == ["AUSERZERO", "AUSERONE"]
    assert list(ds.item_ids) == [f"B00{i}" for i in range(7)]
    indptr, seq = ds.sequences()
    assert ds.item_ids[seq[indptr[0]:indptr[1]]].tolist() == [f"B00{i}" for i in range(7)]
    assert ds.item_ids[seq[indptr[1]:indptr[2]]].tolist() == ["B005", "B002", "B006", "B002"]
    order = ds.time_order()
    gs = ds.inter["given_split"][order]
    assert gs.tolist() == [0, 0, 0, 0, 0, 1, 2] + [0, 0, 1, 2]
    assert ds.timestamp[order].tolist() == list(range(7)) + list(range(4))
    assert ds.items["text"][3] == "thing 3. Scientific. Brand."
    assert ds.meta["duplicates"] == 1  # user 1 saw item 2 twice
    # exporting the given split with histories gives back the very same files
    split = Split("given", {}, ds.inter["given_split"].astype(np.int8))
    out = export_recbole(ds, tmp_path / "exp", split=split, name="Sci", history=3)
    idx = {f"B00{i}": str(i) for i in range(7)}
    uidx = {"AUSERZERO": "0", "AUSERONE": "1"}
    for part in ("train", "valid", "test"):
        mine = [ln.split("\t") for ln in (out / f"Sci.{part}.inter").read_text().splitlines()]
        theirs = (unisrec_dir(tmp_path / "again") / f"Sci.{part}.inter").read_text().splitlines()
        assert mine[0] == theirs[0].split("\t")
        mapped = sorted("\t".join([uidx[u], " ".join(idx[x] for x in h.split()), idx[t]])
                        for u, h, t in mine[1:])
        assert mapped == sorted(theirs[1:])


def test_unisrec_unknown_index(tmp_path):
    d = unisrec_dir(tmp_path)
    write(d / "Sci.valid.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n"
                                 "0\t2 3 4\t5\n1\t5 2\t99\n")
    assert_fails("unisrec", d, tmp_path, "Sci.valid.inter", 3, "item index '99' is not in",
                 dataset="Sci")


def test_unisrec_inconsistent_rows(tmp_path):
    d = unisrec_dir(tmp_path)
    write(d / "Sci.train.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n"
                                 "0\t0\t4\n0\t0 1\t2\n0\t0 1 2\t3\n0\t1 2 3\t4\n1\t5\t2\n")
    assert_fails("unisrec", d, tmp_path, "Sci.train.inter", 2, "not a prefix",
                 "Sci.train.inter:3", dataset="Sci")


# ---------------------------------------------------------------------- CSV / Parquet
def test_csv_round_trip_and_mapping(tmp_path):
    f = write(tmp_path / "ratings.csv",
              "userId,movieId,rating,when\nu1,007,4.5,2020-01-02T00:00:00\n"
              "u2,7,3,2020-01-01\nu1,007,2,2020-01-03\n", gz=True)
    ds = import_dataset("csv", f, columns={"user": "userId", "item": "movieId"},
                        timestamp="when")
    assert ds.name == "ratings"
    assert list(ds.item_ids) == ["007", "7"]  # ids are strings: "007" stays "007"
    assert originals(ds)[0] == ("u1", "007", 1577923200)
    assert ds.inter["rating"].tolist() == [4.5, 3.0, 2.0]
    assert ds.meta["duplicates"] == 1
    # no timestamp column: the row order
    g = write(tmp_path / "plain.tsv", "a\tb\n1\t2\n1\t3\n")
    ds = import_dataset("csv", g, sep="\t", header=False, user=0, item=1)
    assert originals(ds) == [("a", "b", 0), ("1", "2", 1), ("1", "3", 2)]


def test_csv_errors(tmp_path):
    f = write(tmp_path / "r.csv", "userId,movieId,rating\nu1,m1,4\n")
    assert_fails("csv", f, tmp_path, "r.csv", 1, "missing column 'user_x' (mapped to user)",
                 "available columns: userId, movieId, rating", user="user_x")
    write(f, "userId,movieId,rating\nu1,m1,4\nu2,m2\n")
    assert_fails("csv", f, tmp_path, "r.csv", 3, "expected 3 fields", "found 2")
    write(f, "userId,movieId,rating\nu1,m1,4\nu2,m2,good\n")
    assert_fails("csv", f, tmp_path, "r.csv", 3, "column 'rating' (rating) must be a number",
                 "'good'")
    write(f, "userId;movieId;rating\nu1;m1;4\n")
    assert_fails("csv", f, tmp_path, "r.csv", 1, "is the separator right?")
    write(f, "")
    assert_fails("csv", f, tmp_path, "r.csv", None, "empty file")


def test_parquet_round_trip(tmp_path):
    table = pa.table({"uid": ["a", "b", "a"], "iid": [5, 6, 6], "ts": [10, 20, 30],
                      "rating": [1.0, 2.0, 3.5]})
    pq.write_table(table, tmp_path / "t.parquet")
    ds = import_dataset("parquet", tmp_path / "t.parquet", user="uid", item="iid",
                        timestamp="ts")
    assert originals(ds) == [("a", "5", 10), ("b", "6", 20), ("a", "6", 30)]
    assert ds.inter["rating"].tolist() == [1.0, 2.0, 3.5]
    assert ds.meta["timestamp_unit"] == "s"
    assert_fails("parquet", tmp_path / "t.parquet", tmp_path, "t.parquet", None,
                 "missing column 'item'", "available columns: uid, iid, ts, rating",
                 user="uid", item="item")
    # a missing rating is refused (it used to become NaN silently)
    table = table.set_column(3, "rating", pa.array([1.0, 2.0, None]))
    pq.write_table(table, tmp_path / "t.parquet")
    assert_fails("parquet", tmp_path / "t.parquet", tmp_path, "t.parquet", None,
                 "row 3: column 'rating' (rating) is missing", "drop those rows",
                 user="uid", item="iid")


# ---------------------------------------------------------------------- ids, times, ratings
BIG = "12345678901234567890"  # 20 digits: beyond int64


def test_movielens_ids_beyond_int64_are_kept_in_numeric_order(tmp_path):
    src = ml100k(tmp_path, data=f"1\t10\t5\t100\n{BIG}\t20\t3\t200\n2\t{BIG}0\t4\t150\n")
    with pytest.warns(UserWarning, match="appear in u.data but not in"):
        ds = import_dataset("movielens-100k", src)
    assert list(ds.user_ids) == ["1", "2", "3", BIG]  # numeric order, u.user's 3 included
    assert list(ds.item_ids) == ["10", "20", "30", BIG + "0"]
    assert originals(ds)[1] == (BIG, "20", 200)
    assert ds.items["title"].tolist()[:3] == ["Toy Story (1995)", "Café Society (1996)",
                                              "unknown"]
    d = ml1m(tmp_path, plots=False)
    write(d / "ratings.dat", f"1::10::5::978300760\n{BIG}::20::3::978302109\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BIG is not in users.dat
        ds = import_dataset("movielens-1m", d)
    assert list(ds.user_ids) == ["1", "2", BIG]
    assert originals(ds)[1] == (BIG, "20", 978302109)


def test_unisrec_indices_beyond_int64_are_kept(tmp_path):
    d = unisrec_dir(tmp_path)
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    write(d / "Sci.train.inter", head + f"0\t0\t1\n0\t0 1\t2\n0\t0 1 2\t3\n0\t1 2 3\t4\n"
                                        f"{BIG}\t5\t2\n")
    write(d / "Sci.valid.inter", head + f"0\t2 3 4\t5\n{BIG}\t5 2\t6\n")
    write(d / "Sci.test.inter", head + f"0\t3 4 5\t6\n{BIG}\t5 2 6\t2\n")
    write(d / "Sci.user2index", f"AUSERZERO\t0\nAUSERONE\t{BIG}\n")
    ds = import_dataset("unisrec", d, dataset="Sci")
    assert list(ds.user_ids) == ["AUSERZERO", "AUSERONE"]
    assert ds.users["index"].tolist() == ["0", BIG]  # beyond int64: the index as a string
    assert ds.items["index"].dtype == np.int32
    (d / "Sci.user2index").unlink()
    with pytest.warns(UserWarning, match="user2index not found"):
        ds = import_dataset("unisrec", d, dataset="Sci")
    assert list(ds.user_ids) == ["0", BIG]


@pytest.mark.parametrize("part, body, line, words", [
    ("train", "x\t0\t1\n", 2, ("user_id must hold integer indices", "'x'")),
    ("train", "0\t0 B00X\t1\n", 2, ("item_id_list must hold integer indices", "'B00X'")),
    ("valid", "0\t2 3 4\t5\n1\t5 2\tsix\n", 3, ("item_id must hold integer indices", "'six'")),
    ("valid", "0\t2 3 4\t5\n1\t5 2\t-1\n", 3, ("item_id index -1 is negative",
                                              "missing-value sentinel", "drop those rows")),
])
def test_unisrec_non_numeric_or_negative_tokens(tmp_path, part, body, line, words):
    d = unisrec_dir(tmp_path)
    write(d / f"Sci.{part}.inter", "user_id:token\titem_id_list:token_seq\titem_id:token\n" + body)
    assert_fails("unisrec", d, tmp_path, f"Sci.{part}.inter", line, *words, dataset="Sci")


def test_unisrec_index_files_must_hold_non_negative_integers(tmp_path):
    d = unisrec_dir(tmp_path)
    write(d / "Sci.item2index", "B000\t0\nB001\tone\n")
    assert_fails("unisrec", d, tmp_path, "Sci.item2index", 2, "index must be an integer",
                 "'one'", dataset="Sci")
    write(d / "Sci.user2index", "AUSERZERO\t0\nAUSERONE\t-1\n")
    write(d / "Sci.item2index", "".join(f"B00{i}\t{i}\n" for i in range(7)))
    assert_fails("unisrec", d, tmp_path, "Sci.user2index", 2, "index is negative (-1)",
                 "missing-value sentinel", dataset="Sci")


def test_negative_ids_are_refused(tmp_path):
    src = ml100k(tmp_path, data="1\t10\t5\t100\n1\t-1\t3\t200\n")
    assert_fails("movielens-100k", src, tmp_path, "u.data", 2, "item id is negative (-1)",
                 "missing-value sentinel", "drop those rows")
    d = tmp_path / "lg"
    write(d / "train.txt", "0 0 1\n1 2 -1\n")
    write(d / "test.txt", "0 3\n")
    assert_fails("lightgcn", d, tmp_path, "train.txt", 2, "item id is negative (-1)",
                 "missing-value sentinel")
    write(d / "train.txt", "0 0 1\n-1 2\n")
    assert_fails("lightgcn", d, tmp_path, "train.txt", 2, "user id is negative (-1)")
    f = write(tmp_path / "r.csv", "user,item\nu1,i1\n-1,i2\n")
    assert_fails("csv", f, tmp_path, "r.csv", 3, "column 'user' (user) is negative (-1)",
                 "missing-value sentinel")
    pq.write_table(pa.table({"u": ["a", "b"], "i": [1, -2]}), tmp_path / "t.parquet")
    assert_fails("parquet", tmp_path / "t.parquet", tmp_path, "t.parquet", None,
                 "row 2: column 'i' (item) is negative (-2)", "missing-value sentinel",
                 user="u", item="i")
    # ids that merely start with "-" are strings like any other
    write(f, "user,item\nu1,-x\n")
    assert list(import_dataset("csv", f).item_ids) == ["-x"]


def test_lightgcn_id_beyond_int64_is_a_clear_error(tmp_path):
    d = tmp_path / "lg"
    write(d / "train.txt", f"0 0 1\n1 {BIG}\n")
    write(d / "test.txt", "0 3\n")
    assert_fails("lightgcn", d, tmp_path, "train.txt", 2, f"id {BIG} does not fit in a 64-bit")


@pytest.mark.parametrize("ts, unit", [
    (1_700_000_000, "s"), (1_700_000_000_123, "ms"), (1_700_000_000_123_456, "us"),
    (1_700_000_000_123_456_789, "ns"),
])
def test_timestamps_are_read_by_magnitude(tmp_path, ts, unit):
    later = ts + 10 ** {"s": 0, "ms": 3, "us": 6, "ns": 9}[unit]  # one second later
    f = write(tmp_path / "r.csv", f"user,item,timestamp\nu1,i1,{ts}\nu1,i2,{later}\n")
    ds = import_dataset("csv", f)
    assert ds.timestamp.tolist() == [1_700_000_000, 1_700_000_001]
    assert ds.meta["timestamp_unit"] == unit
    pq.write_table(pa.table({"user": ["a", "b"], "item": ["x", "y"],
                             "timestamp": pa.array([ts, later], pa.int64())}),
                   tmp_path / "t.parquet")
    ds = import_dataset("parquet", tmp_path / "t.parquet")
    assert ds.timestamp.tolist() == [1_700_000_000, 1_700_000_001]
    assert ds.meta["timestamp_unit"] == unit
    src = ml100k(tmp_path, data=f"1\t10\t5\t{ts}\n1\t20\t3\t{later}\n")
    ds = import_dataset("movielens-100k", src)
    assert ds.timestamp.tolist() == [1_700_000_000, 1_700_000_001]
    assert ds.meta["timestamp_unit"] == unit
    d = tmp_path / "rb"
    write(d / "x.inter", f"user_id:token\titem_id:token\ttimestamp:float\na\tb\t{ts}\n")
    assert import_dataset("recbole", d).timestamp.tolist() == [1_700_000_000]


def test_timestamps_mixing_units_or_beyond_int64_are_refused(tmp_path):
    f = write(tmp_path / "r.csv", "user,item,ts\nu1,i1,1700000000123456789\nu1,i2,0\n")
    assert_fails("csv", f, tmp_path, "r.csv", 3, "column 'ts' (timestamp) 0 looks like seconds",
                 "1700000000123456789 (line 2) looks like nanoseconds", "mixes units")
    write(f, "user,item,ts\nu1,i1,1\nu1,i2,123456789012345678901\n")
    assert_fails("csv", f, tmp_path, "r.csv", 3, "column 'ts' (timestamp)",
                 "beyond the 64-bit integer range")
    pq.write_table(pa.table({"u": ["a", "b"], "i": ["x", "y"],
                             "t": pa.array([1, 2**64 - 1], pa.uint64())}), tmp_path / "t.parquet")
    assert_fails("parquet", tmp_path / "t.parquet", tmp_path, "t.parquet", None,
                 "row 2: column 't' (timestamp) 18446744073709551615 does not fit",
                 user="u", item="i", timestamp="t")
    src = ml100k(tmp_path, data=f"1\t10\t5\t100\n1\t20\t3\t{BIG}0\n")
    assert_fails("movielens-100k", src, tmp_path, "u.data", 2, f"timestamp {BIG}0 is beyond")


def test_non_finite_ratings_are_refused(tmp_path):
    f = write(tmp_path / "r.csv", "user,item,rating\nu1,i1,4\nu2,i2,inf\n")
    assert_fails("csv", f, tmp_path, "r.csv", 3, "column 'rating' (rating) is inf",
                 "not a finite number")
    write(f, "user,item,rating\nu1,i1,4\nu2,i2,NaN\n")
    assert_fails("csv", f, tmp_path, "r.csv", 3, "column 'rating' (rating) is missing")
    pq.write_table(pa.table({"u": ["a", "b"], "i": [1, 2], "r": [1.0, float("nan")]}),
                   tmp_path / "t.parquet")
    assert_fails("parquet", tmp_path / "t.parquet", tmp_path, "t.parquet", None,
                 "row 2: column 'r' (rating) is nan, not a finite number",
                 user="u", item="i", rating="r")
    src = ml100k(tmp_path, data="1\t10\t5\t100\n1\t20\tnan\t200\n")
    assert_fails("movielens-100k", src, tmp_path, "u.data", 2, "rating is nan")
    d = ml1m(tmp_path, plots=False)
    write(d / "ratings.dat", "1::10::5::978300760\n1::20::-inf::978302109\n")
    assert_fails("movielens-1m", d, tmp_path, "ratings.dat", 2, "rating is -inf")
    d = tmp_path / "rb"
    write(d / "x.inter", "user_id:token\titem_id:token\trating:float\na\tb\t1\na\tc\tinf\n")
    assert_fails("recbole", d, tmp_path, "x.inter", 3, "rating is inf")
    write(d / "x.inter", "user_id:token\titem_id:token\trating:float\na\tb\t1\na\tc\t\n")
    assert_fails("recbole", d, tmp_path, "x.inter", 3, "rating is empty")


def test_duplicate_csv_header_names(tmp_path):
    f = write(tmp_path / "r.csv", "user,item,rating,item\nu1,i1,4,i2\n")
    assert_fails("csv", f, tmp_path, "r.csv", 1, "column name 'item' appears twice",
                 "columns 2 and 4", "rename one")


def test_info_counts_duplicates_from_the_data(tmp_path):
    f = write(tmp_path / "r.csv", "user,item,timestamp\nu1,i1,5\nu1,i1,5\nu1,i1,6\n"
                                  "u2,i1,5\nu1,i1,5\nu2,i2,1\n")
    out = tmp_path / "ds"
    ds = import_dataset("csv", f, out=out)
    info = ds.info()
    assert info["duplicate_interactions"] == 2  # (u1, i1, 5) three times
    assert info["repeated_pairs"] == 3  # (u1, i1) four times
    # a dataset written before duplicates were counted: info computes them from the data
    meta = json.loads((out / "meta.json").read_text())
    del meta["duplicates"]
    (out / "meta.json").write_text(json.dumps(meta))
    info = Dataset.load(out).info()
    assert (info["duplicate_interactions"], info["repeated_pairs"]) == (2, 3)
    assert import_dataset("movielens-100k", ml100k(tmp_path)).info()["duplicate_interactions"] == 0


# ---------------------------------------------------------------------- real files (smoke)
def _real(path: str) -> Path:
    return SHARED / path


@pytest.mark.skipif(not _real("movielens-100k/raw").is_dir(), reason="real data not present")
def test_real_movielens_100k():
    raw = import_dataset("movielens-100k", _real("movielens-100k/raw"))
    assert (raw.n_users, raw.n_items, raw.n_interactions) == (943, 1682, 100_000)
    rb = import_dataset("recbole", _real("movielens-100k/recbole"))
    assert (rb.n_users, rb.n_items, rb.n_interactions) == (943, 1682, 100_000)
    assert originals(rb) == originals(raw)


@pytest.mark.skipif(not _real("gowalla").is_dir(), reason="real data not present")
def test_real_gowalla():
    ds = import_dataset("lightgcn", _real("gowalla"))
    assert (ds.n_users, ds.n_items) == (29_858, 40_981)
    assert ds.info()["given_split"] == {"train": 810_128, "valid": 0, "test": 217_242}


@pytest.mark.skipif(not _real("amazon-scientific").is_dir(), reason="real data not present")
def test_real_amazon_scientific():
    ds = import_dataset("unisrec", _real("amazon-scientific"))
    assert (ds.n_users, ds.n_items) == (8_442, 4_385)
    assert ds.info()["given_split"]["test"] == 8_442


@pytest.mark.skipif(not _real("movielens-1m/raw").is_dir(), reason="real data not present")
def test_real_movielens_1m_items_and_plots():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = import_dataset("movielens-1m", _real("movielens-1m/raw"),
                            plots=_real("movielens-1m/melu/movies_extrainfos.dat.gz"))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (6_040, 3_883, 0)
    assert ds.meta["plots"]["matched"] == 3_881
