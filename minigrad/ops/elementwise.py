"""Elementwise ops: each forward on arrays, its vector-Jacobian product beside it.

Gradients are written with Tensor ops (so they are differentiable again) and
may keep the broadcast shape: the engine reduces them to each input's shape.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function
from ..kernels import Elementwise
from ..tensor import Tensor, get_default_dtype
from ._lift import broadcast_shape, lift, match_float, reflected, require_float

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _binary(cls, a, b, name: str) -> Tensor:
    if not isinstance(a, Tensor):
        a = lift(a, b, name)
    b = lift(b, a, name)
    broadcast_shape(name, a.shape, b.shape)
    return cls.apply(*match_float(a, b))


# --------------------------------------------------------------------------- binary

class Add(Function):
    op_name = "add"
    saves, saves_output = (), False

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


class Sub(Function):
    op_name = "sub"
    saves, saves_output = (), False

    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, -g


class Mul(Function):
    op_name = "mul"
    saves_output = False

    def forward(self, a, b):
        return a * b

    def backward(self, g):
        a, b = self.inputs
        return g * b, g * a


class Div(Function):
    op_name = "truediv"
    saves = (1,)

    def forward(self, a, b):
        return a / b

    def backward(self, g):
        a, b = self.inputs
        ga = g / b
        return ga, -ga * self.output if b.requires_grad else None   # -g a / b²


class Pow(Function):
    """x ** y; d/dx = y x^(y-1), d/dy = x^y log x.

    At the edge points the formulas give 0·∞ where the function is smooth, and the
    gradient is what PyTorch returns there: d/dx = 0 at y = 0, x = 0 (x^0 = 1 for every
    x, so its derivative is 0 there too), d/dy = 0 where x = 0 and y >= 0 (0^y is constant 0 for y > 0, 1 at
    y = 0). Where x < 0, d/dy is NaN: x^y has no real derivative in y there."""
    op_name = "pow"

    def forward(self, x, y):
        return x ** y

    def backward(self, g):
        x, y = self.inputs
        gx = gy = None
        if x.requires_grad:
            # only at x = 0 and y = 0 does y x^(y-1) read 0 · 0^-1 = 0 · inf; there the
            # exponent is replaced too, so no inf reaches a second derivative either
            edge = (y == 0) & (x == 0)
            gx = where(edge, 0.0, g * y * x ** where(edge, 1.0, y - 1))
        if y.requires_grad:
            flat = (x == 0) & (y >= 0)
            safe_log = where(flat, 1.0, x).log()       # log of x < 0 stays NaN, as it should
            gy = where(flat, 0.0, g * self.output * safe_log)
        return gx, gy


class Maximum(Function):
    """Elementwise max; at ties the gradient is split evenly (as PyTorch)."""
    op_name = "maximum"
    saves_output = False

    def forward(self, a, b):
        return backend.xp_of(a).maximum(a, b)

    def backward(self, g):
        a, b = self.inputs
        wa = (a > b).astype(g.dtype) + (a == b).astype(g.dtype) * 0.5
        return g * wa, g * (1.0 - wa)


class Minimum(Function):
    op_name = "minimum"
    saves_output = False

    def forward(self, a, b):
        return backend.xp_of(a).minimum(a, b)

    def backward(self, g):
        a, b = self.inputs
        wa = (a < b).astype(g.dtype) + (a == b).astype(g.dtype) * 0.5
        return g * wa, g * (1.0 - wa)


def add(a, b) -> Tensor:
    return _binary(Add, a, b, "add")


def sub(a, b) -> Tensor:
    return _binary(Sub, a, b, "sub")


def mul(a, b) -> Tensor:
    return _binary(Mul, a, b, "mul")


def truediv(a, b) -> Tensor:
    """a / b; integer operands give the default float dtype (not NumPy's float64)."""
    if not isinstance(a, Tensor):
        a = lift(a, b, "truediv")
    b = lift(b, a, "truediv")
    if a.dtype.kind != "f" and b.dtype.kind != "f":
        a, b = a.astype(get_default_dtype()), b.astype(get_default_dtype())
    return _binary(Div, a, b, "truediv")


def pow(x, y) -> Tensor:  # noqa: A001 - NumPy/PyTorch name
    return _binary(Pow, x, y, "pow")


def maximum(a, b) -> Tensor:
    return _binary(Maximum, a, b, "maximum")


def minimum(a, b) -> Tensor:
    return _binary(Minimum, a, b, "minimum")


# --------------------------------------------------------------------------- unary

class Neg(Function):
    op_name = "neg"
    saves, saves_output = (), False

    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Exp(Function):
    op_name = "exp"
    saves = ()

    def forward(self, x):
        return backend.xp_of(x).exp(x)

    def backward(self, g):
        return g * self.output


class Log(Function):
    op_name = "log"
    saves_output = False

    def forward(self, x):
        return backend.xp_of(x).log(x)

    def backward(self, g):
        return g / self.inputs[0]


class Sqrt(Function):
    op_name = "sqrt"
    saves = ()

    def forward(self, x):
        return backend.xp_of(x).sqrt(x)

    def backward(self, g):
        return g * 0.5 / self.output


class Abs(Function):
    op_name = "abs"
    saves_output = False

    def forward(self, x):
        return backend.xp_of(x).abs(x)

    def backward(self, g):
        return g * sign(self.inputs[0])


class Tanh(Function):
    op_name = "tanh"
    saves = ()

    def forward(self, x):
        return backend.xp_of(x).tanh(x)

    def backward(self, g):
        y = self.output
        return g * (1.0 - y * y)


class Sigmoid(Function):
    """1 / (1 + e^-x), computed as (1 + tanh(x/2)) / 2 so no exp overflows."""
    op_name = "sigmoid"
    saves = ()

    def forward(self, x):
        xp = backend.xp_of(x)
        return (xp.tanh(x * x.dtype.type(0.5)) + 1) * x.dtype.type(0.5)

    def backward(self, g):
        y = self.output
        return g * y * (1.0 - y)


class Relu(Function):
    op_name = "relu"
    saves_output = False

    def forward(self, x):
        return backend.xp_of(x).maximum(x, 0)

    def backward(self, g):
        return g * (self.inputs[0] > 0).astype(g.dtype)


class Erf(Function):
    op_name = "erf"
    saves_output = False

    def forward(self, x):
        return backend.erf(x)

    def backward(self, g):
        x = self.inputs[0]
        return g * (2.0 / math.sqrt(math.pi)) * (-(x * x)).exp()


def _gelu_tanh_raw(x):
    xp = backend.xp_of(x)
    half = x.dtype.type(0.5)
    u = x.dtype.type(_SQRT_2_OVER_PI) * (x + x.dtype.type(0.044715) * x * x * x)
    return half * x * (1 + xp.tanh(u))


def _gelu_tanh_backward_raw(x, g):
    """g ⊙ d gelu/dx on raw arrays, in place where possible."""
    # tanh(u) recomputed, not kept from forward: a 4C-wide array less alive per block
    t = backend.xp_of(x).tanh((x * x * 0.044715 + 1) * x * _SQRT_2_OVER_PI)
    du = x * x                                    # in place: 4 temporaries fewer
    du *= 3 * 0.044715 * _SQRT_2_OVER_PI
    du += _SQRT_2_OVER_PI                         # du/dx of the tanh argument
    s = t * t
    s -= 1
    s *= -0.5
    s *= x
    s *= du                                       # x (1 - t²) du / 2
    d = t + 1
    d *= 0.5
    d += s
    d *= g
    return d


def _gelu_exact_raw(x):
    return x.dtype.type(0.5) * x * (1 + backend.erf(x * x.dtype.type(1 / math.sqrt(2.0))))


def _gelu_exact_backward_raw(x, g):
    xp = backend.xp_of(x)
    cdf = 0.5 * (1 + backend.erf(x * (1 / math.sqrt(2.0))))
    return g * (cdf + x * (_INV_SQRT_2PI * xp.exp(-0.5 * x * x)))


# One CUDA kernel each instead of 4 to 12 xp launches (see minigrad/kernels.py), and on the CPU
# one compiled loop each (minigrad/cpu/kernels.py) when numba is installed
_GELU_TANH = Elementwise(
    "gelu_tanh", "T x", "T y",
    "y = T(0.5) * x * (T(1) + tanh(T(0.7978845608028654) * (x + T(0.044715) * x * x * x)));",
    fallback=_gelu_tanh_raw, cpu_kernel="gelu_tanh")
_GELU_TANH_BACKWARD = Elementwise(
    "gelu_tanh_backward", "T x, T g", "T dx",
    """T t = tanh(T(0.7978845608028654) * (x + T(0.044715) * x * x * x));
    T du = T(0.7978845608028654) * (T(1) + T(3 * 0.044715) * x * x);
    dx = g * (T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * du);""",
    fallback=_gelu_tanh_backward_raw, cpu_kernel="gelu_tanh_backward")
_GELU_EXACT = Elementwise(
    "gelu_exact", "T x", "T y", "y = T(0.5) * x * (T(1) + erf(x * T(0.7071067811865476)));",
    fallback=_gelu_exact_raw, cpu_kernel="gelu_exact")
_GELU_EXACT_BACKWARD = Elementwise(
    "gelu_exact_backward", "T x, T g", "T dx",
    """T cdf = T(0.5) * (T(1) + erf(x * T(0.7071067811865476)));
    dx = g * (cdf + x * T(0.3989422804014327) * exp(T(-0.5) * x * x));""",
    fallback=_gelu_exact_backward_raw, cpu_kernel="gelu_exact_backward")


class Gelu(Function):
    """x Φ(x). ``approximate="tanh"``: 0.5 x (1 + tanh(√(2/π)(x + 0.044715 x³))) (GPT-2);
    ``"none"``: exact, Φ(x) = (1 + erf(x/√2)) / 2."""
    op_name = "gelu"
    saves_output = False

    def forward(self, x):
        return (_GELU_TANH if self.approximate == "tanh" else _GELU_EXACT)(x)

    def backward(self, g):
        x = self.inputs[0]
        if self.approximate == "tanh":
            t = (_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)).tanh()
            du = _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x * x)
            return g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
        cdf = 0.5 * (1.0 + (x * (1 / math.sqrt(2.0))).erf())
        pdf = _INV_SQRT_2PI * (-0.5 * x * x).exp()
        return g * (cdf + x * pdf)

    def backward_raw(self, g):      # one kernel on a GPU
        kernel = _GELU_TANH_BACKWARD if self.approximate == "tanh" else _GELU_EXACT_BACKWARD
        return kernel(self.inputs[0].data, g)


