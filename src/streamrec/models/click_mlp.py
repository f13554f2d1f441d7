"""The click-prediction MLP in PyTorch (``mlp``), with the craft options of deep learning.

``z [B, F] -> (Linear -> norm -> activation -> dropout) x len(hidden) -> Linear -> logit [B]``
on the standardised impression features ``z`` (statistics of the training impressions; see
:class:`~streamrec.models.click_logreg.ClickRecommender`).

Options (all in :class:`MLPConfig`):

``hidden``       widths of the hidden layers, default ``[256, 128, 64]`` (the book's
                 ``[512, 256, 128, 64]`` is the over-fitting case of
                 ``benchmarks/overfitting_case.py``);
``activation``   ``silu`` (default), ``relu``, ``leaky_relu``, ``gelu``, ``tanh`` or ``sigmoid``;
``init``         ``default`` (the default: torch's own ``nn.Linear`` initialisation,
                 ``kaiming_uniform(a=sqrt(5))``, weights and biases from
                 ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``), ``he_normal`` (Kaiming normal, fan-in,
                 for ReLU), ``he_uniform``, ``xavier_normal`` or ``xavier_uniform`` for the
                 hidden layers, whose biases then start at zero; the output layer starts at the
                 log-odds of the click rate as bias (:func:`init_output`), with zero weights
                 except for ``default``, which keeps its random ones;
``norm``         ``none``, ``batchnorm`` (Linear without bias, then BatchNorm1d) or
                 ``layernorm``, placed between the Linear and the activation;
``dropout``      probability of the Dropout after each activation (0 = none).

Weight decay, the optimiser, LR schedules, gradient clipping, early stopping and the
per-layer diagnostics (``diagnostics``, on by default for this model) are options of the shared
training loop (:class:`~streamrec.train.TrainConfig`). The model's training defaults
(:attr:`MLP.train_defaults`): Adam 2e-3 in batches of 1,024, one epoch of linear warmup then a
cosine decay to zero over 12 epochs, early stopping on validation AUC with patience 4 (the
recipe measured in ``docs/click_prediction.md``).

With ``norm="none"`` and ``activation`` ``silu`` or ``relu`` the layers of ``net`` have the
same indices as :func:`streamrec.nn_numpy.build_mlp` (``Linear SiLU Linear ... Linear``), so
weights move between the numpy and the torch MLP with ``to_torch`` / ``from_torch``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from streamrec.common import in_range, one_of
from streamrec.data.dataset import Dataset
from streamrec.models.base import ModelConfig
from streamrec.models.click_logreg import ClickConfig, ClickRecommender

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}
INITS = ("he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "default")
NORMS = ("none", "batchnorm", "layernorm")


@dataclasses.dataclass
class MLPConfig(ClickConfig):
    """Options of the torch click MLP (see the module docstring)."""

    hidden: list[int] = dataclasses.field(default_factory=lambda: [256, 128, 64])
    activation: str = "silu"
    init: str = "default"
    norm: str = "none"
    dropout: float = 0.0

    def check(self) -> list[str]:
        problems = super().check()
        if any(h < 1 for h in self.hidden):
            problems.append(f"hidden widths must be >= 1, got {self.hidden}")
        return [
            *problems,
            *one_of("activation", self.activation, ACTIVATIONS),
            *one_of("init", self.init, INITS),
            *one_of("norm", self.norm, NORMS),
            *in_range("dropout", self.dropout, 0, 1, high_open=True),
        ]


def init_linear(layer: nn.Linear, scheme: str, activation: str = "relu") -> None:
    """Initialise one Linear layer in place with ``scheme`` (see :data:`INITS`)."""
    if scheme == "default":
        layer.reset_parameters()
        return
    nonlinearity = {"relu": "relu", "leaky_relu": "leaky_relu", "tanh": "tanh",
                    "sigmoid": "sigmoid", "gelu": "relu", "silu": "relu",
                    "linear": "linear"}[activation]
    if scheme == "he_normal":
        nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity=nonlinearity)
    elif scheme == "he_uniform":
        nn.init.kaiming_uniform_(layer.weight, mode="fan_in", nonlinearity=nonlinearity)
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(layer.weight)  # Glorot: gain 1, as nn_numpy
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(layer.weight)
    else:
        raise ValueError(f"unknown init {scheme!r}; choose one of {', '.join(INITS)}")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def build_net(n_in: int, cfg: MLPConfig) -> nn.Sequential:
    """``[B, n_in] -> [B, 1]``: the hidden blocks of ``cfg`` and a linear output layer."""
    layers: list[nn.Module] = []
    prev = n_in
    for width in cfg.hidden:
        lin = nn.Linear(prev, width, bias=cfg.norm != "batchnorm")
        init_linear(lin, cfg.init, cfg.activation)
        layers.append(lin)
        if cfg.norm == "batchnorm":
            layers.append(nn.BatchNorm1d(width))
        elif cfg.norm == "layernorm":
            layers.append(nn.LayerNorm(width))
        layers.append(ACTIVATIONS[cfg.activation]())
        if cfg.dropout > 0:
            layers.append(nn.Dropout(cfg.dropout))
        prev = width
    out = nn.Linear(prev, 1)
    init_linear(out, cfg.init, cfg.activation)  # as streamrec.nn_numpy.build_mlp does
    layers.append(out)
    return nn.Sequential(*layers)


def init_output(layer: nn.Linear, base_logit: float, zero_weights: bool = True) -> None:
    """Start the output layer at the base rate: bias = log-odds of the training click rate
    and (unless ``zero_weights`` is False) zero weights, so the untrained network predicts the
    click rate for every impression (loss = its entropy, not the ``log 2`` plus the noise of
    random logits that a He-initialised output layer gives). The hidden layers still get
    gradients from the second step on, once the output weights have moved."""
    with torch.no_grad():
        if zero_weights:
            layer.weight.zero_()
        layer.bias.fill_(base_logit)


class MLP(ClickRecommender):
    """Click MLP on the standardised impression features (see the module docstring)."""

    name: ClassVar[str] = "mlp"
    Config: ClassVar[type[ModelConfig]] = MLPConfig
    train_defaults: ClassVar[dict[str, Any]] = {
        **ClickRecommender.train_defaults,
        "batch_size": 1024,
        "epochs": 12,
        "lr": 2e-3,
        "schedule": "cosine",
        "warmup_epochs": 1,
        "patience": 4,
        "diagnostics": True,
    }

    def __init__(self, config: MLPConfig, train: Dataset) -> None:
        super().__init__(config, train)
        self.net = build_net(self.n_features, config)
        init_output(self.net[-1], self.base_logit, zero_weights=config.init != "default")

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
