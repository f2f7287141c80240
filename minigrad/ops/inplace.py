"""In-place methods (PyTorch's trailing underscore): ``x.add_(y)``, ``x.zero_()``, ...

They change ``x``'s memory and record nothing in the graph, so they are for
tensors outside it: buffers, masks, and weights under ``no_grad()``. Each one
bumps ``x``'s version, so a graph that saved ``x`` for its backward refuses to
run instead of giving a wrong gradient (see ``Function.saves``). ``x[i] = v``
(``Tensor.__setitem__``, in index.py) follows the same rules.
"""

from __future__ import annotations

from .. import backend
from ..tensor import Tensor
from ._lift import begin_inplace, broadcast_shape, lift, lift_into


def _operand(x: Tensor, other, op: str) -> Tensor:
    """``other`` as a tensor that can be written into ``x`` as is: same device, a shape
    that broadcasts to ``x.shape``, no float into an integer tensor."""
    v = lift_into(other, x, op)
    if v.dtype.kind == "f" and x.dtype.kind != "f":
        raise TypeError(f"{op}: a {v.dtype} operand cannot change a {x.dtype} tensor in place "
                        "(the result is not an integer); use the out-of-place form")
    return v


def _write(x: Tensor, value, op: str) -> Tensor:
    begin_inplace(x, op)
    x._data[...] = value
    return x


def add_(x: Tensor, other, alpha: float = 1.0) -> Tensor:
    """x ← x + alpha · other."""
    v = _operand(x, other, "add_")
    return _write(x, x._data + (v._data if alpha == 1.0 else alpha * v._data), "add_")


def sub_(x: Tensor, other, alpha: float = 1.0) -> Tensor:
    """x ← x − alpha · other."""
    v = _operand(x, other, "sub_")
    return _write(x, x._data - (v._data if alpha == 1.0 else alpha * v._data), "sub_")


def mul_(x: Tensor, other) -> Tensor:
    return _write(x, x._data * _operand(x, other, "mul_")._data, "mul_")


def div_(x: Tensor, other) -> Tensor:
    if x.dtype.kind != "f":
        raise TypeError(f"div_: true division of a {x.dtype} tensor in place is not an integer; "
                        "use x / y (a new float tensor)")
    return _write(x, x._data / _operand(x, other, "div_")._data, "div_")


def clamp_(x: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - PyTorch names
    if min is None and max is None:
        raise ValueError("clamp_: give min, max or both")
    return _write(x, backend.xp_of(x._data).clip(x._data, min, max), "clamp_")


def fill_(x: Tensor, value) -> Tensor:
    return _write(x, _operand(x, value, "fill_")._data, "fill_")


def zero_(x: Tensor) -> Tensor:
    return _write(x, 0, "zero_")


def copy_(x: Tensor, src) -> Tensor:
    """x ← src (broadcast to x's shape, cast to x's dtype; ``src`` may be on another device)."""
    if isinstance(src, Tensor) and src._device != x._device:
        src = Tensor._make(backend.to_device(backend.to_host(src._data), x._device), x._device)
    v = lift(src, x, "copy_")
    if broadcast_shape("copy_", x.shape, v.shape) != x.shape:
        raise ValueError(f"copy_: a source of shape {v.shape} does not broadcast to {x.shape}")
    return _write(x, v._data.astype(x.dtype, copy=False), "copy_")


# --------------------------------------------------------------------------- exports

__all__: list[str] = []     # methods only, as in PyTorch (x.add_(y), not minigrad.add_)

METHODS = {"add_": add_, "sub_": sub_, "mul_": mul_, "div_": div_, "clamp_": clamp_,
           "fill_": fill_, "zero_": zero_, "copy_": copy_}
