"""The multi-stage system: sources -> merge -> filters -> ranker -> re-ranker, on the tiny world."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.data.features import FEATURE_NAMES, Events, Profiles, click_features
from streamrec.run import train_run
from streamrec.serve.rerank import RerankOptions, rerank
from streamrec.serve.state import HistoryIndex, UserState
from streamrec.serve.system import (
    SystemConfigError,
    build_system,
    load_system,
    ranker_training_data,
    system_recommendations,
)

RUNS = {
    "tr": ("transformer", ["epochs=3", "d_model=16", "n_heads=2"]),
    "lg": ("lightgcn", ["epochs=2", "dim=16"]),
    "tt": ("two-tower", ["epochs=1", "text_encoder=none", "dim=16", "hidden=32", "id_dim=8"]),
    "cnn": ("cnn-text", ["epochs=1", "dim=16", "n_filters=8", "token_dim=16"]),
    "pop": ("pop", []),
}


@pytest.fixture(scope="module")
def runs(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sysruns")
    torch.manual_seed(0)
    for name, (model, sets) in RUNS.items():
        train_run(model, tiny_dir, root / name, overrides=sets, progress=False)
    return root


def config(root: Path, **over) -> dict:
    cfg = {
        "k": 10,
        "sources": [
            {"name": "session", "run": str(root / "tr"), "quota": 40},
            {"name": "graph", "run": str(root / "lg"), "quota": 40},
            {"name": "towers", "run": str(root / "tt"), "quota": 40},
            {"name": "content", "kind": "neighbours", "run": str(root / "cnn"), "quota": 20},
            {"name": "popular", "kind": "popular", "quota": 20},
        ],
        "ranker": {"kind": "learned", "model": "logreg"},
        "reranker": {"diversity": 0.1, "category_cap": 3, "freshness": 0.05},
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def system(runs: Path, tmp_path_factory: pytest.TempPathFactory):
    return build_system(config(runs), tmp_path_factory.mktemp("sys") / "system")


def test_build_load_round_trip_and_evaluate(system):
    loaded = load_system(system.path)
    users = torch.arange(12)
    history = system.split.history(system.dataset, "test")
    assert torch.equal(loaded.model.score(users, history), system.model.score(users, history))
    ev = loaded.evaluate("test")
    assert ev["evaluation"] == "full ranking"
    assert set(ev["protocol"]) >= {"dataset", "split", "stage", "candidates", "ks"}
    assert ev["metrics"]["recall@20"] > 0
    # the validation stage is judged on the users the ranker did not learn from
    valid = loaded.evaluate("valid")
    assert valid["protocol"]["user_subset"] == "given users"
    assert valid["protocol"]["users_evaluated"] <= len(loaded.tune_users)


def test_every_served_item_keeps_its_sources_and_stage_positions(system):
    history = system.split.history(system.dataset, "test")
    state = HistoryIndex(history).state(3)
    served = system.model.serve([state], history, explain=True)[0]
    assert len(np.unique(served.items)) == len(served.items)  # de-duplicated
    for j in range(10):
        info = served.info(j)
        assert info["sources"] and info["positions"]["final"] == j + 1
        assert {"merged", "ranked"} <= set(info["positions"])
        assert all(info["positions"][f"source:{s}"] >= 1 for s in info["sources"])
        assert len(info["ranker"]) == 3
    # the merged order is reciprocal-rank fusion of the source ranks
    items, ranks, _, rrf, _ = system.model.candidates([state], history)[0]
    want = np.where(ranks > 0, 1.0 / (60 + ranks), 0.0).sum(1)
    assert np.allclose(rrf, want) and (np.diff(rrf) <= 1e-12).all()


def test_consumed_blocked_and_unavailable_items_are_never_served(runs, tmp_path, tiny_dir):
    from streamrec.data.dataset import load_dataset

    ds = load_dataset(tiny_dir)
    user, blocked = ds.user_ids[4], [ds.item_ids[0], ds.item_ids[1]]
    sysrun = build_system(config(runs, filters={"blocks": {user: blocked}},
                                 ranker={"kind": "none"}), tmp_path / "s")
    history = sysrun.split.history(sysrun.dataset, "test")
    index = HistoryIndex(history, sysrun.model.blocks)
    for u in range(20):
        state = index.state(u)
        served = sysrun.model.serve([state], history)[0]
        assert not np.isin(served.items, state.items).any()
    assert not np.isin(sysrun.model.serve([index.state(4)], history)[0].items, [0, 1]).any()
    # an availability column takes items out
    sysrun.model.unavailable = np.array([5, 6, 7])
    for u in range(10):
        assert not np.isin(sysrun.model.serve([index.state(u)], history)[0].items,
                           [5, 6, 7]).any()


def test_offline_and_online_features_are_identical(system):
    """The ranker's training rows (built offline for many users at once) hold exactly the
    features the system computes for one user at request time."""
    ds, split = system.dataset, system.split
    users = np.array([1, 2, 5, 8])
    data = ranker_training_data(system.model, ds, split, users, negatives=5, seed=0)
    train = split.train(ds)
    index = HistoryIndex(train)
    imp = data.impressions
    for u in users:
        state = index.state(int(u))
        t = system.model.default_times([state], int(train.timestamp.max()) + 1)
        cand = system.model.candidates([state], train)[0]
        online = system.model.features([state], [cand], t)[0]
        rows = np.flatnonzero(imp["user"] == u)
        pos = {int(i): j for j, i in enumerate(cand.items)}
        scored = [j for j, f in enumerate(system.model.feature_names)
                  if f.startswith("source_score:")]
        exact = [j for j in range(online.shape[1]) if j not in scored]
        for r in rows:
            got, want = imp["features"][r], online[pos[int(imp["item"][r])]]
            np.testing.assert_array_equal(got[exact], want[exact])
            # a source's scores come from its model, whose float rounding depends on the batch
            np.testing.assert_allclose(got[scored], want[scored], rtol=1e-5, atol=1e-6)
    # and the click features are the one function's on the full training log
    n_click = len(FEATURE_NAMES)
    cat, prof = system.model.catalogue, Profiles.from_dataset(ds)
    full = Events(train.user, train.item, train.timestamp, train.inter.get("session"), cat)
    offline = click_features(full, cat, prof, imp["user"], imp["item"], imp["timestamp"])
    np.testing.assert_allclose(imp["features"][:, :n_click], offline, rtol=1e-6, atol=1e-6)


def test_ranker_contributions_of_a_linear_ranker_are_exact(system):
    """For logistic regression, setting feature j to its mean changes the logit by
    w_j * (x_j - mean_j) / std_j: the explanation's contribution."""
    m = system.model.ranker.model
    w = m.net.weight.detach().numpy()[0]
    std = m.feature_std.numpy()
    history = system.split.history(system.dataset, "test")
    state = HistoryIndex(history).state(7)
    served = system.model.serve([state], history, explain=True)[0]
    means = system.model.feature_means
    names = system.model.feature_names
    for j in range(3):
        for c in served.info(j)["ranker"]:
            f = names.index(c["feature"])
            want = w[f] * (c["value"] - means[f]) / std[f]
            assert c["contribution"] == pytest.approx(want, rel=1e-3, abs=1e-4)


