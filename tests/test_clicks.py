"""Click prediction: split, standardisation, the three models, evaluation against the oracle,
diagnostics, the LR range test and click data built from ratings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from streamrec.data.clicks import (
    Standardizer,
    build_click_dataset,
    click_arrays,
    click_split,
    impressions_from_ratings,
)
from streamrec.data.dataset import Dataset, load_dataset
from streamrec.data.world import generate_world
from streamrec.eval.clicks import evaluate_clicks
from streamrec.run import load_run, train_run
from streamrec.train.config import build_configs

QUIET = Console(quiet=True)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_world("tiny", tmp_path_factory.mktemp("world") / "tiny", seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> Dataset:
    return load_dataset(tiny_dir)


@pytest.fixture(scope="module")
def runs(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The three click models trained briefly on the tiny world (shared by several tests)."""
    root = tmp_path_factory.mktemp("runs")
    sets = {
        "logreg": ["epochs=8"],
        "mlp": ["epochs=6", "hidden=[64, 32]", "activation=relu"],  # diagnostics: ReLUs
        "mlp-numpy": ["fit_epochs=6", "hidden=[64, 32]", "fit_progress=false"],
    }
    torch.set_num_threads(2)
    return {
        name: train_run(name, tiny_dir, root / name, overrides=s, progress=False, console=QUIET)
        for name, s in sets.items()
    }


# ------------------------------------------------------------------------------------- split
def test_click_split_is_deterministic_and_covers_all(tiny: Dataset) -> None:
    n = len(tiny.impressions["clicked"])
    a = click_split(tiny, "random", seed=3)
    assert a.dtype == np.int8 and a.shape == (n,)
    np.testing.assert_array_equal(a, click_split(tiny, "random", seed=3))
    assert not np.array_equal(a, click_split(tiny, "random", seed=4))
    counts = np.bincount(a, minlength=3)
    assert counts.tolist() == [round(0.8 * n), round(0.1 * n), n - round(0.8 * n) - round(0.1 * n)]

    t = click_split(tiny, "temporal", ratios=(0.6, 0.2, 0.2))
    np.testing.assert_array_equal(t, click_split(tiny, "temporal", ratios=(0.6, 0.2, 0.2)))
    ts = tiny.impressions["timestamp"]
    assert ts[t == 0].max() <= ts[t == 1].min() and ts[t == 1].max() <= ts[t == 2].min()
    with pytest.raises(ValueError, match="ratios"):
        click_split(tiny, "random", ratios=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="unknown click split"):
        click_split(tiny, "by-user")


def test_standardisation_uses_training_rows_only(tiny_dir: Path, tiny: Dataset) -> None:
    from streamrec.models.click_logreg import LogReg

    model_cfg, _, _ = build_configs("logreg")
    model = LogReg(model_cfg, tiny)
    train_x = click_arrays(tiny, "train", click_split(tiny, "random", seed=0)).features
    np.testing.assert_allclose(model.feature_mean.numpy(), train_x.mean(0, dtype=np.float64),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.feature_std.numpy(), train_x.std(0, dtype=np.float64),
                               rtol=1e-5, atol=1e-6)
    all_x = tiny.impressions["features"]
    assert not np.allclose(model.feature_mean.numpy(), all_x.mean(0), rtol=1e-5, atol=1e-6)
    z = Standardizer.fit(train_x).transform(train_x)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)


# ------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", ["logreg", "mlp", "mlp-numpy"])
def test_models_beat_chance_report_oracle_and_round_trip(runs: dict, name: str) -> None:
    run = runs[name]
    test = run.results["test"]
    m = test["metrics"]
    assert test["evaluation"] == "click prediction"
    assert m["auc"] > 0.6, m
    assert 0 < m["logloss"] < 0.69
    assert m["oracle_auc"] > m["auc"] - 0.02  # the oracle is the ceiling (up to noise)
    assert m["auc_gap"] == pytest.approx(m["oracle_auc"] - m["auc"])
    p = test["protocol"]
    assert p["stage"] == "test" and p["split"]["of"] == "impressions"
    assert p["n_impressions"] == 500 and 0 < p["click_rate"] < 1
    assert len(p["features"]) == 20
    from streamrec.models.base import CapabilityError
    from streamrec.serve import recommend_user

    with pytest.raises(CapabilityError, match="cannot rank the catalogue"):
        recommend_user(run, run.dataset.user_ids[0], k=5)
    loaded = load_run(run.path)
    again = loaded.evaluate("test")["metrics"]
    assert again["auc"] == pytest.approx(m["auc"], abs=1e-9)
    assert again["logloss"] == pytest.approx(m["logloss"], rel=1e-6)


