"""The training loop: schedules, clipping, early stopping, checkpoints, exact resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from safetensors.torch import load_file
from torch import nn

from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender
from streamrec.train import (
    Callback,
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
    make_optimizer,
    make_scheduler,
    move_to_device,
    plot_training_curve,
    read_metrics,
    save_checkpoint,
    train_model,
)

QUIET = Console(quiet=True)


# ---------------------------------------------------------------- toy world
def tiny_dataset(n_users: int = 30, n_items: int = 40, n: int = 300, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(
        name="t",
        user_ids=np.arange(n_users),
        item_ids=np.arange(n_items),
        inter={
            "user": rng.integers(0, n_users, n),
            "item": rng.integers(0, n_items, n),
            "timestamp": np.arange(n),
        },
    )


@dataclasses.dataclass
class ToyConfig(ModelConfig):
    dim: int = 8
    dropout: float = 0.0
    nan_at_call: int | None = None


class ToyMF(Recommender):
    """Matrix factorisation with a BPR loss, optional dropout, an MLP head to have layers."""

    name = "toymf"
    Config = ToyConfig

    def __init__(self, config: ToyConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.user_emb = nn.Embedding(self.n_users, config.dim)
        self.item_emb = nn.Embedding(self.n_items, config.dim)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        self.head = nn.Linear(config.dim, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.calls = 0

    def batches(self, train, batch_size, rng):
        perm = rng.permutation(train.n_interactions)
        for s in range(0, len(perm), batch_size):
            idx = perm[s : s + batch_size]
            neg = rng.integers(0, self.n_items, len(idx))
            yield {"user": train.user[idx].astype(np.int64), "pos": train.item[idx].astype(
                np.int64), "neg": torch.as_tensor(neg)}

    def user_vec(self, u):
        return self.head(self.drop(self.user_emb(u)))

    def loss(self, batch):
        self.calls += 1
        eu = self.user_vec(batch["user"])
        pos = (eu * self.item_emb(batch["pos"])).sum(-1)
        neg = (eu * self.item_emb(batch["neg"])).sum(-1)
        loss = -F.logsigmoid(pos - neg).mean()
        if self.config.nan_at_call is not None and self.calls >= self.config.nan_at_call:
            loss = loss * float("nan")
        return loss

    def score(self, users, history):
        return self.user_vec(users) @ self.item_emb.weight.T


class Closed(Recommender):
    """A closed-form popularity model."""

    name = "closed"
    trainable = False

    def __init__(self, config, train):
        super().__init__(config, train)
        self.register_buffer("pop", torch.zeros(self.n_items))

    def fit(self, train, validate=None):
        self.pop.copy_(torch.as_tensor(train.item_counts(), dtype=torch.float32))

    def score(self, users, history):
        return self.pop.expand(len(users), -1)


def make_validate(seed: int = 1):
    """Negative BPR loss on fixed held-out triples, reported as "neg_loss" (higher = better)."""
    rng = np.random.default_rng(seed)
    u = torch.as_tensor(rng.integers(0, 30, 200))
    i = torch.as_tensor(rng.integers(0, 40, 200))
    j = torch.as_tensor(rng.integers(0, 40, 200))

    def validate(model):
        s = model.score(u, None)
        rows = torch.arange(len(u))
        val = -F.logsigmoid(s[rows, i] - s[rows, j]).mean().item()
        return {"neg_loss": -val, "loss": val}

    return validate


def make_model(dropout: float = 0.0, seed: int = 0, **kw) -> ToyMF:
    torch.manual_seed(seed)
    return ToyMF(ToyConfig(dropout=dropout, **kw), tiny_dataset())


def cfg(**kw) -> TrainConfig:
    base = dict(epochs=6, batch_size=64, lr=0.05, progress=False, valid_metric="neg_loss",
                patience=0, seed=3, smooth=1, min_epochs=0)  # the classic stopping rule
    base.update(kw)
    return TrainConfig(**base)


def strip_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


# ---------------------------------------------------------------- config & helpers
def test_config_validation_and_dict_roundtrip():
    c = TrainConfig(betas=[0.8, 0.99], schedule="Cosine")
    assert c.betas == (0.8, 0.99) and c.schedule == "cosine"
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="metric_mode"):
        TrainConfig(metric_mode="up")
    with pytest.raises(ValueError, match="unknown train option"):
        TrainConfig.from_dict({"lrr": 1})


def test_move_to_device_recursive():
    batch = {"a": np.arange(3)[::-1], "b": [torch.ones(2), (np.zeros(2), 5)], "c": "x"}
    out = move_to_device(batch, torch.device("cpu"))
    assert torch.equal(out["a"], torch.tensor([2, 1, 0]))
    assert isinstance(out["b"][1][0], torch.Tensor) and out["b"][1][1] == 5 and out["c"] == "x"


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW),
                                      ("sgd", torch.optim.SGD)])
def test_make_optimizer(name, cls):
    p = nn.Parameter(torch.zeros(2))
    opt = make_optimizer([p], TrainConfig(optimizer=name, lr=0.1, weight_decay=0.01))
    assert isinstance(opt, cls) and opt.param_groups[0]["weight_decay"] == 0.01


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_fused_adam_takes_the_same_steps_as_torch_default(name, cls):
    torch.manual_seed(0)
    start = torch.randn(300, 40)
    ours = nn.Parameter(start.clone())
    ref = nn.Parameter(start.clone())
    opt = make_optimizer([ours], TrainConfig(optimizer=name, lr=0.01, weight_decay=0.01))
    assert opt.param_groups[0]["fused"] is True
    ref_opt = cls([ref], lr=0.01, weight_decay=0.01)  # torch's default (foreach) kernel
    for _ in range(20):
        g = torch.randn_like(start)
        for p, o in ((ours, opt), (ref, ref_opt)):
            p.grad = g.clone()
            o.step()
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-5)
    assert not torch.equal(ours.detach(), start)


# ---------------------------------------------------------------- schedules
def lr_curve(c: TrainConfig, spe: int) -> list[float]:
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=c.lr)
    sched = make_scheduler(opt, c, spe)
    lrs = []
    for _ in range(c.epochs * spe):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_constant_and_step_schedule():
    assert lr_curve(TrainConfig(epochs=3, lr=0.5), 4) == [0.5] * 12
    lrs = lr_curve(TrainConfig(epochs=6, lr=1.0, schedule="step", step_size=2, gamma=0.1), 3)
    np.testing.assert_allclose(lrs, [1.0] * 6 + [0.1] * 6 + [0.01] * 6, rtol=1e-12)


def test_cosine_with_warmup_peak_and_floor():
    c = TrainConfig(epochs=10, lr=2.0, schedule="cosine", warmup_epochs=2.5, min_lr_ratio=0.1)
    lrs = np.array(lr_curve(c, 4))  # 40 steps, 10 warmup steps
    np.testing.assert_allclose(lrs[:10], 2.0 * np.arange(1, 11) / 10)  # linear warmup
    assert lrs.argmax() == 9 and lrs[9] == pytest.approx(2.0)  # peak at the end of warmup
    assert np.all(np.diff(lrs[10:]) <= 1e-12)  # then decays monotonically
    assert lrs[-1] == pytest.approx(0.2)  # to the floor at the last step
    assert lrs[-2] > lrs[-1]


def test_onecycle_schedule():
    lrs = np.array(lr_curve(TrainConfig(epochs=10, lr=1.0, schedule="onecycle"), 10))
    assert lrs.max() == pytest.approx(1.0)
    assert lrs[0] == pytest.approx(1.0 / 25)  # torch's default div_factor
    assert abs(int(lrs.argmax()) - 30) <= 1  # pct_start 0.3 of 100 steps
    assert lrs[-1] < 1e-4


# ---------------------------------------------------------------- loop
def test_train_in_memory_learns_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = make_model()
    validate = make_validate()
    before = validate(model)["loss"]
    res = train_model(model, tiny_dataset(), cfg(epochs=4), validate=validate)
    assert res.epochs_run == 4 and len(res.history) == 4 and not res.stopped_early
    assert validate(model)["loss"] < before
    assert res.history[-1]["loss"] < res.history[0]["loss"]
    assert list(tmp_path.iterdir()) == []


def test_training_flushes_denormals_and_puts_ieee_arithmetic_back():
    # denormal floats read as zero inside the training loop (they slow x86 arithmetic 10-200x),
    # and outside it they are representable again (IEEE-754, e.g. for property-based tests)
    from streamrec.train import Callback
    from streamrec.train.trainer import flushing_denormals

    seen = []

    class Probe(Callback):
        def on_epoch_end(self, trainer, epoch, record):
            seen.append(flushing_denormals())

    assert not flushing_denormals()
    train_model(make_model(), tiny_dataset(), cfg(epochs=2), validate=make_validate(),
                callbacks=[Probe()])
    assert seen == [True, True] and not flushing_denormals()
    assert torch.tensor(1e-39).item() > 0


def test_bf16_precision_trains_close_to_float32_with_float32_weights():
    runs = {}
    for precision in ("fp32", "bf16"):
        model = make_model()
        res = train_model(model, tiny_dataset(), cfg(epochs=4, precision=precision),
                          validate=make_validate())
        assert all(p.dtype == torch.float32 for p in model.parameters())
        runs[precision] = [r["loss"] for r in res.history]
    assert runs["bf16"][-1] < runs["bf16"][0]  # it learns
    assert runs["bf16"] == pytest.approx(runs["fp32"], rel=0.05)
    assert runs["bf16"] != runs["fp32"]  # and the products really ran in bfloat16
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp16")


def test_lr_range_test_runs_in_the_runs_precision():
    from streamrec.train.lr_find import lr_range_test

    sweeps = {p: lr_range_test(make_model(), tiny_dataset(), cfg(precision=p), start_lr=1e-4,
                               end_lr=1e-1, num_steps=12).losses
              for p in ("fp32", "bf16")}
    assert sweeps["bf16"] == pytest.approx(sweeps["fp32"], rel=0.05)
    assert sweeps["bf16"] != sweeps["fp32"]


def test_run_dir_files_and_metrics(tmp_path):
    model = make_model()
    res = Trainer(model, tiny_dataset(), cfg(epochs=4, eval_every=2), tmp_path,
                  validate=make_validate(), console=QUIET).fit()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert len(records) == 4 == len(res.history)
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert set(records[0]) == {"epoch", "loss", "lr", "grad_norm", "seconds", "valid"}
    assert records[0]["valid"] is None and records[1]["valid"] is not None
    assert records[2]["valid"] is None and records[3]["valid"] is not None
    assert (tmp_path / "training_curve.png").stat().st_size > 1000
    weights = load_file(tmp_path / "model.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(weights[k], v)
    assert res.best_epoch in (1, 3)


def test_clipping_bounds_grad_norm():
    class Probe(Callback):
        pre, post = [], []

        def after_backward(self, trainer, step):
            g = [p.grad for p in trainer.model.parameters() if p.grad is not None]
            self.pre.append(torch.nn.utils.get_total_norm(g).item())

        def on_batch_end(self, trainer, step, loss):
            g = [p.grad for p in trainer.model.parameters() if p.grad is not None]
            self.post.append(torch.nn.utils.get_total_norm(g).item())

    probe = Probe()
    res = train_model(make_model(), tiny_dataset(), cfg(epochs=2, clip_norm=1e-3),
                      callbacks=[probe], console=QUIET)
    assert len(probe.post) == 2 * 5
    assert max(probe.post) <= 1e-3 * (1 + 1e-4)
    assert min(probe.pre) > 1e-3  # the recorded norm is the pre-clip one
    assert res.history[0]["grad_norm"] == pytest.approx(np.mean(probe.pre[:5]), rel=1e-5)


def test_early_stopping_restores_best_weights(tmp_path):
    scripted = iter([0.1, 0.5, 0.4, 0.3, 0.6, 0.7, 0.8])
    snapshots = {}

    def validate(model):
        snapshots[len(snapshots)] = {k: v.clone() for k, v in model.state_dict().items()}
        return {"ndcg@20": next(scripted)}

    model = make_model()
    res = Trainer(model, tiny_dataset(),
                  cfg(epochs=7, valid_metric="ndcg@20", patience=2), tmp_path,
                  validate=validate, console=QUIET).fit()
    assert res.stopped_early and res.epochs_run == 4
    assert res.best_epoch == 1 and res.best_metric == 0.5
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 4
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[1][k])
    saved = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in saved)


def test_min_mode_metric():
    res = train_model(make_model(), tiny_dataset(),
                      cfg(epochs=3, valid_metric="loss", metric_mode="min"),
                      validate=make_validate(), console=QUIET)
    losses = [r["valid"]["loss"] for r in res.history]
    assert res.best_metric == min(losses) and res.best_epoch == int(np.argmin(losses))


def test_missing_valid_metric_is_a_clear_error():
    with pytest.raises(KeyError, match="ndcg@20"):
        train_model(make_model(), tiny_dataset(), cfg(epochs=1, valid_metric="ndcg@20"),
                    validate=make_validate(), console=QUIET)


def test_non_finite_loss_names_epoch_and_step(tmp_path):
    model = make_model(nan_at_call=8)  # 5 batches per epoch -> epoch 1, step 2
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 2"):
        Trainer(model, tiny_dataset(), cfg(), tmp_path, console=QUIET).fit()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 0


def test_non_trainable_model(tmp_path):
    data = tiny_dataset()
    model = Closed(ModelConfig(), data)
    res = train_model(model, data, cfg(valid_metric="hits"), run_dir=tmp_path,
                      validate=lambda m: {"hits": float(m.pop.sum())})
    assert res.epochs_run == 0 and res.best_metric == data.n_interactions
    assert torch.equal(model.pop, torch.as_tensor(data.item_counts(), dtype=torch.float32))
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 1
    assert torch.equal(load_file(tmp_path / "model.safetensors")["pop"], model.pop)


def test_checkpoint_roundtrip(tmp_path):
    model = make_model(dropout=0.2)
    Trainer(model, tiny_dataset(), cfg(epochs=2, schedule="onecycle"), tmp_path,
            validate=make_validate(), console=QUIET).fit()
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1 and state["finished"] and len(state["history"]) == 2
    assert state["config"]["schedule"] == "onecycle"
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    save_checkpoint(state, tmp_path / "copy.pt")
    again = load_checkpoint(tmp_path / "copy.pt")
    for k, v in state["model"].items():
        assert torch.equal(again["model"][k], v)
    assert again["optimizer"]["state"].keys() == state["optimizer"]["state"].keys()
    assert again["history"] == state["history"]
    assert not list(tmp_path.glob(".*tmp*"))


def test_plot_training_curve(tmp_path):
    hist = [{"epoch": e, "loss": 1 / (e + 1), "valid": {"a": e / 10} if e % 2 else None}
            for e in range(5)]
    out = plot_training_curve(hist, tmp_path / "sub" / "c.png", title="t", best_epoch=3)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- resume exactness
@pytest.mark.parametrize("schedule,dropout,optimizer", [
    ("constant", 0.0, "adam"),
    ("cosine", 0.3, "adamw"),
    ("onecycle", 0.3, "adam"),
    ("step", 0.3, "sgd"),
])
def test_resume_is_exact(tmp_path, schedule, dropout, optimizer):
    kw = dict(schedule=schedule, optimizer=optimizer, warmup_epochs=1.5 if schedule == "cosine"
              else 0.0, step_size=2, clip_norm=0.5, patience=10, lr=0.02 if optimizer != "sgd"
              else 0.2)
    data = tiny_dataset()
    a = make_model(dropout)
    res_a = Trainer(a, data, cfg(**kw), tmp_path / "a", validate=make_validate(),
                    console=QUIET).fit()

    b = make_model(dropout)
    with pytest.raises(TrainingInterrupted):
        Trainer(b, data, cfg(stop_after_epochs=3, **kw), tmp_path / "b",
                validate=make_validate(), console=QUIET).fit()
    assert len(read_metrics(tmp_path / "b" / "metrics.jsonl")) == 3
    # burn RNG between the kill and the resume, as another process would have other state
    torch.rand(7), np.random.rand(3)
    b2 = make_model(dropout, seed=99)  # a fresh model: everything comes from the checkpoint
    res_b = Trainer(b2, data, cfg(**kw), tmp_path / "b", validate=make_validate(),
                    console=QUIET).fit(resume=True)

    for k, v in a.state_dict().items():
        assert torch.equal(v, b2.state_dict()[k]), k
    ma = strip_seconds(read_metrics(tmp_path / "a" / "metrics.jsonl"))
    mb = strip_seconds(read_metrics(tmp_path / "b" / "metrics.jsonl"))
    assert ma == mb and len(ma) == 6
    assert res_a.best_metric == res_b.best_metric and res_a.best_epoch == res_b.best_epoch
    assert res_b.epochs_run == 6 and strip_seconds(res_b.history) == ma


def test_resume_after_early_stop_and_partial_metrics_line(tmp_path):
    """An early-stopped run resumes to the same end; a metrics line written after the last
    checkpoint (a kill between the two) is dropped on resume."""
    scripted = [0.1, 0.5, 0.4, 0.3, 0.2, 0.9]

    def validate_factory():
        it = iter(scripted)
        return lambda m: {"ndcg@20": next(it)}

    c = dict(epochs=6, valid_metric="ndcg@20", patience=3)
    a = make_model()
    res_a = Trainer(a, tiny_dataset(), cfg(**c), tmp_path / "a", validate=validate_factory(),
                    console=QUIET).fit()
    assert res_a.stopped_early and res_a.epochs_run == 5

    b = make_model()
    with pytest.raises(TrainingInterrupted):
        Trainer(b, tiny_dataset(), cfg(stop_after_epochs=2, **c), tmp_path / "b",
                validate=validate_factory(), console=QUIET).fit()
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 2, "loss": 0.0}) + "\n")
    it = iter(scripted[2:])
    b2 = make_model(seed=5)
    res_b = Trainer(b2, tiny_dataset(), cfg(**c), tmp_path / "b",
                    validate=lambda m: {"ndcg@20": next(it)}, console=QUIET).fit(resume=True)
    assert res_b.stopped_early and res_b.best_epoch == 1 == res_a.best_epoch
    assert strip_seconds(read_metrics(tmp_path / "b" / "metrics.jsonl")) == strip_seconds(
        read_metrics(tmp_path / "a" / "metrics.jsonl"))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b2.state_dict()[k])
    # resuming a finished run goes straight to the end with the same result
    b3 = make_model(seed=7)
    res_c = Trainer(b3, tiny_dataset(), cfg(**c), tmp_path / "b", validate=validate_factory(),
                    console=QUIET).fit(resume=True)
    assert (res_c.best_epoch, res_c.best_metric, res_c.epochs_run, res_c.stopped_early) == (
        res_b.best_epoch, res_b.best_metric, res_b.epochs_run, res_b.stopped_early)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b3.state_dict()[k])


def test_resume_refuses_changed_config_and_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint.pt"):
        Trainer(make_model(), tiny_dataset(), cfg(), tmp_path, console=QUIET).fit(resume=True)
    with pytest.raises(TrainingInterrupted):
        Trainer(make_model(), tiny_dataset(), cfg(stop_after_epochs=1), tmp_path,
                console=QUIET).fit()
    with pytest.raises(ValueError, match="lr"):
        Trainer(make_model(), tiny_dataset(), cfg(lr=0.1), tmp_path, console=QUIET).fit(
            resume=True)


def test_keyboard_interrupt_keeps_last_checkpoint(tmp_path):
    class Kill(Callback):
        def on_batch_end(self, trainer, step, loss):
            if trainer.current_epoch == 2 and step == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(make_model(), tiny_dataset(), cfg(), tmp_path, callbacks=[Kill()],
                console=QUIET).fit()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    a = make_model()
    train_model(a, tiny_dataset(), cfg(), console=QUIET)
    b = make_model()
    Trainer(b, tiny_dataset(), cfg(), tmp_path, console=QUIET).fit(resume=True)
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-6, rtol=0)
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(6))


def test_progress_bar_and_epoch_lines_render():
    console = Console(record=True, width=120, force_terminal=False)
    train_model(make_model(), tiny_dataset(), cfg(epochs=2, progress=True),
                validate=make_validate(), console=console)
    text = console.export_text()
    assert "epoch   1/2" in text and "epoch   2/2" in text and "neg_loss=" in text
