"""Shared machinery of the session models (GRU, LSTM, transformer): next-item prediction.

A subclass only writes :meth:`SequentialRecommender.encode`: padded sequences [B, L] to hidden
states [B, L, d]. Everything else is here:

* **batches**: the training windows of :func:`streamrec.data.sequences.training_windows`
  (inputs ``x[:-1]``, targets ``x[1:]``, left-padded, 0 = padding), shuffled with the epoch's
  ``rng``; a long history gives at most ``max_windows_per_sequence`` windows per epoch (its
  most recent one and older ones drawn with the epoch's rng: a cap on the work per epoch,
  deterministic per epoch, and over epochs every window is seen); with ``loss="sampled"`` the
  batch also carries its negatives, drawn from the same rng;
* **input embedding**: item embedding (+ category embedding, + engagement-type embedding when
  ``use_category`` / ``use_engagement`` and the data has them);
* **loss** at every non-pad position ``t`` with hidden ``h_t`` and target ``y_t``:

  - ``"ce"``: full softmax cross-entropy over the catalogue with logits ``h_t · e_i`` against the
    item embeddings ``e`` (tied with the input embedding);
  - ``"sampled"``: sampled softmax with log-Q correction. ``K`` negatives ``j_1..j_K`` are drawn
    (with replacement, shared by the batch) from a proposal ``q`` (``uniform`` or ``pop``:
    training counts ``^ pop_alpha``); the logits are ``h·e_y − log q_y`` and ``h·e_j − log q_j``
    (negatives equal to the target are masked), and the loss is the cross-entropy of the target
    among them. Subtracting ``log q`` makes the sampled partition function an unbiased-in-the-
    limit estimate of the full one (Bengio & Senécal 2008; Yi et al. 2019);

* **repeat bias** (``repeat_bias``, on by default): one learned scalar ``b`` added to the logit of
  every item that already occurs in the input up to position ``t`` (``h_t · e_i + b [i seen]``).
  With tied embeddings ``h_t`` stays close to ``e_{x_t}``, so without it the model's best guess
  is often the item just consumed. ``b`` learns how much re-consumption the data has: negative
  on a store's purchases (Amazon: next to none), positive where people re-watch. History-masked
  evaluation is unaffected; it matters when seen items are candidates (as in RecBole's ranking);
* **score**: the hidden state at the last position (always the most recent event, thanks to the
  left padding) against every item embedding, from the user's most recent ``max_len`` events in
  ``history``; :meth:`SequentialRecommender.score_session` does the same for an ad-hoc session
  (the :class:`~streamrec.models.base.SessionRecommender` capability);
* **item embeddings**: the item table without its padding row, [n_items, d_model], row ``i`` =
  internal item ``i`` (the :class:`~streamrec.models.base.ItemEmbedder` capability).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamrec.common import at_least, in_range, one_of
from streamrec.data.dataset import ENGAGEMENT_TYPES, Dataset
from streamrec.data.sequences import (
    SequenceBatch,
    UserSequences,
    item_categories,
    last_items,
    n_categories,
    n_sampled_windows,
    sample_windows,
    training_windows,
    user_sequences,
)
from streamrec.models.base import (
    ItemEmbedder,
    ModelConfig,
    Recommender,
    Session,
    SessionRecommender,
    split_rows,
)

#: ``loss="auto"`` trains with the full softmax up to this many items, sampled softmax above
FULL_SOFTMAX_ITEMS = 16_384


def resolve_loss(loss: str, n_items: int) -> str:
    """``"ce"`` or ``"sampled"``: the loss a session model trains with (``"auto"`` resolved
    by the catalogue's size, :data:`FULL_SOFTMAX_ITEMS`)."""
    if loss != "auto":
        return loss
    return "ce" if n_items <= FULL_SOFTMAX_ITEMS else "sampled"


@dataclass
class SequentialConfig(ModelConfig):
    """Options shared by every session model."""

    d_model: int = 64
    max_len: int = 50
    dropout: float = 0.2
    #: "ce" (full softmax), "sampled" (sampled softmax with log-Q), or "auto": "ce" up to
    #: :data:`FULL_SOFTMAX_ITEMS` items, "sampled" above (a full softmax over Gowalla's 41k
    #: items at every position of 256 windows is ~4.5 s a step on 2 cores)
    loss: str = "auto"
    n_negatives: int = 1024  # sampled softmax: negatives per batch (shared by its positions)
    proposal: str = "pop"  # sampled softmax: "uniform" or "pop"
    pop_alpha: float = 0.75  # "pop" proposal: q ∝ (count + 1) ** pop_alpha
    use_category: bool = False  # add a category embedding to the item embedding
    use_engagement: bool = False  # add an engagement-type embedding (per event)
    session_gap_minutes: float | None = None  # cut histories at inactivity gaps (None: no cut)
    init_std: float = 0.02
    repeat_bias: bool = True  # a learned logit offset for items already in the input sequence
    #: windows of one history per epoch at most (the latest + sampled older ones; None: all)
    max_windows_per_sequence: int | None = 3

    def check(self) -> list[str]:
        return [
            *at_least("d_model", self.d_model, 1),
            *at_least("max_len", self.max_len, 1),
            *in_range("dropout", self.dropout, 0, 1, high_open=True),
            *one_of("loss", self.loss, ("auto", "ce", "sampled")),
            *at_least("n_negatives", self.n_negatives, 1),
            *one_of("proposal", self.proposal, ("uniform", "pop")),
            *at_least("pop_alpha", self.pop_alpha, 0),
            *at_least("session_gap_minutes", self.session_gap_minutes, 0, strict=True),
            *at_least("init_std", self.init_std, 0, strict=True),
            *at_least("max_windows_per_sequence", self.max_windows_per_sequence, 1),
        ]


def first_positions(items: torch.Tensor, n_items: int) -> torch.Tensor:
    """First position of every item in each padded sequence, long [B, n_items].

    items: left-padded 1-based ids [B, L] (0 = padding); the result is 0-based per item, ``L``
    for an item that does not occur. Item ``i`` is in the prefix ``x_0..x_t`` iff
    ``first[b, i] <= t``.
    """
    B, L = items.shape
    first = torch.full((B, n_items + 1), L, dtype=torch.long, device=items.device)
    pos = torch.arange(L, device=items.device).expand(B, L)
    first.scatter_reduce_(1, items, pos, reduce="amin")
    return first[:, 1:]


def sampled_softmax_loss(
    hidden: torch.Tensor,
    targets: torch.Tensor,
    item_weight: torch.Tensor,
    negatives: torch.Tensor,
    log_q: torch.Tensor | None,
    offsets: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Sampled-softmax cross-entropy with log-Q correction (mean over rows).

    hidden: [N, d] query states; targets: [N] 0-based item ids; item_weight: [n_items, d];
    negatives: [K] 0-based ids shared by all rows; log_q: [n_items] log proposal probabilities
    (``None``: uniform, where the correction is a constant and cancels). A negative equal to a
    row's target is masked (an "accidental hit"). With every item as a negative exactly once and
    a uniform proposal this is exactly the full-softmax cross-entropy. ``offsets``: optional
    logit offsets ([N] of the targets, [N, K] of the negatives), e.g. the repeat bias.
    """
    pos = (hidden * item_weight[targets]).sum(-1, keepdim=True)  # [N, 1]
    neg = hidden @ item_weight[negatives].T  # [N, K]
    if offsets is not None:
        pos = pos + offsets[0].unsqueeze(1)
        neg = neg + offsets[1]
    if log_q is not None:
        pos = pos - log_q[targets].unsqueeze(1)
        neg = neg - log_q[negatives].unsqueeze(0)
    neg = neg.masked_fill(negatives.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos, neg], dim=1)
    zeros = torch.zeros(len(targets), dtype=torch.long, device=hidden.device)
    return F.cross_entropy(logits, zeros)


def leading_padding(items: torch.Tensor) -> int:
    """Number of leading columns of left-padded ids [B, L] that are padding in every row.

    Dropping them changes no output at a real position (padding is masked, positions count
    from the end) and saves the work on them: short sessions are cheap.
    """
    real = (items > 0).any(0)
    if not bool(real.any()):
        return items.shape[1] - 1
    return int(real.to(torch.int8).argmax())


class SequentialRecommender(Recommender, ItemEmbedder, SessionRecommender):
    """Base class of next-item models; subclasses implement :meth:`encode`."""

    #: the sampled negatives are shared by a batch's sequences (see ``batches``)
    shared_batch_fields = frozenset({"negatives"})

    name = "sequential"
    Config = SequentialConfig
    train_defaults: ClassVar[dict[str, Any]] = {
        "lr": 1e-3,
        "valid_metric": "ndcg@10",
    }
    #: batch 256 for 20 epochs of windows on large data; at least 1,500 steps (small data:
    #: smaller batches, more epochs)
    train_recipe: ClassVar[dict[str, Any]] = {"batch_size": 256, "epochs": 20,
                                              "min_steps": 1500}

    def __init__(self, config: SequentialConfig, train: Dataset) -> None:
        super().__init__(config, train)
        d = config.d_model
        self.item_emb = nn.Embedding(self.n_items + 1, d, padding_idx=0)
        nn.init.normal_(self.item_emb.weight, std=config.init_std)
        cats = item_categories(train)
        self.use_category = bool(config.use_category and cats is not None)
        self.use_engagement = bool(config.use_engagement and "engagement" in train.inter)
        self.cat_emb = self.eng_emb = None
        if self.use_category:
            self.cat_emb = nn.Embedding(n_categories(train) + 1, d, padding_idx=0)
            nn.init.normal_(self.cat_emb.weight, std=config.init_std)
        if self.use_engagement:
            self.eng_emb = nn.Embedding(len(ENGAGEMENT_TYPES) + 1, d, padding_idx=0)
            nn.init.normal_(self.eng_emb.weight, std=config.init_std)
        with torch.no_grad():  # the padding rows stay zero (and get no gradient)
            for emb in (self.item_emb, self.cat_emb, self.eng_emb):
                if emb is not None:
                    emb.weight[0].zero_()
        self.register_buffer(
            "item_category",
            torch.as_tensor(cats if cats is not None else np.zeros(self.n_items, np.int64)),
            persistent=False,
        )
        counts = train.item_counts().astype(np.float64) + 1.0
        q = counts**config.pop_alpha if config.proposal == "pop" else np.ones(self.n_items)
        q = q / q.sum()
        self.register_buffer("log_q", torch.as_tensor(np.log(q), dtype=torch.float32),
                             persistent=False)
        self._q = q
        self.repeat = nn.Parameter(torch.zeros(())) if config.repeat_bias else None
        #: the loss trained with: "ce" or "sampled" (``config.loss``, "auto" resolved)
        self.loss_kind = resolve_loss(config.loss, self.n_items)
        self._train_cache: tuple[Dataset, SequenceBatch, np.ndarray, np.ndarray] | None = None
        self._history_cache: tuple[Dataset, UserSequences] | None = None

    # ------------------------------------------------------------------ encoding
    def embed(
        self, items: torch.Tensor, category: torch.Tensor | None, engagement: torch.Tensor | None
    ) -> torch.Tensor:
        """Input embedding [B, L, d] of padded ids [B, L] (item + optional side embeddings)."""
        x = self.item_emb(items)
        if self.cat_emb is not None and category is not None:
            x = x + self.cat_emb(category)
        if self.eng_emb is not None and engagement is not None:
            x = x + self.eng_emb(engagement)
        return x

    def encode(
        self,
        items: torch.Tensor,
        category: torch.Tensor | None = None,
        engagement: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states [B, L, d] of left-padded sequences [B, L] (0 = padding)."""
        raise NotImplementedError

    def output_weight(self) -> torch.Tensor:
        """Item embeddings [n_items, d] used as the output layer (tied to the input)."""
        return self.item_emb.weight[1:]

    def item_embeddings(self) -> torch.Tensor:
        """The item table without the padding row, [n_items, d_model]: row ``i`` is internal
        item ``i`` (input id ``i + 1``), the vectors the scores are dot products with."""
        return self.output_weight()

    # ------------------------------------------------------------------ training
    def training_sequences(self, train: Dataset) -> SequenceBatch:
        """All the training windows of ``train`` (built once per training view)."""
        return self._windows(train)[0]

    def _windows(self, train: Dataset) -> tuple[SequenceBatch, np.ndarray, np.ndarray]:
        if self._train_cache is None or self._train_cache[0] is not train:
            self._train_cache = (train, *training_windows(
                train, self.config.max_len, self.config.session_gap_minutes))
        return self._train_cache[1:]

    def num_batches(self, train: Dataset, batch_size: int) -> int:
        _, sequence, _ = self._windows(train)
        n = n_sampled_windows(sequence, self.config.max_windows_per_sequence)
        return max(1, -(-n // batch_size))

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, np.ndarray]]:
        data, sequence, rank = self._windows(train)
        chosen = sample_windows(sequence, rank, self.config.max_windows_per_sequence, rng)
        order = chosen[rng.permutation(len(chosen))]
        n_batches = self.num_batches(train, batch_size)
        for b in range(n_batches):
            part = data.take(order[b * batch_size : (b + 1) * batch_size])
            batch: dict[str, np.ndarray] = {"items": part.items, "targets": part.targets}
            if self.use_category and part.category is not None:
                batch["category"] = part.category
            if self.use_engagement and part.engagement is not None:
                batch["engagement"] = part.engagement
            if self.loss_kind == "sampled":
                k = self.config.n_negatives
                if self.config.proposal == "uniform":
                    batch["negatives"] = rng.integers(0, self.n_items, size=k)
                else:
                    batch["negatives"] = rng.choice(self.n_items, size=k, p=self._q)
            yield batch

    def split_batch(self, batch: dict[str, Any], parts: int) -> list[tuple[Any, float]]:
        """The windows cut into ``parts`` (the shared negatives whole), each share weighted by
        its target positions: the loss is a mean over positions, not over windows."""
        shares = split_rows(batch, parts, self.shared_batch_fields, self.name)
        return [(share, float((share["targets"] > 0).sum()) if n else 0.0)
                for share, n in shares]

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = dict(batch)
        cut = leading_padding(batch["items"])
        for key in ("items", "targets", "category", "engagement"):
            if key in batch:
                batch[key] = batch[key][:, cut:]
        items = batch["items"]
        h = self.encode(items, batch.get("category"), batch.get("engagement"))
        mask = batch["targets"] > 0
        h = h[mask]  # [N, d] the non-pad positions
        targets = batch["targets"][mask] - 1
        weight = self.output_weight()
        if self.loss_kind == "ce":
            logits = h @ weight.T
            if self.repeat is not None:  # item i seen at row (b, t) iff first[b, i] <= t
                first = first_positions(items, self.n_items)  # [B, n_items]
                steps = torch.arange(items.shape[1], device=items.device)
                seen = (first[:, None, :] <= steps[None, :, None])[mask]  # [N, n_items] bool
                logits = logits + self.repeat * seen
            return F.cross_entropy(logits, targets)
        log_q = self.log_q if self.config.proposal == "pop" else None
        negatives = batch["negatives"].long()
        offsets = None
        if self.repeat is not None:  # only the sampled columns: compare within the sequence
            # in_prefix(ids)[b, t, k]: ids[b, t, k] (1-based) occurs in items[b, 0..t]
            causal = torch.ones(items.shape[1], items.shape[1], dtype=torch.bool,
                                device=items.device).tril()  # [t, s]: s <= t
            real = items > 0
            # target of (b, t) among items[b, s], s <= t: [B, L(t), L(s)]
            hit_pos = (items[:, None, :] == batch["targets"][:, :, None]) & causal & real[:, None]
            seen_pos = hit_pos.any(-1)[mask]  # [N]
            # negative k among items[b, s], then a running "any" over s <= t: [B, L, K]
            hit_neg = (items[:, :, None] == negatives[None, None, :] + 1) & real[:, :, None]
            seen_neg = hit_neg.cummax(dim=1).values[mask]  # [N, K]
            offsets = (self.repeat * seen_pos, self.repeat * seen_neg)
        return sampled_softmax_loss(h, targets, weight, negatives, log_q, offsets)

    # ------------------------------------------------------------------ scoring
    def _tensors(self, seqs: SequenceBatch) -> tuple[torch.Tensor, ...]:
        dev = self.device

        def t(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.as_tensor(a, dtype=torch.long, device=dev)

        return (
            t(seqs.items),
            t(seqs.category) if self.use_category else None,
            t(seqs.engagement) if self.use_engagement else None,
        )

    def scores_of(self, seqs: SequenceBatch) -> torch.Tensor:
        """Scores [B, n_items] of padded sequences [B, L] from their last position."""
        items, category, engagement = self._tensors(seqs)
        cut = leading_padding(items)
        items = items[:, cut:]
        category = None if category is None else category[:, cut:]
        engagement = None if engagement is None else engagement[:, cut:]
        h = self.encode(items, category, engagement)[:, -1]  # left padding: the latest event
        return self.scores_from_hidden(h, items)

    def scores_from_hidden(self, h: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] of last hidden states ``h`` [B, d] of padded sequences
        ``items`` [B, L]: ``h · e_i`` plus the repeat bias on the items of the sequence."""
        scores = h @ self.output_weight().T
        if self.repeat is not None:  # every item of the sequence (padding id 0 dropped)
            seen = torch.zeros(len(items), self.n_items + 1, dtype=torch.bool, device=items.device)
            seen = seen.scatter_(1, items, True)[:, 1:]  # [B, n_items]
            scores = scores + self.repeat * seen
        return scores

    def history_sequences(self, users: np.ndarray, history: Dataset) -> SequenceBatch:
        """The users' most recent ``max_len`` events in ``history`` as [B, L] arrays."""
        if self._history_cache is None or self._history_cache[0] is not history:
            self._history_cache = (history, user_sequences(history))
        return last_items(
            self._history_cache[1], users, self.config.max_len, self.config.session_gap_minutes
        )

    def score(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        seqs = self.history_sequences(users.cpu().numpy(), history)
        return self.scores_of(seqs)

    # ------------------------------------------------------------------ sessions
    def session_from_events(
        self, items: np.ndarray, timestamps: np.ndarray, engagement: np.ndarray | None = None
    ) -> Session:
        """The last ``max_len`` events after the last gap of more than
        ``session_gap_minutes`` (when set): what :meth:`score` reads from a history."""
        items = np.asarray(items, dtype=np.int64)
        ts = np.asarray(timestamps, dtype=np.int64)
        lo = 0
        gap = self.config.session_gap_minutes
        if gap is not None and len(ts) > 1:
            breaks = np.flatnonzero(np.diff(ts) > gap * 60.0)
            lo = int(breaks[-1]) + 1 if len(breaks) else 0
        lo = max(lo, len(items) - self.config.max_len)
        eng = None if engagement is None else np.asarray(engagement, dtype=np.int64)[lo:]
        return Session(items[lo:], eng)

    def recent_session(self, user: int, history: Dataset) -> Session:
        """The user's last ``max_len`` events in ``history`` (what :meth:`score` reads)."""
        seqs = self.history_sequences(np.array([user]), history)
        real = seqs.items[0] > 0
        engagement = None
        if seqs.engagement is not None:
            engagement = seqs.engagement[0][real].astype(np.int64) - 1
        return Session(seqs.items[0][real].astype(np.int64) - 1, engagement)

    def session_batch(self, sessions: list[Session]) -> SequenceBatch:
        """Padded sequences [B, max_len] of sessions of internal ids (checked); an empty
        session is an all-padding row."""
        L = self.config.max_len
        rows = np.zeros((len(sessions), L), dtype=np.int64)
        eng = np.zeros_like(rows)
        for r, s in enumerate(sessions):
            items = np.asarray(s.items, dtype=np.int64)[-L:]
            if items.ndim != 1:
                raise ValueError("a session is a 1-d array of item ids")
            if len(items) and (items.min() < 0 or items.max() >= self.n_items):
                raise ValueError(f"session item ids must be in 0..{self.n_items - 1}")
            rows[r, L - len(items):] = items + 1
            if s.engagement is not None and len(items):
                eng[r, L - len(items):] = np.asarray(s.engagement, dtype=np.int64)[-L:] + 1
        cat = None
        if self.use_category:
            cats = self.item_category.cpu().numpy()
            cat = np.where(rows > 0, cats[np.maximum(rows - 1, 0)] + 1, 0)
        eng_rows = np.where(rows > 0, np.maximum(eng, 1), 0) if self.use_engagement else None
        return SequenceBatch(items=rows, category=cat, engagement=eng_rows)

    @torch.no_grad()
    def score_sessions(self, sessions: list[Session]) -> torch.Tensor:
        """Scores [B, n_items] of the next item after each session (eval mode, one batch)."""
        batch = self.session_batch(sessions)
        was = self.training
        self.eval()
        try:
            return self.scores_of(batch)
        finally:
            self.train(was)

    def score_session(self, session: Session) -> torch.Tensor:
        """Scores [n_items] of the next item after an ad-hoc session (eval mode)."""
        if len(session.items) == 0:
            raise ValueError("a session needs at least one item")
        return self.score_sessions([session])[0]


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """nanoGPT-style init: normal(0, std) linear weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    """The fixed sinusoidal position table [n, d] of Vaswani et al. (2017)."""
    pos = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    table = torch.zeros(n, d)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : d // 2]
    return table