def test_a_new_user_is_served_from_their_events(system):
    history = system.split.history(system.dataset, "test")
    nobody = UserState(-1)
    served = system.model.serve([nobody], history)[0]
    assert len(served.items) > 0
    assert {s for j in range(5) for s in served.info(j)["sources"]} == {"popular"}
    fresh = nobody.with_events(np.array([3, 4]), np.array([10**9, 10**9 + 60]))
    served = system.model.serve([fresh], history)[0]
    used = {s for j in range(len(served.items)) for s in served.info(j)["sources"]}
    assert {"session", "content"} <= used and not {"graph", "towers"} & used
    assert not np.isin(served.items, [3, 4]).any()


def test_system_recommendations_and_cli(system, runs, tmp_path):
    user = system.dataset.user_ids[2]
    rows = system_recommendations(system, user, k=5, explain=True)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5] and all(r["why"] for r in rows)
    runner = CliRunner()
    res = runner.invoke(app, ["recommend", str(system.path), "--user", user, "-k", "4",
                              "--explain", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["items"]) == 4
    res = runner.invoke(app, ["evaluate", str(system.path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["protocol"]["model"] == "system"
    cfg = tmp_path / "sys.toml"
    cfg.write_text(f'k = 5\n[[sources]]\nname = "graph"\nrun = "{runs / "lg"}"\nquota = 30\n'
                   '[ranker]\nkind = "none"\n')
    res = runner.invoke(app, ["system", "build", str(cfg), "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["recommend", str(runs / "lg"), "--user", user, "--explain"])
    assert res.exit_code == 1 and "needs a system directory" in res.output


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"colour": "blue"}, "unknown key"),
        ({"sources": []}, "at least one"),
        ({"ranker": {"kind": "magic"}}, "ranker: kind"),
        ({"reranker": {"diversity": 2.0}}, "diversity"),
        ({"sources": [{"name": "x", "run": "/nonexistent"}]}, "source 'x'"),
        ({"sources": [{"name": "p", "kind": "popular", "quota": 0}]}, "quota"),
    ],
)
def test_bad_configs_are_one_line_errors(runs, tmp_path, change, words):
    with pytest.raises((SystemConfigError, ValueError)) as err:
        build_system(config(runs, **change), tmp_path / "s")
    assert words in str(err.value) and "\n" not in str(err.value)


def test_runs_of_different_splits_are_refused(runs, tmp_path, tiny_dir):
    train_run("pop", tiny_dir, tmp_path / "p", overrides=["split.method=random"],
              progress=False)
    cfg = config(runs, sources=[{"name": "a", "run": str(runs / "lg")},
                                {"name": "b", "run": str(tmp_path / "p")}])
    with pytest.raises(SystemConfigError, match="different splits"):
        build_system(cfg, tmp_path / "s")


def test_an_interrupted_build_is_named_and_overwrite_clears_it(runs, tmp_path):
    from streamrec.serve.system import BUILDING_FILE, load_system

    out = tmp_path / "s"
    out.mkdir()
    (out / BUILDING_FILE).write_text("")  # what a build killed before system.json leaves
    (out / "ranker-data").mkdir()
    with pytest.raises(SystemConfigError, match="interrupted"):
        load_system(out)
    cfg = config(runs, sources=[{"name": "graph", "run": str(runs / "lg"), "quota": 20}],
                 ranker={"kind": "none"}, reranker={})
    with pytest.raises(SystemConfigError, match="not empty"):
        build_system(cfg, out)
    build_system(cfg, out, overwrite=True)
    assert (out / "system.json").is_file() and not (out / BUILDING_FILE).exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(SystemConfigError, match="refuses to clear"):
        build_system(cfg, other, overwrite=True)
    assert (other / "notes.txt").is_file()


# ----------------------------------------------------------------------------- re-ranker
def test_rerank_identity_cap_diversity_and_freshness():
    items = np.array([10, 11, 12, 13])
    rel = np.array([4.0, 3.0, 2.0, 1.0])
    assert rerank(items, rel, 3, RerankOptions()).tolist() == [0, 1, 2, 3]
    cats = np.zeros(20, dtype=np.int64)
    cats[[10, 11, 12]] = 1
    capped = rerank(items, rel, 3, RerankOptions(category_cap=2), categories=cats)
    assert capped.tolist()[:3] == [0, 1, 3]
    emb = np.zeros((20, 2))
    emb[[10, 11]] = [1.0, 0.0]  # 10 and 11 are the same item for diversity
    emb[[12, 13]] = [0.0, 1.0]
    div = rerank(items, rel, 2, RerankOptions(diversity=0.6), unit_embeddings=emb)
    assert div.tolist()[:2] == [0, 2]  # 11 is a copy of 10: the next different item wins
    fresh = rerank(items, rel, 1, RerankOptions(freshness=2.0),
                   age_days=np.array([500.0, 500.0, 500.0, 0.0]))
    assert fresh[0] == 3
    with pytest.raises(ValueError, match="diversity"):
        RerankOptions(diversity=1.5)
