"""Primitive ops, one family per file, and the table that binds them to Tensor.

A new op: write its Function (forward + backward) and its user-facing
function in the family's file, add it to the table below if it should be a
Tensor method, export it from ``minigrad/__init__.py``, and give it an entry
in ``tests/minigrad/op_registry.py``.
"""

from __future__ import annotations

from ..tensor import Tensor
from . import (  # noqa: F401  (families)
    attention,
    compare,
    elementwise,
    fused,
    index,
    linalg,
    norm,
    recurrent,
    reduce,
    shape,
    softmax,
)
from .compare import (  # noqa: A004
    all,
    any,
    argmax,
    argmin,
    eq,
    ge,
    gt,
    isfinite,
    le,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    lt,
    ne,
)
from .elementwise import (  # noqa: A004
    abs,
    add,
    clip,
    erf,
    exp,
    gelu,
    log,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    relu,
    sigmoid,
    sign,
    sqrt,
    sub,
    tanh,
    truediv,
    where,
)
from .index import getitem, setitem
from .linalg import matmul
from .reduce import logsumexp, max, mean, min, std, sum, var  # noqa: A004
from .shape import (
    astype,
    broadcast_to,
    cat,
    concatenate,
    expand,
    expand_dims,
    flip,
    pad,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    swapaxes,
    transpose,
    unsqueeze,
)


def _rev(fn):
    return lambda self, other: fn(other, self)


_METHODS = {
    # arithmetic
    "__add__": add, "__radd__": _rev(add), "__sub__": sub, "__rsub__": _rev(sub),
    "__mul__": mul, "__rmul__": _rev(mul), "__truediv__": truediv, "__rtruediv__": _rev(truediv),
    "__pow__": pow, "__rpow__": _rev(pow), "__matmul__": matmul, "__rmatmul__": _rev(matmul),
    "__neg__": neg, "__abs__": abs, "__getitem__": getitem, "__setitem__": setitem,
    # comparisons and logic (bool results, no gradient)
    "__eq__": eq, "__ne__": ne, "__lt__": lt, "__le__": le, "__gt__": gt, "__ge__": ge,
    "__and__": logical_and, "__or__": logical_or, "__xor__": logical_xor,
    "__invert__": logical_not,
    # elementwise
    "exp": exp, "log": log, "sqrt": sqrt, "abs": abs, "tanh": tanh, "sigmoid": sigmoid,
    "relu": relu, "gelu": gelu, "erf": erf, "sign": sign, "clip": clip, "clamp": clip,
    "maximum": maximum, "minimum": minimum, "pow": pow, "matmul": matmul,
    # reductions
    "sum": sum, "mean": mean, "max": max, "min": min, "var": var, "std": std,
    "logsumexp": logsumexp, "argmax": argmax, "argmin": argmin, "any": any, "all": all,
    "isfinite": isfinite,
    # shape
    "reshape": reshape, "view": reshape, "transpose": transpose, "permute": permute,
    "swapaxes": swapaxes, "broadcast_to": broadcast_to, "expand": expand,
    "squeeze": squeeze, "unsqueeze": unsqueeze, "flip": flip, "astype": astype,
    "split": split,
    # softmax
    "softmax": softmax.softmax, "log_softmax": softmax.log_softmax,
}

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

Tensor.T = property(lambda self: transpose(self))
Tensor.float = lambda self: astype(self, "float32")
Tensor.double = lambda self: astype(self, "float64")
Tensor.long = lambda self: astype(self, "int64")
Tensor.bool = lambda self: astype(self, "bool")
Tensor.mT = property(lambda self: swapaxes(self, -1, -2))

__all__ = sorted(n for n in dir() if not n.startswith("_") and n != "annotations")  # re-exports above
