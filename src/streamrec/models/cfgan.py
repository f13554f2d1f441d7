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

Large catalogues. A step's cost grows with the catalogue: G's output layer, D's input layer
and the PM / ZR masks are all [B, n_items], and every step updates all of G's
``2 x n_items x 400`` weights. Two exact savings: above 8,192 items G reads the history row as
a sparse matrix (a few dozen purchases), and the L2 term's gradient is written in one pass
(``half_l2``); on Gowalla (40,981 items) a generator step of 64 users went from about 0.9 s to
0.4 s on two CPU cores. An approximation, off by default: ``columns`` (a number, or ``"auto"``)
makes a step work on a subset of the columns, the batch's purchased items and ``S`` items drawn
uniformly, with the PM and ZR negatives drawn among them. G's vector outside those columns is
not computed; D reads only its weights of those columns, which is exact, since the masked
vector and the history are zero elsewhere; the ZR sum is scaled up to the catalogue
(:meth:`CFGAN.loss`). It makes a Gowalla step about 1.6x faster again (0.26 s), but the game
sees ten times fewer negatives per step and learned less per epoch where it was tried
(``docs/generative.md``, section 3).

Scores: ``G(c)`` for the user's history ``c`` (``z = 0``), over the whole catalogue.

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

from streamrec.common import at_least, in_range, one_of
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig, Recommender
from streamrec.models.rows import UserBatches, user_batches

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}
SCHEMES = ("zp", "zr", "pm", "none")
#: ``columns="auto"``: every item up to this catalogue size, else :data:`AUTO_COLUMNS`
AUTO_ALL_ITEMS = 8192
#: ``columns="auto"`` on a larger catalogue: items drawn per batch (beside its purchases)
AUTO_COLUMNS = 4096


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
    columns: the catalogue columns a training step works on: ``"all"`` (the default); a
        number ``S`` (the batch's purchased items and ``S`` items drawn uniformly, the PM / ZR
        negatives drawn among them); ``"auto"`` (all up to 8,192 items, else 4,096 drawn).
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
    columns: int | str = "all"

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
            *self._check_columns(),
        ]

    def _check_columns(self) -> list[str]:
        if self.columns in ("all", "auto"):
            return []
        if isinstance(self.columns, int) and not isinstance(self.columns, bool) \
                and self.columns >= 1:
            return []
        return [f"columns must be 'all', 'auto' or a number of items >= 1, got {self.columns!r}"]

    def sampled_columns(self, n_items: int) -> int | None:
        """Items drawn per training batch for a catalogue of ``n_items`` (None: all of them)."""
        if self.columns == "all" or (self.columns == "auto" and n_items <= AUTO_ALL_ITEMS):
            return None
        size = AUTO_COLUMNS if self.columns == "auto" else int(self.columns)
        return None if size >= n_items else size


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


def run_mlp(net: nn.Sequential, x: Tensor, in_cols: Tensor | None = None,
            out_cols: Tensor | None = None, frozen: bool = False) -> Tensor:
    """``net(x)`` with the first layer's input restricted to columns ``in_cols`` and the last
    layer's output to ``out_cols`` (their weight rows / columns gathered; None: all), and
    ``frozen``: the parameters detached (no gradient reaches them; the input still gets one).
    ``x``: [B, in] (or [B, len(in_cols)]), dense or sparse COO (a sparse product then)."""
    linears = [i for i, layer in enumerate(net) if isinstance(layer, nn.Linear)]
    for i, layer in enumerate(net):
        if not isinstance(layer, nn.Linear):
            x = layer(x)
            continue
        w, b = layer.weight, layer.bias
        if frozen:
            w, b = w.detach(), b.detach()
        if i == linears[0] and in_cols is not None:
            w = w[:, in_cols]
        if i == linears[-1] and out_cols is not None:
            w, b = w[out_cols], b[out_cols]
        x = torch.sparse.mm(x, w.t()) + b if x.is_sparse else F.linear(x, w, b)
    return x


class _HalfSquaredNorm(torch.autograd.Function):
    """``Σ_p |p|² / 2`` over tensors ``p``, with the gradient ``p`` written in one pass each
    (autograd of ``p.pow(2).sum() / 2`` takes three passes over every weight: on Gowalla's
    40,981 items the generator's 33M weights made that most of a generator step)."""

    @staticmethod
    def forward(ctx: Any, *params: Tensor) -> Tensor:
        ctx.save_for_backward(*params)
        return torch.stack([torch.linalg.vector_norm(p) for p in params]).pow(2).sum() / 2

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, ...]:
        return tuple(p * grad for p in ctx.saved_tensors)


