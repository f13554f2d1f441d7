"""Layers with hand-written forward and backward passes (numpy only, no autograd).

Conventions
-----------
* Inputs are 2-D batches ``x`` of shape ``[N, D]`` (N = batch size, D = features).
* ``forward(x, training)`` caches what the backward pass needs; ``backward(dy)`` receives
  ``dy = dL/dy`` (same shape as the output), **accumulates** ``dL/dparam`` into
  ``param.grad`` (like torch; call ``zero_grad()`` between steps) and returns ``dL/dx``.
  ``backward(dy, need_input_grad=False)`` skips computing ``dL/dx`` and returns ``None``
  (used for the first layer of a network, whose input needs no gradient).
* Parameters are :class:`Parameter` objects (``.data``, ``.grad``), named like torch's
  ``state_dict`` keys (``"weight"``, ``"bias"``; ``"0.weight"`` inside a :class:`Sequential`).
  Optimisers update ``.data`` in place, so layers always see the current values.
* ``Linear.weight`` is stored as ``[out, in]`` like ``torch.nn.Linear``: ``y = x @ W.T + b``.
* The dtype (float32 or float64) follows the parameters; inputs are cast if needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .init import RngLike, as_rng, get_initializer

__all__ = [
    "BatchNorm1d",
    "Dropout",
    "Linear",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "SiLU",
    "Sigmoid",
]


def _colsum(a: np.ndarray) -> np.ndarray:
    """Column sums of a 2-D array, ``[N, C] -> [C]`` (a BLAS gemv with a ones vector, which is
    several times faster than ``a.sum(axis=0)`` for C-contiguous float arrays)."""
    return np.ones(a.shape[0], dtype=a.dtype) @ a


class Parameter:
    """A trainable array ``data`` with its gradient buffer ``grad`` (same shape and dtype)."""

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray) -> None:
        self.data: np.ndarray = np.ascontiguousarray(data)
        self.grad: np.ndarray = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class. Subclasses set ``_param_names`` / ``_buffer_names`` and implement
    ``forward`` and ``backward``."""

    _param_names: tuple[str, ...] = ()
    _buffer_names: tuple[str, ...] = ()

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Compute the output for input ``x`` and cache what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Given ``dL/dy`` return ``dL/dx`` (or ``None``) and accumulate parameter grads."""
        raise NotImplementedError

    def __call__(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        return self.forward(x, training)

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        """``[(name, Parameter)]`` with torch ``state_dict``-style names."""
        out = []
        for name in self._param_names:
            p = getattr(self, name)
            if p is not None:
                out.append((prefix + name, p))
        return out

    def named_buffers(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        """Non-trainable state arrays (e.g. BatchNorm running statistics)."""
        return [(prefix + name, getattr(self, name)) for name in self._buffer_names]

    def parameters(self) -> list[Parameter]:
        """All :class:`Parameter` objects (pass these to an optimiser)."""
        return [p for _, p in self.named_parameters()]

    def params(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``[(name, param array, grad array)]``; the arrays are live views, not copies."""
        return [(n, p.data, p.grad) for n, p in self.named_parameters()]

    def zero_grad(self) -> None:
        """Set every parameter gradient to zero (in place)."""
        for p in self.parameters():
            p.grad.fill(0)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class Linear(Module):
    """Affine layer ``y = x @ W.T + b``.

    Shapes: x ``[N, in]``, W ``[out, in]``, b ``[out]``, y ``[N, out]``.
    ``init`` is one of ``he_normal``, ``he_uniform``, ``xavier_normal``, ``xavier_uniform``
    (see :mod:`.init`); the bias starts at zero. ``init="default"`` is what
    ``torch.nn.Linear`` does by itself: ``W ~ U(-1/sqrt(in), 1/sqrt(in))`` (its
    ``kaiming_uniform(a=sqrt(5))``) and the bias from the same interval.
    """

    _param_names = ("weight", "bias")

    def __init__(
        self,
        in_features: int,
        out_features: int,
        init: str = "he_normal",
        rng: RngLike = None,
        dtype: np.dtype | type = np.float32,
        bias: bool = True,
    ) -> None:
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        dtype = np.dtype(dtype)
        gen = as_rng(rng)
        w = get_initializer(init)((self.out_features, self.in_features), rng=gen, dtype=dtype)
        self.weight = Parameter(w)
        self.bias: Parameter | None = (
            Parameter(np.zeros(self.out_features, dtype=dtype)) if bias else None
        )
        if init == "default" and self.bias is not None:  # torch: U(-1/sqrt(in), 1/sqrt(in))
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            self.bias.data[...] = gen.uniform(-bound, bound, self.out_features)
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """``y = x @ W.T + b``: ``[N, in] -> [N, out]`` (caches ``x``, no copy)."""
        w = self.weight.data
        x = np.asarray(x, dtype=w.dtype)
        self._x = x
        y = x @ w.T  # W.T is a free (Fortran-ordered) view; BLAS handles it without copying
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Backward of ``y_ni = sum_j x_nj W_ij + b_i``.

        Chain rule with ``dy = dL/dy`` of shape ``[N, out]``::

            dL/dW_ij = sum_n dy_ni * dy_ni/dW_ij = sum_n dy_ni x_nj  ->  dW = dy.T @ x   [out, in]
            dL/db_i  = sum_n dy_ni                                    ->  db = dy.sum(0) [out]
            dL/dx_nj = sum_i dy_ni W_ij                               ->  dx = dy @ W    [N, in]
        """
        x = self._x
        if x is None:
            raise RuntimeError("backward called before forward")
        self.weight.grad += grad.T @ x
        if self.bias is not None:
            self.bias.grad += _colsum(grad)
        if not need_input_grad:
            return None
        return grad @ self.weight.data

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, dtype={self.weight.data.dtype}"
        )


class ReLU(Module):
    """``y = max(x, 0)`` elementwise; any shape. ``inplace=True`` overwrites ``x`` (and, in
    backward, the incoming gradient) to save memory traffic, like ``torch.nn.ReLU(inplace)``."""

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = inplace
        self._mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """``y = max(x, 0)``; the mask ``x > 0`` is computed once and cached for backward."""
        self._mask = x > 0
        if self.inplace:
            return np.maximum(x, 0, out=x)
        return np.maximum(x, 0)

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """``dy/dx = 1[x > 0]`` (0 at the kink, like torch), so ``dx = dy * 1[x > 0]``."""
        if not need_input_grad:
            return None
        if self.inplace:
            return np.multiply(grad, self._mask, out=grad)
        return grad * self._mask

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Sigmoid(Module):
    """``y = 1 / (1 + exp(-x))`` elementwise, computed without overflow; any shape."""

    def __init__(self) -> None:
        self._y: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Stable sigmoid: ``e = exp(-|x|)``; ``y = 1/(1+e)`` if ``x >= 0`` else ``e/(1+e)``."""
        e = np.exp(-np.abs(x))
        r = 1.0 / (1.0 + e)
        y = np.where(x >= 0, r, e * r)
        self._y = y
        return y

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """``dy/dx = e^{-x}/(1+e^{-x})^2 = y (1 - y)``, so ``dx = dy * y * (1 - y)``."""
        if not need_input_grad:
            return None
        y = self._y
        return grad * y * (1.0 - y)


