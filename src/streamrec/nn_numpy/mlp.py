"""Click-prediction MLP builder, torch conversion and a minibatch iterator.

``build_mlp(20, [512, 256])`` gives ``Linear(20,512) ReLU Linear(512,256) ReLU Linear(256,1)``;
with ``batchnorm=True`` each hidden block is ``Linear BatchNorm1d ReLU`` and with
``dropout > 0`` a ``Dropout`` follows each ReLU; ``activation="silu"`` puts a ``SiLU`` where
the ReLUs are. Layer indices (and therefore parameter names
such as ``"0.weight"``) are the same as in the ``torch.nn.Sequential`` built by ``to_torch``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from .init import RngLike, as_rng
from .layers import BatchNorm1d, Dropout, Linear, Module, ReLU, Sequential, Sigmoid, SiLU

if TYPE_CHECKING:
    import torch

__all__ = ["ACTIVATIONS", "build_mlp", "from_torch", "iterate_minibatches", "to_torch"]

#: hidden activations of :func:`build_mlp`
ACTIVATIONS = ("relu", "silu")


def build_mlp(
    in_features: int,
    hidden: Sequence[int] = (512, 256, 128, 64),
    dropout: float = 0.0,
    batchnorm: bool = False,
    init: str = "he_normal",
    rng: RngLike = None,
    dtype: np.dtype | type = np.float32,
    activation: str = "relu",
) -> Sequential:
    """MLP ``[N, in_features] -> [N, 1]`` logits (apply a sigmoid for click probabilities).

    ``init`` is used for every Linear weight (biases start at zero, except with ``default``:
    torch's own ``nn.Linear`` initialisation, see :class:`~streamrec.nn_numpy.Linear`);
    ``rng`` seeds both the weights and the dropout masks. ``activation``: ``relu`` or
    ``silu`` after each hidden layer. ReLUs are in-place (their input is a fresh buffer). With
    ``batchnorm`` the hidden Linear layers have no bias (BN's mean subtraction cancels it; its
    gradient would be pure rounding noise, which Adam would amplify into random drift).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of "
                         f"{', '.join(ACTIVATIONS)}")
    gen = as_rng(rng)
    layers: list[Module] = []
    prev = int(in_features)
    for width in hidden:
        # a bias right before BatchNorm is cancelled by the mean subtraction: leave it out
        layers.append(Linear(prev, width, init=init, rng=gen, dtype=dtype, bias=not batchnorm))
        if batchnorm:
            layers.append(BatchNorm1d(width, dtype=dtype))
        layers.append(ReLU(inplace=True) if activation == "relu" else SiLU())
        if dropout > 0.0:
            layers.append(Dropout(dropout, rng=gen))
        prev = int(width)
    layers.append(Linear(prev, 1, init=init, rng=gen, dtype=dtype))
    return Sequential(*layers)


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    import torch

    return {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}[dtype]


def _model_dtype(seq: Sequential) -> np.dtype:
    params = seq.parameters()
    return params[0].data.dtype if params else np.dtype(np.float32)


def to_torch(seq: Sequential) -> torch.nn.Sequential:
    """Equivalent ``torch.nn.Sequential`` with copied (not shared) weights and BN statistics.

    The torch model is left in training mode; call ``.eval()`` for inference.
    """
    import torch
    from torch import nn

    dtype = _torch_dtype(_model_dtype(seq))
    mods: list[nn.Module] = []
    for layer in seq:
        if isinstance(layer, Linear):
            lin = nn.Linear(
                layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=dtype
            )
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(layer.weight.data))
                if layer.bias is not None:
                    lin.bias.copy_(torch.from_numpy(layer.bias.data))
            mods.append(lin)
        elif isinstance(layer, BatchNorm1d):
            bn = nn.BatchNorm1d(
                layer.num_features, eps=layer.eps, momentum=layer.momentum, dtype=dtype
            )
            with torch.no_grad():
                bn.weight.copy_(torch.from_numpy(layer.weight.data))
                bn.bias.copy_(torch.from_numpy(layer.bias.data))
                bn.running_mean.copy_(torch.from_numpy(layer.running_mean))
                bn.running_var.copy_(torch.from_numpy(layer.running_var))
                bn.num_batches_tracked.fill_(layer.num_batches_tracked)
            mods.append(bn)
        elif isinstance(layer, ReLU):
            mods.append(nn.ReLU())
        elif isinstance(layer, SiLU):
            mods.append(nn.SiLU())
        elif isinstance(layer, Sigmoid):
            mods.append(nn.Sigmoid())
        elif isinstance(layer, Dropout):
            mods.append(nn.Dropout(layer.p))
        else:
            raise TypeError(f"cannot convert {type(layer).__name__} to torch")
    return nn.Sequential(*mods)


def from_torch(
    model: torch.nn.Sequential, rng: RngLike = None, dtype: np.dtype | type | None = None
) -> Sequential:
    """Numpy ``Sequential`` with the weights (and BN statistics) of a torch ``Sequential``.

    ``dtype`` defaults to the dtype of the torch parameters; ``rng`` seeds dropout masks.
    """
    from torch import nn

    gen = as_rng(rng)

    def arr(t: torch.Tensor) -> np.ndarray:
        a = t.detach().cpu().numpy()
        return np.array(a, dtype=dtype if dtype is not None else a.dtype, copy=True)

    layers: list[Module] = []
    for mod in model:
        if isinstance(mod, nn.Linear):
            w = arr(mod.weight)
            lin = Linear(
                mod.in_features, mod.out_features, bias=mod.bias is not None, dtype=w.dtype
            )
            lin.weight.data[...] = w
            if mod.bias is not None and lin.bias is not None:
                lin.bias.data[...] = arr(mod.bias)
            layers.append(lin)
        elif isinstance(mod, nn.BatchNorm1d):
            if not (mod.affine and mod.track_running_stats):
                raise TypeError("only affine BatchNorm1d with running stats is supported")
            w = arr(mod.weight)
            bn = BatchNorm1d(mod.num_features, momentum=mod.momentum, eps=mod.eps, dtype=w.dtype)
            bn.weight.data[...] = w
            bn.bias.data[...] = arr(mod.bias)
            bn.running_mean[...] = arr(mod.running_mean)
            bn.running_var[...] = arr(mod.running_var)
            bn.num_batches_tracked = int(mod.num_batches_tracked)
            layers.append(bn)
        elif isinstance(mod, nn.ReLU):
            # in place only where the input is a fresh buffer owned by the previous layer
            layers.append(
                ReLU(inplace=bool(layers) and isinstance(layers[-1], (Linear, BatchNorm1d)))
            )
        elif isinstance(mod, nn.SiLU):
            layers.append(SiLU())
        elif isinstance(mod, nn.Sigmoid):
            layers.append(Sigmoid())
        elif isinstance(mod, nn.Dropout):
            layers.append(Dropout(mod.p, rng=gen))
        else:
            raise TypeError(f"cannot convert {type(mod).__name__} from torch")
    return Sequential(*layers)


def iterate_minibatches(
    n: int,
    batch_size: int,
    rng: RngLike = None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[np.ndarray]:
    """Yield index arrays covering ``range(n)`` in chunks of ``batch_size`` (last one may be
    shorter unless ``drop_last``), in a random order when ``shuffle``."""
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    order = as_rng(rng).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]
