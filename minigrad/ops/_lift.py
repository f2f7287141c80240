"""Turning op arguments into tensors, and checks shared by several op families."""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import is_grad_enabled
from ..errors import DeviceError, GraphError
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


def lift_into(x, like: Tensor, op: str, what: str = "operand") -> Tensor:
    """``x`` as a tensor on ``like``'s device whose shape broadcasts to ``like.shape``
    without enlarging it (an in-place operand, a loss's weight), else a clear error."""
    v = lift(x, like, op)
    if v._device != like._device:
        raise DeviceError(f"{op}: {what} on {v._device} for a tensor on {like._device}; move it "
                          "with .to()")
    if broadcast_shape(op, like.shape, v.shape) != like.shape:
        raise ValueError(f"{op}: {what} of shape {v.shape} must broadcast to {like.shape} "
                         "(it would enlarge it)")
    return v


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
        if not -max(ndim, 1) <= a < max(ndim, 1):    # a 0-d tensor: axis 0 or -1, as one axis
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dims "
                             f"(valid: {f'{-ndim} to {ndim - 1}' if ndim else '0 or -1'})")
        out.append(int(a) % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(out)) if ndim else ()


def single_axis(axis, ndim: int, op: str) -> int:
    """One axis (an int; negative counts from the end) as a non-negative index into a
    tensor with ``ndim`` dims (>= 1: ops that need a real axis check 0-d themselves)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{op}: axis must be one int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for a tensor with {ndim} dims "
                         f"(valid: {-ndim} to {ndim - 1})")
    return int(axis) % ndim


def begin_inplace(x: Tensor, op: str) -> None:
    """Refuse an in-place change that autograd could not follow, else count it.

    In-place ops are not recorded in the graph, so they are refused on a tensor
    made by a recorded op, and on a leaf that requires grad unless under
    ``no_grad()`` (where optimizers and initialisers change weights). Every
    change bumps the tensor's version, so a backward that saved it refuses to run."""
    if x._ctx is not None:
        raise GraphError(f"{op}: in-place change of a tensor computed by a recorded op "
                         f"({x._ctx.name()}, shape {x.shape}) would corrupt its gradient; use the "
                         "out-of-place form (e.g. where() or concatenate() instead of x[i] = v)")
    if x._requires_grad and is_grad_enabled():
        raise GraphError(f"{op}: in-place change of a leaf tensor that requires grad (shape "
                         f"{x.shape}); do it under `with minigrad.no_grad():` (as an optimizer "
                         "step does), or use the out-of-place form")
    flags = getattr(x._data, "flags", None)
    if flags is not None and not getattr(flags, "writeable", True):
        raise ValueError(f"{op}: the tensor (shape {x.shape}) is a read-only view (of broadcast_to "
                         "or expand, where elements share memory); change a .clone() of it instead")
    x._bump_version()


def require_float(x: Tensor, op: str) -> None:
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: needs a floating-point tensor, got {x.dtype} "
                        "(cast with .astype(minigrad.float32))")


def reflected(fn):
    """``fn`` with its operands swapped: ``Tensor.__radd__`` is ``reflected(add)`` (2 + x)."""
    return lambda self, other: fn(other, self)
