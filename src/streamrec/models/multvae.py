"""Mult-VAE (Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018).

A user is the binary row ``x_u ∈ {0,1}^I`` of the training matrix (``N_u = Σ_i x_ui`` items).
The generative story is a latent taste ``z_u`` and a multinomial draw of the user's items:

    z_u ~ N(0, I_K),     π(z_u) = softmax(f_θ(z_u)),     x_u ~ Mult(N_u, π(z_u))

so ``log p_θ(x_u | z_u) = Σ_i x_ui log π_i(z_u)`` (+ a constant). The inference network
``q_φ(z | x_u) = N(μ_φ(x_u), diag σ²_φ(x_u))`` is fitted with the β-weighted evidence lower
bound, one reparameterised sample ``z = μ + σ ⊙ ε`` (``ε ~ N(0, I)``) per user and step:

    −L_β(x_u) = −Σ_i x_ui log softmax(f_θ(z))_i  +  β · ½ Σ_k (σ_k² + μ_k² − 1 − log σ_k²)

(derivations in ``docs/generative.md``). β is annealed linearly from 0 (KL annealing):
``β_t = min(cap, t / T)`` after ``t`` optimizer steps.

Architecture, the paper's: ``x_u`` L2-normalised, dropout 0.5 on it, encoder
``Linear(I, 600) → tanh → Linear(600, 2·200)`` → (μ, log σ²), decoder
``Linear(200, 600) → tanh → Linear(600, I)`` → logits; Xavier-uniform weights, biases
N(0, 0.001²); Adam lr 1e-3, users in batches of 500, no weight penalty.

**Choosing β_max** (``anneal_cap``). The paper's heuristic: anneal β towards 1 slowly, watch
the validation NDCG and keep the β at its peak — one run instead of one per β. With
``anneal_cap="valid"`` (the default) β rises to 1 over ``anneal_epochs`` epochs (100, the
default training length: β passes the paper's 0.2 at epoch 20); the trainer
validates every epoch, keeps the weights of the best validation epoch and early-stops once it
no longer improves (``patience``). β is a buffer of the model (``beta``, with the step count
``anneal_step``), so the restored best weights carry the β they were trained at:
``model.selected_beta`` is the chosen β_max, also saved in ``model.safetensors`` and logged
each epoch (``metrics.jsonl``: ``model.beta``, ``model.kl``, ``model.nll``); a second run with
``anneal_cap=<that β>`` holds β there once reached. Without validation data,
"valid" simply anneals to 1. A number, e.g. ``anneal_cap=0.2`` (the paper's ML-20M value), caps
β there. ``total_anneal_steps`` gives ``T`` in steps, as the paper does (200,000 there:
ML-20M has 233 steps an epoch, so β reached its cap 0.2 near epoch 172 of 200); by default
``T = anneal_epochs × steps per epoch``, which does not depend on the data set's size.

:meth:`MultVAE.sample` runs the generative story forwards: synthetic users from the prior,
with as many items each as asked (``benchmarks/generative.py`` compares them with real ones).

Scores are the decoder's logits ``f_θ(μ_φ(x_u))`` (no dropout, no sampling) from the user's
history at scoring time — a new interaction changes the scores without retraining. The
decoder's output layer makes the model a :class:`VectorRetriever`: item ``i`` is
``[W_i, b_i]`` and the user ``[h_u, 1]`` with ``h_u`` the decoder's hidden layer.

:class:`MultAutoencoder` holds what Mult-VAE shares with its denoising twin Mult-DAE
(:mod:`streamrec.models.multdae`); :class:`~streamrec.models.rows.UserRows` builds batches of
history rows on the model's device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamrec.common import at_least, in_range
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender, VectorRetriever
from streamrec.models.rows import UserRows


# ============================================================================ the input
class SparseInputLinear(nn.Linear):
    """``nn.Linear`` that also takes a sparse COO input [B, in] (``torch.sparse.mm``): the
    first encoder layer reads history rows with a few dozen non-zeros out of tens of thousands
    of items, so its product (and its weight gradient) costs O(nnz · out), not O(B · in · out)
    (about 4x faster per step on Gowalla's 40,981 items). The state dict is ``nn.Linear``'s."""

    def forward(self, x: Tensor) -> Tensor:
        if x.is_sparse:  # sparse products have no bfloat16 kernels: float32 under autocast
            with torch.autocast(x.device.type, enabled=False):
                return torch.sparse.mm(x.float(), self.weight.t()) + self.bias
        return super().forward(x)


def encoder_input(x: Tensor, dropout: float, training: bool) -> Tensor:
    """The encoder's input of binary history rows ``x`` [B, I]: each row L2-normalised, then
    dropout ``dropout`` (in training), as a sparse COO tensor [B, I] (dropout only ever touches
    the non-zeros: the same distribution as on the dense row)."""
    h = F.normalize(x, dim=-1).to_sparse()
    values = F.dropout(h.values(), dropout, training)
    return torch.sparse_coo_tensor(h.indices(), values, h.shape, is_coalesced=True,
                                   check_invariants=False)


# ============================================================================ the objective
def multinomial_nll(logits: Tensor, x: Tensor) -> Tensor:
    """``−log p(x | π = softmax(logits))`` per user, up to the multinomial coefficient:
    ``−Σ_i x_i log softmax(logits)_i``. logits, x: [B, I]. Returns [B]."""
    return -(F.log_softmax(logits, dim=-1) * x).sum(-1)


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """``KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_k (σ_k² + μ_k² − 1 − log σ_k²)`` per row.
    mu, logvar: [B, K]. Returns [B]."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(-1)


def reparameterize(mu: Tensor, logvar: Tensor, eps: Tensor | None = None) -> Tensor:
    """A sample ``z = μ + σ ⊙ ε`` of ``N(μ, diag σ²)`` that is differentiable in μ and
    log σ² (``ε ~ N(0, I)`` drawn here unless given). mu, logvar, eps: [B, K]."""
    if eps is None:
        eps = torch.randn_like(mu)
    return mu + torch.exp(0.5 * logvar) * eps


def negative_elbo(logits: Tensor, x: Tensor, mu: Tensor, logvar: Tensor, beta: float) -> Tensor:
    """The β-weighted negative ELBO, averaged over the batch:
    ``mean_u [multinomial_nll(logits_u, x_u) + β · gaussian_kl(μ_u, log σ²_u)]`` (a scalar).
    logits, x: [B, I] (logits decoded from a sample of ``q(z | x)``); mu, logvar: [B, K]."""
    return (multinomial_nll(logits, x) + beta * gaussian_kl(mu, logvar)).mean()


def kl_weight(step: int | Tensor, total_steps: float, cap: float) -> float:
    """β after ``step`` optimizer steps of linear KL annealing: ``min(cap, step / total)``."""
    return min(float(cap), float(step) / max(float(total_steps), 1.0))


# ============================================================================ sampling users
def as_counts(counts: Tensor | np.ndarray | list[int], device: torch.device | str) -> Tensor:
    """Item counts (a tensor, an array or a list) as int64 [n] on ``device``."""
    if not isinstance(counts, Tensor):
        counts = torch.as_tensor(np.asarray(counts))
    return counts.to(device=device, dtype=torch.long).reshape(-1)


def draw_without_replacement(logits: Tensor, counts: Tensor | np.ndarray,
                             generator: torch.Generator | None = None) -> Tensor:
    """Binary rows float32 [B, I]: row ``u`` holds ``counts[u]`` distinct items drawn one after
    another, without replacement, from ``softmax(logits[u])``.

    The Gumbel-top-k trick: with ``g_i`` independent standard Gumbel draws, the ``k`` largest
    ``logits_i + g_i``, in decreasing order, are distributed as ``k`` successive draws without
    replacement, so one ``topk`` with ``k = max(counts)`` serves every row (row ``u`` keeps its
    first ``counts[u]``). logits: [B, I] (``-inf``: drawn only once nothing else is left);
    counts: int [B], each in ``0..I``; generator: on ``logits``' device.
    """
    counts = as_counts(counts, logits.device)
    if logits.ndim != 2 or counts.shape != logits.shape[:1]:
        raise ValueError(f"need logits [B, I] and counts [B], got {tuple(logits.shape)} and "
                         f"{tuple(counts.shape)}")
    if len(counts) and (int(counts.min()) < 0 or int(counts.max()) > logits.shape[1]):
        raise ValueError(f"counts must lie in 0..{logits.shape[1]} (the number of items)")
    out = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
    k = int(counts.max()) if len(counts) else 0
    if k == 0:
        return out
    u = torch.rand(logits.shape, generator=generator, device=logits.device)
    gumbel = -torch.log(-torch.log(u.clamp_(min=1e-20)))
    order = torch.topk(logits.float() + gumbel, k, dim=1).indices  # [B, k], in draw order
    keep = (torch.arange(k, device=logits.device) < counts[:, None]).float()
    return out.scatter_(1, order, keep)  # the k indices of a row are distinct: no collision


# ============================================================================ options
@dataclass
class MultConfig(ModelConfig):
    """Options shared by Mult-VAE and Mult-DAE.

    hidden: width of the encoder's and the decoder's hidden layer (600).
    latent: size K of the latent code z (200).
    dropout: drop probability on the normalised input row (0.5).
    l2: weight of ``Σ ‖W‖²`` over the weight matrices (the paper: 0 for the VAE,
        0.01 / batch size for the DAE).
    """

    hidden: int = 600
    latent: int = 200
    dropout: float = 0.5
    l2: float = 0.0

    def check(self) -> list[str]:
        return [*at_least("hidden", self.hidden, 1), *at_least("latent", self.latent, 1),
                *in_range("dropout", self.dropout, 0, 1, high_open=True),
                *at_least("l2", self.l2, 0)]


@dataclass
class MultVAEConfig(MultConfig):
    """Options of :class:`MultVAE` (and :class:`MultConfig`'s).

    anneal_cap: β_max: ``"valid"`` (anneal to 1, keep the β of the best validation epoch) or
        a number ≥ 0 where β stops (the paper: 0.2).
    anneal_epochs: epochs for β to go from 0 to 1 (``T = anneal_epochs × steps per epoch``).
    total_anneal_steps: ``T`` in optimizer steps instead (the paper: 200,000); None: from
        ``anneal_epochs``.
    """

    anneal_cap: float | str = "valid"
    anneal_epochs: float = 100.0
    total_anneal_steps: int | None = None

    def check(self) -> list[str]:
        problems = super().check()
        if isinstance(self.anneal_cap, str) and self.anneal_cap != "valid":
            problems.append(f"anneal_cap must be 'valid' or a number >= 0, got {self.anneal_cap!r}")
        elif not isinstance(self.anneal_cap, str):
            problems += at_least("anneal_cap", self.anneal_cap, 0)
        return [*problems, *at_least("anneal_epochs", self.anneal_epochs, 0, strict=True),
                *at_least("total_anneal_steps", self.total_anneal_steps, 1)]


# ============================================================================ the models
class MultAutoencoder(Recommender, VectorRetriever):
    """What Mult-VAE and Mult-DAE share: a user's L2-normalised, dropped-out history row →
    encoder → latent code → decoder → logits over the catalogue, a multinomial likelihood,
    batches of whole users, scoring from the history row.

    Subclasses build ``self.encoder`` ([B, I] → [B, enc_out], its first layer a
    :class:`SparseInputLinear`: it is given the sparse :func:`encoder_input`) and define
    :meth:`latent`.
    """

    Config: ClassVar[type[MultConfig]] = MultConfig
    #: the paper's batch (500 users) and Adam step; 100 epochs (the paper: 200) with a patience
    #: of 10 validations, since a small data set has only a few steps an epoch
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "valid_metric": "ndcg@20"}
    #: batch 500 for 100 epochs (Liang et al.); users are the examples, so small data gets a
    #: smaller batch, but about a sixth of the users at least: with many small steps an epoch
    #: the autoencoder overfits before the KL weight has risen (defaults benchmark: batch 64
    #: for Gowalla's 1,490-user subsample reached 86% of the paper's recipe, 256 reaches 99%)
    train_recipe: ClassVar[dict[str, Any]] = {"batch_size": 500, "epochs": 100,
                                              "min_steps_per_epoch": 6}

    def __init__(self, config: MultConfig, train: Dataset) -> None:
        super().__init__(config, train)
        c = config
        self.decoder = nn.Sequential(nn.Linear(c.latent, c.hidden), nn.Tanh())
        self.out = nn.Linear(c.hidden, train.n_items)  # logits: row i of (W, b) is item i
        self._train = train
        self._active = np.flatnonzero(train.user_counts() > 0)  # users with a training row
        self._steps_per_epoch = 1
        self._rows: dict[str, UserRows | None] = {"train": None, "history": None}
        self._sums: dict[str, Tensor] = {}  # per-epoch sums of the loss's terms (epoch_logs)
        self._steps = 0

    def init_weights(self) -> None:
        """The paper's initialisation: Xavier-uniform weights, biases N(0, 0.001²)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-3)

    # ---------------------------------------------------------------- the network
    def latent(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """The latent code [B, K] of encoder inputs ``h`` [B, I] (sparse COO) and the loss's
        penalty on it (a scalar; e.g. β · KL). In eval mode the code is deterministic."""
        raise NotImplementedError

    def hidden_of(self, x: Tensor) -> Tensor:
        """The decoder's hidden layer [B, hidden] for history rows ``x`` [B, I] (no penalty,
        dropout only in training mode)."""
        z, _ = self.latent(encoder_input(x, self.config.dropout, self.training))
        return self.decoder(z)

    def weight_penalty(self) -> Tensor:
        """``l2 · Σ ‖W‖²`` over the weight matrices (not the biases)."""
        total = sum(m.weight.pow(2).sum() for m in self.modules() if isinstance(m, nn.Linear))
        return self.config.l2 * total

    # ---------------------------------------------------------------- training
    def num_batches(self, train: Dataset, batch_size: int) -> int:
        self._steps_per_epoch = max(1, math.ceil(len(self._active) / batch_size))
        return self._steps_per_epoch

    def batches(self, train: Dataset, batch_size: int, rng: np.random.Generator) -> Iterator[
            np.ndarray]:
        """Users with a training row, shuffled, ``batch_size`` at a time: int64 [B]."""
        self.num_batches(train, batch_size)
        order = self._active[rng.permutation(len(self._active))].astype(np.int64)
        for s in range(0, len(order), batch_size):
            yield order[s : s + batch_size]

    def loss(self, batch: Tensor) -> Tensor:
        """Mean over the batch's users of ``−log p(x_u | z_u)`` plus the latent penalty and
        the weight penalty. batch: int64 [B] user ids."""
        self._rows["train"] = UserRows.cached(self._rows["train"], self._train, self.device)
        x = self._rows["train"].dense(batch)
        z, penalty = self.latent(encoder_input(x, self.config.dropout, self.training))
        nll = multinomial_nll(self.out(self.decoder(z)), x).mean()
        loss = nll + penalty
        if self.config.l2 > 0:
            loss = loss + self.weight_penalty()
        if self.training and torch.is_grad_enabled():
            self._record(nll=nll)
        return loss

    def _record(self, **terms: Tensor) -> None:
        """Add this step's loss terms to the epoch's sums (on the device: no sync)."""
        if "nll" in terms:
            self._steps += 1
        for k, v in terms.items():
            v = v.detach()
            self._sums[k] = self._sums[k] + v if k in self._sums else v

    def epoch_logs(self) -> dict[str, float]:
        """The epoch's mean multinomial NLL per user (``nll``), and what subclasses add;
        reset after each call."""
        out = {k: float(v) / max(1, self._steps) for k, v in self._sums.items()}
        self._sums, self._steps = {}, 0
        return out

    # ---------------------------------------------------------------- scoring
    def _history_rows(self, users: Tensor, history: Dataset) -> Tensor:
        self._rows["history"] = UserRows.cached(self._rows["history"], history, self.device)
        return self._rows["history"].dense(users)

    def score(self, users: Tensor, history: Dataset) -> Tensor:
        """Decoder logits [B, I] of the users' history rows (the latent mean, no dropout)."""
        return self.out(self.hidden_of(self._history_rows(users, history)))

    def user_embeddings(self, users: Tensor, history: Dataset) -> Tensor:
        """``[h_u, 1]`` [B, hidden + 1]: the decoder's hidden layer and a 1 for the bias."""
        h = self.hidden_of(self._history_rows(users, history))
        return torch.cat([h, torch.ones(len(h), 1, dtype=h.dtype, device=h.device)], dim=1)

    def item_embeddings(self) -> Tensor:
        """``[W_i, b_i]`` [n_items, hidden + 1]: the output layer's weights and bias."""
        return torch.cat([self.out.weight, self.out.bias.unsqueeze(1)], dim=1)


