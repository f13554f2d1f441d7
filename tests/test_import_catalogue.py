"""One's own catalogue: ``csv`` / ``parquet`` interactions with item and user tables beside
them (``items=PATH``, ``users=PATH``), through ``import_dataset`` and through the CLI."""

from __future__ import annotations

import gzip
import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.data.dataset import Dataset
from streamrec.data.importers import DataFormatError, import_dataset

runner = CliRunner()

INTER = ("userId,movieId,rating,timestamp\n"
         "u1,10,4,100\nu1,20,3,200\nu2,10,5,150\nu3,30,2,300\n")
ITEMS = ("movieId,title,description,genre,available,price,studio\n"
         "10,Toy Story,A toy cowboy.,Animation|Comedy,true,9.5,Pixar\n"
         "20,Heat,,Action,false,7,WB\n"
         "40,New One,Brand new.,Drama,yes,12,A24\n")


def write(path: Path, text: str, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def users_parquet(path: Path) -> Path:
    pq.write_table(pa.table({"id": ["u1", "u2", "u9"], "age": [24, 53, 31],
                             "tier": ["free", "paid", "free"], "score": [0.5, None, 1.5],
                             "email": ["a@x", "b@x", "c@x"]}), path)
    return path


def catalogue(tmp_path: Path, gz: bool = False) -> tuple[Path, Path, Path]:
    return (write(tmp_path / "inter.csv", INTER), write(tmp_path / "items.csv", ITEMS, gz=gz),
            users_parquet(tmp_path / "users.parquet"))


def check_catalogue(ds: Dataset) -> None:
    # items only in the table (40) and users only in the table (u9) join the catalogue
    assert list(ds.item_ids) == ["10", "20", "30", "40"]
    assert list(ds.user_ids) == ["u1", "u2", "u3", "u9"]
    assert ds.n_interactions == 4 and ds.item_counts().tolist() == [2, 1, 1, 0]
    items = ds.items
    assert items["title"].tolist() == ["Toy Story", "Heat", "", "New One"]
    # text: the text column, else "Title. Genres." (as MovieLens / RecBole), else empty
    assert items["text"].tolist() == ["A toy cowboy.", "Heat. Action.", "", "Brand new."]
    names = ds.meta["categories"]
    assert names == ["Action", "Animation", "Drama", ""]  # "": no category (item 30)
    assert [names[c] for c in items["category"]] == ["Animation", "Action", "", "Drama"]
    assert items["category"].dtype == np.int16
    assert items["genres"].tolist() == ["Animation|Comedy", "Action", "", "Drama"]
    assert items["available"].dtype == bool
    assert items["available"].tolist() == [True, False, False, True]  # 30: not in the table
    assert items["price"].dtype == np.float32
    np.testing.assert_array_equal(items["price"], [9.5, 7.0, np.nan, 12.0])
    assert "studio" not in items  # a string column that is not a role: skipped, and said so
    assert ds.meta["catalogue"]["items"]["columns_skipped"] == ["studio"]
    assert ds.meta["catalogue"]["items"]["only_in_table"] == 1
    assert ds.meta["catalogue"]["items"]["not_in_table"] == 1
    users = ds.users
    assert users["age"].tolist() == [24, 53, -1, 31]  # u3 is not in the table: -1
    assert [ds.meta["tier_values"][t] for t in users["tier"][[0, 1, 3]]] == [
        "free", "paid", "free"]
    assert users["tier"][2] == -1
    np.testing.assert_array_equal(users["score"], [0.5, np.nan, np.nan, 1.5])
    assert "email" not in users  # nearly unique strings are not features
    info = ds.info()
    assert info["item_text"] and info["user_features"] == ["age", "score", "tier"]


def test_item_and_user_tables(tmp_path):
    inter, items, users = catalogue(tmp_path, gz=True)
    with pytest.warns(UserWarning, match="appear in inter.csv but not in"):
        ds = import_dataset("csv", inter, items=items, users=users, out=tmp_path / "ds")
    check_catalogue(ds)
    back = Dataset.load(tmp_path / "ds")
    check_catalogue(back)
    assert back.meta["import_options"]["items"] == str(items)


def test_parquet_interactions_with_a_csv_item_table(tmp_path):
    pq.write_table(pa.table({"user": ["a", "b"], "item": [1, 2], "ts": [5, 6]}),
                   tmp_path / "t.parquet")
    write(tmp_path / "items.tsv", "item_id\tname\tcategory\n1\tOne\t3\n2\tTwo\t0\n3\tThree\t3\n")
    ds = import_dataset("parquet", tmp_path / "t.parquet", items=tmp_path / "items.tsv",
                        timestamp="ts")
    assert list(ds.item_ids) == ["1", "2", "3"] and ds.item_counts().tolist() == [1, 1, 0]
    assert ds.items["title"].tolist() == ["One", "Two", "Three"]
    # integer categories keep their value; names are the numbers
    assert ds.items["category"].tolist() == [3, 0, 3]
    assert ds.meta["categories"] == ["0", "1", "2", "3"]


def test_explicit_id_columns_and_roles(tmp_path):
    inter = write(tmp_path / "inter.csv", "u,i\nx,1\ny,2\n")
    items = write(tmp_path / "items.csv", "code,label,kind,synopsis\n1,A,k1,about a\n2,B,k2,\n")
    users = write(tmp_path / "users.csv", "who,level\nx,3\ny,1\n")
    ds = import_dataset("csv", inter, user="u", item="i", items=items, items_id="code",
                        items_columns={"title": "label", "category": "kind"}, users=users,
                        users_id="who")
    assert ds.items["title"].tolist() == ["A", "B"]
    assert ds.items["text"].tolist() == ["about a", "B. k2."]
    assert [ds.meta["categories"][c] for c in ds.items["category"]] == ["k1", "k2"]
    assert ds.users["level"].tolist() == [3, 1] and ds.users["level"].dtype == np.int8
    with pytest.raises(ValueError, match="items_id needs a table"):
        import_dataset("csv", inter, user="u", item="i", items_id="code")


def assert_side_fails(tmp_path, items_text, line, *words, **options):
    inter = write(tmp_path / "inter.csv", INTER)
    items = write(tmp_path / "items.csv", items_text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataFormatError) as info:
            import_dataset("csv", inter, items=items, out=tmp_path / "out", **options)
    err = info.value
    assert Path(err.file).name == "items.csv" and err.line == line, str(err)
    for word in words:
        assert word in str(err), str(err)
    assert not (tmp_path / "out").exists()


def test_malformed_item_tables(tmp_path):
    assert_side_fails(tmp_path, "code,title\n10,A\n", 1, "no item id column",
                      "pass items_id=COLUMN", "available columns: code, title")
    assert_side_fails(tmp_path, "movieId,title\n10,A\n", 1, "missing column 'nope'",
                      items_id="nope")
    assert_side_fails(tmp_path, "movieId,title,title\n10,A,B\n", 1,
                      "column name 'title' appears twice")
    assert_side_fails(tmp_path, "movieId,title\n10,A\n20,B\n10,C\n", 4,
                      "item id '10' appears twice (line 2 and line 4)", "one row per item")
    assert_side_fails(tmp_path, "movieId,title\n10,A\n-1,B\n", 3,
                      "column 'movieId' (item id) is negative (-1)", "missing-value sentinel")
    assert_side_fails(tmp_path, "movieId,title\n10,A\n,B\n", 3,
                      "column 'movieId' (item id) is missing")
    assert_side_fails(tmp_path, "movieId,available\n10,true\n20,maybe\n", 3,
                      "column 'available' (available) must be true or false", "'maybe'")
    assert_side_fails(tmp_path, "movieId,title\n10,A\n20\n", 3, "expected 2 fields")
    inter = write(tmp_path / "inter.csv", INTER)
    write(tmp_path / "items.json", "{}")
    with pytest.raises(DataFormatError, match="unknown item table format"):
        import_dataset("csv", inter, items=tmp_path / "items.json")
    with pytest.raises(FileNotFoundError, match="file not found"):
        import_dataset("csv", inter, items=tmp_path / "nope.csv")


# ---------------------------------------------------------------------- command line
def test_cli_import_with_catalogue(tmp_path):
    inter, items, users = catalogue(tmp_path)
    out = tmp_path / "D"
    with pytest.warns(UserWarning, match="appear in inter.csv"):
        r = runner.invoke(app, ["data", "import", "csv", str(inter), "--out", str(out),
                                "--option", f"items={items}", "--option", f"users={users}"])
    assert r.exit_code == 0, r.output
    assert "imported 4 users, 4 items, 4 interactions" in " ".join(r.output.split())
    check_catalogue(Dataset.load(out))
    r = runner.invoke(app, ["data", "info", str(out), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["items"] == 4 and info["duplicate_interactions"] == 0


def test_cli_import_errors_are_one_line(tmp_path):
    inter = write(tmp_path / "inter.csv", "user,item,rating\nu1,i1,4\nu2,i2,inf\n")
    r = runner.invoke(app, ["data", "import", "csv", str(inter), "--out", str(tmp_path / "E")])
    assert r.exit_code == 1
    msg = " ".join(r.output.split())
    assert msg.startswith("error: ") and "Traceback" not in r.output
    assert "inter.csv:3: column 'rating' (rating) is inf, not a finite number" in msg
    _, items, _ = catalogue(tmp_path)
    write(items, "movieId,title\n10,A\n10,B\n")
    r = runner.invoke(app, ["data", "import", "csv", str(tmp_path / "inter.csv"), "--out",
                            str(tmp_path / "F"), "--option", f"items={items}"])
    assert r.exit_code == 1 and "items.csv:3: item id '10' appears twice" in " ".join(
        r.output.split())
    assert not (tmp_path / "E").exists() and not (tmp_path / "F").exists()
