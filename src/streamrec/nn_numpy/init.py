"""Weight initialisers (Xavier/Glorot and He/Kaiming) with torch.nn.init conventions.

Fan convention (identical to ``torch.nn.init._calculate_fan_in_and_fan_out``) for a weight of
shape ``(out, in, *kernel)``::

    receptive_field = prod(kernel)          (1 for a Linear weight of shape (out, in))
    fan_in          = in  * receptive_field
    fan_out         = out * receptive_field

Formulas (``gain`` as in ``torch.nn.init.calculate_gain``)::

    xavier_normal   : W ~ N(0, std^2),   std   = gain * sqrt(2 / (fan_in + fan_out))
    xavier_uniform  : W ~ U(-a, a),      a     = sqrt(3) * std = gain * sqrt(6 / (fan_in + fan_out))
    kaiming_normal  : W ~ N(0, std^2),   std   = gain / sqrt(fan)
    kaiming_uniform : W ~ U(-b, b),      b     = sqrt(3) * std = gain * sqrt(3 / fan)

where ``fan`` is ``fan_in`` (``mode="fan_in"``, preserves the forward variance) or ``fan_out``
(``mode="fan_out"``, preserves the backward variance). For ReLU, ``gain = sqrt(2)``, so He init
gives ``std = sqrt(2 / fan_in)`` and bound ``sqrt(6 / fan_in)``.

All functions take a ``shape``, an optional ``numpy.random.Generator`` (or seed) and a dtype, and
return a new C-contiguous array.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

__all__ = [
    "INITIALIZERS",
    "as_rng",
    "calculate_fan_in_and_fan_out",
    "calculate_gain",
    "get_initializer",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_std",
    "kaiming_uniform",
    "kaiming_uniform_bound",
    "torch_linear_default",
    "xavier_normal",
    "xavier_std",
    "xavier_uniform",
    "xavier_uniform_bound",
]

RngLike = np.random.Generator | int | None
FanMode = Literal["fan_in", "fan_out"]


def as_rng(rng: RngLike) -> np.random.Generator:
    """Return ``rng`` if it is a Generator, otherwise ``np.random.default_rng(rng)``."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def calculate_fan_in_and_fan_out(shape: Sequence[int]) -> tuple[int, int]:
    """Fans of a weight of shape ``(out, in, *kernel)``; same rule as torch.

    Raises ``ValueError`` for fewer than 2 dimensions (torch does too).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError("fan in and fan out can not be computed for tensor with fewer than 2 dims")
    receptive_field = math.prod(shape[2:]) if len(shape) > 2 else 1
    return shape[1] * receptive_field, shape[0] * receptive_field


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """Recommended gain for a nonlinearity (subset of ``torch.nn.init.calculate_gain``).

    linear/identity/sigmoid -> 1, tanh -> 5/3, relu -> sqrt(2),
    leaky_relu(a) -> sqrt(2 / (1 + a^2)) (a defaults to 0.01, like torch), selu -> 3/4.
    """
    if nonlinearity in ("linear", "identity", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1.0 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4.0
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """``gain * sqrt(2 / (fan_in + fan_out))``."""
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def xavier_uniform_bound(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """``sqrt(3) * xavier_std = gain * sqrt(6 / (fan_in + fan_out))``."""
    return math.sqrt(3.0) * xavier_std(fan_in, fan_out, gain)


def kaiming_std(fan: int, gain: float = math.sqrt(2.0)) -> float:
    """``gain / sqrt(fan)`` (``sqrt(2 / fan)`` for ReLU)."""
    return gain / math.sqrt(float(fan))


def kaiming_uniform_bound(fan: int, gain: float = math.sqrt(2.0)) -> float:
    """``sqrt(3) * kaiming_std = gain * sqrt(3 / fan)`` (``sqrt(6 / fan)`` for ReLU)."""
    return math.sqrt(3.0) * kaiming_std(fan, gain)


def _uniform(
    shape: Sequence[int], bound: float, rng: RngLike, dtype: np.dtype | type
) -> np.ndarray:
    """Sample ``U(-bound, bound)`` of the given shape and dtype."""
    dtype = np.dtype(dtype)
    u = as_rng(rng).random(tuple(shape), dtype=dtype)  # U[0, 1)
    u *= dtype.type(2.0 * bound)
    u -= dtype.type(bound)
    return u


def _normal(shape: Sequence[int], std: float, rng: RngLike, dtype: np.dtype | type) -> np.ndarray:
    """Sample ``N(0, std^2)`` of the given shape and dtype."""
    dtype = np.dtype(dtype)
    z = as_rng(rng).standard_normal(tuple(shape), dtype=dtype)
    z *= dtype.type(std)
    return z


def _fan(shape: Sequence[int], mode: FanMode) -> int:
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")


def xavier_uniform(
    shape: Sequence[int],
    gain: float = 1.0,
    rng: RngLike = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Glorot uniform: ``U(-a, a)``, ``a = gain * sqrt(6 / (fan_in + fan_out))``."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    return _uniform(shape, xavier_uniform_bound(fan_in, fan_out, gain), rng, dtype)


def xavier_normal(
    shape: Sequence[int],
    gain: float = 1.0,
    rng: RngLike = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Glorot normal: ``N(0, std^2)``, ``std = gain * sqrt(2 / (fan_in + fan_out))``."""
    fan_in, fan_out = calculate_fan_in_and_fan_out(shape)
    return _normal(shape, xavier_std(fan_in, fan_out, gain), rng, dtype)


