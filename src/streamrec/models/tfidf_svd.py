"""TF-IDF + truncated SVD item embeddings: the text baseline (latent semantic analysis).

Closed form (``trainable = False``); :meth:`TfidfSVD.fit`

1. builds a :class:`~streamrec.data.text.Vocabulary` of the tokens that occur in at least
   ``min_df`` of the **training items'** texts (document frequency);
2. weighs term ``t`` of text ``d`` by ``tf(t, d) * idf(t)`` with ``tf = 1 + log(count)``
   (``sublinear_tf``; the raw count otherwise) and the smoothed
   ``idf(t) = ln((1 + n) / (1 + df(t))) + 1`` over the ``n`` training items (scikit-learn's
   ``TfidfVectorizer`` formula), then L2-normalises each row; unknown tokens are ignored;
3. fits scikit-learn's ``TruncatedSVD`` to ``dim`` components on the training items' TF-IDF
   rows, and embeds **every** item (cold ones included) as ``x_tfidf @ components.T``:
   [n_items, dim].

``fit_on="catalogue"`` fits steps 1-3 on every item's text instead: no interaction is used
either way (text is side information), but a basis fitted on the training items alone
captures more of their own wording than of a cold item's, so cold items come out closer to the
"average" text, nearer to every user profile, and are over-recommended against warm ones (on
the synthetic world 65% of a user's top 20 are cold items, against 20% of the catalogue;
``docs/content.md``). Fitting on the catalogue removes that asymmetry.

The state (``idf`` [V], ``components`` [dim, V], the item ``embeddings`` [n_items, dim]) is saved
as tensors and the vocabulary as ``extra/vocab.json``, so :meth:`TfidfSVD.embed_texts` embeds
new texts exactly as at training time. Scoring is the content recommender of
:class:`~streamrec.models.content.ContentRecommender`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from streamrec.common import at_least, one_of
from streamrec.data.dataset import Dataset
from streamrec.data.text import Vocabulary, tokenize
from streamrec.models.base import Validate
from streamrec.models.content import ContentConfig, ContentRecommender

FIT_ON = ("train", "catalogue")


@dataclass
class TfidfSVDConfig(ContentConfig):
    """Options of :class:`TfidfSVD`."""

    dim: int = 128
    min_df: int = 2
    max_features: int | None = None  # keep the most frequent terms only
    sublinear_tf: bool = True
    svd_iter: int = 7
    svd_seed: int = 0
    fit_on: str = "train"  # whose texts fit the vocabulary, IDF and SVD: train | catalogue

    def check(self) -> list[str]:
        return [*super().check(), *at_least("dim", self.dim, 1),
                *at_least("min_df", self.min_df, 1),
                *at_least("max_features", self.max_features, 1),
                *at_least("svd_iter", self.svd_iter, 1), *at_least("svd_seed", self.svd_seed, 0),
                *one_of("fit_on", self.fit_on, FIT_ON)]


def term_counts(texts: list[str], vocab: Vocabulary) -> sp.csr_matrix:
    """Counts of the vocabulary's terms per text, CSR [len(texts), len(vocab)].

    Unknown tokens are dropped (columns 0 and 1, ``<pad>`` / ``<unk>``, stay empty).
    """
    rows, cols = [], []
    for r, text in enumerate(texts):
        ids = [i for i in vocab.ids(tokenize(text)) if i > 1]
        rows.extend([r] * len(ids))
        cols.extend(ids)
    data = np.ones(len(rows), dtype=np.float64)
    m = sp.csr_matrix((data, (rows, cols)), shape=(len(texts), len(vocab)))
    m.sum_duplicates()
    return m


def smoothed_idf(counts: sp.csr_matrix) -> np.ndarray:
    """``ln((1 + n) / (1 + df)) + 1`` per term of a count matrix [n, V] (scikit-learn's
    smoothed IDF), float64 [V]; ``df`` = the number of rows holding the term."""
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    return np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0


def tfidf(counts: sp.csr_matrix, idf: np.ndarray, sublinear: bool = True) -> sp.csr_matrix:
    """L2-normalised TF-IDF rows of a count matrix [n, V] with the term weights ``idf`` [V]."""
    x = counts.astype(np.float64).tocsr(copy=True)
    if sublinear:
        x.data = 1.0 + np.log(x.data)
    x = x @ sp.diags(idf)
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ x)


class TfidfSVD(ContentRecommender):
    """Item embeddings = truncated SVD of the items' TF-IDF vectors (LSA)."""

    name = "tfidf-svd"
    Config = TfidfSVDConfig
    trainable = False

    def __init__(self, config: TfidfSVDConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.dim = config.dim
        self.vocab: Vocabulary | None = None
        self.register_buffer("embeddings", torch.zeros(train.n_items, config.dim))
        self.register_buffer("idf", torch.zeros(0))
        self.register_buffer("components", torch.zeros(config.dim, 0))

    def _resize_state(self, n_terms: int) -> None:
        device = self.embeddings.device
        self.idf = torch.zeros(n_terms, device=device)
        self.components = torch.zeros(self.dim, n_terms, device=device)

    def fit(self, train: Dataset, validate: Validate | None = None) -> None:
        from sklearn.decomposition import TruncatedSVD

        cfg = self.config
        fit_items = self.train_items if cfg.fit_on == "train" else range(len(self.texts))
        docs = [self.texts[i] for i in fit_items]
        max_size = cfg.max_features + 2 if cfg.max_features is not None else None
        self.vocab = Vocabulary.build(docs, cfg.min_df, max_size=max_size, counts="documents")
        n_terms = len(self.vocab)
        self._resize_state(n_terms)
        counts = term_counts(docs, self.vocab)
        n = len(docs)
        idf = smoothed_idf(counts)
        idf[:2] = 0.0  # <pad>, <unk>
        x_train = tfidf(counts, idf, cfg.sublinear_tf)
        k = min(self.dim, n_terms - 3, n - 1)  # ARPACK-free randomized SVD needs k < min(shape)
        comps = np.zeros((self.dim, n_terms), dtype=np.float32)
        if k >= 1:
            svd = TruncatedSVD(n_components=k, n_iter=cfg.svd_iter, random_state=cfg.svd_seed)
            svd.fit(x_train)
            comps[:k] = svd.components_
        self.idf.copy_(torch.as_tensor(idf, dtype=torch.float32))
        self.components.copy_(torch.as_tensor(comps))
        with torch.no_grad():
            self.embeddings.copy_(self.embed_texts(self.texts))
        self.invalidate_cache()

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        if self.vocab is None:
            raise RuntimeError("tfidf-svd is not fitted (call fit, or load a run)")
        idf = self.idf.cpu().double().numpy()
        x = tfidf(term_counts(list(texts), self.vocab), idf, self.config.sublinear_tf)
        comps = self.components.cpu().double().numpy()
        emb = np.asarray(x @ comps.T, dtype=np.float32)
        return torch.as_tensor(emb).to(self.embeddings.device)

    def compute_item_embeddings(self) -> torch.Tensor:
        return self.embeddings

    def extra_state_files(self) -> dict[str, bytes]:
        return {"vocab.json": self.vocab.to_json().encode()} if self.vocab is not None else {}

    def load_extra_state_files(self, files: dict[str, bytes]) -> None:
        if "vocab.json" in files:
            self.vocab = Vocabulary.from_json(files["vocab.json"])
            self._resize_state(len(self.vocab))