class MultVAE(MultAutoencoder):
    """Mult-VAE: Gaussian latent code, multinomial likelihood, β-annealed KL."""

    name = "mult-vae"
    Config = MultVAEConfig

    def __init__(self, config: MultVAEConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.encoder = nn.Sequential(SparseInputLinear(train.n_items, config.hidden), nn.Tanh(),
                                     nn.Linear(config.hidden, 2 * config.latent))
        self.init_weights()
        #: optimizer steps taken (t of the annealing schedule)
        self.register_buffer("anneal_step", torch.zeros((), dtype=torch.long))
        #: β of the latest training step (after training: of the chosen epoch)
        self.register_buffer("beta", torch.zeros(()))

    @property
    def beta_cap(self) -> float:
        """Where β stops: 1.0 when chosen on validation, else ``anneal_cap``."""
        cap = self.config.anneal_cap
        return 1.0 if cap == "valid" else float(cap)

    @property
    def total_anneal_steps(self) -> float:
        """T: steps for β to go from 0 to 1."""
        c = self.config
        if c.total_anneal_steps is not None:
            return float(c.total_anneal_steps)
        return c.anneal_epochs * self._steps_per_epoch

    @property
    def selected_beta(self) -> float:
        """β of the weights the model holds (after training: β_max, chosen or given)."""
        return float(self.beta)

    def encode(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """``(μ, log σ²)``, each [B, K], of encoder inputs ``h`` [B, I] (dense or sparse)."""
        mu, logvar = self.encoder(h).chunk(2, dim=-1)
        return mu, logvar

    def latent(self, h: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.encode(h)
        if not self.training:
            return mu, mu.new_zeros(())
        z = reparameterize(mu, logvar)
        if torch.is_grad_enabled():  # a training step: advance the schedule (on the device)
            t = self.anneal_step.to(self.beta.dtype)
            self.beta.copy_(torch.clamp(t / max(self.total_anneal_steps, 1.0), max=self.beta_cap))
            self.anneal_step += 1
        kl = gaussian_kl(mu, logvar).mean()
        if torch.is_grad_enabled():
            self._record(kl=kl)
        return z, self.beta * kl

    def epoch_logs(self) -> dict[str, float]:
        """The epoch's mean ``nll`` and ``kl`` per user, and ``beta``: the β of its last
        step (shown beside the loss on the training curve)."""
        out = super().epoch_logs()
        if out:
            out["beta"] = float(self.beta)
        return out

    @torch.no_grad()
    def sample(self, counts: Tensor | np.ndarray, generator: torch.Generator | None = None,
               ) -> Tensor:
        """Synthetic users drawn from the generative story, not from anyone's history.

        For each ``u``: ``z_u ~ N(0, I_K)`` (the prior), ``π_u = softmax(f_θ(z_u))`` (the
        decoder), then ``counts[u]`` distinct items drawn from ``π_u`` one after another
        without replacement (:func:`draw_without_replacement`): ``Mult(N_u, π_u)`` would draw
        with replacement, and a history row is binary, so a repeat is drawn again instead.
        The model is conditioned on ``N_u`` and does not generate it: give the counts, e.g.
        drawn from the real users' counts.

        counts: int [n], each in ``0..n_items``. generator: for ``z`` and the draws, on the
        model's device (reproducible samples). Returns binary rows float32 [n, n_items] on
        the model's device. The decoder has no dropout, so the mode does not matter.
        """
        counts = as_counts(counts, self.device)
        z = torch.randn(len(counts), self.config.latent, generator=generator,
                        device=self.device)
        return draw_without_replacement(self.out(self.decoder(z)), counts, generator)
