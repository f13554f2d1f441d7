"""Mult-DAE (Liang et al., WWW 2018): Mult-VAE's denoising twin.

The same network and likelihood as :mod:`streamrec.models.multvae`, but the code is a
deterministic function of the corrupted input: dropout 0.5 on the L2-normalised history row is
the noise, the encoder ``Linear(I, 600) → tanh → Linear(600, 200) → tanh`` gives ``z``, the
decoder ``Linear(200, 600) → tanh → Linear(600, I)`` the logits, and the loss is the
multinomial negative log-likelihood of the clean row plus ``l2 · Σ ‖W‖²``:

    loss(x_u) = −Σ_i x_ui log softmax(f_θ(g_φ(dropout(x_u / ‖x_u‖))))_i + l2 Σ ‖W‖²

No KL term and no sampling: it is the VAE with β = 0 and σ = 0, which is why it needs the
weight penalty (default ``l2 = 2e-5``, the paper's 0.01 per batch of 500).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from streamrec.data.dataset import Dataset
from streamrec.models.multvae import MultAutoencoder, MultConfig, SparseInputLinear


@dataclass
class MultDAEConfig(MultConfig):
    """Options of :class:`MultDAE` (see :class:`~streamrec.models.multvae.MultConfig`)."""

    l2: float = 2e-5


class MultDAE(MultAutoencoder):
    """Mult-DAE: a denoising autoencoder of the history row with a multinomial likelihood."""

    name = "mult-dae"
    Config = MultDAEConfig

    def __init__(self, config: MultDAEConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.encoder = nn.Sequential(SparseInputLinear(train.n_items, config.hidden), nn.Tanh(),
                                     nn.Linear(config.hidden, config.latent), nn.Tanh())
        self.init_weights()

    def latent(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """The code ``g_φ(h)`` [B, K] of encoder inputs ``h`` [B, I] (dense or sparse); no
        penalty."""
        z = self.encoder(h)
        return z, z.new_zeros(())
