"""The two choices of evaluation protocol, on cases worked out by hand: the history a model
reads at the test stage (train + valid, or train only) and how users are averaged (users with
held-out items, or all users with the others counting 0)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from streamrec.cli import app
from streamrec.data.dataset import Dataset
from streamrec.data.splits import make_split
from streamrec.eval.evaluator import evaluate_ranking, protocol_note
from streamrec.run import load_run, train_run
from test_evaluator import FixedScores, _two_user_world


class HistoryScores(torch.nn.Module):
    """A 'model' whose scores come from the history it reads:
    ``score(u, j) = base[j] + sum_{i in history(u)} W[i, j]``."""

    name = "history-scores"

    def __init__(self, base: np.ndarray, w: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("base", torch.as_tensor(base, dtype=torch.float32))
        self.register_buffer("w", torch.as_tensor(w, dtype=torch.float32))
        self.n_items = len(base)
        self.read: list[int] = []  # interactions of every history it was given

    @property
    def device(self) -> torch.device:
        return self.base.device

    def score(self, users, history):
        self.read.append(history.n_interactions)
        rows = torch.as_tensor(history.csr()[users.numpy()].toarray(), dtype=torch.float32)
        return self.base + rows @ self.w


def _history_model() -> HistoryScores:
    # valid item 2 points to user 0's test item 3; valid item 0 points to user 1's test item 5;
    # train item 1 points to 4 and train item 4 to 2; `base` breaks the remaining ties
    w = np.zeros((6, 6))
    w[2, 3], w[0, 5], w[1, 4], w[4, 2] = 3, 2, 1, 1
    return HistoryScores(np.array([0.06, 0.05, 0.04, 0.03, 0.02, 0.01]), w)


def test_test_history_changes_what_the_model_reads_not_the_mask():
    ds = _two_user_world()  # user 0: train 0,1 valid 2 test 3; user 1: train 4 valid 0 test 5
    split = make_split(ds, "loo")
    # train + valid history: user 0 reads {0,1,2} -> 3 scores 3.03, first among 3,4,5;
    # user 1 reads {4,0} -> 5 scores 2.01, first among 1,2,3,5: every test item at rank 1
    model = _history_model()
    both = evaluate_ranking(model, ds, split, "test", ks=(1, 3, 5))
    assert model.read == [5]  # the 3 train + 2 valid interactions
    assert both["metrics"]["recall@1"] == pytest.approx(1.0)
    assert both["protocol"]["history"] == "train+valid"
    # train history: user 0 reads {0,1}: 5 (2.01) > 4 (1.02) > 3 (0.03): test item at rank 3;
    # user 1 reads {4}: 2 (1.04) > 1 (0.05) > 3 (0.03) > 5 (0.01): rank 4. Item 0 (0.06, user
    # 1's valid item) would come second if the mask followed the history: it stays masked.
    model = _history_model()
    train = evaluate_ranking(model, ds, split, "test", ks=(1, 3, 5), test_history="train")
    assert model.read == [3]  # the 3 train interactions
    m = train["metrics"]
    assert m["recall@1"] == pytest.approx(0.0)
    assert m["recall@3"] == pytest.approx(0.5)
    assert m["ndcg@3"] == pytest.approx((1 / np.log2(4) + 0) / 2)
    assert m["mrr@5"] == pytest.approx((1 / 3 + 1 / 4) / 2)
    p = train["protocol"]
    assert p["history"] == "train" and p["masked"] == "train + valid items"
    assert p["average"] == "users-with-test" and p["users_averaged"] == 2
    assert "history read: train; masked: train + valid items" in protocol_note(train)


def test_validation_stage_always_reads_training():
    ds = _two_user_world()
    split = make_split(ds, "loo")
    a = evaluate_ranking(_history_model(), ds, split, "valid", ks=(2,))
    b = evaluate_ranking(_history_model(), ds, split, "valid", ks=(2,), test_history="train")
    assert a["metrics"] == b["metrics"] and a["protocol"]["history"] == "train"


def _three_user_world() -> Dataset:
    # the two users of _two_user_world and user c with one interaction: training only
    ds = _two_user_world()
    return Dataset(
        name="hand3", user_ids=["a", "b", "c"], item_ids=list(ds.item_ids),
        inter={"user": np.r_[ds.inter["user"], 2], "item": np.r_[ds.inter["item"], 1],
               "timestamp": np.r_[ds.inter["timestamp"], 1]},
    )


def test_all_users_counts_users_without_test_items_as_zero():
    ds = _three_user_world()
    split = make_split(ds, "loo")
    assert split.part(ds, "test").csr()[2].nnz == 0  # user c has no test item
    # the scores of test_full_ranking_by_hand: recall@1 is 0 and 1, recall@2 1 and 1
    scores = np.array([[6, 5, 4, 2, 3, 1], [5, 1, 1, 1, 9, 8], [0, 0, 0, 0, 0, 0]], float)
    model = FixedScores(scores)
    mean = evaluate_ranking(model, ds, split, "test", ks=(1, 2))
    every = evaluate_ranking(model, ds, split, "test", ks=(1, 2), average="all-users")
    assert mean["metrics"]["recall@1"] == pytest.approx(1 / 2)
    assert every["metrics"]["recall@1"] == pytest.approx(1 / 3)
    assert every["metrics"]["recall@2"] == pytest.approx(2 / 3)
    assert every["metrics"]["ndcg@2"] == pytest.approx((1 / np.log2(3) + 1) / 3)
    assert every["metrics"]["coverage@1"] == mean["metrics"]["coverage@1"]  # not averaged
    p = every["protocol"]
    assert (p["average"], p["users_averaged"], p["users_evaluated"]) == ("all-users", 3, 2)
    assert "averaged over 3 users (all-users)" in protocol_note(every)
    # a given subset: the users given, whether or not they have held-out items
    only = evaluate_ranking(model, ds, split, "test", ks=(1,), average="all-users",
                            users=np.array([0, 2]))
    assert only["metrics"]["recall@1"] == pytest.approx(0.0)
    assert only["protocol"]["users_averaged"] == 2
    only = evaluate_ranking(model, ds, split, "test", ks=(1,), average="all-users",
                            users=np.array([1, 2]))
    assert only["metrics"]["recall@1"] == pytest.approx(1 / 2)


@pytest.mark.parametrize("kw", [{"test_history": "valid"}, {"average": "mean"}])
def test_bad_protocol_options(kw):
    ds = _two_user_world()
    with pytest.raises(ValueError, match="must be"):
        evaluate_ranking(_history_model(), ds, make_split(ds, "loo"), "test", **kw)


@pytest.fixture(scope="module")
def gfcf_run(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "gfcf"
    train_run("gf-cf", tiny_dir, out, progress=False, test_history="train",
              average="all-users")
    return out


def test_train_records_the_protocol_of_its_test_evaluation(gfcf_run):
    saved = json.loads((gfcf_run / "results.json").read_text())
    assert saved["test"]["protocol"]["history"] == "train"
    assert saved["test"]["protocol"]["average"] == "all-users"
    assert saved["valid"]["protocol"]["average"] == "users-with-test"  # selection: unchanged
    run = load_run(gfcf_run)
    again = run.evaluate("test", test_history="train", average="all-users")
    assert again["metrics"] == pytest.approx(saved["test"]["metrics"])
    # GF-CF reads its history: without the validation item it scores differently
    default = run.evaluate("test")
    assert default["protocol"]["history"] == "train+valid"
    assert default["metrics"]["recall@20"] != pytest.approx(again["metrics"]["recall@20"])


def test_cli_evaluate_protocol_options(gfcf_run):
    runner = CliRunner()
    res = runner.invoke(app, ["evaluate", str(gfcf_run), "--test-history", "train",
                              "--average", "all-users", "--json"])
    assert res.exit_code == 0, res.output
    p = json.loads(res.stdout)["protocol"]
    assert (p["history"], p["average"]) == ("train", "all-users")
    res = runner.invoke(app, ["evaluate", str(gfcf_run), "--test-history", "train"])
    assert res.exit_code == 0 and "history read: train;" in res.output
    for bad in (["--test-history", "all"], ["--average", "users"]):
        res = runner.invoke(app, ["evaluate", str(gfcf_run), *bad])
        assert res.exit_code != 0
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), res.output


def test_click_models_refuse_ranking_protocol_options(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="ranking models only"):
        train_run("logreg", tiny_dir, tmp_path / "c", progress=False, test_history="train")
    assert not (tmp_path / "c").exists()
