"""A SASRec-style session transformer (Kang & McAuley, ICDM 2018), written out in one file.

In the spirit of nanoGPT's ``model.py``: a small config dataclass, the attention written out,
pre-LayerNorm blocks, and the model. For a left-padded sequence of ids ``x_1..x_L`` (0 = pad):

    h_0 = dropout(E[x_t] (+ C[cat_t]) (+ G[eng_t]) + P[t])          item + side + position
    h_l = h_{l-1} + Attn(LN(h_{l-1}));  h_l = h_l + MLP(LN(h_l))     l = 1..n_layers (pre-LN)
    s_i = LN_f(h_n)[L] · E[i]                                        scores tied to the items

Attention of one head with queries/keys/values ``Q = hW_q, K = hW_k, V = hW_v`` ([L, d_h]):

    A = softmax(Q K^T / sqrt(d_h) + M),   M[t, s] = 0 if s <= t and x_s is not padding, else -inf
    out = A V

(padding rows, which no real position reads, attend to themselves so that no row is empty).
Heads are concatenated and projected by ``W_o``. ``tests/test_sequential.py`` checks this
against ``torch.nn.functional.scaled_dot_product_attention`` with the same mask.

:meth:`TransformerModel.explain_session` returns the attention weights of every layer for
explanations (the :class:`~streamrec.models.base.Explainer` capability; the server turns them
into per-recommendation explanations in :mod:`streamrec.serve.explain`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamrec.common import at_least, one_of
from streamrec.data.dataset import Dataset
from streamrec.models.base import Explainer, Session
from streamrec.models.sequential import (
    SequentialConfig,
    SequentialRecommender,
    init_weights,
    sinusoidal_positions,
)


@dataclass
class TransformerConfig(SequentialConfig):
    """Options of :class:`TransformerModel` (plus the shared :class:`SequentialConfig`)."""

    n_layers: int = 2
    n_heads: int = 2
    d_model: int = 64
    dropout: float = 0.2
    max_len: int = 50
    positional: str = "learned"  # "learned" or "sinusoidal"
    mlp_ratio: int = 4
    use_category: bool = False
    use_engagement: bool = False

    def check(self) -> list[str]:
        problems = [
            *super().check(),
            *at_least("n_layers", self.n_layers, 1),
            *at_least("n_heads", self.n_heads, 1),
            *one_of("positional", self.positional, ("learned", "sinusoidal")),
            *at_least("mlp_ratio", self.mlp_ratio, 1),
        ]
        if self.n_heads >= 1 and self.d_model >= 1 and self.d_model % self.n_heads:
            problems.append(f"d_model ({self.d_model}) must be divisible by n_heads "
                            f"({self.n_heads})")
        return problems


def attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """Boolean mask [B, 1, L, L] of allowed (query t, key s) pairs: ``s <= t`` and ``s`` real.

    valid: bool [B, L], True at non-padding positions. The diagonal is always allowed, so a
    padding query (whose row would otherwise be empty) attends to itself only.
    """
    L = valid.shape[1]
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool, device=valid.device))
    allowed = causal & valid[:, None, None, :]
    return allowed | torch.eye(L, dtype=torch.bool, device=valid.device)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with the masks written out."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.query = nn.Linear(cfg.d_model, cfg.d_model)
        self.key = nn.Linear(cfg.d_model, cfg.d_model)
        self.value = nn.Linear(cfg.d_model, cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [B, L, d]; mask: bool [B, 1, L, L] (True = may attend).

        Returns the output [B, L, d] and, if ``need_weights``, the attention weights
        [B, H, L, L] (rows sum to 1; before dropout).
        """
        B, L, d = x.shape
        H = self.n_heads

        def heads(t: torch.Tensor) -> torch.Tensor:  # [B, L, d] -> [B, H, L, d/H]
            return t.view(B, L, H, d // H).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // H)  # [B, H, L, L]
        att = att.masked_fill(~mask, float("-inf"))
        att = F.softmax(att, dim=-1)
        y = self.attn_dropout(att) @ v  # [B, H, L, d/H]
        y = y.transpose(1, 2).contiguous().view(B, L, d)  # concatenate the heads
        return self.resid_dropout(self.proj(y)), (att if need_weights else None)


class MLP(nn.Module):
    """Position-wise feed-forward layer: Linear -> GELU -> Linear -> dropout."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + Attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, w = self.attn(self.ln_1(x), mask, need_weights)
        x = x + a
        return x + self.mlp(self.ln_2(x)), w


class TransformerModel(SequentialRecommender, Explainer):
    """SASRec-style next-item transformer."""

    name = "transformer"
    Config = TransformerConfig  # training defaults: SequentialRecommender's

    def __init__(self, config: TransformerConfig, train: Dataset) -> None:
        super().__init__(config, train)
        if config.positional == "learned":
            self.pos_emb = nn.Embedding(config.max_len, config.d_model)
            nn.init.normal_(self.pos_emb.weight, std=config.init_std)
        else:
            self.register_buffer(
                "pos_table", sinusoidal_positions(config.max_len, config.d_model), persistent=False
            )
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layers)])
        self.ln_f = nn.LayerNorm(config.d_model)
        for name, module in self.named_modules():
            if name.startswith("blocks"):
                init_weights(module, config.init_std)

    def positions(self, L: int) -> torch.Tensor:
        """Position embeddings [L, d] of the last ``L`` slots (slot max_len-1 = most recent)."""
        table = self.pos_emb.weight if self.config.positional == "learned" else self.pos_table
        return table[-L:]

    def forward_with_attention(
        self,
        items: torch.Tensor,
        category: torch.Tensor | None = None,
        engagement: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Hidden states [B, L, d] and, if asked, each layer's attention [B, H, L, L]."""
        L = items.shape[1]
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len {self.config.max_len}")
        x = self.embed(items, category, engagement) + self.positions(L)
        x = self.drop(x)
        mask = attention_mask(items > 0)
        weights = []
        for block in self.blocks:
            x, w = block(x, mask, need_weights)
            if need_weights:
                weights.append(w)
        return self.ln_f(x), weights

    def encode(
        self,
        items: torch.Tensor,
        category: torch.Tensor | None = None,
        engagement: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.forward_with_attention(items, category, engagement)[0]

    @torch.no_grad()
    def explain_session(self, session: Session) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores [n_items] after the session and the attention of every layer over its ``n``
        real positions, [n_layers, n_heads, n, n] (eval mode, no dropout).

        A real position never attends to padding (the mask), so the rows of the real block
        already sum to 1; scores are those of :meth:`score_session` (with the repeat bias).
        """
        if len(session.items) == 0:
            raise ValueError("a session needs at least one item")
        batch = self.session_batch([session])
        items, category, engagement = self._tensors(batch)
        n = int((items[0] > 0).sum())
        was = self.training
        self.eval()
        try:
            h, weights = self.forward_with_attention(items, category, engagement, True)
        finally:
            self.train(was)
        scores = self.scores_from_hidden(h[:, -1], items)[0]
        attention = torch.stack(weights)[:, 0, :, -n:, -n:]  # [n_layers, H, n, n]
        return scores, attention
