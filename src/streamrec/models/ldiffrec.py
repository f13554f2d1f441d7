"""L-DiffRec (Wang et al., SIGIR 2023, Sec. 3.4): DiffRec in a compressed latent space.

DiffRec's denoiser reads and writes whole interaction vectors, so its first and last layers
hold ``2 x n_items x hidden`` weights. L-DiffRec diffuses a short latent code instead:

1. **Item groups.** The items are clustered into ``n_clusters`` groups: k-means
   (scikit-learn) on item embeddings from a truncated SVD of the training interaction matrix
   (``svd_dim`` factors scaled by their singular values; the paper clusters pretrained
   LightGCN embeddings).
2. **Encoder.** Group ``c``'s slice ``x[:, I_c]`` of the history is compressed by its own
   linear layer + tanh to ``(mu_c, log var_c)`` of width ``d_c`` (``latent_dim`` shared in
   proportion to the group sizes); ``z = mu + sigma * eps`` (reparameterised, ``mu`` in eval
   mode), ``z = [z_1, ..., z_C]`` [B, latent_dim].
3. **Diffusion in the latent space** exactly as DiffRec (:mod:`streamrec.models.diffrec`):
   ``z_t ~ q(z_t | z)``, a denoiser predicts ``z_hat_0``.
4. **Decoder.** One linear layer maps ``z_hat_0`` back to the scores of all items.

Loss of a batch (the authors' ``reweight`` setting)::

    lambda_e * L_diffusion(z)  -  sum_i x_i log softmax(dec(z_hat_0))_i
                              +  beta_s * KL(q(z | x) || N(0, I))

the multinomial likelihood of Mult-VAE on the decoded prediction, ``beta_s`` annealed from 0
by ``1 / kl_anneal_steps`` per step up to ``kl_max``, and ``lambda_e`` decayed per epoch from
``diffusion_weight`` to ``diffusion_weight_min`` over ``diffusion_anneal_epochs``.

Scores: encode the history (``mu``), run the reverse process from it (as DiffRec), decode.
:meth:`LDiffRec.sample` generates synthetic users from latent noise.

Defaults: the authors' Amazon-book setting (2 groups, latent 300, denoiser [300], T = 5, noise
0.5 x [1e-3, 5e-3], lambda 0.05 -> 0.005, KL up to 0.3 over 200 steps, encoder dropout 0.1),
with one learning rate for the autoencoder and the denoiser (the authors use 5e-4 and 1e-4),
and **no dropout on the denoiser's input** (the authors' denoiser keeps DiffRec's 0.5). On the
binary history DiffRec's input dropout is a denoising corruption; on the 300-unit latent code
it hides half of the only path from history to scores at every training step, and the model
fell to popularity (test NDCG@10, defaults benchmark: Amazon Sci 0.0182 -> 0.0733, its 10k
subsample 0.042 -> 0.062, Gowalla's 94k subsample 0.025 -> 0.067 in 4 minutes, against
popularity's 0.018 / 0.042 / 0.026; ``docs/generative.md``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamrec.common import at_least, in_range
from streamrec.data.dataset import Dataset
from streamrec.models.base import Recommender
from streamrec.models.diffrec import (
    Denoiser,
    DiffRec,
    DiffusionOptions,
    StepSampler,
    diffusion_loss,
)
from streamrec.models.multvae import as_counts, draw_without_replacement
from streamrec.models.rows import UserBatches


@dataclass
class LDiffRecConfig(DiffusionOptions):
    """Options of :class:`LDiffRec` (and those of
    :class:`~streamrec.models.diffrec.DiffusionOptions`; see the module docstring).

    n_clusters: item groups, each with its own encoder.
    svd_dim: factors of the truncated SVD the items are clustered on.
    latent_dim: width of the whole latent code (shared among the groups by size).
    ae_dropout: dropout on the encoder's input.
    hidden, dropout: the latent denoiser's hidden widths (mirrored) and input dropout (0: the
        authors' 0.5 drove the model to popularity; see the module docstring).
    diffusion_weight, diffusion_weight_min, diffusion_anneal_epochs: ``lambda_e =
        max(diffusion_weight * (1 - e / diffusion_anneal_epochs), diffusion_weight_min)``.
    kl_max, kl_anneal_steps: ``beta_s = min(kl_max, s / kl_anneal_steps)`` at step ``s``.
    """

    steps: int = 5
    noise_scale: float = 0.5
    noise_min: float = 0.001
    noise_max: float = 0.005
    reweight: bool = True
    n_clusters: int = 2
    svd_dim: int = 64
    latent_dim: int = 300
    ae_dropout: float = 0.1
    hidden: list[int] = field(default_factory=lambda: [300])
    dropout: float = 0.0
    diffusion_weight: float = 0.05
    diffusion_weight_min: float = 0.005
    diffusion_anneal_epochs: int = 500
    kl_max: float = 0.3
    kl_anneal_steps: int = 200

    def check(self) -> list[str]:
        problems = super().check()
        if not self.hidden or any(h < 1 for h in self.hidden):
            problems.append(f"hidden must be one or more widths >= 1, got {self.hidden}")
        if self.latent_dim < self.n_clusters:
            problems.append(f"latent_dim ({self.latent_dim}) must be >= n_clusters "
                            f"({self.n_clusters}): every group needs a latent unit")
        return [
            *problems,
            *at_least("n_clusters", self.n_clusters, 1),
            *at_least("svd_dim", self.svd_dim, 1),
            *in_range("ae_dropout", self.ae_dropout, 0, 1, high_open=True),
            *in_range("dropout", self.dropout, 0, 1, high_open=True),
            *at_least("diffusion_weight", self.diffusion_weight, 0),
            *at_least("diffusion_weight_min", self.diffusion_weight_min, 0),
            *at_least("diffusion_anneal_epochs", self.diffusion_anneal_epochs, 0),
            *at_least("kl_max", self.kl_max, 0),
            *at_least("kl_anneal_steps", self.kl_anneal_steps, 0),
        ]


def item_clusters(train: Dataset, n_clusters: int, svd_dim: int, seed: int) -> np.ndarray:
    """Group id int64 [n_items] of every item: k-means on the items' truncated-SVD factors
    ``V_k S_k`` of the binary training matrix. Fewer groups than asked when there are fewer
    distinct items; an empty group is dropped and the ids renumbered ``0..C-1``."""
    from sklearn.cluster import KMeans
    from sklearn.utils.extmath import randomized_svd

    n_clusters = min(n_clusters, train.n_items)
    if n_clusters == 1:
        return np.zeros(train.n_items, dtype=np.int64)
    k = max(1, min(svd_dim, min(train.n_users, train.n_items) - 1))
    _, s, vt = randomized_svd(train.csr(), k, n_iter=5, random_state=seed)
    emb = (vt.T * s).astype(np.float64)
    labels = KMeans(n_clusters, n_init=4, random_state=seed).fit_predict(emb)
    _, labels = np.unique(labels, return_inverse=True)
    return labels.astype(np.int64)


class LDiffRec(UserBatches, Recommender):
    """L-DiffRec: per-group variational encoders, latent diffusion, a linear decoder."""

    name = "l-diffrec"
    Config = LDiffRecConfig
    #: DiffRec's: Adam 1e-3, batch 400 for 100 epochs (Wang et al.), a sixth of the users per
    #: batch at least on small data
    train_defaults: ClassVar[dict[str, Any]] = DiffRec.train_defaults
    train_recipe: ClassVar[dict[str, Any]] = DiffRec.train_recipe

    def __init__(self, config: LDiffRecConfig, train: Dataset) -> None:
        super().__init__(config, train)
        groups = item_clusters(train, config.n_clusters, config.svd_dim, config.seed)
        sizes = np.bincount(groups)
        widths = [max(1, int(n / train.n_items * config.latent_dim)) for n in sizes[:-1]]
        widths.append(max(1, config.latent_dim - sum(widths)))
        self.latent_widths = widths
        for c in range(len(sizes)):
            # saved with the weights: the groups a trained model was built on
            self.register_buffer(f"group_items_{c}",
                                 torch.as_tensor(np.flatnonzero(groups == c), dtype=torch.long))
        #: group c: x[:, I_c] [B, |I_c|] -> tanh(Linear) -> (mu_c, log var_c) [B, 2 d_c]
        self.encoders = nn.ModuleList(
            nn.Sequential(nn.Linear(int(n), 2 * d), nn.Tanh()) for n, d in zip(sizes, widths))
        #: z_hat_0 [B, latent] -> item scores [B, n_items] (in item order)
        self.decoder = nn.Linear(sum(widths), train.n_items)
        for layer in [*(e[0] for e in self.encoders), self.decoder]:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.ae_drop = nn.Dropout(config.ae_dropout)
        self.diffusion = config.schedule()
        self.sampler = StepSampler(config.steps) if config.importance_sampling else None
        self.denoiser = Denoiser(sum(widths), list(config.hidden), config.time_dim,
                                 config.dropout)
        #: optimizer steps taken (for the KL annealing; saved, so a resumed run continues it)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._epoch = 0
        self._init_user_batches(train)

    def group_items(self) -> list[Tensor]:
        """The items int64 [|I_c|] of every group ``c``."""
        return [getattr(self, f"group_items_{c}") for c in range(len(self.encoders))]

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(z, mu, logvar)``, each [B, latent_dim], of histories ``x`` [B, n_items]
        (``z = mu`` in eval mode)."""
        x = self.ae_drop(x)
        mus, logvars = [], []
        for items, enc, d in zip(self.group_items(), self.encoders, self.latent_widths):
            h = enc(x.index_select(1, items))
            mus.append(h[:, :d])
            logvars.append(h[:, d:])
        mu, logvar = torch.cat(mus, -1), torch.cat(logvars, -1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return z, mu, logvar

    # ---------------------------------------------------------------- training
    def on_epoch_start(self, epoch: int) -> None:
        self._epoch = epoch

    def loss(self, batch: Tensor) -> Tensor:
        cfg = self.config
        x = self.train_rows(batch)
        z, mu, logvar = self.encode(x)
        diff, z_hat = diffusion_loss(self.diffusion, self.sampler, self.denoiser, z,
                                     cfg.reweight)
        nll = -(F.log_softmax(self.decoder(z_hat), -1) * x).sum(-1).mean()
        kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1).mean()
        beta = cfg.kl_max if cfg.kl_anneal_steps == 0 else torch.clamp(
            self.updates.float() / cfg.kl_anneal_steps, max=cfg.kl_max)
        if self.training:
            self.updates.add_(1)
        lam = cfg.diffusion_weight
        if cfg.diffusion_anneal_epochs:
            lam = max(lam * (1 - self._epoch / cfg.diffusion_anneal_epochs),
                      cfg.diffusion_weight_min)
        return lam * diff + nll + beta * kl

    # ---------------------------------------------------------------- scoring
    @torch.no_grad()
    def score(self, users: Tensor, history: Dataset) -> Tensor:
        x = self.history_rows(users, history)
        _, mu, _ = self.encode(x)
        generator = None
        if self.config.sampling_steps or self.config.sampling_noise:
            generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        z = self.diffusion.reverse(self.denoiser, mu, self.config.sampling_steps,
                                   self.config.sampling_noise, generator)
        return self.decoder(z)

    @torch.no_grad()
    def sample(self, counts: Tensor | np.ndarray, generator: torch.Generator | None = None,
               noise_std: float = 1.0) -> Tensor:
        """Synthetic users generated in the latent space, not from anyone's history.

        ``z_T ~ N(0, noise_std² I)`` [n, latent_dim] (the prior the encoder's KL term pulls the
        codes towards), the ``T`` latent reverse steps with the posterior's noise, the decoder's
        logits, then ``counts[u]`` distinct items drawn without replacement from their softmax
        (:func:`~streamrec.models.multvae.draw_without_replacement`), as Mult-VAE's story.

        counts: int [n], each in ``0..n_items``; generator: on the model's device. Runs in
        eval mode and restores the mode. Returns binary rows float32 [n, n_items] on the
        model's device.
        """
        counts = as_counts(counts, self.device)
        was_training = self.training
        self.eval()
        try:
            z = noise_std * torch.randn(len(counts), sum(self.latent_widths),
                                        generator=generator, device=self.device)
            logits = self.decoder(self.diffusion.reverse(self.denoiser, z, 0, True, generator))
        finally:
            self.train(was_training)
        return draw_without_replacement(logits, counts, generator)
