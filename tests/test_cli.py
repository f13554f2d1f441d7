"""End to end through the command line: world -> train -> evaluate -> recommend."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from streamrec.cli import app

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("w") / "tiny"
    invoke("world", "--preset", "tiny", "--out", str(out), "--seed", "1")
    return out


def test_data_info_json(tiny_world):
    info = json.loads(invoke("data", "info", str(tiny_world), "--json"))
    assert info["users"] > 0 and info["items"] > 0 and info["interactions"] > 0
    assert info["default_split"]["method"] == "loo"
    assert info["default_split"]["n_test"] > 0


@pytest.mark.parametrize("model", ["pop", "mf"])
def test_train_evaluate_recommend(tiny_world, tmp_path, model):
    run = tmp_path / model
    invoke(
        "train",
        model,
        "--data",
        str(tiny_world),
        "--out",
        str(run),
        "--quiet",
        "--set",
        "epochs=2",
        "--set",
        "batch_size=256",
    )
    for f in (
        "config.json",
        "split.json",
        "split.npz",
        "model.safetensors",
        "metrics.jsonl",
        "results.json",
    ):
        assert (run / f).is_file(), f
    res = json.loads(invoke("evaluate", str(run), "--split", "test", "--k", "5,20", "--json"))
    assert set(res["metrics"]) >= {
        "recall@20",
        "ndcg@20",
        "hit@5",
        "mrr@5",
        "precision@20",
        "coverage@20",
    }
    assert res["protocol"]["candidates"].startswith("full ranking")
    assert res["protocol"]["split"]["method"] == "loo"
    # the same numbers as the ones written at the end of training
    saved = json.loads((run / "results.json").read_text())["test"]["metrics"]
    assert res["metrics"]["ndcg@20"] == pytest.approx(saved["ndcg@20"], abs=1e-6)
    cfg = json.loads((run / "config.json").read_text())
    user = "0"
    from streamrec.data.dataset import load_dataset

    ds = load_dataset(cfg["data"]["path"])
    user = str(ds.user_ids[0])
    recs = json.loads(invoke("recommend", str(run), "--user", user, "-k", "7", "--json"))
    assert len(recs["items"]) == 7
    ids = [r["item"] for r in recs["items"]]
    assert len(set(ids)) == 7 and all(i in set(ds.item_ids) for i in ids)


def test_unknown_user_and_model(tiny_world, tmp_path):
    r = runner.invoke(
        app, ["train", "nope", "--data", str(tiny_world), "--out", str(tmp_path / "x")]
    )
    assert r.exit_code == 1 and "unknown model" in r.output
    r = runner.invoke(
        app,
        [
            "train",
            "mf",
            "--data",
            str(tiny_world),
            "--out",
            str(tmp_path / "y"),
            "--set",
            "nonsense=3",
        ],
    )
    assert r.exit_code == 1 and "unknown option" in r.output


def test_help_does_not_import_heavy_modules():
    """``streamrec --help`` must stay light: no torch, PyG, FAISS or sentence-transformers."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from streamrec.cli import app\n"
        "from typer.testing import CliRunner\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0\n"
        "heavy = [m for m in ('torch', 'torch_geometric', 'faiss', 'sentence_transformers', "
        "'sklearn', 'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == ""
