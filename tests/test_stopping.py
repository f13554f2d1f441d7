"""Early stopping on noisy validation curves (streamrec.train.stopping) and the trainer's
--time-budget."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.train.stopping import EarlyStopping, stop_epoch


def noisy_rising_curve(n: int = 60, seed: int = 0) -> list[float]:
    """A validation NDCG still rising until about epoch 40 (0.10 * (1 - exp(-t / 12))), with
    noise of std 0.006 and one lucky early epoch (+0.04 at epoch 2)."""
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    curve = 0.10 * (1 - np.exp(-t / 12)) + rng.normal(0, 0.006, n)
    curve[2] += 0.04
    return curve.tolist()


def test_classic_rule_stops_on_noise_the_smoothed_one_does_not():
    curve = noisy_rising_curve()
    classic = stop_epoch(curve, EarlyStopping("max", patience=5, smooth=1, min_epochs=0))
    assert classic is not None and classic < 10  # stopped on the lucky epoch 2
    smoothed = stop_epoch(curve, EarlyStopping("max", patience=5, smooth=3, min_epochs=12))
    assert smoothed is None or smoothed >= 28  # it goes on to the plateau (92% at 30)
    # the same over several noise draws
    for seed in range(1, 6):
        c = noisy_rising_curve(seed=seed)
        s = stop_epoch(c, EarlyStopping("max", patience=5, smooth=3, min_epochs=12))
        assert s is None or s >= 28, seed


def test_smoothed_rule_still_stops_when_the_curve_turns_down():
    t = np.arange(80)
    rng = np.random.default_rng(0)
    curve = 0.1 - 0.0002 * (t - 20) ** 2 + rng.normal(0, 0.004, len(t))  # peak at 20
    e = stop_epoch(curve.tolist(), EarlyStopping("max", patience=5, smooth=3, min_epochs=10))
    assert e is not None and 22 <= e <= 40


def test_min_mode_min_epochs_and_state_round_trip():
    s = EarlyStopping("min", patience=2, smooth=1, min_epochs=5)
    assert [s.update(e, v) for e, v in enumerate([1.0, 0.9, 0.95, 0.97, 0.99])] == [
        False, False, False, False, True]  # bad since epoch 2, but not before epoch 5
    t = EarlyStopping("min", patience=2, smooth=1, min_epochs=5)
    t.load_state_dict(s.state_dict())
    assert t.values == s.values and t.bad == s.bad and t.best_smoothed == 0.9
    never = EarlyStopping("max", patience=0)
    assert not any(never.update(e, -e) for e in range(20))
    with pytest.raises(ValueError):
        EarlyStopping("up")


def test_non_finite_values_count_as_bad():
    s = EarlyStopping("max", patience=2, smooth=1)
    assert [s.update(e, v) for e, v in enumerate([0.1, float("nan"), float("nan")])] == [
        False, False, True]


# ---------------------------------------------------------------- --time-budget
class SlowMF:
    """Factory of the trainer tests' toy MF whose every step takes 20 ms."""

    @staticmethod
    def make(delay=lambda step: 0.02):
        """``delay(step)``: seconds slept by the loss call of global step ``step``."""
        import itertools
        import time

        from test_trainer import make_model

        model = make_model()
        loss = model.loss
        steps = itertools.count()

        def slow_loss(batch):
            time.sleep(delay(next(steps)))
            return loss(batch)

        model.loss = slow_loss
        return model


def _train_with_budget(tmp_path, seconds, epochs=100, delay=lambda step: 0.02, **kw):
    import io

    from rich.console import Console

    from streamrec.train import Trainer
    from test_trainer import cfg, tiny_dataset

    values = iter(np.linspace(0.1, 0.9, 1000))  # every validation a new best
    console = Console(file=io.StringIO(), width=200)
    model = SlowMF.make(delay)
    options = dict(epochs=epochs, valid_metric="ndcg@20", patience=5, time_budget=seconds,
                   fit_to_time_budget=False)
    options.update(kw)
    trainer = Trainer(model, tiny_dataset(), cfg(**options),
                      tmp_path, validate=lambda m: {"ndcg@20": float(next(values))},
                      console=console)
    return trainer.fit(), console.file.getvalue(), model


