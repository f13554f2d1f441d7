"""Model registry: name -> class, imported lazily so light commands stay fast."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamrec.models.base import Recommender

#: model name -> "module:Class"; later milestones add their models here.
REGISTRY: dict[str, str] = {
    "pop": "streamrec.models.pop:Popularity",
    "mf": "streamrec.models.mf:MF",
    "logreg": "streamrec.models.click_logreg:LogReg",
    "mlp": "streamrec.models.click_mlp:MLP",
    "mlp-numpy": "streamrec.models.click_mlp_numpy:NumpyMLP",
    "lightgcn": "streamrec.models.lightgcn:LightGCN",
    "gcn": "streamrec.models.gcn:GCN",
    "graphsage": "streamrec.models.graphsage:GraphSAGE",
    "gat": "streamrec.models.gat:GAT",
    "gf-cf": "streamrec.models.gfcf:GFCF",
    "cnn-text": "streamrec.models.cnn_text:CNNText",
    "tfidf-svd": "streamrec.models.tfidf_svd:TfidfSVD",
    "minilm": "streamrec.models.minilm:MiniLM",
    "gru": "streamrec.models.rnn:GRU",
    "lstm": "streamrec.models.rnn:LSTM",
    "transformer": "streamrec.models.transformer:TransformerModel",
    "two-tower": "streamrec.models.two_tower:TwoTower",
}


def available_models() -> list[str]:
    """Names accepted by ``streamrec train MODEL``."""
    return sorted(REGISTRY)


def get_model_class(name: str) -> type[Recommender]:
    """The class registered under ``name``; ``ValueError`` naming the choices if unknown."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(available_models())}"
        ) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)
