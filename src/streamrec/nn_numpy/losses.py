"""Numerically stable binary cross-entropy on logits (mean reduction), forward and backward.

For a logit ``z`` and a target ``y`` in [0, 1], with ``p = sigmoid(z)``::

    l(z, y) = -[y log p + (1 - y) log(1 - p)]
            = log(1 + e^z) - z y                      (since log p = z - log(1 + e^z),
                                                          log(1 - p) = -log(1 + e^z))
            = max(z, 0) - z y + log1p(e^{-|z|})       (log(1 + e^z) = max(z, 0) + log1p(e^{-|z|}))

The last form never overflows (``e^{-|z|} <= 1``) and keeps precision for large ``|z|``.
Mean over the ``M`` elements: ``L = (1/M) sum_i l(z_i, y_i)``, and::

    dL/dz_i = (1/M) * (d/dz log(1 + e^z) - y) = (sigmoid(z_i) - y_i) / M

``sigmoid(z)`` is computed from the same ``e = e^{-|z|}``: ``1/(1+e)`` for ``z >= 0``,
``e/(1+e)`` otherwise. This is what ``torch.nn.BCEWithLogitsLoss()`` computes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BCEWithLogitsLoss", "bce_with_logits", "bce_with_logits_backward"]


def _prepare(logits: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits)
    if z.dtype not in (np.float32, np.float64):
        z = z.astype(np.float64)
    y = np.asarray(targets, dtype=z.dtype)
    if y.shape != z.shape:
        if y.size != z.size:
            raise ValueError(f"targets {y.shape} and logits {z.shape} differ in size")
        y = y.reshape(z.shape)  # e.g. targets [N] for logits [N, 1]
    return z, y


def _forward(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Return (mean loss, sigmoid(z))."""
    e = np.exp(-np.abs(z))
    elem = np.maximum(z, 0) - z * y + np.log1p(e)
    r = 1.0 / (1.0 + e)
    sig = np.where(z >= 0, r, e * r)
    return float(elem.mean()), sig


def bce_with_logits(logits: np.ndarray, targets: np.ndarray) -> float:
    """Mean BCE of ``logits`` (any shape, e.g. ``[N, 1]``) against ``targets`` (same size)."""
    z, y = _prepare(logits, targets)
    return _forward(z, y)[0]


def bce_with_logits_backward(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``dL/dz = (sigmoid(z) - y) / M`` with the shape of ``logits``."""
    z, y = _prepare(logits, targets)
    e = np.exp(-np.abs(z))
    r = 1.0 / (1.0 + e)
    sig = np.where(z >= 0, r, e * r)
    grad = sig - y
    grad *= grad.dtype.type(1.0 / grad.size)
    return grad


class BCEWithLogitsLoss:
    """Stateful loss: ``forward(logits, targets) -> float`` then ``backward() -> dL/dlogits``.

    Shapes: logits ``[N, 1]`` (or ``[N]``), targets with the same number of elements;
    the returned gradient has the shape of ``logits``.
    """

    def __init__(self) -> None:
        self._sig: np.ndarray | None = None
        self._y: np.ndarray | None = None

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        """Mean of ``max(z, 0) - z y + log1p(exp(-|z|))``; caches ``sigmoid(z)`` and ``y``."""
        z, y = _prepare(logits, targets)
        loss, self._sig = _forward(z, y)
        self._y = y
        return loss

    __call__ = forward

    def backward(self) -> np.ndarray:
        """``dL/dz = (sigmoid(z) - y) / M`` (M = number of elements)."""
        if self._sig is None or self._y is None:
            raise RuntimeError("backward called before forward")
        grad = self._sig - self._y
        grad *= grad.dtype.type(1.0 / grad.size)
        return grad
