"""Mult-VAE / Mult-DAE and EASE from their derivations (``docs/generative.md``).

* the Gaussian KL in closed form against a Monte-Carlo estimate;
* the reparameterised gradient of ``E_q[f(z)]`` against autograd of the closed-form expectation;
* the β-ELBO on a case worked by hand, the model's loss against it, the annealing schedule;
* EASE against a direct constrained least-squares solve, column by column;
* EASE's memory guard refuses before anything is allocated;
* Mult-VAE and Mult-DAE learn: they beat popularity on the tiny world.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import streamrec.models.ease as ease_mod
from streamrec.data.dataset import Dataset
from streamrec.models.ease import EASE, EASEConfig, ModelMemoryError, ease_weights
from streamrec.models.multdae import MultDAE, MultDAEConfig
from streamrec.models.multvae import (
    MultVAE,
    MultVAEConfig,
    gaussian_kl,
    kl_weight,
    multinomial_nll,
    negative_elbo,
    reparameterize,
)
from streamrec.models.rows import UserRows
from streamrec.run import train_run

pytestmark = pytest.mark.usefixtures("one_thread")


# ============================================================================ the VAE's maths
def test_gaussian_kl_matches_a_monte_carlo_estimate() -> None:
    """KL(q ‖ p) = E_q[log q(z) − log p(z)], estimated from 200k draws of q."""
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([[0.5, -1.0, 0.0], [2.0, 0.3, -0.7]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, -1.0, 0.8], [0.4, -2.0, 0.1]], dtype=torch.float64)
    n = 200_000
    eps = torch.randn(n, *mu.shape, generator=g, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * eps
    log_q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    samples = log_q - log_p  # [n, 2]
    estimate, se = samples.mean(0), samples.std(0) / math.sqrt(n)
    exact = gaussian_kl(mu, logvar)
    assert exact.shape == (2,)
    assert torch.all((estimate - exact).abs() < 4 * se), (estimate, exact, se)
    # and the library's own closed form agrees
    lib = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, torch.exp(0.5 * logvar)),
        torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))).sum(-1)
    assert torch.allclose(exact, lib)
    assert gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0  # q = p


@pytest.mark.parametrize("f_name", ["quadratic", "exponential"])
def test_reparameterised_gradient_matches_autograd_of_the_exact_expectation(f_name: str) -> None:
    """∇_{μ, log σ²} E_{z~N(μ,σ²)}[f(z)]: the mean of ∇ f(μ + σ ε) over draws of ε against
    autograd of the expectation in closed form (E[a z² + b z] = a(μ² + σ²) + b μ,
    E[exp(c z)] = exp(c μ + c² σ² / 2))."""
    a = torch.tensor([0.7, -1.2, 2.0], dtype=torch.float64)
    b = torch.tensor([0.5, 1.0, -0.3], dtype=torch.float64)
    c = torch.tensor([0.4, -0.8, 0.6], dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return (a * z.pow(2) + b * z).sum(-1) if f_name == "quadratic" else torch.exp(c * z).sum(-1)

    def expectation(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        var = logvar.exp()
        if f_name == "quadratic":
            return (a * (mu.pow(2) + var) + b * mu).sum(-1)
        return torch.exp(c * mu + 0.5 * c.pow(2) * var).sum(-1)

    mu0 = torch.tensor([0.3, -0.5, 1.1], dtype=torch.float64)
    lv0 = torch.tensor([-0.4, 0.2, -1.0], dtype=torch.float64)
    mu, logvar = mu0.clone().requires_grad_(), lv0.clone().requires_grad_()
    eps = torch.randn(400_000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    f(reparameterize(mu, logvar, eps)).mean().backward()
    g_mu_mc, g_lv_mc = mu.grad.clone(), logvar.grad.clone()

    mu, logvar = mu0.clone().requires_grad_(), lv0.clone().requires_grad_()
    expectation(mu, logvar).backward()
    assert torch.allclose(g_mu_mc, mu.grad, atol=0.01, rtol=0.01), (g_mu_mc, mu.grad)
    assert torch.allclose(g_lv_mc, logvar.grad, atol=0.01, rtol=0.01), (g_lv_mc, logvar.grad)


def test_negative_elbo_on_a_worked_case() -> None:
    """x = (1, 1, 0), logits (0, ln 2, 0): π = (¼, ½, ¼), −log p = ln 4 + ln 2 = 3 ln 2.
    μ = (1, 0), log σ² = (0, ln 4): KL = ½[(1 + 1 − 1 − 0) + (4 + 0 − 1 − ln 4)] = 2 − ln 2.
    With β = ½: 3 ln 2 + 1 − ½ ln 2 = 1 + 2.5 ln 2; the second user (no KL, one item of
    π = ⅓ each): ln 3. The loss is their mean."""
    ln2, ln3 = math.log(2), math.log(3)
    logits = torch.tensor([[0.0, ln2, 0.0], [1.0, 1.0, 1.0]])
    x = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logvar = torch.tensor([[0.0, math.log(4)], [0.0, 0.0]])
    assert torch.allclose(multinomial_nll(logits, x), torch.tensor([3 * ln2, ln3]))
    assert torch.allclose(gaussian_kl(mu, logvar), torch.tensor([2 - ln2, 0.0]))
    want = ((1 + 2.5 * ln2) + ln3) / 2
    assert negative_elbo(logits, x, mu, logvar, beta=0.5).item() == pytest.approx(want, rel=1e-6)


def test_the_model_loss_is_the_annealed_negative_elbo(small_ds: Dataset) -> None:
    """MultVAE.loss of a batch = negative_elbo of its own forward pass with β_t = t / T;
    β then climbs by 1/T a step up to the cap."""
    cfg = MultVAEConfig(hidden=16, latent=4, dropout=0.0, anneal_cap=0.3,
                        total_anneal_steps=4)
    torch.manual_seed(0)
    model = MultVAE(cfg, small_ds).train()
    users = torch.arange(10)
    x = UserRows(small_ds, "cpu").dense(users)
    betas = []
    for step in range(6):
        torch.manual_seed(step)
        loss = model.loss(users)
        betas.append(model.selected_beta)
        torch.manual_seed(step)
        with torch.no_grad():
            mu, logvar = model.encode(torch.nn.functional.normalize(x, dim=-1))
            logits = model.out(model.decoder(reparameterize(mu, logvar)))
            want = negative_elbo(logits, x, mu, logvar, kl_weight(step, 4, 0.3))
        assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert betas == pytest.approx([0.0, 0.25, 0.3, 0.3, 0.3, 0.3])
    assert int(model.anneal_step) == 6
    logs = model.epoch_logs()
    assert set(logs) == {"nll", "kl", "beta"} and logs["beta"] == pytest.approx(0.3)
    assert model.epoch_logs() == {}  # reset after each epoch


def test_user_rows_are_the_history_rows(small_ds: Dataset) -> None:
    rows = UserRows(small_ds, "cpu")
    users = torch.tensor([5, 0, 5, 59, 17])
    want = small_ds.csr()[users.numpy()].toarray()
    assert np.array_equal(rows.dense(users).numpy(), want)
    assert np.array_equal(rows.sparse(users).to_dense().numpy(), want)
    assert UserRows.cached(rows, small_ds, torch.device("cpu")) is rows


def test_scores_come_from_the_history_given() -> None:
    """A user's scores follow the history passed at scoring time (an autoencoder reads it)."""
    ds = Dataset(name="h", user_ids=["a", "b"], item_ids=[f"i{i}" for i in range(6)],
                 inter={"user": np.array([0, 0, 1]), "item": np.array([0, 1, 2]),
                        "timestamp": np.array([1, 2, 3])})
    torch.manual_seed(0)
    model = MultDAE(MultDAEConfig(hidden=8, latent=4), ds).eval()
    other = Dataset(name="h2", user_ids=["a", "b"], item_ids=ds.item_ids,
                    inter={"user": np.array([0, 1]), "item": np.array([4, 2]),
                           "timestamp": np.array([1, 3])})
    with torch.no_grad():
        s1, s2 = model.score(torch.tensor([0, 1]), ds), model.score(torch.tensor([0, 1]), other)
    assert not torch.allclose(s1[0], s2[0]) and torch.allclose(s1[1], s2[1])


