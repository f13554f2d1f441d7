"""CFGAN (Chae et al., CIKM 2018): a vector-wise GAN for collaborative filtering.

The generator ``G(c, z)`` maps a user's history ``c`` (the binary row of the training
interactions; ``z`` optional noise, off by default as in the authors' code) to a whole
purchase vector ``r_hat`` [n_items]; the discriminator ``D(r, c)`` gives the logit that ``r``
is the user's real vector rather than a generated one. The two play the minimax game
(``docs/generative.md``)::

    D: min  -log D(c | c) - log(1 - D(r_hat * e | c))              (+ d_l2 * |W_D|^2 / 2)
    G: min  -log D(r_hat * e | c) + zr_weight * sum_{j in N_zr} r_hat_j^2 (+ g_l2 * |W_G|^2 / 2)

(G's loss is the non-saturating one). A real vector is binary, so a generator that output
1 everywhere would fool a discriminator that only saw the purchased entries; CFGAN's two fixes:

* partial masking (PM): D sees ``r_hat * e`` where ``e`` is 1 on the purchased items *and* on
  a random ``pm_ratio`` share of the unpurchased ones (``k_u``), so G is judged on those too;
* zero reconstruction (ZR): G is pulled towards 0 on another random ``zr_ratio`` share of the
  unpurchased items (``N_zr``).

``scheme`` picks ``zp`` (both, the paper's best), ``zr``, ``pm`` or ``none``. The negatives
are drawn on the device for every batch (each unpurchased item independently with probability
``pm_ratio`` / ``zr_ratio``; the authors draw a fixed share per user once per epoch).

Training: one shared optimizer (the loop's), alternating players: each epoch yields
``d_steps`` passes of discriminator batches then ``g_steps`` passes of generator batches
(:class:`GanBatch`). A player's step gives gradients to its own parameters only (the generator's
output is detached in D's step; D's parameters are detached in G's step), so the optimizer
leaves the other player untouched (Adam skips parameters without a gradient and keeps a state
per parameter: two players, two Adams with one learning rate). The loop's ``loss`` is the mean
over all steps of both; each player's own mean loss and D's mean belief in the real and the
generated vectors (``d_real``, ``d_fake``) are the epoch's ``model`` numbers in
``metrics.jsonl`` (:meth:`CFGAN.epoch_logs`), drawn in the training curve; the run's
``valid_tail_std`` measures how much the validation metric still swings at the end.

Scores: ``G(c)`` for the user's history ``c`` (``z = 0``).

Defaults: the authors' MovieLens-100k setting (G 400 and D 125 units, one hidden layer each,
ZP with 70 % / 70 % negatives, G's L2 1e-3, 2 D and 4 G passes per epoch, batches of 64)
except two: ReLU units (the authors: sigmoid) and a ZR weight of 0.3 (the authors: 0.03). With
the authors' two, CFGAN stayed below popularity on Gowalla's 1,490-user subsample (NDCG@10
0.022 against 0.028), and on the m0 world the discriminator won throughout and G's top lists
collapsed onto a few items; with these two it reaches 0.058 there, and costs 11% on
MovieLens-100k (0.064 against 0.072, both above popularity's 0.044). Adam at 1e-3 (the authors:
1e-4 for about 1,000 epochs), within a default time budget of 10 minutes (an epoch's cost grows
as users x items: 0.8 s on MovieLens-100k, about 30 s on 10,000 users x 5,000 items on two CPU
cores).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from streamrec.common import at_least, in_range, one_of
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender
from streamrec.models.rows import UserBatches, user_batches

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
SCHEMES = ("zp", "zr", "pm", "none")


@dataclass
class CFGANConfig(ModelConfig):
    """Options of :class:`CFGAN` (see the module docstring).

    g_hidden, d_hidden: hidden widths of the generator and the discriminator.
    activation: of both players' hidden layers (``sigmoid``, ``tanh`` or ``relu``).
    noise_dim: width of G's noise input ``z ~ N(0, I)`` (0: none, the authors' code).
    scheme: ``zp`` (ZR and PM), ``zr``, ``pm`` or ``none``.
    zr_ratio, pm_ratio: share of a user's unpurchased items drawn for ZR / PM per batch.
    zr_weight: weight of the ZR term in G's loss.
    g_l2, d_l2: weight of ``|W|^2 / 2`` over each player's parameters in its loss.
    d_steps, g_steps: passes over the users per epoch for D, then for G.
    """

    g_hidden: list[int] = field(default_factory=lambda: [400])
    d_hidden: list[int] = field(default_factory=lambda: [125])
    activation: str = "relu"
    noise_dim: int = 0
    scheme: str = "zp"
    zr_ratio: float = 0.7
    pm_ratio: float = 0.7
    zr_weight: float = 0.3
    g_l2: float = 1e-3
    d_l2: float = 0.0
    d_steps: int = 2
    g_steps: int = 4

    def check(self) -> list[str]:
        problems = [f"{name} must be one or more widths >= 1, got {widths}"
                    for name, widths in (("g_hidden", self.g_hidden), ("d_hidden", self.d_hidden))
                    if not widths or any(w < 1 for w in widths)]
        return [
            *problems,
            *one_of("activation", self.activation, ACTIVATIONS),
            *at_least("noise_dim", self.noise_dim, 0),
            *one_of("scheme", self.scheme, SCHEMES),
            *in_range("zr_ratio", self.zr_ratio, 0, 1),
            *in_range("pm_ratio", self.pm_ratio, 0, 1),
            *at_least("zr_weight", self.zr_weight, 0),
            *at_least("g_l2", self.g_l2, 0),
            *at_least("d_l2", self.d_l2, 0),
            *at_least("d_steps", self.d_steps, 0),
            *at_least("g_steps", self.g_steps, 1),
        ]


class GanBatch(NamedTuple):
    """One training step: ``player`` ``"D"`` or ``"G"`` and its ``users`` int64 [B]."""

    player: str
    users: Any


def mlp(widths: list[int], activation: str) -> nn.Sequential:
    """Linear layers of ``widths`` with ``activation`` between them (none after the last),
    initialised as the authors' code: Glorot-uniform weights, biases ``U(-0.01, 0.01)``."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        linear = nn.Linear(a, b)
        nn.init.xavier_uniform_(linear.weight)
        nn.init.uniform_(linear.bias, -0.01, 0.01)
        layers.append(linear)
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def half_l2(module: nn.Module) -> Tensor:
    """``sum |p|^2 / 2`` over a module's parameters (a 0-d tensor)."""
    return sum(p.pow(2).sum() for p in module.parameters()) / 2