def half_l2(module: nn.Module) -> Tensor:
    """``sum |p|^2 / 2`` over a module's parameters (a 0-d tensor; its gradient is ``p``)."""
    return _HalfSquaredNorm.apply(*module.parameters())


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
    def generate(self, c: Tensor, cols: Tensor | None = None) -> Tensor:
        """``G(c, z)`` [B, n_items] for histories ``c`` [B, n_items] (``z ~ N(0, I)`` in
        training, 0 in eval mode); with ``cols`` int64 [S], only those items' outputs [B, S]
        (on a catalogue above 8,192 items or with ``cols`` the history row is read as a sparse
        matrix: a few dozen purchases of many items)."""
        x = c
        if self.config.noise_dim:
            z = torch.zeros(len(c), self.config.noise_dim, device=c.device)
            if self.training:
                z.normal_()
            x = torch.cat([c, z], dim=-1)
        if cols is None and x.shape[1] <= AUTO_ALL_ITEMS:
            return self.generator(x)
        return run_mlp(self.generator, x.to_sparse(), out_cols=cols)

    def discriminate(self, r: Tensor, c: Tensor, frozen: bool = False,
                     cols: Tensor | None = None) -> Tensor:
        """D's logits [B] that ``r`` [B, n_items] is the real vector of history ``c``;
        ``frozen``: D's parameters take no gradient (G's step). With ``cols`` int64 [S],
        ``r`` and ``c`` are [B, S], those items' columns of vectors that are zero elsewhere:
        D's first layer reads only its weights of those columns (the same logits)."""
        x = torch.cat([r, c], dim=-1)
        in_cols = None if cols is None else torch.cat([cols, cols + self.n_items])
        return run_mlp(self.discriminator, x, in_cols=in_cols, frozen=frozen).squeeze(-1)

    def _negatives(self, c: Tensor, ratio: float) -> Tensor:
        """A float mask shaped like ``c``: each unpurchased item with probability ``ratio``."""
        return ((torch.rand_like(c) < ratio) & (c == 0)).float()

    def _columns(self, users: Tensor) -> Tensor | None:
        """The columns of one training step (``config.columns``): None (every item), or the
        sorted items int64 [S'] the batch's ``users`` purchased and ``S`` drawn uniformly."""
        size = self.config.sampled_columns(self.n_items)
        if size is None:
            return None
        rows = self._train_user_rows
        bought = rows.coords(users.to(rows.device, torch.long))[1]
        drawn = torch.randperm(rows.n_items, device=rows.device)[:size]
        return torch.unique(torch.cat([bought, drawn]))

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
        """The step's player's loss (module docstring). With sampled columns (``columns``)
        both players see the step's columns only: the PM and ZR negatives are drawn among
        them, and each user's ZR sum is scaled by ``(I - n_u) / (S' - n_u)`` (their
        unpurchased items in the catalogue over those in the columns), so its expectation is
        the full sum's."""
        cfg = self.config
        users = torch.as_tensor(batch.users)
        full = self.train_rows(users)
        cols = self._columns(users)
        c = full if cols is None else full[:, cols]
        mask = c  # e_u: the purchased items, plus the PM negatives k_u
        if cfg.scheme in ("pm", "zp"):
            mask = c + self._negatives(c, cfg.pm_ratio)
        ones, zeros = torch.ones(len(c), device=c.device), torch.zeros(len(c), device=c.device)
        if batch.player == "D":
            with torch.no_grad():
                fake = self.generate(full, cols) * mask
            real_logit = self.discriminate(c, c, cols=cols)
            fake_logit = self.discriminate(fake, c, cols=cols)
            loss = (F.binary_cross_entropy_with_logits(real_logit, ones)
                    + F.binary_cross_entropy_with_logits(fake_logit, zeros))
            if cfg.d_l2:
                loss = loss + cfg.d_l2 * half_l2(self.discriminator)
            self._log(d_loss=loss, d_real=torch.sigmoid(real_logit).mean(),
                      d_fake=torch.sigmoid(fake_logit).mean())
            return loss
        if batch.player != "G":
            raise ValueError(f"unknown player {batch.player!r}; a CFGAN batch is 'D' or 'G'")
        r_hat = self.generate(full, cols)
        loss = F.binary_cross_entropy_with_logits(
            self.discriminate(r_hat * mask, c, frozen=True, cols=cols), ones)
        if cfg.scheme in ("zr", "zp") and cfg.zr_weight:
            zr = (r_hat.pow(2) * self._negatives(c, cfg.zr_ratio)).sum(-1)
            if cols is not None:
                n_u = c.sum(-1)
                zr = zr * (full.shape[1] - n_u) / (len(cols) - n_u).clamp(min=1)
            loss = loss + cfg.zr_weight * zr.mean()
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