def kaiming_uniform(
    shape: Sequence[int],
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "relu",
    rng: RngLike = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """He uniform: ``U(-b, b)``, ``b = gain * sqrt(3 / fan)``; ``a`` is the leaky-ReLU slope.

    With the defaults (``relu``, ``fan_in``) ``b = sqrt(6 / fan_in)``; this equals
    ``torch.nn.init.kaiming_uniform_(w, nonlinearity="relu")`` (and torch's default
    ``leaky_relu`` with ``a=0``).
    """
    gain = calculate_gain(nonlinearity, a)
    return _uniform(shape, kaiming_uniform_bound(_fan(shape, mode), gain), rng, dtype)


def kaiming_normal(
    shape: Sequence[int],
    a: float = 0.0,
    mode: FanMode = "fan_in",
    nonlinearity: str = "relu",
    rng: RngLike = None,
    dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """He normal: ``N(0, std^2)``, ``std = gain / sqrt(fan)`` (``sqrt(2 / fan_in)`` for ReLU)."""
    gain = calculate_gain(nonlinearity, a)
    return _normal(shape, kaiming_std(_fan(shape, mode), gain), rng, dtype)


def he_uniform(
    shape: Sequence[int], rng: RngLike = None, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """``kaiming_uniform`` for ReLU with fan_in: ``U(-sqrt(6/fan_in), sqrt(6/fan_in))``."""
    return kaiming_uniform(shape, rng=rng, dtype=dtype)


def he_normal(
    shape: Sequence[int], rng: RngLike = None, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """``kaiming_normal`` for ReLU with fan_in: ``N(0, 2 / fan_in)``."""
    return kaiming_normal(shape, rng=rng, dtype=dtype)


def torch_linear_default(
    shape: Sequence[int], rng: RngLike = None, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    """What ``torch.nn.Linear.reset_parameters`` draws for its weight:
    ``kaiming_uniform(a=sqrt(5))``, i.e. gain ``sqrt(2 / (1 + 5)) = sqrt(1/3)`` and bound
    ``sqrt(1/3) * sqrt(3 / fan_in) = 1 / sqrt(fan_in)``: ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    (:class:`~streamrec.nn_numpy.Linear` with ``init="default"`` draws its bias from the
    same interval, as torch does.)"""
    return kaiming_uniform(shape, a=math.sqrt(5.0), nonlinearity="leaky_relu", rng=rng,
                           dtype=dtype)


def _xavier_uniform_default(
    shape: Sequence[int], rng: RngLike = None, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    return xavier_uniform(shape, rng=rng, dtype=dtype)


def _xavier_normal_default(
    shape: Sequence[int], rng: RngLike = None, dtype: np.dtype | type = np.float32
) -> np.ndarray:
    return xavier_normal(shape, rng=rng, dtype=dtype)


Initializer = Callable[..., np.ndarray]

#: Name -> ``fn(shape, rng=..., dtype=...)`` used by ``Linear(init=...)``.
INITIALIZERS: dict[str, Initializer] = {
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "xavier_normal": _xavier_normal_default,
    "xavier_uniform": _xavier_uniform_default,
    "glorot_normal": _xavier_normal_default,
    "glorot_uniform": _xavier_uniform_default,
    "default": torch_linear_default,
}


def get_initializer(name: str) -> Initializer:
    """Look up an initialiser by name (see ``INITIALIZERS``)."""
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise ValueError(f"unknown init {name!r}; choose from {sorted(INITIALIZERS)}") from None