class Clip(Function):
    """Clamp to [lo, hi]; the gradient passes where lo <= x <= hi."""
    op_name = "clip"
    saves_output = False

    def forward(self, x):
        return backend.xp_of(x).clip(x, self.lo, self.hi)

    def backward(self, g):
        x = self.inputs[0]
        inside = x == x
        if self.lo is not None:
            inside = inside & (x >= self.lo)
        if self.hi is not None:
            inside = inside & (x <= self.hi)
        return g * inside.astype(g.dtype)


class Where(Function):
    op_name = "where"
    saves = (0,)
    saves_output = False

    def forward(self, cond, a, b):
        return backend.xp_of(a).where(cond, a, b)

    def backward(self, g):
        cond = self.inputs[0]
        zero = Tensor._make(g.xp.zeros((), dtype=g.dtype), g._device)
        return None, where(cond, g, zero), where(cond, zero, g)


class Sign(Function):
    """sign(x); its derivative is zero almost everywhere, so it records no graph."""
    op_name = "sign"
    differentiable = False

    def forward(self, x):
        return backend.xp_of(x).sign(x)


def _unary(cls, x: Tensor, name: str, **params) -> Tensor:
    require_float(x, name)
    return cls.apply(x, **params)


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)


def exp(x: Tensor) -> Tensor:
    return _unary(Exp, x, "exp")