class SiLU(Module):
    """``y = x * sigmoid(x)`` elementwise (SiLU, or "swish"), like ``torch.nn.SiLU``; any shape.

    Smooth and non-monotonic: negative inputs give small negative outputs (minimum
    ``-0.278`` at ``x = -1.278``) and keep a gradient, so a unit cannot die as a ReLU can.
    """

    def __init__(self) -> None:
        self._x: np.ndarray | None = None
        self._s: np.ndarray | None = None

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """``y = x * s`` with ``s = sigmoid(x) = (1 + tanh(x / 2)) / 2``; caches ``x`` and ``s``.

        The tanh form is exact (``tanh(x/2) = (1 - e^-x) / (1 + e^-x)``), cannot overflow
        (tanh saturates at +-1) and is several times faster in numpy than the two-branch
        ``exp`` form of :class:`Sigmoid`.
        """
        half = x.dtype.type(0.5) if x.dtype in (np.float32, np.float64) else 0.5
        s = np.tanh(x * half)
        s += 1.0
        s *= half
        self._x, self._s = x, s
        return x * s

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Product rule with ``ds/dx = s (1 - s)``::

            dy/dx = s + x * s (1 - s) = s * (1 + x (1 - s))

        so ``dx = dy * s * (1 + x (1 - s))``.
        """
        if not need_input_grad:
            return None
        x, s = self._x, self._s
        if x is None or s is None:
            raise RuntimeError("backward called before forward")
        d = np.subtract(1.0, s, dtype=s.dtype)  # dy/dx = s (1 + x (1 - s)), in one buffer
        d *= x
        d += 1.0
        d *= s
        d *= grad
        return d


class Dropout(Module):
    """Inverted dropout: in training ``y = x * m / (1 - p)`` with ``m_i ~ Bernoulli(1 - p)``;
    identity in eval mode (so no rescaling is needed at inference). Any shape."""

    def __init__(self, p: float = 0.5, rng: RngLike = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.rng = as_rng(rng)
        self._mask: np.ndarray | None = None  # scaled mask m / (1 - p), or None for identity

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Sample a fresh mask (training) and return ``x * mask``; eval: return ``x``."""
        if not training or self.p == 0.0:
            self._mask = None
            return x
        if self.p == 1.0:
            self._mask = np.zeros_like(x)
            return np.zeros_like(x)
        dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        keep = self.rng.random(x.shape, dtype=dtype) >= self.p  # P(keep) = 1 - p
        mask = np.multiply(keep, dtype.type(1.0 / (1.0 - self.p)), dtype=dtype)
        self._mask = mask
        return x * mask

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """``y = x * s`` with the fixed scaled mask ``s = m / (1 - p)``, so ``dx = dy * s``."""
        if not need_input_grad:
            return None
        if self._mask is None:
            return grad
        return grad * self._mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BatchNorm1d(Module):
    """Batch normalisation over the batch axis of ``x`` ``[N, C]``, like ``torch.nn.BatchNorm1d``.

    Training: normalise with the batch mean and the *biased* batch variance, then update::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * N / (N - 1)   (unbiased)

    (``momentum=None`` uses the cumulative average ``1 / num_batches_tracked``, like torch.)
    Eval: normalise with the running statistics. Output ``y = gamma * xhat + beta`` with
    ``gamma`` = ``weight`` (init 1) and ``beta`` = ``bias`` (init 0), both ``[C]``.
    """

    _param_names = ("weight", "bias")
    _buffer_names = ("running_mean", "running_var")

    def __init__(
        self,
        num_features: int,
        momentum: float | None = 0.1,
        eps: float = 1e-5,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        dtype = np.dtype(dtype)
        self.num_features = int(num_features)
        self.momentum = momentum
        self.eps = float(eps)
        self.weight = Parameter(np.ones(num_features, dtype=dtype))
        self.bias = Parameter(np.zeros(num_features, dtype=dtype))
        self.running_mean = np.zeros(num_features, dtype=dtype)
        self.running_var = np.ones(num_features, dtype=dtype)
        self.num_batches_tracked = 0
        self._xc: np.ndarray | None = None  # x - mean (batch or running), [N, C]
        self._inv_std: np.ndarray | None = None
        self._training: bool = True

    @property
    def gamma(self) -> Parameter:
        return self.weight

    @property
    def beta(self) -> Parameter:
        return self.bias

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """``[N, C] -> [N, C]``: ``y = gamma * (x - mu) / sqrt(var + eps) + beta``."""
        x = np.asarray(x, dtype=self.weight.data.dtype)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input [N, {self.num_features}], got {x.shape}")
        self._training = training
        if training:
            n = x.shape[0]
            if n < 2:
                raise ValueError("BatchNorm1d needs more than 1 value per channel when training")
            mean = _colsum(x) / n
            xc = x - mean  # centred input, [N, C]
            var = np.einsum("nc,nc->c", xc, xc) / n  # biased variance (used to normalise)
            inv_std = 1.0 / np.sqrt(var + self.eps)
            self.num_batches_tracked += 1
            m = 1.0 / self.num_batches_tracked if self.momentum is None else self.momentum
            self.running_mean *= 1.0 - m
            self.running_mean += m * mean
            self.running_var *= 1.0 - m
            self.running_var += (m * n / (n - 1)) * var
        else:
            inv_std = 1.0 / np.sqrt(self.running_var + self.eps)
            xc = x - self.running_mean
        # y = gamma * xhat + beta with xhat = xc * inv_std, computed as xc * (gamma * inv_std)
        # + beta so that xhat itself is never materialised (one pass less over [N, C]).
        self._xc = xc
        self._inv_std = inv_std
        y = xc * (self.weight.data * inv_std)
        y += self.bias.data
        return y

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Backward of ``y = gamma * xhat + beta``, ``xhat = (x - mu) * s``, ``s = (var+eps)^-1/2``.

        Per channel (dropping the channel index), with ``dy = dL/dy`` ``[N, C]``::

            dL/dbeta  = sum_n dy_n
            dL/dgamma = sum_n dy_n xhat_n
            dL/dxhat_n = gamma dy_n

        Training mode (mu, var depend on x): ``dmu/dx_k = 1/N``,
        ``dvar/dx_k = 2 (x_k - mu) / N``, ``ds/dvar = -s^3 / 2``, hence
        ``dxhat_n/dx_k = s (delta_nk - 1/N) - s xhat_n xhat_k / N`` and::

            dx_k = sum_n dL/dxhat_n * dxhat_n/dx_k
                 = (1/N) * gamma * s * (N dy_k - sum_n dy_n - xhat_k * sum_n dy_n xhat_n)

        Eval mode (running statistics are constants): ``dx = dy * gamma * s``.
        """
        xc = self._xc
        s = self._inv_std
        if xc is None or s is None:
            raise RuntimeError("backward called before forward")
        # Implementation with xhat = xc * s and a = gamma * s (per-channel vectors):
        #   dgamma = s * sum_n dy_n xc_n
        #   dx     = a * dy - (a * s * dgamma / N) * xc - a * dbeta / N
        dbeta = _colsum(grad)
        dgamma = np.einsum("nc,nc->c", grad, xc)
        dgamma *= s
        self.bias.grad += dbeta
        self.weight.grad += dgamma
        if not need_input_grad:
            return None
        a = self.weight.data * s
        dx = grad * a
        if not self._training:
            return dx
        n = grad.shape[0]
        dx -= xc * (a * s * dgamma / n)
        dx -= a * dbeta / n
        return dx

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class Sequential(Module):
    """Chain of modules: ``forward`` runs them in order, ``backward`` in reverse order."""

    def __init__(self, *layers: Module) -> None:
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        self.layers: list[Module] = list(layers)

    def append(self, layer: Module) -> Sequential:
        self.layers.append(layer)
        return self

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self.layers)

    def __getitem__(self, idx: int) -> Module:
        return self.layers[idx]

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Apply every layer in order: ``x -> f_K(...f_1(x))``."""
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad: np.ndarray, need_input_grad: bool = True) -> np.ndarray | None:
        """Chain rule through the composition: ``dL/dh_{k-1} = backward_k(dL/dh_k)``.

        With ``need_input_grad=False`` the first layer skips ``dL/dx`` (returns ``None``).
        """
        g: np.ndarray | None = grad
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(g, need_input_grad or i > 0)
        return g

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:
        out: list[tuple[str, Parameter]] = []
        for i, layer in enumerate(self.layers):
            out.extend(layer.named_parameters(f"{prefix}{i}."))
        return out

    def named_buffers(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        out: list[tuple[str, np.ndarray]] = []
        for i, layer in enumerate(self.layers):
            out.extend(layer.named_buffers(f"{prefix}{i}."))
        return out

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({inner}\n)"
