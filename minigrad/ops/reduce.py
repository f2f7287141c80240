"""Reductions over axes (NumPy names: ``axis=``, ``keepdims=``)."""

from __future__ import annotations

import math

from .. import backend
from ..autograd import Function
from ..tensor import Tensor, get_default_dtype
from ._lift import normalize_axes, require_float
from .elementwise import where


def _keep_shape(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` with the reduced ``axes`` kept as size 1."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _expand_back(g: Tensor, x_shape, axes, keepdims: bool) -> Tensor:
    """A reduced gradient broadcast back over the reduced axes."""
    if not keepdims:
        g = g.reshape(_keep_shape(x_shape, axes))
    return g.broadcast_to(x_shape)


class Sum(Function):
    op_name = "sum"
    saves, saves_output = (), False

    def forward(self, x):
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, g):
        return _expand_back(g, self.inputs[0].shape, self.axes, self.keepdims)


class Max(Function):
    """max (or min, with ``self.fn == "min"``); ties share the gradient evenly."""
    op_name = "max"

    def forward(self, x):
        if x.size == 0:
            raise ValueError(f"{self.fn}: cannot reduce an empty tensor of shape {x.shape}")
        return getattr(x, self.fn)(axis=self.axes, keepdims=self.keepdims)

    def backward(self, g):
        x = self.inputs[0]
        y = self.output
        if not self.keepdims:
            y = y.reshape(_keep_shape(x.shape, self.axes))
        hit = (x == y).astype(g.dtype)
        share = hit / hit.sum(axis=self.axes, keepdims=True)
        return _expand_back(g, x.shape, self.axes, self.keepdims) * share


class LogSumExp(Function):
    """log Σ exp(x), with the max subtracted first so nothing overflows."""
    op_name = "logsumexp"

    def forward(self, x):
        xp = backend.xp_of(x)
        # the max shift; an empty axis has none, and log Σ over it is log 0 = -inf
        m = x.max(axis=self.axes, keepdims=True) if x.size else x.sum(axis=self.axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, xp.zeros_like(m))
        out = xp.log(xp.exp(x - m).sum(axis=self.axes, keepdims=True)) + m
        return out if self.keepdims else out.reshape(
            tuple(n for i, n in enumerate(x.shape) if i not in self.axes))

    def backward(self, g):
        x = self.inputs[0]
        y = self.output
        if not self.keepdims:
            y = y.reshape(_keep_shape(x.shape, self.axes))
        return _expand_back(g, x.shape, self.axes, self.keepdims) * (x - y).exp()


class Root(Function):
    """y = s^(1/p) of a sum s >= 0 of p-th powers (std, norms); dy/ds = y / (p s).

    At s = 0 that is 0·∞, where the norm (or std) has a kink: the gradient there is 0,
    as PyTorch returns (the subgradient of smallest size). The masked denominators keep
    the second derivative finite too."""
    op_name = "root"
    saves_output = True

    def forward(self, s):
        return s ** (1.0 / self.p) if self.p != 2 else backend.xp_of(s).sqrt(s)

    def backward(self, g):
        s, y = self.inputs[0], self.output
        zero = y == 0
        return where(zero, 0.0, g * y / (self.p * where(zero, 1.0, s)))


def sum(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 - NumPy name
    axes = normalize_axes(axis, x.ndim, "sum")
    if x.dtype.kind == "b":
        x = x.astype("int64")
    return Sum.apply(x, axes=axes, keepdims=keepdims)


def mean(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """Σx / n over ``axis``; NaN where nothing is averaged (an empty axis), as in PyTorch."""
    axes = normalize_axes(axis, x.ndim, "mean")
    if x.dtype.kind != "f":
        x = x.astype(get_default_dtype())
    n = math.prod(x.shape[a] for a in axes)
    total = Sum.apply(x, axes=axes, keepdims=keepdims)
    # the mean of nothing is 0/0: NaN, as in PyTorch and NumPy (without NumPy's warning)
    return total * (1.0 / n if n else math.nan)


def max(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return Max.apply(x, axes=normalize_axes(axis, x.ndim, "max"), keepdims=keepdims, fn="max")


def min(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    return Max.apply(x, axes=normalize_axes(axis, x.ndim, "min"), keepdims=keepdims, fn="min")


def var(x: Tensor, axis=None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    """Variance, mean((x - mean(x))²) · n/(n - ddof); NumPy's default ddof=0
    (PyTorch's ``torch.var`` defaults to the unbiased ddof=1)."""
    require_float(x, "var")
    axes = normalize_axes(axis, x.ndim, "var")
    n = math.prod(x.shape[a] for a in axes)
    if n - ddof <= 0:
        raise ValueError(f"var: {n} elements with ddof={ddof} leave no degrees of freedom")
    xc = x - x.mean(axis=axes, keepdims=True)
    return (xc * xc).sum(axis=axes, keepdims=keepdims) * (1.0 / (n - ddof))


def std(x: Tensor, axis=None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    """√var; where the values are all equal (std 0) the gradient is 0, as in PyTorch."""
    normalize_axes(axis, x.ndim, "std")   # so a bad axis names std, not var
    return Root.apply(var(x, axis=axis, keepdims=keepdims, ddof=ddof), p=2)


def norm(x: Tensor, ord=2, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A002 - NumPy name
    """The vector p-norm over ``axis`` (all elements by default), PyTorch's
    ``linalg.vector_norm``: ``ord`` 2 (√Σx²), 1 (Σ|x|), inf (max |x|), -inf (min |x|),
    or any p >= 1 ((Σ|x|^p)^(1/p)). At x = 0 the gradient is 0, as in PyTorch."""
    require_float(x, "norm")
    axes = normalize_axes(axis, x.ndim, "norm")
    if isinstance(ord, bool) or not isinstance(ord, (int, float)) or not (
            ord >= 1 or ord == -math.inf):
        raise ValueError(f"norm: ord must be 1, 2, inf, -inf or a number p >= 1, got {ord!r}")
    a = x.abs()
    if ord == math.inf:
        return max(a, axis=axes, keepdims=keepdims)
    if ord == -math.inf:
        return min(a, axis=axes, keepdims=keepdims)
    if ord == 1:
        return sum(a, axis=axes, keepdims=keepdims)
    powered = x * x if ord == 2 else a ** float(ord)
    return Root.apply(sum(powered, axis=axes, keepdims=keepdims), p=float(ord))


def logsumexp(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    require_float(x, "logsumexp")
    return LogSumExp.apply(x, axes=normalize_axes(axis, x.ndim, "logsumexp"), keepdims=keepdims)


# --------------------------------------------------------------------------- exports

__all__ = ["sum", "mean", "max", "min", "var", "std", "norm", "logsumexp"]

METHODS = {"sum": sum, "mean": mean, "max": max, "min": min, "var": var, "std": std, "norm": norm,
           "logsumexp": logsumexp}
