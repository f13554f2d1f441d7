"""A small from-scratch numpy neural-network library (hand-written backprop) for the
click-prediction MLP. See ``docs/numpy_backprop.md`` for the derivations."""

from .init import (
    calculate_fan_in_and_fan_out,
    calculate_gain,
    he_normal,
    he_uniform,
    kaiming_normal,
    kaiming_uniform,
    xavier_normal,
    xavier_uniform,
)
from .layers import (
    BatchNorm1d,
    Dropout,
    Linear,
    Module,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    SiLU,
)
from .losses import BCEWithLogitsLoss, bce_with_logits, bce_with_logits_backward
from .mlp import build_mlp, from_torch, iterate_minibatches, to_torch
from .optim import SGD, Adam, AdamW, Optimizer
from .schedules import LRScheduler, lr_factor

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "Dropout",
    "LRScheduler",
    "Linear",
    "Module",
    "Optimizer",
    "Parameter",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
    "bce_with_logits",
    "bce_with_logits_backward",
    "build_mlp",
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "from_torch",
    "he_normal",
    "he_uniform",
    "iterate_minibatches",
    "kaiming_normal",
    "kaiming_uniform",
    "lr_factor",
    "to_torch",
    "xavier_normal",
    "xavier_uniform",
]
