"""Turning op arguments into tensors, and checks shared by several op families."""

from __future__ import annotations

import numpy as np

from .. import backend
from ..errors import DeviceError
from ..tensor import Tensor, get_default_dtype, tensor


def lift(x, like: Tensor, op: str) -> Tensor:
    """``x`` as a Tensor on ``like``'s device.

    Python scalars take ``like``'s dtype (so ``x * 0.5`` keeps a float32 tensor
    float32), except that a float scalar with an integer tensor gives the
    default float dtype, as in PyTorch."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (bool, int, float, np.number, np.bool_)):
        kind = like.dtype.kind
        if isinstance(x, (bool, np.bool_)):
            dt = like.dtype
        elif isinstance(x, (int, np.integer)):
            dt = like.dtype if kind != "b" else np.dtype("int64")
        else:
            dt = like.dtype if kind == "f" else get_default_dtype()
        if like._device.type == "cpu":
            return Tensor._make(np.asarray(x, dtype=dt), like._device)
        # on a GPU a fill kernel with the number as its argument: no host-to-device copy
        # (which a CUDA graph capture would refuse)
        return Tensor._make(like.xp.full((), x, dtype=dt), like._device)
    if backend.is_array(x):
        if backend.device_of(x) != like._device:
            raise DeviceError(f"{op}: an array on {backend.device_of(x)} met a tensor on "
                              f"{like._device}; wrap it with minigrad.tensor(..., device=...)")
        return Tensor._make(x, like._device)
    if isinstance(x, (list, tuple)):
        return tensor(x, device=like._device)
    raise TypeError(f"{op}: unsupported operand type {type(x).__name__}; expected a Tensor or a number")


def match_float(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """An integer or bool operand meeting a float one takes the float's dtype (as in
    PyTorch), so float32 stays float32 where NumPy would make int64 + float32 float64."""
    fa, fb = a.dtype.kind == "f", b.dtype.kind == "f"
    if fa and not fb:
        return a, b.astype(a.dtype)
    if fb and not fa:
        return a.astype(b.dtype), b
    return a, b


def broadcast_shape(op: str, *shapes: tuple[int, ...]) -> tuple[int, ...]:
    """The broadcast of ``shapes``, or a ValueError naming the op and the shapes."""
    if len(shapes) == 2 and shapes[0] == shapes[1]:
        return shapes[0]
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        shown = " and ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"{op}: shapes {shown} cannot be broadcast together") from None


def normalize_axes(axis, ndim: int, op: str) -> tuple[int, ...]:
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if not isinstance(axis, (int, np.integer, tuple, list)):
        raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}")
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)):
            raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < max(ndim, 1) or (ndim == 0 and a not in (0, -1)):
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims "
                             f"(valid: {-ndim} to {ndim - 1})")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(out)) if ndim else ()


def require_float(x: Tensor, op: str) -> None:
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: needs a floating-point tensor, got {x.dtype} "
                        "(cast with .astype(minigrad.float32))")


def reflected(fn):
    """``fn`` with its operands swapped: ``Tensor.__radd__`` is ``reflected(add)`` (2 + x)."""
    return lambda self, other: fn(other, self)
