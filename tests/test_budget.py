"""The training budget's arithmetic (streamrec.train.budget) on worked numbers."""

from __future__ import annotations

import pytest

from streamrec.train.budget import (
    DEFAULT_TIME_BUDGET,
    Recipe,
    budget_batch_size,
    fit_epochs,
    format_duration,
    parse_duration,
    plan_budget,
    pow2_round,
)

MF = Recipe(batch_size=8192, epochs=12)  # min_steps 2000, 100 steps/epoch at least


def test_pow2_round_is_nearest_in_log_scale():
    assert [pow2_round(x) for x in (0.3, 1, 2.9, 80, 95, 8100, 12000)] == [
        1, 1, 4, 64, 128, 8192, 16384]


def test_small_data_shrinks_the_batch_and_adds_epochs():
    # 8,000 training interactions (the 10k review data): 64 = pow2(8000 / 100)
    p = plan_budget(8000, MF)
    assert (p.batch_size, p.steps_per_epoch, p.epochs, p.total_steps) == (64, 125, 16, 2000)
    assert (p.warmup_steps, p.warmup_epochs) == (40, 40 / 125)  # 2% of 2,000 steps
    assert (p.eval_every, p.validations, p.patience, p.min_epochs) == (1, 16, 5, 4)
    assert set(p.set_by.values()) == {"budget"}


def test_large_data_keeps_the_recipe_batch():
    # Gowalla: 810k interactions: 8100 -> 8192, 99 steps/epoch; 2,000 steps -> 21 epochs
    p = plan_budget(810_000, MF)
    assert (p.batch_size, p.steps_per_epoch, p.epochs, p.total_steps) == (8192, 99, 21, 2079)
    assert (p.warmup_steps, p.eval_every, p.patience, p.min_epochs) == (42, 1, 5, 5)
    # far more data: the recipe's 12 epochs are already past min_steps
    big = plan_budget(10_000_000, MF)
    assert (big.batch_size, big.steps_per_epoch, big.epochs) == (8192, 1221, 12)


def test_tiny_data_hits_the_floors():
    # 800 examples: the smallest batch (32), 25 steps/epoch, 80 epochs, validate every 2
    p = plan_budget(800, MF)
    assert (p.batch_size, p.steps_per_epoch, p.epochs) == (32, 25, 80)
    assert (p.warmup_steps, p.warmup_epochs) == (40, 1.6)
    assert (p.eval_every, p.validations, p.patience, p.min_epochs) == (2, 40, 8, 16)
    # 10 examples: one step per epoch, capped at max_epochs
    t = plan_budget(10, MF)
    assert (t.batch_size, t.steps_per_epoch, t.epochs) == (32, 1, 300)
    assert (t.eval_every, t.validations, t.patience, t.min_epochs) == (6, 50, 10, 60)


def test_explicit_settings_win_and_the_rest_follows():
    p = plan_budget(8000, MF, {"batch_size": 32, "patience": 3, "warmup_epochs": None})
    assert (p.batch_size, p.steps_per_epoch, p.epochs) == (32, 250, 12)  # 3,000 steps >= 2,000
    assert p.patience == 3 and p.warmup_steps == 60
    assert p.set_by["batch_size"] == "set" and p.set_by["warmup_epochs"] == "budget"
    q = plan_budget(8000, MF, {"epochs": 5, "warmup_epochs": 1.0, "eval_every": 2,
                               "min_epochs": 0})
    assert (q.batch_size, q.epochs, q.total_steps, q.warmup_steps) == (64, 5, 625, 125)
    assert (q.eval_every, q.validations, q.min_epochs) == (2, 3, 0)


def test_batch_size_bounds_and_recipe_keys():
    r = Recipe(batch_size=256, min_batch_size=16, min_steps_per_epoch=50)
    assert [budget_batch_size(n, r) for n in (100, 3200, 10**7)] == [16, 64, 256]
    assert Recipe.of({"epochs": 3}).epochs == 3
    with pytest.raises(ValueError, match="unknown train_recipe"):
        Recipe.of({"epoch": 3})


def test_describe_says_what_was_set():
    line = plan_budget(8000, MF, {"patience": 3}).describe()
    assert "8,000 examples/epoch -> batch 64" in line and "patience 3 validations (set)" in line


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("90", 90), ("90s", 90),
                                               ("1.5h", 5400), (" 2 min ", 120), (30, 30)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["off", "none", "inf", " OFF "])
def test_parse_duration_no_limit(text):
    assert parse_duration(text) == float("inf")


@pytest.mark.parametrize("text", ["", "5 minutes", "-3m", "0", "m5", "nan"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(s) for s in (0, 45, 300, 150, 5400)] == [
        "0s", "45s", "5m", "2m30s", "1h30m"]


def test_default_time_budget_and_lifting_it():

    from streamrec.train import TrainConfig
    from streamrec.train.budget import resolve_config

    p = plan_budget(8000, MF)
    assert p.time_budget == DEFAULT_TIME_BUDGET == 600 and p.set_by["time_budget"] == "budget"
    assert "time budget 10m" in p.describe()
    q = plan_budget(8000, MF, {"time_budget": 90.0})
    assert q.time_budget == 90 and q.set_by["time_budget"] == "set"
    off = plan_budget(8000, MF, {"time_budget": 0.0})
    assert off.time_budget is None and "time budget off (set)" in off.describe()
    assert resolve_config(TrainConfig(), 8000, MF)[0].time_budget == 600
    assert resolve_config(TrainConfig(time_budget="off"), 8000, MF)[0].time_budget is None
    assert resolve_config(TrainConfig(time_budget="5m"), 8000, MF)[0].time_budget == 300


def test_fit_epochs_worked_numbers():
    # 2 epochs done of 100; 10 s an epoch, 1 s a write, validation 20 s every 2nd epoch and
    # at the last: 200 s left. 10 more epochs (to 12) = 110 s + 5 validations = 210 s: too
    # much; 9 more (to 11) = 99 s + 4 on the interval + the last (epoch 11) = 199 s: fits.
    assert fit_epochs(2, 100, 2, 200.0, 10.0, 20.0, 1.0) == 11
    assert fit_epochs(2, 100, 2, 209.9, 10.0, 20.0, 1.0) == 11
    assert fit_epochs(2, 100, 2, 220.0, 10.0, 20.0, 1.0) == 12  # 110 + 5 x 20 = 210
    # never past the planned epochs, and always one more (the deadline ends the rest)
    assert fit_epochs(2, 5, 1, 1e9, 10.0, 20.0) == 5
    assert fit_epochs(2, 100, 1, 0.0, 10.0, 20.0) == 3
    # validation every epoch: (10 + 20) a piece, 95 s -> 3 more
    assert fit_epochs(0, 100, 1, 95.0, 10.0, 20.0) == 3
