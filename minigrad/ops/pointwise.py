"""Pointwise math beyond the basics: sin, cos, log2, exp2; the rounding family
(floor, ceil, round) and floor division, whose gradient is zero wherever it
exists (as in PyTorch); and mod, a - b·floor(a/b), whose gradient is not.

Each forward works on raw arrays, its vector-Jacobian product beside it, written
with Tensor ops so that it is differentiable again.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from ._lift import broadcast_shape, lift, match_float, reflected
from .elementwise import _unary

_LN2 = math.log(2.0)


def _zeros_like(g: Tensor) -> Tensor:
    """A constant zero gradient (no graph): the derivative of a step function."""
    return Tensor._make(g.xp.zeros_like(g.data), g._device)


# --------------------------------------------------------------------------- smooth

class Sin(Function):
    """sin x;  d/dx = cos x."""
    op_name = "sin"

    def forward(self, x):
        return backend.xp_of(x).sin(x)

    def backward(self, g):
        return g * cos(self.inputs[0])


class Cos(Function):
    """cos x;  d/dx = -sin x."""
    op_name = "cos"

    def forward(self, x):
        return backend.xp_of(x).cos(x)

    def backward(self, g):
        return -g * sin(self.inputs[0])


class Log2(Function):
    """log₂ x;  d/dx = 1 / (x ln 2)."""
    op_name = "log2"

    def forward(self, x):
        return backend.xp_of(x).log2(x)

    def backward(self, g):
        return g / (self.inputs[0] * _LN2)


class Exp2(Function):
    """2^x;  d/dx = 2^x ln 2."""
    op_name = "exp2"

    def forward(self, x):
        return backend.xp_of(x).exp2(x)

    def backward(self, g):
        return g * self.output * _LN2


def sin(x: Tensor) -> Tensor:
    return _unary(Sin, x, "sin")


def cos(x: Tensor) -> Tensor:
    return _unary(Cos, x, "cos")


def log2(x: Tensor) -> Tensor:
    return _unary(Log2, x, "log2")


def exp2(x: Tensor) -> Tensor:
    return _unary(Exp2, x, "exp2")


# --------------------------------------------------------------------------- steps

class _Step(Function):
    """Piecewise constant in every input: the gradient is zero (where it exists)."""

    def backward(self, g):
        return tuple(_zeros_like(g) for _ in self.inputs) if len(self.inputs) > 1 else _zeros_like(g)


class Floor(_Step):
    op_name = "floor"

    def forward(self, x):
        return backend.xp_of(x).floor(x)


class Ceil(_Step):
    op_name = "ceil"

    def forward(self, x):
        return backend.xp_of(x).ceil(x)


class Round(_Step):
    """Round to ``decimals`` places, halves to even (NumPy's and PyTorch's rule)."""
    op_name = "round"

    def forward(self, x):
        return backend.xp_of(x).round(x, self.decimals)


class FloorDiv(_Step):
    """floor(a / b), as Python's ``//`` (NumPy's floor_divide, PyTorch's ``//``)."""
    op_name = "floordiv"

    def forward(self, a, b):
        return backend.xp_of(a).floor_divide(a, b)


class Mod(Function):
    """a mod b = a - b·floor(a/b), with the sign of b (Python's ``%``, NumPy's mod,
    PyTorch's remainder);  d/da = 1,  d/db = -floor(a/b)."""
    op_name = "mod"

    def forward(self, a, b):
        return backend.xp_of(a).mod(a, b)

    def backward(self, g):
        a, b = self.inputs
        return g, (-g * floordiv(a, b)) if b.requires_grad else None


def _check_rounding(x: Tensor, op: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: expected a Tensor, got {type(x).__name__}")
    if x.dtype.kind == "b":
        raise TypeError(f"{op}: needs a numeric tensor, got bool (cast with .astype(minigrad.float32))")


def floor(x: Tensor) -> Tensor:
    """The largest integer <= x, elementwise; integer tensors come back unchanged.
    The gradient is zero (PyTorch's convention at the jumps too)."""
    _check_rounding(x, "floor")
    return x if x.dtype.kind in "iu" else Floor.apply(x)


def ceil(x: Tensor) -> Tensor:
    """The smallest integer >= x, elementwise; integer tensors come back unchanged; zero gradient."""
    _check_rounding(x, "ceil")
    return x if x.dtype.kind in "iu" else Ceil.apply(x)


def round(x: Tensor, decimals: int = 0) -> Tensor:  # noqa: A001 - NumPy/PyTorch name
    """x rounded to ``decimals`` places (negative: to tens, hundreds, ...), halves to
    even as ``numpy.round``; zero gradient."""
    _check_rounding(x, "round")
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)):
        raise TypeError(f"round: decimals must be an int, got {decimals!r}")
    if x.dtype.kind in "iu" and decimals >= 0:
        return x
    return Round.apply(x, decimals=int(decimals))


def _division_operands(a, b, op: str) -> tuple[Tensor, Tensor]:
    """Both operands as tensors of one dtype kind; integer division by zero is a
    ZeroDivisionError (as in PyTorch; NumPy would warn and give 0)."""
    if not isinstance(a, Tensor):
        a = lift(a, b, op)
    b = lift(b, a, op)
    for t in (a, b):
        if t.dtype.kind == "b":
            raise TypeError(f"{op}: needs numeric tensors, got bool (cast with .astype(minigrad.int64))")
    broadcast_shape(op, a.shape, b.shape)
    a, b = match_float(a, b)
    if b.dtype.kind in "iu" and a.dtype.kind in "iu" and b.size and (
            isinstance(b.data, np.ndarray) or backend.device_checks_enabled()):
        if bool((b.data == 0).any()):
            raise ZeroDivisionError(f"{op}: integer division by zero (divisor of shape {b.shape}, "
                                    f"dtype {b.dtype})")
    return a, b


def floordiv(a, b) -> Tensor:
    """floor(a / b) elementwise (``a // b``): integers stay integers; zero gradient."""
    return FloorDiv.apply(*_division_operands(a, b, "floordiv"))


def mod(a, b) -> Tensor:
    """a - b·floor(a/b) elementwise (``a % b``), the result taking b's sign.
    Gradient: 1 for a, -floor(a/b) for b."""
    return Mod.apply(*_division_operands(a, b, "mod"))


# --------------------------------------------------------------------------- exports

__all__ = ["sin", "cos", "log2", "exp2", "floor", "ceil", "round", "floordiv", "mod"]

METHODS = {
    "sin": sin, "cos": cos, "log2": log2, "exp2": exp2, "floor": floor, "ceil": ceil,
    "round": round, "__floordiv__": floordiv, "__rfloordiv__": reflected(floordiv),
    "__mod__": mod, "__rmod__": reflected(mod),
}
