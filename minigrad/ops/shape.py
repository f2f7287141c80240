"""Shape ops: they move elements around and never change a value, so each
backward moves the gradient back the same way."""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence

import numpy as np

from .. import backend
from ..autograd import Function, is_grad_enabled
from ..errors import DeviceError
from ..tensor import Tensor, _check_dtype
from ._lift import broadcast_shape, normalize_axes, single_axis


def _as_shape(shape, op: str) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    try:
        return tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: shape must be ints, got {shape!r}") from None


class Reshape(Function):
    op_name = "reshape"
    saves, saves_output, is_view = (), False, True

    def forward(self, x):
        return x.reshape(self.shape)

    def backward(self, g):
        return g.reshape(self.inputs[0].shape)


class Transpose(Function):
    op_name = "transpose"
    saves, saves_output, is_view = (), False, True

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, g):
        return g.transpose(tuple(np.argsort(self.axes)))


class BroadcastTo(Function):
    op_name = "broadcast_to"
    saves, saves_output, is_view = (), False, True

    def forward(self, x):
        return backend.xp_of(x).broadcast_to(x, self.shape)

    def backward(self, g):
        return g  # the engine sums it back to the input's shape


class Concatenate(Function):
    op_name = "concatenate"
    saves, saves_output = (), False

    def forward(self, *xs):
        return backend.xp_of(xs[0]).concatenate(xs, axis=self.axis)

    def backward(self, g):
        grads, start = [], 0
        for x in self.inputs:
            n = x.shape[self.axis]
            idx = (slice(None),) * self.axis + (slice(start, start + n),)
            grads.append(g[idx])
            start += n
        return grads


class Flip(Function):
    op_name = "flip"
    saves, saves_output, is_view = (), False, True

    def forward(self, x):
        return backend.xp_of(x).flip(x, axis=self.axes)

    def backward(self, g):
        return g.flip(self.axes)


class Pad(Function):
    """Constant padding, NumPy's ``pad_width`` = ((before, after), ...) per axis."""
    op_name = "pad"
    saves, saves_output = (), False

    def forward(self, x):
        return backend.xp_of(x).pad(x, self.pad_width, mode="constant", constant_values=self.value)

    def backward(self, g):
        idx = tuple(slice(b, g.shape[i] - a) for i, (b, a) in enumerate(self.pad_width))
        return g[idx]


class AsType(Function):
    op_name = "astype"
    saves, saves_output = (), False

    def forward(self, x):
        return x.astype(self.dtype)

    def backward(self, g):
        return g.astype(self.inputs[0].dtype)


class Clone(Function):
    """A copy with its own memory (and version counter); the gradient passes through."""
    op_name = "clone"
    saves, saves_output = (), False

    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return g


class ToDevice(Function):
    op_name = "to"
    saves, saves_output = (), False

    def forward(self, x):
        return backend.to_device(x, self.dev)

    def backward(self, g):
        return to_device(g, self.inputs[0].device)

    @classmethod
    def apply(cls, x: Tensor, dev) -> Tensor:  # the one op whose output lives elsewhere
        fn = cls(dev=dev)
        out = Tensor._make(fn.forward(x.data), dev)
        if x.requires_grad and is_grad_enabled():
            out._requires_grad = True
            fn.inputs, fn._out, fn._freed, fn._versions = (x,), weakref.ref(out), False, []
            out._ctx = fn
        return out


# --------------------------------------------------------------------------- functions