def log(x: Tensor) -> Tensor:
    return _unary(Log, x, "log")


def sqrt(x: Tensor) -> Tensor:
    return _unary(Sqrt, x, "sqrt")


def abs(x: Tensor) -> Tensor:  # noqa: A001 - NumPy/PyTorch name
    return Abs.apply(x)


def tanh(x: Tensor) -> Tensor:
    return _unary(Tanh, x, "tanh")


def sigmoid(x: Tensor) -> Tensor:
    return _unary(Sigmoid, x, "sigmoid")


def relu(x: Tensor) -> Tensor:
    return _unary(Relu, x, "relu")


def erf(x: Tensor) -> Tensor:
    return _unary(Erf, x, "erf")


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU; ``approximate="tanh"`` for GPT-2's approximation, ``"none"`` for exact (PyTorch's default)."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _unary(Gelu, x, "gelu", approximate=approximate)


def sign(x: Tensor) -> Tensor:
    return Sign.apply(x)


def clip(x: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - NumPy/PyTorch names
    """Clamp to [min, max] (either may be None)."""
    if min is None and max is None:
        raise ValueError("clip: give at least one of min and max")
    if min is not None and max is not None and min > max:
        raise ValueError(f"clip: min ({min}) is greater than max ({max})")
    return Clip.apply(x, lo=min, hi=max)


def where(cond, a, b) -> Tensor:
    """Elementwise ``a if cond else b``; ``cond`` a bool tensor (no gradient)."""
    ref = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    if not isinstance(cond, Tensor):
        if ref is None:
            raise TypeError("where: give at least one Tensor")
        cond = lift(cond, ref, "where")
    if cond.dtype.kind != "b":
        raise TypeError(f"where: condition must be a bool tensor, got {cond.dtype}")
    if ref is None:   # two numbers, as np.where(mask, 0.0, -inf): on cond's device, default float
        ref = cond
    a, b = match_float(lift(a, ref, "where"), lift(b, ref, "where"))
    if a.dtype != b.dtype:
        dt = np.promote_types(a.dtype, b.dtype)
        a, b = a.astype(dt), b.astype(dt)
    broadcast_shape("where", cond.shape, a.shape, b.shape)
    return Where.apply(cond, a, b)


# --------------------------------------------------------------------------- exports

__all__ = ["add", "sub", "mul", "truediv", "neg", "pow", "exp", "log", "sqrt", "abs", "tanh",
           "sigmoid", "relu", "gelu", "erf", "sign", "maximum", "minimum", "clip", "where"]

METHODS = {
    "__add__": add, "__radd__": reflected(add), "__sub__": sub, "__rsub__": reflected(sub),
    "__mul__": mul, "__rmul__": reflected(mul), "__truediv__": truediv,
    "__rtruediv__": reflected(truediv), "__pow__": pow, "__rpow__": reflected(pow),
    "__neg__": neg, "__abs__": abs,
    "exp": exp, "log": log, "sqrt": sqrt, "abs": abs, "tanh": tanh, "sigmoid": sigmoid,
    "relu": relu, "gelu": gelu, "erf": erf, "sign": sign, "clip": clip, "clamp": clip,
    "maximum": maximum, "minimum": minimum, "pow": pow,
}