class CFGAN(UserBatches, Recommender):
    """CFGAN: a generator of purchase vectors and a discriminator, trained in turn."""

    name = "cfgan"
    Config = CFGANConfig
    #: a time budget of 10 minutes by default: an epoch costs six dense passes over every
    #: user (users x items x the players' widths), so 100 epochs take 80 s on MovieLens-100k
    #: but about 50 minutes on 10,000 users x 5,000 items on two CPU cores; the run ends with
    #: its best validated epoch and says so (``--time-budget`` / ``time_budget`` to change)
    train_defaults: ClassVar[dict[str, Any]] = {
        "lr": 1e-3, "batch_size": 64, "epochs": 100, "patience": 20, "valid_metric": "ndcg@20",
        "time_budget": 600.0,
    }

    #: D's steps leave G without gradient and G's steps leave D (data-parallel training)
    steps_skip_parameters = True

    def __init__(self, config: CFGANConfig, train: Dataset) -> None:
        super().__init__(config, train)
        n = train.n_items
        #: G: [c, z] [B, n_items + noise_dim] -> r_hat [B, n_items] (linear output)
        self.generator = mlp([n + config.noise_dim, *config.g_hidden, n], config.activation)
        #: D: [r, c] [B, 2 n_items] -> the logit [B, 1] that r is c's real vector
        self.discriminator = mlp([2 * n, *config.d_hidden, 1], config.activation)
        self._init_user_batches(train)
        self._logs: dict[str, list[Tensor]] = {}

    # ---------------------------------------------------------------- the players
    def generate(self, c: Tensor) -> Tensor:
        """``G(c, z)`` [B, n_items] for histories ``c`` [B, n_items] (``z ~ N(0, I)`` in
        training, 0 in eval mode)."""
        if self.config.noise_dim:
            z = torch.zeros(len(c), self.config.noise_dim, device=c.device)
            if self.training:
                z.normal_()
            c = torch.cat([c, z], dim=-1)
        return self.generator(c)

    def discriminate(self, r: Tensor, c: Tensor, frozen: bool = False) -> Tensor:
        """D's logits [B] that ``r`` [B, n_items] is the real vector of history ``c``;
        ``frozen``: D's parameters take no gradient (G's step)."""
        x = torch.cat([r, c], dim=-1)
        if not frozen:
            return self.discriminator(x).squeeze(-1)
        params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, params, (x,)).squeeze(-1)

    def _negatives(self, c: Tensor, ratio: float) -> Tensor:
        """A float mask [B, n_items]: each unpurchased item with probability ``ratio``."""
        return ((torch.rand_like(c) < ratio) & (c == 0)).float()

    # ---------------------------------------------------------------- training
    def batches(self, train: Dataset, batch_size: int, rng: np.random.Generator) -> Iterator[
            GanBatch]:
        self._train_user_rows = self._rows.get("train", train, self.device)
        for player, passes in (("D", self.config.d_steps), ("G", self.config.g_steps)):
            for _ in range(passes):
                for users in user_batches(self._users, batch_size, rng):
                    yield GanBatch(player, users)

    def num_batches(self, train: Dataset, batch_size: int) -> int:
        per_pass = -(-len(self._users) // batch_size)
        return max(1, (self.config.d_steps + self.config.g_steps) * per_pass)

    def on_epoch_start(self, epoch: int) -> None:
        self._logs = {}

    def loss(self, batch: GanBatch) -> Tensor:
        cfg = self.config
        c = self.train_rows(batch.users)
        mask = c  # e_u: the purchased items, plus the PM negatives k_u
        if cfg.scheme in ("pm", "zp"):
            mask = c + self._negatives(c, cfg.pm_ratio)
        ones, zeros = torch.ones(len(c), device=c.device), torch.zeros(len(c), device=c.device)
        if batch.player == "D":
            with torch.no_grad():
                fake = self.generate(c) * mask
            real_logit, fake_logit = self.discriminate(c, c), self.discriminate(fake, c)
            loss = (F.binary_cross_entropy_with_logits(real_logit, ones)
                    + F.binary_cross_entropy_with_logits(fake_logit, zeros))
            if cfg.d_l2:
                loss = loss + cfg.d_l2 * half_l2(self.discriminator)
            self._log(d_loss=loss, d_real=torch.sigmoid(real_logit).mean(),
                      d_fake=torch.sigmoid(fake_logit).mean())
            return loss
        if batch.player != "G":
            raise ValueError(f"unknown player {batch.player!r}; a CFGAN batch is 'D' or 'G'")
        r_hat = self.generate(c)
        loss = F.binary_cross_entropy_with_logits(
            self.discriminate(r_hat * mask, c, frozen=True), ones)
        if cfg.scheme in ("zr", "zp") and cfg.zr_weight:
            zr = (r_hat.pow(2) * self._negatives(c, cfg.zr_ratio)).sum(-1).mean()
            loss = loss + cfg.zr_weight * zr
        if cfg.g_l2:
            loss = loss + cfg.g_l2 * half_l2(self.generator)
        self._log(g_loss=loss)
        return loss

    def _log(self, **values: Tensor) -> None:
        for k, v in values.items():
            self._logs.setdefault(k, []).append(v.detach())

    def epoch_logs(self) -> dict[str, float]:
        """The epoch's mean ``d_loss`` and ``g_loss`` (each player's own loss, regularisers
        included) and D's mean probability on real (``d_real``) and generated (``d_fake``)
        vectors: 0.5 / 0.5 at the game's equilibrium, 1 / 0 when D wins outright."""
        means = {k: torch.stack(v).mean() for k, v in self._logs.items() if v}
        if not means:
            return {}
        values = torch.stack(list(means.values())).tolist()  # one device sync per epoch
        return dict(zip(means, values))

    # ---------------------------------------------------------------- scoring
    @torch.no_grad()
    def score(self, users: Tensor, history: Dataset) -> Tensor:
        return self.generate(self.history_rows(users, history))