def test_diagnostics_file_has_per_layer_entries(runs: dict) -> None:
    from streamrec.train.diagnostics import read_diagnostics

    run_dir = runs["mlp"].path
    recs = read_diagnostics(run_dir)
    assert [r["epoch"] for r in recs] == list(range(6))
    layers = {"net.0", "net.2", "net.4"}  # Linear 20->64, 64->32, 32->1
    for r in recs:
        assert set(r["grad_norm"]) == layers and set(r["weight_norm"]) == layers
        assert all(v > 0 for v in r["grad_norm"].values())
        acts = r["activations"]
        assert set(acts) == {"net.1", "net.3"}  # the two ReLUs
        assert all(0.0 <= a["dead_frac"] <= 1.0 and a["kind"] == "relu" for a in acts.values())
    assert (run_dir / "diagnostics.png").stat().st_size > 0


def test_diagnostics_saturation_for_tanh(tiny: Dataset) -> None:
    from streamrec.models.click_mlp import MLP
    from streamrec.train import TrainConfig, Trainer
    from streamrec.train.diagnostics import Diagnostics

    model_cfg, _, _ = build_configs("mlp", overrides=["hidden=[16]", "activation=tanh",
                                                      "norm=layernorm", "dropout=0.1"])
    model = MLP(model_cfg, tiny)
    diag = Diagnostics(None)
    Trainer(model, tiny, TrainConfig(epochs=1, progress=False), callbacks=[diag],
            console=QUIET).fit()
    (act,) = diag.records[0]["activations"].values()
    assert act["kind"] == "tanh" and 0.0 <= act["saturated_frac"] <= 1.0
    assert act["dead_frac"] is None
    assert set(diag.records[0]["grad_norm"]) == {"net.0", "net.1", "net.4"}  # Linear, LN, out


def test_numpy_and_torch_mlp_agree_from_the_same_init(tiny: Dataset) -> None:
    """Same weights, same batches (both shuffle with default_rng([seed, epoch])), same Adam:
    the per-epoch validation AUCs of the two implementations agree closely."""
    from streamrec.models.click_mlp import MLP
    from streamrec.models.click_mlp_numpy import NumpyMLP
    from streamrec.nn_numpy import to_torch
    from streamrec.train import TrainConfig, Trainer

    torch.set_num_threads(2)
    epochs = 3
    np_cfg, _, _ = build_configs("mlp-numpy", overrides=[
        "hidden=[32, 16]", f"fit_epochs={epochs}", "fit_batch_size=256", "fit_progress=false",
        "activation=relu", "init=he_normal", "fit_lr=1e-3", "fit_schedule=constant",
        "fit_warmup_epochs=0"])
    np_model = NumpyMLP(np_cfg, tiny)
    t_cfg, _, _ = build_configs("mlp", overrides=["hidden=[32, 16]", "activation=relu",
                                                  "init=he_normal"])
    t_model = MLP(t_cfg, tiny)
    t_model.net.load_state_dict(to_torch(np_model.net).state_dict())
    np_model.fit(tiny, lambda m: evaluate_clicks(m, tiny, "valid")["metrics"])

    trainer = Trainer(
        t_model, tiny, TrainConfig(epochs=epochs, batch_size=256, seed=0, patience=0,
                                   valid_metric="auc", progress=False),
        validate=lambda m: evaluate_clicks(m, tiny, "valid")["metrics"], console=QUIET,
    )
    result = trainer.fit()
    np_aucs = [h["valid_auc"] for h in np_model.history]
    t_aucs = [h["valid"]["auc"] for h in result.history]
    np.testing.assert_allclose(np_aucs, t_aucs, atol=2e-3)
    a = evaluate_clicks(np_model, tiny, "test")["metrics"]["auc"]
    b = evaluate_clicks(t_model, tiny, "test")["metrics"]["auc"]
    assert abs(a - b) < 3e-3


def test_lr_find_on_tiny_data(tiny_dir: Path, tmp_path: Path) -> None:
    from streamrec.train.lr_find import lr_find

    res = lr_find("logreg", tiny_dir, tmp_path / "lr.png", overrides=["batch_size=256"],
                  num_steps=60, start_lr=1e-5, end_lr=10.0)
    assert (tmp_path / "lr.png").stat().st_size > 0
    assert len(res.lrs) == len(res.losses) == len(res.smoothed) >= 20
    assert np.all(np.diff(res.lrs) > 0) and res.lrs[0] == pytest.approx(1e-5)
    assert res.suggestion is None or 1e-5 <= res.suggestion <= 10.0
    assert 1e-5 <= res.lr_at_min <= 10.0
    with pytest.raises(ValueError, match="not trained by gradient descent"):
        lr_find("mlp-numpy", tiny_dir, None, overrides=["fit_progress=false"], num_steps=5)


