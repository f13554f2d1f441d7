"""A 1D CNN over item descriptions (after Kim, EMNLP 2014): the content-embedding model.

For an item text of ``L`` token ids (``max_len`` = 64 by default, right-padded), with the
default options:

    tokens [B, L] -> token embeddings [B, E=64, L] (training: each token dropped with p=0.5)
      -> for each width w in ``widths`` (1, 2, 3): Conv1d(E, F=128, w) -> ReLU [B, F, L-w+1]
         -> global mean-pooling over the windows that start inside the text [B, F]
      -> concatenation [B, F * n_widths] -> BatchNorm -> dropout 0.1 -> Linear
      -> item embedding [B, dim=128]

trained on ``category+views`` (category weight 2, views weight 3; objectives below) for up
to 40 epochs of 256 items with Adam 3e-3, early-stopped on validation NDCG@20. These defaults
are the "views" recipe of ``docs/content.md``: single words and short phrases, counted
rather than only noticed, and kept apart by the views term, which is what a content
recommender needs to rank a user's next item (``benchmarks/defaults_demo.py``). Kim's
configuration (he used 100 filters), with which the category-only CNN gives the most
category-pure neighbours, is ``widths=[3,4,5] n_filters=64 pooling=max dropout=0.5
token_dropout=0 objective=category category_weight=1``.

A window counts only if it starts at a position ``t <= len - w`` (it lies inside the text; a
text shorter than ``w`` keeps its first window), so padding never decides a pooled value.
``pooling="mean"`` averages over those windows (how often a pattern occurs), ``"max"``
(Kim's) keeps the largest value (whether it occurs), and ``"max+mean"`` concatenates both
([B, 2 F] per width).

Two choices that the benchmark on the synthetic world decided (``docs/content.md``):

* ``batch_norm``: pooled ReLU features (max or mean) are all positive and share a large common
  component, so at initialisation every text maps to nearly the same direction (mean pairwise
  cosine ~0.96). The category cross-entropy does not mind, but the contrastive objective
  collapsed to the uniform solution (loss = ln B). Batch normalisation of the pooled features
  removes the common component.
* ``token_init="svd"``: the token vectors start from latent semantic analysis of the training
  items' texts (the term side of a truncated SVD of their TF-IDF matrix), the analogue of
  Kim's pretrained word2vec vectors without outside data; ``"random"`` is N(0, 1).

Training objectives (``objective``), through the one training loop:

* ``"category"`` (the book's proxy task): cross-entropy of the item's category through a linear
  head on the 128-d embedding, over the **training items** (those with training interactions);
* ``"contrastive"``: InfoNCE with in-batch negatives over co-engaged pairs: two items that a
  training user engaged with within ``pair_window`` positions of each other in their history
  are a positive pair; the other positives of the batch are the negatives (duplicates of the
  positive item are masked out); symmetric, with temperature ``temperature``;
* ``"profile"``: the content recommender's own task. For a batch of ``profile_users`` training
  users, one item of each user's history is the target and ``profile_items`` other items of
  the history (drawn at random) form the profile, the mean of their normalised embeddings;
  the loss is the cross-entropy of the target among every item encoded in the batch (the
  targets and the profile items of all its users; the user's other training items masked),
  on cosine / ``temperature``. It teaches the encoder which words make users come back;
* ``"views"`` (self-supervised, SimCSE-style): each batch item is encoded twice, with
  independent token dropout and feature dropout (with ``category`` its pass there is one of the
  two), and InfoNCE asks every view to find its twin
  among the other items' views (in-batch negatives, symmetric, ``temperature``). Two items
  are pushed apart unless their texts share what survives the dropout: the encoder has to keep
  the words that tell items apart (a series' signature words, the rarer topic words), which
  the category objective teaches it to discard. Needs ``token_dropout`` or ``dropout`` > 0;
* terms combine with ``+`` (``"category+views"``, ``"category+profile"``,
  ``"category+views+profile"``; ``"both"`` is ``"category+contrastive"``), the loss being
  ``category_weight`` x category + ``contrastive_weight`` x (InfoNCE or profile loss) +
  ``views_weight`` x views.

Each epoch visits the training items once in a random order (``batch_size`` items per batch,
for the category and views terms);
``contrastive`` / ``both`` batches also hold ``batch_size`` pairs, drawn with the epoch's rng.
With ``pairs_per_epoch`` an epoch holds that many pairs instead (the items cycle with them):
a catalogue has far fewer items than co-engaged pairs to learn from. With ``profile`` an epoch
visits every training user with two or more items once, ``profile_users`` per batch (with
``category+profile`` the items cycle along, ``batch_size`` per batch).
The vocabulary is built from the training items' titles and descriptions and saved with the
run (``extra/vocab.json``). Scoring is the content recommender of
:class:`~streamrec.models.content.ContentRecommender`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamrec.common import at_least, in_range, one_of
from streamrec.data.dataset import Dataset
from streamrec.data.text import PAD_ID, Vocabulary
from streamrec.models.base import split_rows
from streamrec.models.content import ContentConfig, ContentRecommender

#: the terms an objective is made of, joined by "+" ("both" = "category+contrastive")
OBJECTIVE_TERMS = ("category", "contrastive", "profile", "views")
POOLINGS = ("max", "mean", "max+mean")


@dataclass
class CNNTextConfig(ContentConfig):
    """Options of :class:`CNNText`."""

    dim: int = 128  # item embedding size
    token_dim: int = 64  # token embedding size
    n_filters: int = 128  # filters per convolution width
    widths: tuple[int, ...] = (1, 2, 3)  # Kim: (3, 4, 5)
    dropout: float = 0.1  # on the pooled features (Kim: 0.5)
    token_dropout: float = 0.5  # training: zero each token's vector with this probability
    batch_norm: bool = True  # BatchNorm1d on the pooled features (see the module docstring)
    token_init: str = "svd"  # svd (LSA term vectors of the training texts) or random (N(0, 1))
    freeze_tokens: bool = False  # keep the initial token vectors fixed (Kim's "CNN-static")
    pooling: str = "mean"  # over the windows: mean, max (Kim), or max+mean (both, concatenated)
    max_len: int = 64  # tokens per text (title + description), truncated / padded
    min_count: int = 2  # vocabulary: tokens seen at least this often in training items' text
    max_vocab: int | None = 20_000
    objective: str = "category+views"  # terms category, contrastive, profile, views; "+"
    temperature: float = 0.1  # InfoNCE, profile and views logits: cosine / temperature
    category_weight: float = 2.0  # weight of the category cross-entropy
    contrastive_weight: float = 1.0  # weight of InfoNCE / the profile loss
    views_weight: float = 3.0  # weight of the views (two dropout views of one text) InfoNCE
    pair_window: int | None = 1  # co-engaged: within this many positions (None: anywhere)
    pairs_per_epoch: int | None = None  # co-engaged pairs per epoch (None: one per training item)
    profile_users: int = 128  # profile objective: users per batch
    profile_items: int = 16  # profile objective: history items drawn for each user's profile

    def check(self) -> list[str]:
        problems = []
        try:
            terms = objective_terms(self.objective)
        except ValueError as e:
            problems.append(str(e).removeprefix("cnn-text: "))
            terms = frozenset()
        if not self.widths or min(self.widths) < 1:
            problems.append(f"widths must be positive integers, got {list(self.widths)}")
        elif self.max_len < max(self.widths):
            problems.append(f"max_len ({self.max_len}) must be at least the largest width "
                            f"({max(self.widths)})")
        if "views" in terms and self.token_dropout == 0 and self.dropout == 0:
            problems.append("the views objective needs token_dropout or dropout > 0 (without "
                            "noise the two views of a text are the same)")
        return [
            *super().check(),
            *problems,
            *at_least("dim", self.dim, 1),
            *at_least("token_dim", self.token_dim, 1),
            *at_least("n_filters", self.n_filters, 1),
            *in_range("dropout", self.dropout, 0, 1, high_open=True),
            *in_range("token_dropout", self.token_dropout, 0, 1, high_open=True),
            *one_of("token_init", self.token_init, ("svd", "random")),
            *one_of("pooling", self.pooling, POOLINGS),
            *at_least("min_count", self.min_count, 1),
            *at_least("max_vocab", self.max_vocab, 3),
            *at_least("temperature", self.temperature, 0, strict=True),
            *at_least("category_weight", self.category_weight, 0),
            *at_least("contrastive_weight", self.contrastive_weight, 0),
            *at_least("views_weight", self.views_weight, 0),
            *at_least("pair_window", self.pair_window, 1),
            *at_least("pairs_per_epoch", self.pairs_per_epoch, 1),
            *at_least("profile_users", self.profile_users, 1),
            *at_least("profile_items", self.profile_items, 1),
        ]


def objective_terms(objective: str) -> frozenset[str]:
    """The terms of an objective: ``"category+views"`` -> {category, views}; ``"both"`` is
    category + contrastive. Raises ``ValueError`` for an unknown or empty term."""
    names = objective.split("+") if objective != "both" else ["category", "contrastive"]
    terms = frozenset(t.strip() for t in names)
    bad = sorted(t for t in terms if t not in OBJECTIVE_TERMS)
    if bad or not terms:
        raise ValueError(
            f"cnn-text: unknown objective {objective!r}; combine {', '.join(OBJECTIVE_TERMS)} "
            "with '+' (e.g. category+views, category+views+profile)"
        )
    return terms


def lsa_token_vectors(docs: list[str], vocab: Vocabulary, dim: int) -> np.ndarray | None:
    """Token vectors [len(vocab), dim] from a truncated SVD of the TF-IDF matrix of ``docs``.

    The term side of latent semantic analysis: with ``X ~ U S V^T`` over the documents, token
    ``t`` starts at ``V[t] * S`` (rescaled to unit spread, like ``nn.Embedding``'s N(0, 1)), so
    tokens that occur in the same items start close; padding is zero. ``None`` when the texts
    are too few or too poor for a single component. Callers pass training texts only.
    """
    from sklearn.decomposition import TruncatedSVD

    from streamrec.models.tfidf_svd import smoothed_idf, term_counts, tfidf

    counts = term_counts(docs, vocab)
    n, n_vocab = counts.shape[0], len(vocab)
    x = tfidf(counts, smoothed_idf(counts))
    k = min(dim, n_vocab - 3, n - 1)
    if k < 1:
        return None
    svd = TruncatedSVD(n_components=k, n_iter=7, random_state=0).fit(x)
    vecs = np.zeros((n_vocab, dim), dtype=np.float32)
    vecs[:, :k] = (svd.components_ * svd.singular_values_[:, None]).T
    vecs /= max(float(vecs[2:].std()), 1e-12)
    vecs[PAD_ID] = 0.0
    return vecs


class TextCNN(nn.Module):
    """The encoder: token ids [B, L] -> embeddings [B, dim] (see the module docstring)."""

    def __init__(
        self,
        vocab_size: int,
        token_dim: int,
        n_filters: int,
        widths: tuple[int, ...],
        dim: int,
        dropout: float,
        batch_norm: bool = True,
        token_dropout: float = 0.0,
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if not 0.0 <= token_dropout < 1.0:
            raise ValueError(f"cnn-text: token_dropout must be in [0, 1), got {token_dropout}")
        if pooling not in POOLINGS:
            choices = ", ".join(POOLINGS)
            raise ValueError(f"cnn-text: pooling must be one of {choices}, not {pooling!r}")
        self.token_dropout = token_dropout
        self.pooling = pooling
        self.widths = tuple(int(w) for w in widths)
        self.token_emb = nn.Embedding(vocab_size, token_dim, padding_idx=PAD_ID)
        self.convs = nn.ModuleList(nn.Conv1d(token_dim, n_filters, w) for w in self.widths)
        n_features = n_filters * len(self.widths) * (2 if pooling == "max+mean" else 1)
        self.norm = nn.BatchNorm1d(n_features) if batch_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(n_features, dim)

    def pooled_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pooled ReLU convolution features [B, n_filters * n_widths (x2 for max+mean)]."""
        x = self.token_emb(tokens)  # [B, L, E]
        if self.training and self.token_dropout > 0:  # drop whole tokens (no rescaling:
            keep = torch.rand(x.shape[:2], device=x.device) >= self.token_dropout  # max-pool)
            x = x * keep[:, :, None]
        x = x.transpose(1, 2)  # [B, E, L]
        lengths = (tokens != PAD_ID).sum(dim=1)  # [B]
        pooled = []
        for w, conv in zip(self.widths, self.convs):
            h = F.relu(conv(x))  # [B, F, L - w + 1]
            n_windows = (lengths - w + 1).clamp(min=1)  # windows inside the text
            valid = torch.arange(h.shape[2], device=h.device)[None, :] < n_windows[:, None]
            # after ReLU every value is >= 0, so a masked window (0) never beats a valid one
            h = h.masked_fill(~valid[:, None, :], 0.0)
            if self.pooling in ("max", "max+mean"):
                pooled.append(h.amax(dim=2))
            if self.pooling in ("mean", "max+mean"):
                pooled.append(h.sum(dim=2) / n_windows[:, None].to(h.dtype))
        return torch.cat(pooled, dim=1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Item embeddings [B, dim] of token ids [B, L] (L >= max width)."""
        return self.proj(self.dropout(self.norm(self.pooled_features(tokens))))


class CNNText(ContentRecommender):
    """1D CNN item embeddings from text, trained on categories and/or co-engagement."""

    name = "cnn-text"
    Config = CNNTextConfig
    train_defaults: ClassVar[dict[str, Any]] = {
        "lr": 3e-3,
        "batch_size": 256,
        "epochs": 40,
        "patience": 5,
        "valid_metric": "ndcg@20",
    }

    def __init__(self, config: CNNTextConfig, train: Dataset) -> None:
        super().__init__(config, train)
        terms = objective_terms(config.objective)
        self.dim = config.dim
        self.uses_category = "category" in terms
        self.uses_pairs = "contrastive" in terms
        self.uses_profiles = "profile" in terms
        self.uses_views = "views" in terms
        cats = self.categories(train)
        if self.uses_category and cats is None:
            raise ValueError(
                "cnn-text: the category objective needs an item 'category' column; "
                "use objective=views, profile or contrastive for data without categories"
            )
        self.item_category = cats
        self.n_categories = 0
        if cats is not None:
            names = train.meta.get("categories")
            self.n_categories = max(int(cats.max()) + 1, len(names) if names else 0)
        if (self.uses_pairs or self.uses_profiles) and train.n_interactions == 0:
            raise ValueError(
                f"cnn-text: the {config.objective} objective needs training interactions"
            )
        docs = [self.texts[i] for i in self.train_items]
        self.vocab = Vocabulary.build(docs, config.min_count, max_size=config.max_vocab)
        self.encoder = TextCNN(
            len(self.vocab),
            config.token_dim,
            config.n_filters,
            config.widths,
            config.dim,
            config.dropout,
            config.batch_norm,
            config.token_dropout,
            config.pooling,
        )
        self.head = nn.Linear(config.dim, max(1, self.n_categories))
        if config.token_init == "svd":
            self._init_tokens_from_svd(docs)
        self.encoder.token_emb.weight.requires_grad_(not config.freeze_tokens)
        self.register_buffer("item_tokens", self._encode_items(), persistent=False)
        self._pairs: tuple[np.ndarray, ...] | None = None
        if self.uses_pairs:
            indptr, seq = train.sequences()
            counts = train.user_counts()
            owner = np.repeat(np.arange(len(counts)), counts)  # user of each sequence position
            eligible = np.flatnonzero(counts[owner] >= 2)
            if len(eligible) == 0:
                raise ValueError("cnn-text: no training user has two items to pair")
            self._pairs = (indptr, seq, owner, eligible)
        self._profiles: tuple[np.ndarray, np.ndarray, np.ndarray, Any] | None = None
        if self.uses_profiles:
            indptr, seq = train.sequences()
            users = np.flatnonzero(np.diff(indptr) >= 2)
            if len(users) == 0:
                raise ValueError("cnn-text: no training user has two items for a profile")
            self._profiles = (indptr, seq, users, train.csr())

    def _init_tokens_from_svd(self, docs: list[str]) -> None:
        """Token vectors from latent semantic analysis of the training texts
        (:func:`lsa_token_vectors`)."""
        vecs = lsa_token_vectors(docs, self.vocab, self.encoder.token_emb.embedding_dim)
        if vecs is not None:
            with torch.no_grad():
                self.encoder.token_emb.weight.copy_(torch.as_tensor(vecs))

    def _encode_items(self) -> torch.Tensor:
        return torch.as_tensor(self.vocab.encode_batch(self.texts, self.config.max_len))

    # ------------------------------------------------------------------ training
    def num_batches(self, train: Dataset, batch_size: int) -> int:
        if self._profiles is not None:  # one pass over the users with a profile
            return max(1, -(-len(self._profiles[2]) // self.config.profile_users))
        n = len(self.train_items)
        if self.uses_pairs and self.config.pairs_per_epoch is not None:
            per_item = self.uses_category or self.uses_views
            n = max(n if per_item else 1, self.config.pairs_per_epoch)
        return max(1, -(-n // batch_size))

    def sample_profiles(self, users: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One profile-objective batch for ``users`` (each with >= 2 training items).

        Returns ``users`` [B], ``candidates`` [M] (the distinct items to encode: targets and
        profile items), ``target`` [B] and ``context`` [B, profile_items] (positions in
        ``candidates``), and ``mask`` bool [B, M]: the user's training items other than the
        target (not negatives).
        """
        assert self._profiles is not None
        indptr, seq, _, csr = self._profiles
        h = self.config.profile_items
        start, n = indptr[users], indptr[users + 1] - indptr[users]
        t = rng.integers(0, n)  # the target's position in each history
        other = rng.integers(0, n[:, None] - 1, size=(len(users), h))  # any other position
        other = other + (other >= t[:, None])
        targets, context = seq[start + t], seq[start[:, None] + other]
        cand, inv = np.unique(np.concatenate([targets, context.ravel()]), return_inverse=True)
        mask = np.asarray(csr[users][:, cand].todense()) > 0
        mask[np.arange(len(users)), inv[: len(users)]] = False
        return {
            "users": users.astype(np.int64),
            "candidates": cand.astype(np.int64),
            "target": inv[: len(users)].astype(np.int64),
            "context": inv[len(users) :].reshape(len(users), h).astype(np.int64),
            "mask": mask,
        }

    def sample_pairs(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` co-engaged (anchor, positive) item pairs, int64 [n] each.

        An anchor is a uniformly drawn training interaction of a user with at least two; its
        positive is another position of the same user's time-ordered history, uniformly within
        ``pair_window`` positions of it (anywhere when ``pair_window`` is None).
        """
        assert self._pairs is not None
        indptr, seq, owner, eligible = self._pairs
        pos = eligible[rng.integers(0, len(eligible), size=n)]
        start, end = indptr[owner[pos]], indptr[owner[pos] + 1]  # [start, end)
        w = self.config.pair_window
        lo = start if w is None else np.maximum(start, pos - w)
        hi = end - 1 if w is None else np.minimum(end - 1, pos + w)
        other = lo + rng.integers(0, hi - lo, size=n)  # hi - lo >= 1 positions besides pos
        other = other + (other >= pos)
        return seq[pos].astype(np.int64), seq[other].astype(np.int64)

    def split_batch(self, batch: dict[str, np.ndarray], parts: int
                    ) -> list[tuple[dict[str, np.ndarray], int]]:
        """The items of a batch (with their labels and pairs) cut into ``parts``; its profile
        part (:meth:`sample_profiles`) whole in every share, or cut when it is all there is."""
        profile = frozenset({"users", "candidates", "target", "context", "mask"})
        only_profiles = not ({"items", "anchors"} & set(batch))
        return split_rows(batch, parts, frozenset() if only_profiles else profile, self.name)

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, np.ndarray]]:
        order = rng.permutation(self.train_items)
        n_batches = self.num_batches(train, batch_size)
        if n_batches > -(-len(order) // batch_size):  # more pair / profile batches: cycle
            reps = -(-n_batches * batch_size // len(order))
            order = np.concatenate([order, *(rng.permutation(order) for _ in range(reps - 1))])
            order = order[: n_batches * batch_size]
        users = None if self._profiles is None else rng.permutation(self._profiles[2])
        pu = self.config.profile_users
        for b in range(n_batches):
            items = order[b * batch_size : (b + 1) * batch_size]
            batch: dict[str, np.ndarray] = {}
            if self.uses_category or self.uses_views:
                batch["items"] = items
            if self.uses_category:
                assert self.item_category is not None
                batch["labels"] = self.item_category[items]
            if self.uses_pairs:
                batch["anchors"], batch["positives"] = self.sample_pairs(len(items), rng)
            if users is not None:
                batch.update(self.sample_profiles(users[b * pu : (b + 1) * pu], rng))
            yield batch

    def category_logits(self, items: torch.Tensor) -> torch.Tensor:
        """Category logits [B, n_categories] of catalogue items [B]."""
        return self.head(self.encoder(self.item_tokens[items]))

    def info_nce(
        self, anchors: torch.Tensor, positives: torch.Tensor,
        anchor_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Symmetric in-batch InfoNCE of item pairs [B], [B]; ``anchor_emb`` [B, dim]: the
        anchors' embeddings when a caller has already encoded them (else encoded here)."""
        if anchor_emb is None:
            anchor_emb = self.encoder(self.item_tokens[anchors])
        za = F.normalize(anchor_emb, dim=1)
        zp = F.normalize(self.encoder(self.item_tokens[positives]), dim=1)
        logits = za @ zp.T / self.config.temperature  # [B, B]
        eye = torch.eye(len(anchors), dtype=torch.bool, device=logits.device)
        target = torch.arange(len(anchors), device=logits.device)
        # another copy of my positive (or anchor) in the batch is not a negative
        dup_p = (positives[None, :] == positives[:, None]) & ~eye
        dup_a = (anchors[None, :] == anchors[:, None]) & ~eye
        loss_a = F.cross_entropy(logits.masked_fill(dup_p, float("-inf")), target)
        loss_p = F.cross_entropy(logits.T.masked_fill(dup_a, float("-inf")), target)
        return 0.5 * (loss_a + loss_p)

    def views_loss(self, items: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """Symmetric in-batch InfoNCE between two dropout views of each item's text [B]: two
        encoder passes (train mode) with independent token and feature dropout. ``first``: the
        items' embeddings from a pass already made (the category term's), used as one view."""
        return self.info_nce(items, items, anchor_emb=first)

    def profile_loss(
        self, candidates: torch.Tensor, target: torch.Tensor, context: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Cross-entropy of each user's held-out item against the batch's encoded items, scored
        by cosine with the user's profile (see :meth:`sample_profiles` for the arguments)."""
        emb = F.normalize(self.encoder(self.item_tokens[candidates]), dim=1)  # [M, dim]
        profile = F.normalize(emb[context].mean(dim=1), dim=1)  # [B, dim]
        logits = (profile @ emb.T / self.config.temperature).masked_fill(mask, float("-inf"))
        return F.cross_entropy(logits, target)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        cfg = self.config
        total = torch.zeros((), device=self.item_tokens.device)
        emb = None  # the batch items' embeddings, shared by the category and views terms
        if self.uses_category:
            emb = self.encoder(self.item_tokens[batch["items"]])
            cat = F.cross_entropy(self.head(emb), batch["labels"])
            total = total + cfg.category_weight * cat
        if self.uses_pairs:
            pairs = self.info_nce(batch["anchors"], batch["positives"])
            total = total + cfg.contrastive_weight * pairs
        if self.uses_profiles:
            total = total + cfg.contrastive_weight * self.profile_loss(
                batch["candidates"], batch["target"], batch["context"], batch["mask"]
            )
        if self.uses_views:
            total = total + cfg.views_weight * self.views_loss(batch["items"], emb)
        return total

    # ------------------------------------------------------------------ embeddings
    def embed_tokens(self, tokens: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
        """Embeddings [n, dim] of token ids [n, max_len], ``chunk`` rows at a time."""
        if len(tokens) == 0:
            return torch.zeros(0, self.dim, device=tokens.device)
        return torch.cat(
            [self.encoder(tokens[s : s + chunk]) for s in range(0, len(tokens), chunk)]
        )

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = torch.as_tensor(self.vocab.encode_batch(list(texts), self.config.max_len))
        with torch.set_grad_enabled(self.training and torch.is_grad_enabled()):
            return self.embed_tokens(tokens.to(self.item_tokens.device))

    def compute_item_embeddings(self) -> torch.Tensor:
        return self.embed_tokens(self.item_tokens)

    @torch.no_grad()
    def category_accuracy(self, items: np.ndarray) -> float:
        """Share of ``items`` whose predicted category (argmax of the head) is right."""
        if self.item_category is None or len(items) == 0:
            return float("nan")
        was = self.training
        self.eval()
        idx = torch.as_tensor(np.asarray(items, dtype=np.int64), device=self.item_tokens.device)
        pred = (
            torch.cat(
                [
                    self.category_logits(idx[s : s + 1024]).argmax(1)
                    for s in range(0, len(idx), 1024)
                ]
            )
            .cpu()
            .numpy()
        )
        self.train(was)
        return float((pred == self.item_category[np.asarray(items)]).mean())

    # ------------------------------------------------------------------ saving
    def extra_state_files(self) -> dict[str, bytes]:
        return {"vocab.json": self.vocab.to_json().encode()}

    def load_extra_state_files(self, files: dict[str, bytes]) -> None:
        if "vocab.json" not in files:
            return
        vocab = Vocabulary.from_json(files["vocab.json"])
        if len(vocab) != len(self.vocab):  # a different vocabulary: resize before the weights
            old = self.encoder.token_emb
            self.encoder.token_emb = nn.Embedding(
                len(vocab), old.embedding_dim, padding_idx=PAD_ID
            ).to(old.weight.device)
        self.vocab = vocab
        self.item_tokens = self._encode_items().to(self.item_tokens.device)
        self.invalidate_cache()
