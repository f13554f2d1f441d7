"""The diffusion model's derivations (DiffRec, L-DiffRec) and the GAN's game (CFGAN).

* the closed form ``q(x_t | x_0) = N(sqrt(a_t) x_0, (1 - a_t) I)`` against iterating the
  forward steps, exactly (propagating mean and variance) and by Monte Carlo;
* the posterior ``q(x_{t-1} | x_t, x_0)`` against Bayes' rule evaluated on a grid;
* the schedule's properties and the importance sampler of the steps;
* diffrec, l-diffrec and cfgan against popularity on the tiny world (each must beat it on
  test NDCG@20);
* one GAN step moves its own player only; both players' losses reach metrics.jsonl.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.data.dataset import Dataset
from streamrec.models.cfgan import CFGAN, CFGANConfig, GanBatch
from streamrec.models.diffrec import (
    Denoiser,
    GaussianDiffusion,
    StepSampler,
    linear_variance_betas,
    timestep_embedding,
)
from streamrec.models.ldiffrec import LDiffRec, LDiffRecConfig, item_clusters
from streamrec.models.rows import UserRows
from streamrec.run import train_run

pytestmark = pytest.mark.usefixtures("one_thread")


def big_noise() -> GaussianDiffusion:
    """A schedule with enough noise for Monte-Carlo checks (variances 0.01 .. 0.6)."""
    return GaussianDiffusion(linear_variance_betas(8, 1.0, 0.01, 0.6, first_beta=None))


# ============================================================================ schedule
def test_linear_variance_schedule() -> None:
    steps, scale, lo, hi = 6, 0.1, 0.01, 0.2
    betas = linear_variance_betas(steps, scale, lo, hi, first_beta=None)
    d = GaussianDiffusion(betas)
    # the variance of q(x_t | x_0) is exactly the linear ramp
    assert torch.allclose(1 - d.alpha_bar, torch.linspace(scale * lo, scale * hi, steps,
                                                          dtype=torch.float64), atol=1e-15)
    assert ((betas > 0) & (betas < 1)).all()
    assert (d.alpha_bar[1:] < d.alpha_bar[:-1]).all()  # signal decays step by step
    assert (d.snr(torch.arange(1, steps)) < d.snr(torch.arange(steps - 1))).all()
    # the first beta fixed (the authors' 1e-5): the others are unchanged
    fixed = linear_variance_betas(steps, scale, lo, hi)
    assert fixed[0] == 1e-5 and torch.equal(fixed[1:], betas[1:])
    # posterior at t = 0 is the point x_0; elsewhere its variance is below the step's beta
    assert d.coef_x0[0] == pytest.approx(1.0) and d.coef_xt[0] == 0 and d.posterior_var[0] == 0
    assert (d.posterior_var[1:] < d.betas[1:]).all() and (d.posterior_var[1:] > 0).all()
    with pytest.raises(ValueError, match="betas"):
        GaussianDiffusion(torch.tensor([0.1, 0.0]))


def test_closed_form_q_equals_iterated_forward_steps_exactly() -> None:
    """Propagate mean and variance through ``x_t = sqrt(1-b_t) x_{t-1} + sqrt(b_t) eps``."""
    d = big_noise()
    x0 = torch.tensor([[0.0, 1.0, -2.0, 0.5]], dtype=torch.float64)
    mean, var = x0.clone(), torch.zeros(1, 1, dtype=torch.float64)
    for t in range(d.steps):
        b = d.betas[t]
        mean, var = (1 - b).sqrt() * mean, (1 - b) * var + b
        m, v = d.q_mean_var(x0, torch.tensor([t]))
        assert torch.allclose(m, mean, atol=1e-12) and torch.allclose(v, var, atol=1e-12)


def test_closed_form_q_against_monte_carlo_forward_chain() -> None:
    d = big_noise()
    gen = torch.Generator().manual_seed(0)
    n, x0 = 200_000, 0.8
    x = torch.full((n,), x0, dtype=torch.float64)
    for t in range(d.steps):
        b = d.betas[t]
        x = (1 - b).sqrt() * x + b.sqrt() * torch.randn(n, generator=gen, dtype=torch.float64)
    mean, var = d.q_mean_var(torch.tensor([[x0]], dtype=torch.float64),
                             torch.tensor([d.steps - 1]))
    se = math.sqrt(float(var) / n)
    assert abs(x.mean().item() - float(mean)) < 5 * se
    assert abs(x.var().item() - float(var)) < 5 * float(var) * math.sqrt(2 / n)
    # and q_sample draws from the same law in one step
    one = d.q_sample(torch.full((n, 1), x0, dtype=torch.float64),
                     torch.full((n,), d.steps - 1, dtype=torch.long))
    assert abs(one.mean().item() - float(mean)) < 5 * se
    assert abs(one.var().item() - float(var)) < 5 * float(var) * math.sqrt(2 / n)


@pytest.mark.parametrize("t", [1, 4, 7])
def test_posterior_matches_bayes_rule_on_a_grid(t: int) -> None:
    """``q(x_{t-1} | x_t, x_0) ~ q(x_t | x_{t-1}) q(x_{t-1} | x_0)`` for a scalar Gaussian."""
    d = big_noise()
    x0, xt = 0.7, -0.3
    a_prev, b = float(d.alpha_bar[t - 1]), float(d.betas[t])
    grid = np.linspace(-8, 8, 400_001)
    log_prior = -0.5 * (grid - math.sqrt(a_prev) * x0) ** 2 / (1 - a_prev)
    log_lik = -0.5 * (xt - math.sqrt(1 - b) * grid) ** 2 / b
    w = np.exp(log_prior + log_lik - (log_prior + log_lik).max())
    w /= w.sum()
    mean_num = float((w * grid).sum())
    var_num = float((w * (grid - mean_num) ** 2).sum())
    mean, var = d.q_posterior(torch.tensor([[x0]], dtype=torch.float64),
                              torch.tensor([[xt]], dtype=torch.float64), torch.tensor([t]))
    assert float(mean) == pytest.approx(mean_num, abs=1e-6)
    assert float(var) == pytest.approx(var_num, rel=1e-5)


def test_reverse_with_a_perfect_denoiser_returns_x0() -> None:
    d = GaussianDiffusion(linear_variance_betas(5, 0.01, 0.001, 0.01))
    x0 = (torch.rand(4, 30) < 0.2).float()
    out = d.reverse(lambda x, t: x0, x0 + 0.01 * torch.randn_like(x0), sampling_steps=2)
    assert torch.allclose(out, x0, atol=1e-6)  # the last step's coefficients are 1 and 0


# ============================================================================ pieces
def test_embedding_denoiser_and_history_rows(small_ds: Dataset) -> None:
    t = torch.tensor([0, 3, 49])
    emb = timestep_embedding(t, 9)
    assert emb.shape == (3, 9) and torch.equal(emb[:, -1], torch.zeros(3))
    assert torch.allclose(emb[0, :4], torch.ones(4))  # cos(0) = 1
    f = Denoiser(40, [16, 8], time_dim=6, dropout=0.5)
    assert [layer.out_features for layer in f.layers] == [16, 8, 16, 40]
    assert f(torch.rand(3, 40), t).shape == (3, 40)
    rows = UserRows(small_ds, torch.device("cpu"))(torch.tensor([5, 0, 5]))
    want = torch.as_tensor(small_ds.csr()[[5, 0, 5]].toarray())
    assert torch.equal(rows, want)


def test_step_sampler_is_uniform_then_follows_the_losses() -> None:
    s = StepSampler(4, warmup=3, uniform=0.0)
    assert torch.allclose(s.probabilities(), torch.full((4,), 0.25, dtype=torch.float64))
    t = torch.tensor([0, 1, 2, 3] * 3)
    s.update(t, torch.tensor([1.0, 2.0, 2.0, 4.0] * 3))
    p = s.probabilities()  # sqrt(E[L_t^2]) = L_t: p ~ (1, 2, 2, 4)
    assert torch.allclose(p, torch.tensor([1, 2, 2, 4], dtype=torch.float64) / 9)
    steps, weights = s.sample(10_000)
    assert torch.allclose(weights, 1 / (4 * p[steps]).float())
    assert abs((steps == 3).float().mean().item() - 4 / 9) < 0.03


# ============================================================================ models learn
def _ndcg(run) -> float:  # noqa: ANN001
    return run.results["test"]["metrics"]["ndcg@20"]


@pytest.fixture(scope="module")
def pop_ndcg(tiny: Dataset) -> float:
    return _ndcg(train_run("pop", tiny, None, progress=False))


def test_diffrec_beats_popularity(tiny: Dataset, pop_ndcg: float) -> None:
    torch.manual_seed(0)
    run = train_run("diffrec", tiny, None, overrides=["epochs=15"],
                    progress=False)
    assert _ndcg(run) > 1.5 * pop_ndcg


def test_ldiffrec_beats_popularity(tiny: Dataset, pop_ndcg: float) -> None:
    # 2.2x popularity; with the authors' dropout of 0.5 on the latent denoiser's input, 1.09x
    torch.manual_seed(0)
    run = train_run("l-diffrec", tiny, None, overrides=["epochs=40", "lr=3e-3"], progress=False)
    assert _ndcg(run) > 1.5 * pop_ndcg


def test_cfgan_beats_popularity_and_logs_both_players(
    tiny: Dataset, pop_ndcg: float, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    run = train_run("cfgan", tiny, tmp_path / "gan",
                    overrides=["g_hidden=[64]", "activation=relu", "zr_weight=0.1",
                               "epochs=20", "patience=0"],
                    progress=False)
    assert _ndcg(run) > 1.3 * pop_ndcg
    lines = [json.loads(x) for x in (tmp_path / "gan" / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 20
    for rec in lines:
        assert set(rec["model"]) == {"d_loss", "g_loss", "d_real", "d_fake"}
        assert all(math.isfinite(v) for v in rec["model"].values())
    # the instability measure is in results.json
    saved = json.loads((tmp_path / "gan" / "results.json").read_text())
    assert saved["train"]["valid_tail_std"] >= 0


def test_cfgan_has_a_default_time_budget_that_an_option_replaces() -> None:
    from streamrec.train.config import build_configs

    assert build_configs("cfgan")[1].time_budget == 600.0
    assert build_configs("cfgan", overrides=["time_budget=1h"])[1].time_budget == 3600.0
    # the others leave it to the budget (10 minutes when training starts)
    assert build_configs("diffrec")[1].time_budget is None
    assert build_configs("cfgan", overrides=["time_budget=off"])[1].time_budget == 0.0


@pytest.mark.parametrize("columns", ["all", 5])
def test_a_gan_step_moves_only_its_own_player(small_ds: Dataset, columns: str | int) -> None:
    torch.manual_seed(0)
    model = CFGAN(CFGANConfig(g_hidden=[8], d_hidden=[8], columns=columns), small_ds)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batches = list(model.batches(small_ds, 16, np.random.default_rng(0)))
    assert {b.player for b in batches} == {"D", "G"} and len(batches) == model.num_batches(
        small_ds, 16)

    def snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in module.parameters()]

    def changed(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
        return any(not torch.equal(a, p) for a, p in zip(before, module.parameters()))

    for player in ("D", "G"):
        g0, d0 = snapshot(model.generator), snapshot(model.discriminator)
        opt.zero_grad(set_to_none=True)
        model.loss(GanBatch(player, torch.arange(16))).backward()
        mine, other = ((model.discriminator, model.generator) if player == "D"
                       else (model.generator, model.discriminator))
        assert all(p.grad is None for p in other.parameters())
        opt.step()
        assert changed(d0 if player == "D" else g0, mine)
        assert not changed(g0 if player == "D" else d0, other)
    logs = model.epoch_logs()
    assert set(logs) == {"d_loss", "g_loss", "d_real", "d_fake"}


def test_cfgan_on_sampled_columns_is_the_full_game_restricted_to_them(small_ds: Dataset) -> None:
    torch.manual_seed(0)
    model = CFGAN(CFGANConfig(g_hidden=[8], d_hidden=[8], g_l2=1e-3), small_ds)
    next(iter(model.batches(small_ds, 16, np.random.default_rng(0))))  # the training rows
    users = torch.arange(4)
    full = model.train_rows(users)
    n = small_ds.n_items
    # a subset holding the batch's purchases: G's outputs and D's logits are the full ones
    bought = torch.nonzero(full.sum(0)).flatten()
    cols = torch.unique(torch.cat([bought, torch.randperm(n)[:3]]))
    assert len(cols) < n
    torch.testing.assert_close(model.generate(full, cols), model.generate(full)[:, cols])
    r = torch.rand(4, n) * torch.isin(torch.arange(n), cols)  # zero outside the columns
    torch.testing.assert_close(model.discriminate(r[:, cols], full[:, cols], cols=cols),
                               model.discriminate(r, full))
    # every column "sampled": each player's loss is the full game's, ZR's scale is 1
    for player in ("D", "G"):
        losses = []
        for sampled in (False, True):
            model._columns = (lambda u: torch.arange(n)) if sampled else (lambda u: None)
            torch.manual_seed(1)
            losses.append(model.loss(GanBatch(player, users)))
        torch.testing.assert_close(losses[1], losses[0])


def test_cfgan_columns_option() -> None:
    from streamrec.common import OptionsError
    from streamrec.models.cfgan import AUTO_ALL_ITEMS, AUTO_COLUMNS

    assert CFGANConfig().sampled_columns(10**6) is None  # the default: every column
    auto = CFGANConfig(columns="auto")
    assert auto.sampled_columns(AUTO_ALL_ITEMS) is None
    assert auto.sampled_columns(AUTO_ALL_ITEMS + 1) == AUTO_COLUMNS
    assert CFGANConfig(columns="all").sampled_columns(10**6) is None
    assert CFGANConfig(columns=100).sampled_columns(1000) == 100
    assert CFGANConfig(columns=100).sampled_columns(100) is None  # all of them anyway
    for bad in (0, "some", 2.5):
        with pytest.raises(OptionsError, match="columns"):
            CFGANConfig(columns=bad)


def test_ldiffrec_groups_items_and_learns(tiny: Dataset) -> None:
    from streamrec.data.splits import make_split

    train = make_split(tiny, "loo").train(tiny)
    groups = item_clusters(train, 3, 16, seed=0)
    assert groups.shape == (tiny.n_items,) and set(np.unique(groups)) == {0, 1, 2}
    torch.manual_seed(0)
    model = LDiffRec(LDiffRecConfig(n_clusters=3, svd_dim=16, latent_dim=24, hidden=[32]), train)
    assert sum(model.latent_widths) == 24
    assert sorted(torch.cat(model.group_items()).tolist()) == list(range(tiny.n_items))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    losses = []
    for epoch in range(15):
        model.on_epoch_start(epoch)
        total = 0.0
        for users in model.batches(train, 64, rng):
            opt.zero_grad()
            loss = model.loss(torch.as_tensor(users))
            loss.backward()
            opt.step()
            total += float(loss.detach())
        losses.append(total)
    assert losses[-1] < 0.8 * losses[0]
    model.eval()
    scores = model.score(torch.arange(4), train)
    assert scores.shape == (4, tiny.n_items) and torch.isfinite(scores).all()


# ============================================================================ synthetic users
def test_diffrec_and_ldiffrec_sample_users_from_noise(small_ds: Dataset) -> None:
    from streamrec.models.diffrec import DiffRec, DiffRecConfig

    torch.manual_seed(0)
    model = DiffRec(DiffRecConfig(hidden=[16]), small_ds)
    model.train()
    g = torch.Generator().manual_seed(0)
    x = model.sample(7, generator=g)  # Bernoulli: the model's own counts
    assert x.shape == (7, small_ds.n_items) and set(x.unique().tolist()) <= {0.0, 1.0}
    assert model.training  # the mode is restored
    counts = [3, 0, 8]
    for draw in ("weighted", "top"):
        rows = model.sample(3, counts, draw=draw, generator=g)
        assert rows.shape == (3, small_ds.n_items) and rows.sum(1).tolist() == counts
    top_a = model.sample(3, counts, draw="top", generator=torch.Generator().manual_seed(1))
    top_b = model.sample(3, counts, draw="top", generator=torch.Generator().manual_seed(1))
    assert torch.equal(top_a, top_b)
    with pytest.raises(ValueError, match="needs counts"):
        model.sample(3, draw="weighted")
    latent = LDiffRec(LDiffRecConfig(n_clusters=2, svd_dim=4, latent_dim=8, hidden=[8]),
                      small_ds)
    rows = latent.sample(np.array([2, 6, 0, 1]), torch.Generator().manual_seed(0))
    assert rows.shape == (4, small_ds.n_items) and rows.sum(1).tolist() == [2, 6, 0, 1]