def reshape(x: Tensor, *shape) -> Tensor:
    shape = _as_shape(shape, "reshape")
    known = math.prod(n for n in shape if n != -1)
    if shape.count(-1) > 1 or any(n < -1 for n in shape):
        raise ValueError(f"reshape: invalid shape {shape}; at most one -1 and no other negatives")
    if shape.count(-1) == 1:
        if known == 0 or x.size % known:
            raise ValueError(f"reshape: cannot reshape {x.shape} ({x.size} elements) to {shape}")
        shape = tuple(x.size // known if n == -1 else n for n in shape)
    if math.prod(shape) != x.size:
        raise ValueError(f"reshape: cannot reshape {x.shape} ({x.size} elements) to {shape} "
                         f"({math.prod(shape)} elements)")
    if shape == x.shape:
        return x
    return Reshape.apply(x, shape=shape)


def transpose(x: Tensor, *axes) -> Tensor:
    """Permute axes (reverse them when none are given), as ``numpy.transpose``."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = tuple(axes[0])
    if not axes:
        axes = tuple(reversed(range(x.ndim)))
    if len(axes) != x.ndim:
        raise ValueError(f"transpose: axes {axes} do not match a tensor with {x.ndim} dims")
    perm = tuple(int(a) % max(x.ndim, 1) for a in axes)
    if sorted(perm) != list(range(x.ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of 0..{x.ndim - 1}")
    return Transpose.apply(x, axes=perm)


permute = transpose


def swapaxes(x: Tensor, axis1: int, axis2: int) -> Tensor:
    if x.ndim == 0:
        raise ValueError("swapaxes: a 0-d tensor has no axes to swap")
    a, b = single_axis(axis1, x.ndim, "swapaxes"), single_axis(axis2, x.ndim, "swapaxes")
    perm = list(range(x.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return Transpose.apply(x, axes=tuple(perm))


def broadcast_to(x: Tensor, *shape) -> Tensor:
    shape = _as_shape(shape, "broadcast_to")
    if broadcast_shape("broadcast_to", x.shape, shape) != shape:
        raise ValueError(f"broadcast_to: cannot broadcast {x.shape} to {shape}")
    if shape == x.shape:
        return x
    return BroadcastTo.apply(x, shape=shape)


def expand(x: Tensor, *shape) -> Tensor:
    """PyTorch's expand: like broadcast_to, and -1 keeps a dimension."""
    shape = _as_shape(shape, "expand")
    lead = len(shape) - x.ndim
    shape = tuple(x.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(shape))
    return broadcast_to(x, shape)


def squeeze(x: Tensor, axis=None) -> Tensor:
    if axis is None:
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1)
    else:
        axes = normalize_axes(axis, x.ndim, "squeeze")
        for a in axes:
            if x.shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} of shape {x.shape} has size {x.shape[a]}, not 1")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in axes))


def unsqueeze(x: Tensor, axis) -> Tensor:
    """Insert a size-1 axis at ``axis`` (``numpy.expand_dims``; a tuple inserts several,
    each counted in the result's dims)."""
    if isinstance(axis, (tuple, list)):
        nd = x.ndim + len(axis)
        axes = set(normalize_axes(tuple(axis), nd, "unsqueeze")) if axis else set()
        it = iter(x.shape)
        return reshape(x, tuple(1 if i in axes else next(it) for i in range(nd)))
    axis = single_axis(axis, x.ndim + 1, "unsqueeze")
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


expand_dims = unsqueeze


def _check_same(tensors: Sequence[Tensor], op: str) -> list[Tensor]:
    ts = list(tensors)
    if not ts:
        raise ValueError(f"{op}: needs at least one tensor")
    for t in ts:
        if not isinstance(t, Tensor):
            raise TypeError(f"{op}: expected Tensors, got {type(t).__name__}")
        if t._device != ts[0]._device:
            raise DeviceError(f"{op}: tensors on different devices ({ts[0]._device}, {t._device})")
    dt = np.result_type(*[t.dtype for t in ts])
    return [t if t.dtype == dt else t.astype(dt) for t in ts]


def concatenate(tensors: Sequence[Tensor], axis: int | None = 0) -> Tensor:
    """Join along ``axis``; ``axis=None`` flattens each tensor first (as NumPy)."""
    ts = _check_same(tensors, "concatenate")
    if axis is None:
        ts, axis = [t.reshape(-1) for t in ts], 0
    nd = ts[0].ndim
    if nd == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated; use stack")
    ax = single_axis(axis, nd, "concatenate")
    for t in ts:
        if t.ndim != nd or t.shape[:ax] + t.shape[ax + 1:] != ts[0].shape[:ax] + ts[0].shape[ax + 1:]:
            raise ValueError(f"concatenate: shapes {[t.shape for t in ts]} differ outside axis {ax}")
    return Concatenate.apply(*ts, axis=ax)