# ------------------------------------------------------------------------------------- ratings
def _write_ml100k(d: Path) -> None:
    """A handwritten MovieLens-100k directory: 4 users, 3 movies, 12 ratings."""
    d.mkdir()
    rows = [  # user, item, rating, timestamp
        (1, 1, 5, 100), (1, 2, 3, 200), (1, 3, 4, 300),
        (2, 1, 4, 110), (2, 3, 2, 210), (2, 2, 5, 310),
        (3, 2, 1, 120), (3, 1, 5, 220), (3, 3, 4, 320),
        (4, 3, 5, 130), (4, 1, 2, 230), (4, 2, 4, 330),
    ]
    (d / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows))
    flags = {1: [0] * 19, 2: [0] * 19, 3: [0] * 19}
    flags[1][1] = flags[1][5] = 1  # Action, Comedy
    flags[2][5] = 1  # Comedy
    flags[3][8] = 1  # Drama
    dates = {1: "01-Jan-1995", 2: "01-Jan-1990", 3: ""}
    (d / "u.item").write_text("".join(
        f"{i}|Movie {i} (1995)|{dates[i]}||http://x|" + "|".join(map(str, flags[i])) + "\n"
        for i in (1, 2, 3)))
    (d / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n"
                              "3|23|M|writer|32067\n4|24|M|technician|43537\n")


def test_click_data_from_ratings_without_leakage(tmp_path: Path) -> None:
    src = tmp_path / "ml"
    _write_ml100k(src)
    out = build_click_dataset(src, tmp_path / "clicks", threshold=4.0, split="temporal")
    ds = load_dataset(out)
    imp = ds.impressions
    names = ds.meta["impression_features"]
    assert imp["features"].shape == (12, len(names))
    assert len(ds.meta["impression_feature_groups"]) == len(names)
    np.testing.assert_array_equal(imp["clicked"], (ds.inter["rating"] >= 4).astype(np.int8))
    # temporal split of 12 rows: round(9.6) / round(1.2) / the rest, in time order
    assert np.bincount(imp["split"], minlength=3).tolist() == [10, 1, 1]
    f = dict(zip(names, imp["features"].T))
    for col in ("user_age", "user_gender_F", "user_occupation_technician", "item_genre_Comedy",
                "item_age_years", "user_prior_like_rate", "ui_genre_share"):
        assert col in f
    # user 1 (internal 0) rated at t=100, 200, 300: earlier ratings 0, 1, 2
    u1 = np.flatnonzero(ds.user == ds.user_index("1"))
    u1 = u1[np.argsort(ds.timestamp[u1])]
    np.testing.assert_allclose(f["user_log_prior_ratings"][u1], np.log1p([0, 1, 2]), rtol=1e-6)
    base = ds.meta["clicks"]["train_click_rate"]
    a = ds.meta["clicks"]["prior_strength"]
    np.testing.assert_allclose(f["user_prior_like_rate"][u1],
                               [base, (1 + a * base) / (1 + a), (1 + a * base) / (2 + a)],
                               rtol=1e-5)
    # genre share of user 1's 2nd rating (movie 2: Comedy) = share of earlier Comedy = 1/1
    assert f["ui_genre_share"][u1[1]] == pytest.approx(1.0)

    # no leakage: changing held-out labels changes no feature at all
    raw = load_dataset(out)
    held_out = imp["split"] != 0
    flipped = Dataset(name="x", user_ids=raw.user_ids, item_ids=raw.item_ids,
                      inter={**raw.inter, "rating": np.where(held_out, 6 - raw.inter["rating"],
                                                             raw.inter["rating"])},
                      items=raw.items, users=raw.users, meta=raw.meta)
    again = impressions_from_ratings(flipped, threshold=4.0, split="temporal")
    np.testing.assert_array_equal(again.impressions["split"], imp["split"])
    np.testing.assert_allclose(again.impressions["features"], imp["features"])
    assert not np.array_equal(again.impressions["clicked"], imp["clicked"])
    # the click models split such data with its own column
    assert np.array_equal(click_split(ds, "auto"), imp["split"])
    assert json.loads((out / "meta.json").read_text())["clicks"]["threshold"] == 4.0


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid"])
def test_mlp_activation_options_build_the_named_layers(activation: str) -> None:
    from streamrec.models.click_mlp import ACTIVATIONS, MLPConfig, build_net

    net = build_net(5, MLPConfig(hidden=[8, 4], activation=activation))
    acts = [m for m in net if isinstance(m, ACTIVATIONS[activation])]
    assert len(acts) == 2
    assert net(torch.randn(3, 5)).shape[0] == 3