# ============================================================================ EASE
def _ease_by_least_squares(x: np.ndarray, l2: float) -> np.ndarray:
    """min_B ‖X − XB‖² + λ‖B‖² s.t. diag(B) = 0, one column at a time: column j is the ridge
    regression of X[:, j] on the other columns (stacked with √λ·I for the penalty)."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = [k for k in range(n) if k != j]
        a = np.vstack([x[:, others], math.sqrt(l2) * np.eye(n - 1)])
        y = np.concatenate([x[:, j], np.zeros(n - 1)])
        b[others, j] = np.linalg.lstsq(a, y, rcond=None)[0]
    return b


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ease_matches_the_constrained_least_squares_solution(dtype: str) -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((40, 9)) < 0.3).astype(np.float64)
    x[:, 4] = 0  # an item nobody has: its column and row of B are zero
    for l2 in (0.5, 10.0):
        want = _ease_by_least_squares(x, l2)
        got = ease_weights(sp.csr_matrix(x), l2, np.zeros((9, 9), dtype=dtype))
        assert got.dtype == dtype and np.all(np.diag(got) == 0)
        tol = 1e-10 if dtype == "float64" else 1e-5
        assert np.allclose(got, want, atol=tol), np.abs(got - want).max()


def test_ease_blocks_and_model_scores(small_ds: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gram rows built a few at a time give the same B; the model scores x_u B."""
    full = ease_weights(small_ds.csr(), 3.0, np.zeros((40, 40)))
    monkeypatch.setattr(ease_mod, "BLOCK_BYTES", 40 * 20 * 7)  # 7 rows a block
    assert ease_mod._block_rows(40, 8) == 7
    assert np.allclose(ease_weights(small_ds.csr(), 3.0, np.zeros((40, 40))), full)
    monkeypatch.undo()
    model = EASE(EASEConfig(l2=3.0, dtype="float64"), small_ds)
    model.fit(small_ds)
    assert np.allclose(model.B.numpy(), full)
    users = torch.tensor([3, 0, 7])
    want = small_ds.csr()[users.numpy()].astype(np.float64) @ full
    scores = model.score(users, small_ds)
    assert scores.dtype == torch.float32 and np.allclose(scores.numpy(), want, atol=1e-5)
    f32 = EASE(EASEConfig(l2=3.0), small_ds)
    f32.fit(small_ds)
    assert np.allclose(f32.B.numpy(), full, atol=1e-5)