def test_time_budget_ends_with_the_best_checkpoint_and_says_so(tmp_path):
    # 300 interactions, batch 64: 5 steps (>= 0.1 s) per epoch; 1.5 s is several epochs
    res, out, model = _train_with_budget(tmp_path, 1.5)
    assert res.stop_reason == "time budget" and res.stopped_early
    assert 2 <= res.epochs_run < 100 and res.best_epoch == res.epochs_run - 1
    assert f"time budget 2s reached: keeping the best validated epoch {res.epochs_run}" in out
    assert res.history[-1]["time_budget"] is True
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "model.safetensors"))
    for k, v in model.state_dict().items():
        assert torch_equal(saved[k], v), k


def test_time_budget_counts_checkpoint_writes_and_keeps_their_time_back(tmp_path,
                                                                        monkeypatch):
    # every checkpoint write takes 0.15 s: counted in train_seconds, and the budget keeps one
    # write's (and one validation's) time back, so the run ends within it (slack below one
    # write: a 20 ms step's granularity and a loaded machine's jitter)
    import time

    from streamrec.train import trainer as trainer_mod

    write = trainer_mod.save_checkpoint

    def slow_write(*a, **k):
        time.sleep(0.15)
        return write(*a, **k)

    monkeypatch.setattr(trainer_mod, "save_checkpoint", slow_write)
    res, _, _ = _train_with_budget(tmp_path, 1.2)
    assert res.stop_reason == "time budget" and res.epochs_run >= 2
    assert res.train_seconds <= 1.2 + 0.1
    assert res.train_seconds >= sum(r["seconds"] for r in res.history) + 0.15 * res.epochs_run


@pytest.mark.parametrize("epochs", [100, 1])
def test_time_budget_shorter_than_an_epoch_still_validates(tmp_path, epochs):
    # also when that epoch is the only one planned: the deadline, not the plan, ended it
    res, out, _ = _train_with_budget(tmp_path, 0.05, epochs=epochs)
    assert res.epochs_run == 1 and res.best_epoch == 0 and res.best_metric is not None
    assert res.stop_reason == "time budget" and "time budget" in out


def test_time_budget_fits_the_schedule_to_the_epochs_that_fit(tmp_path):
    # the default: after a few epochs the measured pace says 100 will not fit in 1.5 s, so the
    # run is shortened to those that do and its cosine schedule ends at the new last step
    res, out, model = _train_with_budget(tmp_path, 1.5, fit_to_time_budget=True,
                                         schedule="cosine", min_lr_ratio=0.01)
    fitted = res.budget["fitted_epochs"]
    assert fitted is not None and 2 <= fitted < 100 and res.epochs_run == fitted
    assert res.stop_reason is None and not res.stopped_early  # it finished its schedule
    assert res.train_seconds <= 1.5 + 0.1
    assert "the schedule now ends after" in out and f"--set epochs={fitted}" in out
    # the last epoch trained at the cosine's floor: lr * min_lr_ratio at the last step
    from test_trainer import cfg

    base_lr = cfg().lr
    assert res.history[-1]["lr"] == pytest.approx(0.01 * base_lr, rel=0.05)
    assert max(r["lr"] for r in res.history) > 0.5 * base_lr


