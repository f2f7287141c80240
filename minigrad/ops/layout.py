"""Layout ops: triangles of matrices (tril, triu), flatten, repeat and tile, roll.

They move or zero elements and never change a value, so each gradient moves
(or zeros) the gradient the same way. repeat and tile are compositions of
reshape and broadcast_to (whose backward sums the copies) or of an integer
index (whose backward scatter-adds); tril, triu and roll are one node each.
"""

from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from ._lift import normalize_axes, single_axis


def _int(value, name: str, op: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{op}: {name} must be an int, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- triangles

class Tril(Function):
    """x with the elements above diagonal ``k`` of its last two axes zeroed
    (``upper=False``), or those below it (``upper=True``, triu). The gradient is
    g with the same elements zeroed."""
    op_name = "tril"

    def forward(self, x):
        xp = backend.xp_of(x)
        return xp.triu(x, k=self.k) if self.upper else xp.tril(x, k=self.k)

    def backward(self, g):
        return Tril.apply(g, k=self.k, upper=self.upper)


def _triangle(x: Tensor, k, upper: bool, op: str) -> Tensor:
    if x.ndim < 2:
        raise ValueError(f"{op}: needs a tensor of at least 2 dims (matrices in the last two), "
                         f"got shape {x.shape}")
    return Tril.apply(x, k=_int(k, "k", op), upper=upper)


def tril(x: Tensor, k: int = 0) -> Tensor:
    """The lower triangle of the last two axes: x[..., i, j] where j <= i + k, 0 elsewhere
    (``numpy.tril``; PyTorch calls ``k`` ``diagonal``). Bool tensors too: a causal mask
    is ``tril(ones((T, T), dtype=bool))``."""
    return _triangle(x, k, False, "tril")


def triu(x: Tensor, k: int = 0) -> Tensor:
    """The upper triangle of the last two axes: x[..., i, j] where j >= i + k, 0 elsewhere."""
    return _triangle(x, k, True, "triu")


# --------------------------------------------------------------------------- flatten, repeat, tile

def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims ``start_dim``..``end_dim`` (inclusive) into one, as ``torch.flatten``;
    a 0-d tensor becomes shape (1,)."""
    if x.ndim == 0:
        for d in (start_dim, end_dim):     # as PyTorch: 0 or -1, as for a 1-d tensor
            single_axis(_int(d, "start_dim/end_dim", "flatten"), 1, "flatten")
        return x.reshape(1)
    s = single_axis(_int(start_dim, "start_dim", "flatten"), x.ndim, "flatten")
    e = single_axis(_int(end_dim, "end_dim", "flatten"), x.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} "
                         f"for a tensor of shape {x.shape}")
    return x.reshape(x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


def repeat(x: Tensor, repeats, axis: int | None = None) -> Tensor:
    """Each element repeated ``repeats`` times along ``axis``, as ``numpy.repeat``
    (``axis=None``: of the flattened tensor). ``repeats``: an int, or one count per
    element along the axis. (PyTorch's ``Tensor.repeat`` is ``tile``; this is its
    ``repeat_interleave``.) The gradient sums over the copies."""
    if axis is None:
        x, axis = x.reshape(-1), 0
    if x.ndim == 0:                          # axis 0 or -1: the one element, as 1-d (NumPy)
        single_axis(axis, 1, "repeat")
        x, axis = x.reshape(-1), 0
    ax = single_axis(axis, x.ndim, "repeat")
    n = x.shape[ax]
    if isinstance(repeats, Tensor):
        repeats = repeats.tolist()
    counts = np.asarray(repeats)
    if counts.ndim == 1 and counts.size == 0:     # [] for an empty axis
        counts = counts.astype(np.int64)
    if counts.dtype.kind not in "iu" or counts.ndim > 1:
        raise TypeError(f"repeat: repeats must be an int or a sequence of ints, got {repeats!r}")
    if (counts < 0).any():
        raise ValueError(f"repeat: repeats must be >= 0, got {repeats!r}")
    if counts.ndim == 1 and counts.size == 1:
        counts = counts.reshape(())
    if counts.ndim == 0:    # r copies of each: a broadcast over a new axis after ax, merged into it
        r = int(counts)
        wide = x.unsqueeze(ax + 1).broadcast_to(x.shape[:ax + 1] + (r,) + x.shape[ax + 1:])
        return wide.reshape(x.shape[:ax] + (n * r,) + x.shape[ax + 1:])
    if counts.size != n:
        raise ValueError(f"repeat: {counts.size} repeats for axis {ax} of size {n} (x of shape "
                         f"{x.shape}); give one per element, or a single int")
    source = np.repeat(np.arange(n), counts)     # which element each output position copies
    return x[(slice(None),) * ax + (x.xp.asarray(source),)]


def tile(x: Tensor, reps) -> Tensor:
    """``x`` repeated as a block ``reps[i]`` times along each axis, as ``numpy.tile``
    (and PyTorch's ``Tensor.repeat``): missing reps count as 1, and a longer
    ``reps`` adds leading axes. The gradient sums over the copies."""
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(reps)
    reps = tuple(_int(r, "reps", "tile") for r in reps)
    if any(r < 0 for r in reps):
        raise ValueError(f"tile: reps must be >= 0, got {reps}")
    d = max(len(reps), x.ndim)
    reps = (1,) * (d - len(reps)) + reps
    shape = (1,) * (d - x.ndim) + x.shape
    # (n0, n1, ...) -> (1, n0, 1, n1, ...) -> (r0, n0, r1, n1, ...) -> (r0·n0, r1·n1, ...)
    interleaved = tuple(v for n in shape for v in (1, n))
    wide = x.reshape(interleaved).broadcast_to(tuple(v for r, n in zip(reps, shape) for v in (r, n)))
    return wide.reshape(tuple(r * n for r, n in zip(reps, shape)))


# --------------------------------------------------------------------------- roll

class Roll(Function):
    """Elements shifted by ``shift`` along ``axes``, wrapping around (``numpy.roll``);
    the gradient is g rolled back by -shift."""
    op_name = "roll"

    def forward(self, x):
        return backend.xp_of(x).roll(x, self.shift, axis=self.axes)

    def backward(self, g):
        neg = -self.shift if self.axes is None else tuple(-s for s in self.shift)
        return Roll.apply(g, shift=neg, axes=self.axes)


def roll(x: Tensor, shift, axis=None) -> Tensor:
    """Shift elements by ``shift`` places along ``axis``, those pushed off the end
    coming back at the start, as ``numpy.roll``. ``axis=None``: the flattened
    tensor, ``shift`` an int. ``axis`` a tuple: ``shift`` an int for all or one
    per axis (an axis named twice is shifted twice)."""
    if axis is None:
        return Roll.apply(x, shift=_int(shift, "shift", "roll"), axes=None)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    shifts = (shift,) * len(axes) if isinstance(shift, (int, np.integer)) else tuple(shift)
    if len(shifts) != len(axes):
        raise ValueError(f"roll: {len(shifts)} shifts for {len(axes)} axes ({shift!r}, {axis!r}); "
                         "give one shift per axis, or a single int")
    total: dict[int, int] = {}
    for a, s in zip(axes, shifts):
        a = normalize_axes(_int(a, "axis", "roll"), x.ndim, "roll")
        if not a:   # a 0-d tensor: nothing to shift
            continue
        total[a[0]] = total.get(a[0], 0) + _int(s, "shift", "roll")
    if not total:
        return Roll.apply(x, shift=0, axes=None)
    return Roll.apply(x, shift=tuple(total.values()), axes=tuple(total))


# --------------------------------------------------------------------------- exports

repeat_interleave = repeat      # PyTorch's name for NumPy's repeat


def _tensor_repeat(x: Tensor, *sizes) -> Tensor:
    """``Tensor.repeat(*sizes)`` as in PyTorch: ``x`` repeated as a block ``sizes[i]`` times
    along each dim (``tile``), one size per dim at least. (``minigrad.repeat``, the
    function, is NumPy's element-wise repeat, PyTorch's ``repeat_interleave``.)"""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    if len(sizes) < x.ndim:
        raise ValueError(f"repeat: Tensor.repeat (PyTorch's) takes one size per dim, at least "
                         f"{x.ndim} for a tensor of shape {x.shape}, got {sizes}; for NumPy's "
                         "element-wise repeat use minigrad.repeat(x, repeats, axis) or "
                         "x.repeat_interleave(repeats, axis)")
    return tile(x, sizes)


__all__ = ["tril", "triu", "flatten", "repeat", "repeat_interleave", "tile", "roll"]

# the method x.repeat is PyTorch's (a tile); the function minigrad.repeat is NumPy's
METHODS = {"tril": tril, "triu": triu, "flatten": flatten, "repeat": _tensor_repeat,
           "repeat_interleave": repeat_interleave, "tile": tile, "roll": roll}
