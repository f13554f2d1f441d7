"""Run directories: self-describing, load back with one call, resume exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from streamrec.data.world import make_world
from streamrec.run import load_run, train_run
from streamrec.serve import recommend_user
from streamrec.train import TrainingInterrupted


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    ds = make_world("tiny", seed=3)
    ds.save(tmp_path_factory.mktemp("data") / "tiny")
    return ds


def test_load_run_reproduces_metrics(tiny, tmp_path):
    run = train_run("mf", tiny.path, tmp_path / "r", overrides=["epochs=2"], progress=False)
    loaded = load_run(tmp_path / "r")
    assert loaded.config["model"] == "mf"
    assert np.array_equal(loaded.split.assign, run.split.assign)
    for a, b in zip(run.model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(a, b)
    assert loaded.evaluate("test")["metrics"] == pytest.approx(run.results["test"]["metrics"])
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["train_config"]["epochs"] == 2 and cfg["split"]["method"] == "loo"


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(tiny, tmp_path):
    sets = ["epochs=5", "batch_size=128", "schedule=cosine", "warmup_epochs=1", "patience=0"]
    full = train_run("mf", tiny.path, tmp_path / "full", overrides=sets, progress=False)
    with pytest.raises(TrainingInterrupted):
        train_run(
            "mf",
            tiny.path,
            tmp_path / "cut",
            overrides=[*sets, "stop_after_epochs=2"],
            progress=False,
        )
    assert not (tmp_path / "cut" / "results.json").exists()
    resumed = train_run("mf", tiny.path, tmp_path / "cut", resume=True, progress=False)
    assert resumed.results["test"]["metrics"] == full.results["test"]["metrics"]
    lines = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    ref = [json.loads(x) for x in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in lines] == [x["loss"] for x in ref]


def test_popularity_is_learned_from_training_only(tiny, tmp_path):
    run = train_run("pop", tiny.path, tmp_path / "p", progress=False)
    train_items = tiny.item[run.split.mask("train")]
    assert np.array_equal(
        run.model.counts.numpy(), np.bincount(train_items, minlength=tiny.n_items)
    )


def test_recommend_returns_unseen_items_with_original_ids(tiny, tmp_path):
    run = train_run("mf", tiny.path, tmp_path / "m", overrides=["epochs=1"], progress=False)
    user = tiny.user_ids[5]
    recs = recommend_user(run, user, k=10)
    seen = set(tiny.item_ids[tiny.item[(tiny.user == 5) & ~run.split.mask("test")]])
    assert len(recs) == 10 and not seen & {r["item"] for r in recs}
    with pytest.raises(KeyError, match="unknown user"):
        recommend_user(run, "no-such-user")


def test_non_empty_run_dir_is_refused(tiny, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("1")
    with pytest.raises(FileExistsError):
        train_run("pop", tiny.path, tmp_path / "busy", progress=False)
