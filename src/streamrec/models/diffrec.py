"""DiffRec (Wang et al., SIGIR 2023): Gaussian diffusion on a user's interaction vector.

A user's training history is a binary vector ``x_0`` in ``{0, 1}^n_items``. The forward process
adds a little Gaussian noise in ``T`` steps (``docs/generative.md`` derives every formula)::

    q(x_t | x_{t-1}) = N(sqrt(1 - b_t) x_{t-1}, b_t I)
    q(x_t | x_0)     = N(sqrt(a_t) x_0, (1 - a_t) I),          a_t = prod_{s<=t} (1 - b_s)
    q(x_{t-1} | x_t, x_0) = N(c0_t x_0 + ct_t x_t, v_t I)      (the posterior, Bayes' rule)

and a denoiser ``f(x_t, t)`` (an MLP over ``x_t`` concatenated with a sinusoidal embedding of
``t``) learns to predict ``x_0``: the x0 objective ``mean_i (f(x_t, t)_i - x_{0,i})^2`` with
``t`` drawn by importance sampling (``p_t ~ sqrt(E[L_t^2])``) once every step has a loss
history, and optionally the ELBO's weight ``SNR(t-1) - SNR(t)`` (``reweight``).

Scores: start from the history itself (``sampling_steps = 0``, the paper's choice) or from it
noised to step ``sampling_steps``, then run the ``T`` reverse steps ``x_{t-1} = posterior mean(
f(x_t, t), x_t)``; the last step returns the predicted ``x_0`` (its coefficients are exactly 1
and 0), whose entries are the item scores.

:meth:`DiffRec.sample` generates synthetic users from noise (``benchmarks/generative.py``
compares them with real ones).

Indices: the code numbers steps ``0 .. T-1`` (step ``t`` here is the paper's ``t + 1``).

Schedule (the paper's "linear-var"): the variance ``1 - a_t`` grows linearly from
``noise_scale * noise_min`` to ``noise_scale * noise_max``; ``b_0`` is then fixed to
``first_beta`` (1e-5, as in the authors' code after Sohl-Dickstein et al. 2015, 2.4.1).

Defaults: the paper's denoiser (one hidden layer of 1,000 tanh units, a 10-dim time embedding,
dropout 0.5 on the input) and few steps with little noise (``T = 5``, variances 1e-5 .. 1e-4),
as the paper's best settings on its clean datasets: recommendation wants the personalised
signal of the history kept, not destroyed (``docs/generative.md``).

Everything after construction runs on the model's device: history rows are built there from a
CSR kept there (:class:`~streamrec.models.rows.UserRows`); the only host work per batch is the
user permutation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from streamrec.common import at_least, in_range
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender
from streamrec.models.multvae import as_counts, draw_without_replacement
from streamrec.models.rows import UserBatches


# ============================================================================ the diffusion
def linear_variance_betas(steps: int, noise_scale: float, noise_min: float, noise_max: float,
                          first_beta: float | None = 1e-5, max_beta: float = 0.999) -> Tensor:
    """The paper's "linear-var" schedule: ``b`` float64 [steps].

    The variance ``1 - a_t`` of ``q(x_t | x_0)`` runs linearly from ``noise_scale * noise_min``
    to ``noise_scale * noise_max``, so ``b_0 = 1 - a_0`` and ``b_t = 1 - a_t / a_{t-1}`` (capped
    at ``max_beta``); then ``b_0`` is replaced by ``first_beta`` unless it is None.
    """
    var = torch.linspace(noise_scale * noise_min, noise_scale * noise_max, steps,
                         dtype=torch.float64)
    alpha_bar = 1.0 - var
    betas = torch.empty(steps, dtype=torch.float64)
    betas[0] = var[0]
    betas[1:] = (1.0 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
    if first_beta is not None:
        betas[0] = first_beta
    return betas


class GaussianDiffusion(nn.Module):
    """The schedule's tensors (float64 buffers [T], derived from ``betas``, not saved) and the
    closed forms of the diffusion; ``t`` is always an int64 tensor [B] of steps in ``0..T-1``.

    ``alpha_bar[t] = prod_{s<=t} (1 - b_s)``; ``alpha_bar_prev[t] = alpha_bar[t-1]`` (1 at
    ``t = 0``); the posterior ``q(x_{t-1} | x_t, x_0) = N(coef_x0[t] x_0 + coef_xt[t] x_t,
    posterior_var[t] I)`` with

    * ``coef_x0 = b_t sqrt(alpha_bar_prev) / (1 - alpha_bar)``,
    * ``coef_xt = (1 - alpha_bar_prev) sqrt(1 - b_t) / (1 - alpha_bar)``,
    * ``posterior_var = b_t (1 - alpha_bar_prev) / (1 - alpha_bar)``.
    """

    def __init__(self, betas: Tensor) -> None:
        super().__init__()
        betas = betas.to(torch.float64)
        if betas.ndim != 1 or not ((betas > 0) & (betas <= 1)).all():
            raise ValueError("betas must be a 1-d tensor of values in (0, 1]")
        alpha_bar = torch.cumprod(1.0 - betas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        tensors = {
            "betas": betas,
            "alpha_bar": alpha_bar,
            "alpha_bar_prev": prev,
            "posterior_var": betas * (1.0 - prev) / (1.0 - alpha_bar),
            "coef_x0": betas * prev.sqrt() / (1.0 - alpha_bar),
            "coef_xt": (1.0 - prev) * (1.0 - betas).sqrt() / (1.0 - alpha_bar),
        }
        for name, value in tensors.items():
            self.register_buffer(name, value, persistent=False)

    @property
    def steps(self) -> int:
        """T, the number of diffusion steps."""
        return len(self.betas)

    @staticmethod
    def _at(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        """``values[t]`` as a column [B, 1] in ``like``'s dtype."""
        return values[t].to(like.dtype).unsqueeze(-1)

    def q_mean_var(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean [B, d] and variance [B, 1] of ``q(x_t | x_0)``: ``sqrt(a_t) x_0``, ``1 - a_t``."""
        a = self._at(self.alpha_bar, t, x0)
        return a.sqrt() * x0, 1.0 - a

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor | None = None) -> Tensor:
        """A draw [B, d] of ``x_t ~ q(x_t | x_0)`` (``noise``: the standard normal [B, d])."""
        noise = torch.randn_like(x0) if noise is None else noise
        mean, var = self.q_mean_var(x0, t)
        return mean + var.sqrt() * noise

    def q_posterior(self, x0: Tensor, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean [B, d] and variance [B, 1] of ``q(x_{t-1} | x_t, x_0)``."""
        mean = self._at(self.coef_x0, t, x0) * x0 + self._at(self.coef_xt, t, xt) * xt
        return mean, self._at(self.posterior_var, t, x0)

    def snr(self, t: Tensor) -> Tensor:
        """Signal-to-noise ratio ``a_t / (1 - a_t)`` float64 [B]."""
        a = self.alpha_bar[t]
        return a / (1.0 - a)

    def elbo_weight(self, t: Tensor) -> Tensor:
        """Weight float32 [B] of the x0 error in the ELBO's term ``t``: ``SNR(t-1) - SNR(t)``
        (1 at ``t = 0``, where the term is the reconstruction)."""
        w = self.snr((t - 1).clamp(min=0)) - self.snr(t)
        return torch.where(t == 0, torch.ones_like(w), w).float()

    def reverse(self, denoise: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                sampling_steps: int = 0, sampling_noise: bool = False,
                generator: torch.Generator | None = None) -> Tensor:
        """Denoise a batch ``x`` [B, d]: noise it to step ``sampling_steps - 1`` (none at 0),
        then take the ``T`` reverse steps ``x <- posterior mean(denoise(x, t), x)`` (plus
        posterior noise when ``sampling_noise``, never at the last step). Returns [B, d]: the
        last step's prediction of ``x_0``."""
        def randn() -> Tensor:
            return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

        if sampling_steps > 0:
            t = torch.full((len(x),), sampling_steps - 1, dtype=torch.long, device=x.device)
            x = self.q_sample(x, t, randn())
        for step in reversed(range(self.steps)):
            t = torch.full((len(x),), step, dtype=torch.long, device=x.device)
            x, var = self.q_posterior(denoise(x, t), x, t)
            if sampling_noise and step > 0:
                x = x + var.sqrt() * randn()
        return x


class StepSampler(nn.Module):
    """Importance sampling of the training step ``t`` (the paper's Eq. 14).

    ``p_t ~ sqrt(E[L_t^2])`` mixed with ``uniform`` of the uniform distribution, once every
    step has seen ``warmup`` losses (uniform until then); ``E[L_t^2]`` is an exponential moving
    average over about ``warmup`` losses (the authors keep the last 10 in a ring). Its state
    (``loss_sq`` [T], ``count`` [T]) is saved with the weights so a resumed run samples alike.
    """

    def __init__(self, steps: int, warmup: int = 10, uniform: float = 1e-3) -> None:
        super().__init__()
        self.warmup, self.uniform = warmup, uniform
        self.register_buffer("loss_sq", torch.zeros(steps, dtype=torch.float64))
        self.register_buffer("count", torch.zeros(steps, dtype=torch.long))

    def probabilities(self) -> Tensor:
        """The sampling distribution float64 [T] (no host sync)."""
        steps = len(self.count)
        flat = torch.full_like(self.loss_sq, 1.0 / steps)
        w = self.loss_sq.sqrt()
        p = w / w.sum().clamp(min=1e-300) * (1.0 - self.uniform) + self.uniform / steps
        p = p / p.sum()
        return torch.where((self.count >= self.warmup).all(), p, flat)

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` steps int64 [n] and their importance weights ``1 / (T p_t)`` float32 [n]."""
        p = self.probabilities()
        t = torch.multinomial(p.float(), n, replacement=True)
        return t, (1.0 / (p[t] * len(p))).float()

    @torch.no_grad()
    def update(self, t: Tensor, losses: Tensor) -> None:
        """Record the per-example losses [n] (before importance weighting) of steps ``t``."""
        steps = len(self.count)
        n = torch.bincount(t, minlength=steps)
        sq = torch.zeros(steps, dtype=torch.float64, device=t.device).index_add_(
            0, t, losses.detach().double() ** 2)
        mean = sq / n.clamp(min=1)
        rate = 1.0 / self.warmup
        moved = torch.where(self.count > 0, (1 - rate) * self.loss_sq + rate * mean, mean)
        self.loss_sq.copy_(torch.where(n > 0, moved, self.loss_sq))
        self.count.add_(n)


# ============================================================================ the denoiser
def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding float32 [B, dim] of steps ``t`` [B]: ``cos`` then ``sin`` of ``t``
    times ``dim // 2`` geometric frequencies from 1 down to ``1 / max_period`` (a zero column
    pads an odd ``dim``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / max(half, 1))
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def xavier_init(layer: nn.Linear) -> None:
    """The authors' initialisation: weights ``N(0, 2 / (fan_in + fan_out))``, biases
    ``N(0, 0.001^2)``."""
    fan_out, fan_in = layer.weight.shape
    nn.init.normal_(layer.weight, 0.0, math.sqrt(2.0 / (fan_in + fan_out)))
    nn.init.normal_(layer.bias, 0.0, 1e-3)


class Denoiser(nn.Module):
    """``f(x_t, t)``: the noisy vector [B, dim] and its steps [B] -> the predicted ``x_0``
    [B, dim].

    ``[dropout(x_t), W_e emb(t)]`` -> tanh layers of widths ``hidden`` then their mirror
    (``hidden = [600, 200]`` gives ``dim+e -> 600 -> 200 -> 600 -> dim``; ``[1000]`` gives
    ``dim+e -> 1000 -> dim``) -> a linear output layer.
    """

    def __init__(self, dim: int, hidden: list[int], time_dim: int, dropout: float,
                 normalize: bool = False) -> None:
        super().__init__()
        self.time_dim, self.normalize = time_dim, normalize
        self.time_layer = nn.Linear(time_dim, time_dim)
        widths = [dim + time_dim, *hidden, *reversed(hidden[:-1]), dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.drop = nn.Dropout(dropout)
        for layer in [self.time_layer, *self.layers]:
            xavier_init(layer)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if self.normalize:
            x = nn.functional.normalize(x, dim=-1)
        h = torch.cat([self.drop(x), self.time_layer(timestep_embedding(t, self.time_dim))], -1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.tanh(h)
        return h


# ============================================================================ the model
@dataclass
class DiffusionOptions(ModelConfig):
    """Options shared by :class:`DiffRec` and L-DiffRec: the schedule, the loss and inference.

    steps: T, the number of diffusion steps.
    noise_scale, noise_min, noise_max: the variance of ``q(x_t | x_0)`` runs linearly from
        ``noise_scale * noise_min`` (t = 0) to ``noise_scale * noise_max`` (t = T-1).
    first_beta: ``b_0`` fixed to this small constant (None: from the schedule).
    reweight: weight the x0 error of step ``t`` by the ELBO's ``SNR(t-1) - SNR(t)``
        (False: the simplified loss, every step alike).
    importance_sampling: draw ``t`` with ``p_t ~ sqrt(E[L_t^2])`` (:class:`StepSampler`).
    sampling_steps: inference starts from the input noised to this step (0: the input itself).
    sampling_noise: add the posterior's noise in the reverse steps at inference.
    time_dim: width of the sinusoidal step embedding.
    seed: seed of the inference noise (used only when ``sampling_steps > 0`` or
        ``sampling_noise``), so scores are reproducible.
    """

    steps: int = 5
    noise_scale: float = 0.01
    noise_min: float = 0.001
    noise_max: float = 0.01
    first_beta: float | None = 1e-5
    reweight: bool = False
    importance_sampling: bool = True
    sampling_steps: int = 0
    sampling_noise: bool = False
    time_dim: int = 10
    seed: int = 0

    def check(self) -> list[str]:
        problems = [
            *at_least("steps", self.steps, 1),
            *at_least("noise_scale", self.noise_scale, 0, strict=True),
            *at_least("noise_min", self.noise_min, 0, strict=True),
            *at_least("noise_max", self.noise_max, 0, strict=True),
            *in_range("first_beta", self.first_beta, 1e-12, 1),
            *in_range("sampling_steps", self.sampling_steps, 0, self.steps),
            *at_least("time_dim", self.time_dim, 1),
            *at_least("seed", self.seed, 0),
        ]
        if self.noise_min > self.noise_max:
            problems.append(f"noise_min ({self.noise_min}) must be <= noise_max "
                            f"({self.noise_max})")
        elif self.noise_scale * self.noise_max >= 1:
            problems.append("noise_scale * noise_max must be < 1 (it is the variance of the "
                            f"last step), got {self.noise_scale * self.noise_max}")
        return problems

    def schedule(self) -> GaussianDiffusion:
        """The diffusion these options describe."""
        return GaussianDiffusion(linear_variance_betas(
            self.steps, self.noise_scale, self.noise_min, self.noise_max, self.first_beta))


def diffusion_loss(diffusion: GaussianDiffusion, sampler: StepSampler | None,
                   denoise: Callable[[Tensor, Tensor], Tensor], x0: Tensor,
                   reweight: bool) -> tuple[Tensor, Tensor]:
    """The x0 objective on a batch ``x0`` [B, d]: draw ``t`` (importance-sampled when
    ``sampler``), ``x_t ~ q(x_t | x_0)``, predict ``x_0``; returns ``(loss, x0_hat)``: the
    mean over the batch of ``w_t mean_i (x0_hat - x0)^2 / (T p_t)`` (a scalar) and the
    prediction [B, d]."""
    n = len(x0)
    if sampler is not None:
        t, importance = sampler.sample(n)
    else:
        t = torch.randint(0, diffusion.steps, (n,), device=x0.device)
        importance = torch.ones(n, device=x0.device)
    x0_hat = denoise(diffusion.q_sample(x0, t), t)
    per_user = (x0_hat - x0).pow(2).mean(-1)
    if reweight:
        per_user = per_user * diffusion.elbo_weight(t)
    if sampler is not None:
        sampler.update(t, per_user)
    return (per_user * importance).mean(), x0_hat


@dataclass
class DiffRecConfig(DiffusionOptions):
    """Options of :class:`DiffRec` (and those of :class:`DiffusionOptions`).

    hidden: the denoiser's hidden widths, outermost first (mirrored; see :class:`Denoiser`).
    dropout: dropout on the denoiser's input.
    normalize: L2-normalise the input rows before the denoiser.
    """

    hidden: list[int] = field(default_factory=lambda: [1000])
    dropout: float = 0.5
    normalize: bool = False

    def check(self) -> list[str]:
        problems = super().check()
        if not self.hidden or any(h < 1 for h in self.hidden):
            problems.append(f"hidden must be one or more widths >= 1, got {self.hidden}")
        return [*problems, *in_range("dropout", self.dropout, 0, 1, high_open=True)]


class DiffRec(UserBatches, Recommender):
    """DiffRec: an MLP denoiser of the users' interaction vectors under Gaussian diffusion."""

    name = "diffrec"
    Config = DiffRecConfig
    #: Adam 1e-3 in batches of 400 users (the paper's batch; its ML-1M learning rate), early
    #: stopping on validation NDCG@20
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "valid_metric": "ndcg@20"}
    #: batch 400 for 100 epochs (Wang et al.); users are the examples, so small data gets a
    #: smaller batch, but about a sixth of the users at least (as Mult-VAE: many small steps
    #: overfit; Gowalla's 1,490-user subsample: batch 64 reached 80% of the paper's recipe,
    #: 256 reaches 92%)
    train_recipe: ClassVar[dict[str, Any]] = {"batch_size": 400, "epochs": 100,
                                              "min_steps_per_epoch": 6}

    def __init__(self, config: DiffRecConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.diffusion = config.schedule()
        self.sampler = StepSampler(config.steps) if config.importance_sampling else None
        self.denoiser = Denoiser(train.n_items, list(config.hidden), config.time_dim,
                                 config.dropout, config.normalize)
        self._init_user_batches(train)

    def loss(self, batch: Tensor) -> Tensor:
        loss, _ = diffusion_loss(self.diffusion, self.sampler, self.denoiser,
                                 self.train_rows(batch), self.config.reweight)
        return loss

    @torch.no_grad()
    def score(self, users: Tensor, history: Dataset) -> Tensor:
        x0 = self.history_rows(users, history)
        return self.diffusion.reverse(self.denoiser, x0, self.config.sampling_steps,
                                      self.config.sampling_noise, self._generator())

    def _generator(self) -> torch.Generator | None:
        if not (self.config.sampling_steps or self.config.sampling_noise):
            return None
        return torch.Generator(device=self.device).manual_seed(self.config.seed)

    @torch.no_grad()
    def sample(self, n: int, counts: Tensor | np.ndarray | None = None, *,
               draw: str = "bernoulli", noise_std: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Synthetic users generated from noise, not from anyone's history.

        ``x_T ~ N(0, noise_std² I)`` [n, n_items], then the ``T`` reverse steps with the
        posterior's noise (ancestral sampling: ``x_{t-1} ~ q(x_{t-1} | x_t, x̂_0 = f(x_t, t))``);
        the last step returns the prediction ``x̂_0``. The x0 objective is minimised by
        ``E[x_0 | x_t]``, whose entries are the probabilities that the items are in the row, so
        the items are drawn from it:

        * ``draw="bernoulli"``: item ``i`` independently with probability
          ``clamp(x̂_0i, 0, 1)``; the row's count is the model's own;
        * ``draw="weighted"``: ``counts[u]`` distinct items drawn without replacement with
          probabilities ``∝ clamp(x̂_0, 0)`` (:func:`~streamrec.models.multvae.
          draw_without_replacement`);
        * ``draw="top"``: the ``counts[u]`` items with the largest ``x̂_0``.

        Caution: with the default schedule the last step's variance is 1e-4, so
        ``q(x_T | x_0)`` is ``x_0`` plus a little noise, far from ``N(0, I)``: the denoiser
        never saw pure noise in training, and what it makes of it measures how far the model
        is from a generator of users. ``noise_std = sqrt(1 - alpha_bar_T)`` starts from the
        forward process's own noise around an empty row instead.

        n: users to generate; counts: int [n] (needed by ``weighted`` and ``top``);
        generator: for the noise and the draws, on the model's device. Runs in eval mode (no
        dropout) and restores the mode. Returns binary rows float32 [n, n_items] on the model's
        device.
        """
        if draw not in ("bernoulli", "weighted", "top"):
            raise ValueError(f"draw must be 'bernoulli', 'weighted' or 'top', got {draw!r}")
        if counts is not None:
            counts = as_counts(counts, self.device)
            if len(counts) != n:
                raise ValueError(f"counts has {len(counts)} entries for n = {n} users")
        elif draw != "bernoulli":
            raise ValueError(f"draw={draw!r} needs counts (items per synthetic user)")
        was_training = self.training
        self.eval()
        try:
            x_t = noise_std * torch.randn(n, self.n_items, generator=generator,
                                          device=self.device)
            x0 = self.diffusion.reverse(self.denoiser, x_t, 0, True, generator)
        finally:
            self.train(was_training)
        if draw == "bernoulli":
            return torch.bernoulli(x0.clamp(0.0, 1.0), generator=generator)
        if draw == "weighted":
            return draw_without_replacement(torch.log(x0.clamp(min=0.0)), counts, generator)
        assert counts is not None
        out = torch.zeros(n, self.n_items, device=self.device)
        k = int(counts.max()) if n else 0
        if k:
            top = torch.topk(x0, k, dim=1).indices
            out.scatter_(1, top, (torch.arange(k, device=self.device) < counts[:, None]).float())
        return out