cat = concatenate


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    ts = _check_same(tensors, "stack")
    if any(t.shape != ts[0].shape for t in ts):
        raise ValueError(f"stack: all tensors must have the same shape, got {[t.shape for t in ts]}")
    axis = single_axis(axis, ts[0].ndim + 1, "stack")
    return concatenate([unsqueeze(t, axis) for t in ts], axis=axis)


def split(x: Tensor, indices_or_sections, axis: int = 0) -> list[Tensor]:
    """``numpy.split``: an int n gives n equal parts; a list gives the cut points."""
    if x.ndim == 0:
        raise ValueError("split: a 0-d tensor has no axis to split")
    ax = single_axis(axis, x.ndim, "split")
    n = x.shape[ax]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ValueError(f"split: axis {ax} of size {n} cannot be split into {k} equal parts")
        cuts = [n // k * i for i in range(1, k)]
    else:
        cuts = [int(c) for c in indices_or_sections]
    bounds = [0] + [min(max(c + n if c < 0 else c, 0), n) for c in cuts] + [n]   # slice semantics
    pre = (slice(None),) * ax
    return [x[pre + (slice(lo, max(lo, hi)),)] for lo, hi in zip(bounds[:-1], bounds[1:])]


def flip(x: Tensor, axis=None) -> Tensor:
    return Flip.apply(x, axes=normalize_axes(axis, x.ndim, "flip"))


def pad(x: Tensor, pad_width, value: float = 0.0) -> Tensor:
    """Constant padding; ``pad_width`` as NumPy's: an int, (before, after), or one pair per axis."""
    try:
        pw = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    except ValueError:
        raise ValueError(f"pad: pad_width {pad_width!r} does not fit a tensor with {x.ndim} dims; "
                         "give (before, after) or one such pair per axis") from None
    if (pw < 0).any():
        raise ValueError(f"pad: negative pad_width {pad_width!r}")
    return Pad.apply(x, pad_width=tuple((int(b), int(a)) for b, a in pw), value=value)


def astype(x: Tensor, dtype) -> Tensor:
    dt = _check_dtype(dtype, "astype")
    if dt == x.dtype:
        return x
    return AsType.apply(x, dtype=dt)


def clone(x: Tensor) -> Tensor:
    return Clone.apply(x)


def to_device(x: Tensor, dev) -> Tensor:
    if dev == x._device:
        return x
    return ToDevice.apply(x, dev)


def to(x: Tensor, device=None, dtype=None) -> Tensor:
    """``Tensor.to``: move to ``device`` and/or cast to ``dtype``; differentiable,
    and a no-op (the same tensor) when nothing changes."""
    out = x
    if dtype is not None:
        out = astype(out, dtype)
    if device is not None:
        try:
            dev = backend.device(device)
        except (TypeError, ValueError) as e:
            raise type(e)(f"to: {e}") from None
        out = to_device(out, dev)
    return out


# --------------------------------------------------------------------------- exports

__all__ = ["reshape", "transpose", "permute", "swapaxes", "broadcast_to", "expand", "squeeze",
           "unsqueeze", "expand_dims", "concatenate", "cat", "stack", "split", "flip", "pad",
           "astype", "clone"]

METHODS = {
    "reshape": reshape, "view": reshape, "transpose": transpose, "permute": permute,
    "swapaxes": swapaxes, "broadcast_to": broadcast_to, "expand": expand,
    "squeeze": squeeze, "unsqueeze": unsqueeze, "flip": flip, "astype": astype, "split": split,
    "clone": clone,
    "T": property(lambda self: transpose(self)), "mT": property(lambda self: swapaxes(self, -1, -2)),
    "float": lambda self: astype(self, "float32"), "double": lambda self: astype(self, "float64"),
    "long": lambda self: astype(self, "int64"), "bool": lambda self: astype(self, "bool"),
    "to": to, "cpu": lambda self: to(self, "cpu"),
    "cuda": lambda self, index=0: to(self, f"cuda:{index}"),
}
