"""Optimisers whose update rules reproduce ``torch.optim.SGD`` / ``Adam`` / ``AdamW``.

Notation: parameter ``p``, gradient ``g`` (``p.grad``), learning rate ``lr``, step ``t >= 1``.

SGD (``torch.optim.SGD``)::

    g   = g + weight_decay * p                      (L2 penalty folded into the gradient)
    buf = g                                         (first step)
    buf = momentum * buf + (1 - dampening) * g      (later steps)
    g   = g + momentum * buf   if nesterov else buf (only when momentum != 0)
    p   = p - lr * g

Adam (``torch.optim.Adam``; weight decay is an L2 term added to the gradient)::

    g     = g + weight_decay * p
    m     = m + (1 - beta1) * (g - m)               (= beta1 m + (1 - beta1) g, torch's lerp)
    v     = beta2 * v + (1 - beta2) * g^2
    vmax  = max(vmax, v)                            (amsgrad only; then use vmax for v below)
    denom = sqrt(v) / sqrt(1 - beta2^t) + eps
    p     = p - lr / (1 - beta1^t) * m / denom

AdamW (``torch.optim.AdamW`` / ``Adam(decoupled_weight_decay=True)``): the gradient is left
alone and the weights decay directly, ``p = p * (1 - lr * weight_decay)``, before the Adam step.

All updates are done in place on ``Parameter.data`` with preallocated scratch buffers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .layers import Parameter

__all__ = ["SGD", "Adam", "AdamW", "Optimizer"]


class Optimizer:
    """Base class holding a list of :class:`Parameter` objects."""

    def __init__(self, params: Iterable[Parameter], lr: float) -> None:
        self.params: list[Parameter] = list(params)
        if not self.params:
            raise ValueError("optimizer got an empty parameter list")
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr}")
        self.lr = float(lr)

    def zero_grad(self) -> None:
        """Set all gradients to zero in place."""
        for p in self.params:
            p.grad.fill(0)

    def step(self) -> None:
        """Apply one update using the current ``p.grad``."""
        raise NotImplementedError


class SGD(Optimizer):
    """SGD with optional momentum, dampening, Nesterov momentum and L2 weight decay."""

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        dampening: float = 0.0,
    ) -> None:
        super().__init__(params, lr)
        if nesterov and (momentum <= 0.0 or dampening != 0.0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.nesterov = nesterov
        self.dampening = float(dampening)
        self.momentum_buffers: list[np.ndarray | None] = [None] * len(self.params)

    def step(self) -> None:
        """One SGD update per parameter (see module docstring)."""
        lr, mom, wd = self.lr, self.momentum, self.weight_decay
        for i, p in enumerate(self.params):
            g = p.grad
            if wd != 0.0:
                g = g + wd * p.data
            if mom != 0.0:
                buf = self.momentum_buffers[i]
                if buf is None:
                    buf = self.momentum_buffers[i] = g.copy()
                else:
                    buf *= mom
                    if self.dampening == 0.0:
                        buf += g
                    else:
                        buf += (1.0 - self.dampening) * g
                g = g + mom * buf if self.nesterov else buf
            if lr != 0.0:
                p.data -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba) with torch's conventions: L2 ``weight_decay`` added to the gradient,
    or decoupled (AdamW) decay when ``decoupled_weight_decay=True``; optional AMSGrad."""

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        super().__init__(params, lr)
        beta1, beta2 = betas
        if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
            raise ValueError(f"invalid betas {betas}")
        self.betas = (float(beta1), float(beta2))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.amsgrad = amsgrad
        self.decoupled_weight_decay = decoupled_weight_decay
        self.step_count = 0
        self.exp_avg = [np.zeros_like(p.data) for p in self.params]
        self.exp_avg_sq = [np.zeros_like(p.data) for p in self.params]
        self.max_exp_avg_sq = [np.zeros_like(p.data) for p in self.params] if amsgrad else []
        self._tmp = [np.empty_like(p.data) for p in self.params]

    def step(self) -> None:
        """One Adam update per parameter (see module docstring)."""
        self.step_count += 1
        t = self.step_count
        lr, wd, eps = self.lr, self.weight_decay, self.eps
        beta1, beta2 = self.betas
        step_size = lr / (1.0 - beta1**t)
        bc2_sqrt = math.sqrt(1.0 - beta2**t)
        for i, p in enumerate(self.params):
            g = p.grad
            m, v, tmp = self.exp_avg[i], self.exp_avg_sq[i], self._tmp[i]
            if wd != 0.0:
                if self.decoupled_weight_decay:
                    p.data *= 1.0 - lr * wd
                else:
                    g = g + wd * p.data
            # m <- m + (1 - beta1) (g - m)
            np.subtract(g, m, out=tmp)
            tmp *= 1.0 - beta1
            m += tmp
            # v <- beta2 v + (1 - beta2) g^2
            v *= beta2
            np.multiply(g, g, out=tmp)
            tmp *= 1.0 - beta2
            v += tmp
            if self.amsgrad:
                vmax = self.max_exp_avg_sq[i]
                np.maximum(vmax, v, out=vmax)
                v = vmax
            # p <- p - step_size * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
            np.sqrt(v, out=tmp)
            tmp /= bc2_sqrt
            tmp += eps
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p.data -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``; default ``weight_decay=1e-2``)."""

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True)
