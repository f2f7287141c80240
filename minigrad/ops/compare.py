"""Comparisons, logic and arg-reductions: their results are bool or integer
tensors and carry no gradient."""

from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from ._lift import broadcast_shape, lift, normalize_axes, single_axis


class _NoGrad(Function):
    differentiable = False


def _make_compare(name: str, symbol: str):
    class Compare(_NoGrad):
        op_name = name

        def forward(self, a, b):
            return getattr(a, f"__{name}__")(b)

    def fn(a, b) -> Tensor:
        if not isinstance(a, Tensor):
            a = lift(a, b, name)
        b = lift(b, a, name)
        broadcast_shape(name, a.shape, b.shape)
        return Compare.apply(a, b)

    Compare.__name__ = name.capitalize()
    fn.__name__ = name
    fn.__doc__ = f"Elementwise ``a {symbol} b`` as a bool tensor (no gradient)."
    return fn


eq = _make_compare("eq", "==")
ne = _make_compare("ne", "!=")
lt = _make_compare("lt", "<")
le = _make_compare("le", "<=")
gt = _make_compare("gt", ">")
ge = _make_compare("ge", ">=")


def _make_logic(name: str):
    class Logic(_NoGrad):
        op_name = name

        def forward(self, *xs):
            return getattr(backend.xp_of(xs[0]), name)(*xs)

    def fn(*xs) -> Tensor:
        ts = [x for x in xs if isinstance(x, Tensor)]
        xs = [lift(x, ts[0], name) for x in xs]
        for x in xs:
            if x.dtype.kind != "b":
                raise TypeError(f"{name}: needs bool tensors, got {x.dtype}")
        return Logic.apply(*xs)

    fn.__name__ = name
    return fn


logical_and = _make_logic("logical_and")
logical_or = _make_logic("logical_or")
logical_xor = _make_logic("logical_xor")
logical_not = _make_logic("logical_not")


def _make_check(name: str, doc: str):
    """``isfinite``, ``isnan``, ``isinf``: an elementwise test as a bool tensor (no gradient)."""
    class Check(_NoGrad):
        op_name = name

        def forward(self, x):
            return getattr(backend.xp_of(x), name)(x)

    def fn(x: Tensor) -> Tensor:
        return Check.apply(x)

    fn.__name__, fn.__doc__ = name, f"Elementwise {doc} as a bool tensor (no gradient)."
    return fn


isfinite = _make_check("isfinite", "``x`` is neither NaN nor ±inf")
isnan = _make_check("isnan", "``x != x`` (NaN)")
isinf = _make_check("isinf", "``|x| == inf``")


class ArgMax(_NoGrad):
    op_name = "argmax"

    def forward(self, x):
        if x.size == 0:
            raise ValueError(f"{self.fn}: cannot reduce an empty tensor of shape {x.shape}")
        xp = backend.xp_of(x)
        out = getattr(xp, self.fn)(x, axis=self.axis)
        if self.keepdims and self.axis is not None:
            out = xp.expand_dims(out, self.axis)
        return out.astype("int64")


def _arg_extreme(x: Tensor, axis, keepdims: bool, fn: str) -> Tensor:
    # one axis (NumPy's argmax takes no tuple); a 0-d tensor's axis 0 / -1 is the element itself
    if axis is None:
        ax = None
    elif x.ndim == 0:
        single_axis(axis, 1, fn)
        ax = None
    else:
        ax = single_axis(axis, x.ndim, fn)
    return ArgMax.apply(x, axis=ax, keepdims=keepdims, fn=fn)


def argmax(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    return _arg_extreme(x, axis, keepdims, "argmax")


def argmin(x: Tensor, axis: int | None = None, keepdims: bool = False) -> Tensor:
    return _arg_extreme(x, axis, keepdims, "argmin")


def any(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    axis = normalize_axes(axis, x.ndim, "any")     # errors name any, not the sum inside
    return (x != 0).astype("int64").sum(axis=axis, keepdims=keepdims) > 0


def all(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001
    axis = normalize_axes(axis, x.ndim, "all")     # errors name all, not the sum inside
    return (x == 0).astype("int64").sum(axis=axis, keepdims=keepdims) == 0


# --------------------------------------------------------------------------- exports

__all__ = ["eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor",
           "logical_not", "isfinite", "isnan", "isinf", "argmax", "argmin", "any", "all"]

METHODS = {
    "__eq__": eq, "__ne__": ne, "__lt__": lt, "__le__": le, "__gt__": gt, "__ge__": ge,
    "__and__": logical_and, "__or__": logical_or, "__xor__": logical_xor,
    "__invert__": logical_not,
    "argmax": argmax, "argmin": argmin, "any": any, "all": all, "isfinite": isfinite,
    "isnan": isnan, "isinf": isinf,
}