@pytest.mark.parametrize("warmup", [0.0, 3.0])
def test_time_budget_fits_long_epochs_before_the_first_one_ends(tmp_path, monkeypatch, warmup):
    # batch 4: 75 steps of 20 ms, 1.5 s an epoch; 5 epochs do not fit in 2.5 s. The first
    # epoch is projected from its first 10 steps and the run fitted to 1 epoch then, so the
    # cosine ends inside that epoch (after the epoch it would be too late: its steps are done);
    # a warm-up longer than the fitted run becomes its first half
    from streamrec.train import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "EARLY_FIT_STEPS", 10)
    res, out, _ = _train_with_budget(tmp_path, 2.5, epochs=5, batch_size=4,
                                     fit_to_time_budget=True, schedule="cosine",
                                     min_lr_ratio=0.01, warmup_epochs=warmup)
    assert res.budget["fitted_epochs"] == 1 and res.epochs_run == 1
    assert "from its first 10 steps" in out and res.stop_reason is None
    from test_trainer import cfg

    assert res.history[-1]["lr"] == pytest.approx(0.01 * cfg().lr, rel=0.1)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_time_budget_lengthens_a_fitted_run_when_its_epochs_get_faster(tmp_path, schedule):
    # 5 steps an epoch: 80 ms a step in the first two epochs (0.4 s an epoch), then 4 ms. The
    # slow epochs fit the run to a few; once the last three epochs are fast, a constant
    # schedule is lengthened again (its LR does not depend on the run's length), a cosine one
    # (whose LR would rise part way) keeps its shortened end
    res, out, _ = _train_with_budget(tmp_path, 2.5, epochs=100, schedule=schedule,
                                     fit_to_time_budget=True,
                                     delay=lambda step: 0.08 if step < 10 else 0.004)
    assert "will not fit" in out
    first_fit = int(out.split("the schedule now ends after ")[1].split()[0])
    assert first_fit < 10
    if schedule == "constant":
        assert "more than" in out and res.epochs_run > first_fit + 5
    else:
        assert "more than" not in out and res.epochs_run <= first_fit
    assert res.train_seconds <= 2.5 + 0.1


def test_time_budget_fit_survives_a_resume(tmp_path):
    import io

    from rich.console import Console

    from streamrec.train import Trainer
    from streamrec.train.trainer import TrainingInterrupted
    from test_trainer import cfg, tiny_dataset

    def trainer(**kw):
        options = dict(epochs=100, valid_metric="ndcg@20", patience=50, time_budget=1.5,
                       schedule="cosine", **kw)
        return Trainer(SlowMF.make(), tiny_dataset(), cfg(**options), tmp_path,
                       validate=lambda m: {"ndcg@20": 0.5},
                       console=Console(file=io.StringIO(), width=200))

    first = trainer(stop_after_epochs=4)
    with pytest.raises(TrainingInterrupted):
        first.fit()
    assert first.cfg.epochs < 100  # fitted after the first epochs
    again = trainer()
    res = again.fit(resume=True)
    assert res.budget["fitted_epochs"] is not None
    assert res.budget["fitted_epochs"] <= first.cfg.epochs


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a.cpu(), b.cpu()))


def test_cli_time_budget(tiny_dir, tmp_path):
    from typer.testing import CliRunner

    from streamrec.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    # far more epochs than 3 s allows on any machine, so the budget is what ends training (3 s:
    # an epoch takes well under one, also on a loaded machine)
    r = runner.invoke(app, ["train", "mf", "--data", str(tiny_dir), "--out", str(run), "--quiet",
                            "--set", "epochs=100000", "--set", "patience=100000",
                            "--time-budget", "3s"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    results = __import__("json").loads((run / "results.json").read_text())
    fitted = results["train"]["budget"]["fitted_epochs"]
    assert fitted is not None and fitted < 100000 and results["train"]["epochs_run"] <= fitted
    assert "the schedule now ends after" in r.output and "test:" in r.output
    off = runner.invoke(app, ["train", "mf", "--data", str(tiny_dir), "--out", str(run),
                              "--quiet", "--overwrite", "--set", "epochs=2",
                              "--time-budget", "off"], catch_exceptions=False)
    assert off.exit_code == 0, off.output
    budget = __import__("json").loads((run / "results.json").read_text())["train"]["budget"]
    assert budget["time_budget"] is None and budget["set_by"]["time_budget"] == "set"
    bad = runner.invoke(app, ["train", "mf", "--data", str(tiny_dir), "--out", str(run),
                              "--time-budget", "soon"])
    assert bad.exit_code != 0 and "error: --time-budget" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