def test_ease_refuses_before_allocating_when_memory_is_short(
    small_ds: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ease_mod.available_memory() > 0
    monkeypatch.setattr(ease_mod, "available_memory", lambda: 20_000)

    def no_allocation(*args: object, **kwargs: object) -> None:
        raise AssertionError("the item-item matrix was allocated before the memory check")

    monkeypatch.setattr(ease_mod.torch, "zeros", no_allocation)
    with pytest.raises(ModelMemoryError) as err:
        EASE(EASEConfig(), small_ds)
    msg = str(err.value)
    assert isinstance(err.value, ValueError) and "\n" not in msg
    need = ease_mod.ease_memory_bytes(40, small_ds.n_interactions, 4)
    assert need > 20_000 and f"{need / 2**20:.1f} MiB" in msg and "0.0 MiB of memory" in msg
    assert "40 x 40 float32" in msg
    assert "gf-cf" in msg and "items" in msg
    with pytest.raises(ModelMemoryError, match="dtype=float32"):
        EASE(EASEConfig(dtype="float64"), small_ds)
    monkeypatch.undo()
    # a catalogue of 300k items needs 2 x 360 GB in float32: refused here, nothing allocated
    big = Dataset(name="big", user_ids=["u"], item_ids=[str(i) for i in range(300_000)],
                  inter={"user": np.array([0]), "item": np.array([7]), "timestamp": np.array([0])})
    with pytest.raises(ModelMemoryError, match=r"300,000 x 300,000 float32"):
        EASE(EASEConfig(), big)


# ============================================================================ they learn
@pytest.mark.parametrize("name", ["mult-vae", "mult-dae"])
def test_the_autoencoders_beat_popularity_on_the_tiny_world(name: str, tiny: Dataset) -> None:
    pop = train_run("pop", tiny, None, progress=False).results["test"]["metrics"]
    run = train_run(name, tiny, None, progress=False, overrides=[
        "hidden=64", "latent=16", "batch_size=50", "epochs=25", "lr=3e-3", "seed=0"])
    got = run.results["test"]["metrics"]
    assert got["ndcg@20"] > 1.3 * pop["ndcg@20"], (got["ndcg@20"], pop["ndcg@20"])
    if name == "mult-vae":  # β is the one of the kept (best validated) epoch
        steps = run.model.num_batches(run.split.train(tiny), 50)
        best = run.results["train"]["best_epoch"]
        t = (best + 1) * steps
        assert int(run.model.anneal_step) == t
        assert run.model.selected_beta == pytest.approx(min(1.0, (t - 1) / (100 * steps)))


# ============================================================================ synthetic users
def test_draw_without_replacement_gives_the_counts_and_the_sequential_law() -> None:
    from streamrec.models.multvae import draw_without_replacement

    g = torch.Generator().manual_seed(0)
    n = 20_000
    logits = torch.log(torch.tensor([0.5, 0.3, 0.2, 0.0])).expand(n, 4)  # item 3: never
    one = draw_without_replacement(logits, np.ones(n, dtype=np.int64), g)
    assert one.shape == (n, 4) and torch.equal(one.sum(1), torch.ones(n))
    assert torch.allclose(one.mean(0), torch.tensor([0.5, 0.3, 0.2, 0.0]), atol=0.015)
    two = draw_without_replacement(logits, torch.full((n,), 2), g)
    assert torch.equal(two.sum(1), torch.full((n,), 2.0))  # two distinct items a row
    # P(item 2 among two successive draws) = 0.2 + 0.5 * 0.2/0.5 + 0.3 * 0.2/0.7
    assert two[:, 2].mean().item() == pytest.approx(0.2 + 0.2 + 0.06 / 0.7, abs=0.015)
    assert two[:, 3].sum() == 0
    mixed = draw_without_replacement(logits[:4], [0, 1, 3, 4], g)
    assert mixed.sum(1).tolist() == [0, 1, 3, 4]
    assert mixed[2, :3].tolist() == [1, 1, 1]  # -inf is drawn only when nothing else is left
    with pytest.raises(ValueError, match="counts must lie"):
        draw_without_replacement(logits[:2], [1, 5], g)


def test_mult_vae_samples_users_from_its_prior(small_ds: Dataset) -> None:
    torch.manual_seed(0)
    model = MultVAE(MultVAEConfig(hidden=16, latent=4), small_ds)
    counts = np.array([1, 5, 0, 12, small_ds.n_items])
    x = model.sample(counts, torch.Generator().manual_seed(3))
    assert x.shape == (5, small_ds.n_items) and x.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert x.sum(1).tolist() == counts.tolist()
    again = model.sample(torch.as_tensor(counts), torch.Generator().manual_seed(3))
    assert torch.equal(x, again)  # reproducible from the generator
