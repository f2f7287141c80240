"""Activation functions beyond relu/gelu/sigmoid/tanh: silu, softplus, leaky_relu,
elu, with PyTorch's names and parameters. User-facing in ``minigrad.functional``
(``F.silu``), as in PyTorch; each forward on raw arrays, its VJP beside it.
"""

from __future__ import annotations

import math

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from ._lift import require_float
from .elementwise import where


def _sigmoid_raw(x):
    """σ(x) = (1 + tanh(x/2)) / 2 on a raw array: no exp to overflow."""
    half = x.dtype.type(0.5)
    return (backend.xp_of(x).tanh(x * half) + 1) * half


class Silu(Function):
    """silu(x) = x σ(x) (the swish);  d/dx = σ(x) (1 + x (1 - σ(x)))."""
    op_name = "silu"

    def forward(self, x):
        return x * _sigmoid_raw(x)

    def backward(self, g):
        x = self.inputs[0]
        s = x.sigmoid()
        return g * s * (1.0 + x * (1.0 - s))


class Softplus(Function):
    """softplus(x) = log(1 + e^(βx)) / β, and x itself where βx > threshold (PyTorch's
    linear tail);  d/dx = σ(βx), and 1 on the tail. log(1 + e^z) is computed as
    logaddexp(0, z): nothing overflows."""
    op_name = "softplus"

    def forward(self, x):
        xp = backend.xp_of(x)
        z = x * x.dtype.type(self.beta)
        smooth = xp.logaddexp(x.dtype.type(0), z) * x.dtype.type(1.0 / self.beta)
        return xp.where(z > self.threshold, x, smooth)

    def backward(self, g):
        z = self.inputs[0] * self.beta
        return where(z > self.threshold, g, g * z.sigmoid())


class LeakyRelu(Function):
    """x where x > 0, negative_slope · x elsewhere;  d/dx = 1 or negative_slope
    (negative_slope at 0, as PyTorch)."""
    op_name = "leaky_relu"

    def forward(self, x):
        return backend.xp_of(x).where(x > 0, x, x * x.dtype.type(self.negative_slope))

    def backward(self, g):
        return where(self.inputs[0] > 0, g, g * self.negative_slope)


class Elu(Function):
    """x where x > 0, α (e^x - 1) elsewhere;  d/dx = 1 or α e^x.

    e^x is taken of min(x, 0), so a large positive x overflows in neither branch."""
    op_name = "elu"

    def forward(self, x):
        xp = backend.xp_of(x)
        pos = x > 0
        neg = xp.expm1(xp.where(pos, x.dtype.type(0), x)) * x.dtype.type(self.alpha)
        return xp.where(pos, x, neg)

    def backward(self, g):
        x = self.inputs[0]
        pos = x > 0
        return where(pos, g, g * self.alpha * where(pos, 0.0, x).exp())


def _number(value, name: str, op: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{op}: {name} must be a finite number, got {value!r}")
    return float(value)


def silu(input: Tensor) -> Tensor:
    """x σ(x), elementwise (PyTorch's ``F.silu``)."""
    require_float(input, "silu")
    return Silu.apply(input)


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + e^(βx)) / β elementwise, linear (x) where βx > ``threshold`` (PyTorch's
    ``F.softplus``); ``beta`` > 0, ``threshold`` a number (``math.inf``: never linear)."""
    require_float(input, "softplus")
    beta = _number(beta, "beta", "softplus")
    if beta <= 0:
        raise ValueError(f"softplus: beta must be > 0, got {beta}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise TypeError(f"softplus: threshold must be a number, got {threshold!r}")
    return Softplus.apply(input, beta=beta, threshold=float(threshold))


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    """max(x, 0) + negative_slope · min(x, 0) elementwise (PyTorch's ``F.leaky_relu``)."""
    require_float(input, "leaky_relu")
    return LeakyRelu.apply(input, negative_slope=_number(negative_slope, "negative_slope", "leaky_relu"))


def elu(input: Tensor, alpha: float = 1.0) -> Tensor:
    """x for x > 0, α (e^x - 1) otherwise (PyTorch's ``F.elu``)."""
    require_float(input, "elu")
    return Elu.apply(input, alpha=_number(alpha, "alpha", "elu"))


# --------------------------------------------------------------------------- exports

__all__: list[str] = []     # user-facing in minigrad.functional (F.silu, F.softplus, ...)

METHODS: dict = {}
