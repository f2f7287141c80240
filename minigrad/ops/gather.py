"""Gathers along an axis and one-hot encoding.

``take_along_axis(x, indices, axis)`` (NumPy) picks, at every position of
``indices``, the element of ``x`` that the index names along ``axis``:

    out[i, j, k] = x[i, indices[i, j, k], k]          (axis=1)

It is integer-array indexing with an open grid on the other axes, so it is a
``GetItem`` (ops/index.py) and its gradient is GetItem's scatter-add, which
adds up the gradients of repeated picks. ``gather(x, dim, index)`` is
PyTorch's spelling, with PyTorch's rules (no broadcasting, no negative
indices). ``one_hot`` makes the (..., C) integer encoding of class indices.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function
from ..errors import DeviceError
from ..tensor import Tensor, tensor
from ._lift import broadcast_shape, single_axis
from .index import GetItem


class TakeAlongAxis(GetItem):
    """x[grid..., indices, grid...]: a gather; backward scatter-adds g back (GetItem's)."""
    op_name = "take_along_axis"


class OneHot(Function):
    """onehot[..., c] = (indices[...] == c), as int64; an integer result: no gradient."""
    op_name = "one_hot"
    differentiable = False

    def forward(self, idx):
        xp = backend.xp_of(idx)
        return (idx[..., None] == xp.arange(self.num_classes)).astype(xp.int64)


def _indices(indices, x: Tensor, op: str) -> Tensor:
    """``indices`` as an integer tensor on ``x``'s device (lists and host arrays are moved)."""
    if isinstance(indices, (list, tuple, np.ndarray)):
        indices = tensor(np.asarray(indices), device=x.device)
    if not isinstance(indices, Tensor):
        raise TypeError(f"{op}: indices must be an integer tensor, got {type(indices).__name__}")
    if indices.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be an integer tensor, got {indices.dtype} "
                        "(cast with .astype(minigrad.int64))")
    if indices._device != x._device:
        raise DeviceError(f"{op}: x on {x.device}, indices on {indices.device}; move one with .to()")
    return indices


def _check_range(idx, low: int, high: int, op: str, what: str) -> None:
    bad = backend.first_out_of_range(idx, low, high)
    if bad is not None:
        raise IndexError(f"{op}: index {bad} is out of range for {what} (valid: {low} to {high - 1})")


def _gather(x: Tensor, idx, axis: int) -> Tensor:
    """x picked at raw non-negative ``idx`` along ``axis``, the other axes on an open grid."""
    xp = x.xp
    grid = []
    for d, n in enumerate(x.shape):
        if d == axis:
            grid.append(idx)
        else:   # arange(n) along axis d, size 1 elsewhere: broadcasts against idx
            grid.append(xp.arange(n).reshape(tuple(n if e == d else 1 for e in range(x.ndim))))
    return TakeAlongAxis.apply(x, index=tuple(grid), advanced=True)


def take_along_axis(x: Tensor, indices, axis: int | None) -> Tensor:
    """``numpy.take_along_axis``: out[..., j, ...] = x[..., indices[..., j, ...], ...] along ``axis``.

    ``indices`` has as many dims as ``x``; its other dims broadcast against x's
    (size 1 against n). Negative indices count from the end. ``axis=None``:
    ``x`` flattened, ``indices`` 1-D. Shapes: x (N₀, .., M, .., Nₖ), indices
    (N₀, .., J, .., Nₖ) -> (N₀, .., J, .., Nₖ). Differentiable in ``x``; repeated
    indices add their gradients."""
    indices = _indices(indices, x, "take_along_axis")
    if axis is None:
        if indices.ndim != 1:
            raise ValueError(f"take_along_axis: with axis=None x is flattened and indices must be "
                             f"1-D, got indices of shape {indices.shape}")
        x, axis = x.reshape(-1), 0
    if x.ndim == 0:
        raise ValueError("take_along_axis: x is 0-d and has no axis to take along; pass axis=None")
    ax = single_axis(axis, x.ndim, "take_along_axis")
    if indices.ndim != x.ndim:
        raise ValueError(f"take_along_axis: indices of shape {indices.shape} and x of shape {x.shape} "
                         f"must have the same number of dims ({indices.ndim} != {x.ndim})")
    others = tuple(1 if d == ax else n for d, n in enumerate(x.shape))
    broadcast_shape("take_along_axis", others, indices.shape[:ax] + (1,) + indices.shape[ax + 1:])
    n = x.shape[ax]
    idx = indices.data
    _check_range(idx, -n, n, "take_along_axis", f"axis {ax} of size {n} (x of shape {x.shape})")
    idx = x.xp.where(idx < 0, idx + n, idx)
    return _gather(x, idx, ax)


def gather(x: Tensor, dim: int, index) -> Tensor:
    """PyTorch's ``torch.gather``: out[i][j][k] = x[index[i][j][k]][j][k] (dim=0), and so on.

    ``index`` has as many dims as ``x``; along every other dim it is no longer than
    ``x`` (its positions are x's leading ones: no broadcasting); values in
    [0, x.shape[dim]). The result has ``index``'s shape. Differentiable in ``x``."""
    index = _indices(index, x, "gather")
    if index.ndim != x.ndim:
        raise ValueError(f"gather: index of shape {index.shape} and input of shape {x.shape} must "
                         f"have the same number of dims ({index.ndim} != {x.ndim})")
    if x.ndim == 0:
        single_axis(dim, 1, "gather")         # 0 or -1, as PyTorch
        return gather(x.reshape(1), 0, index.reshape(1)).reshape(())
    d = single_axis(dim, x.ndim, "gather")
    for e, (ni, nx) in enumerate(zip(index.shape, x.shape)):
        if e != d and ni > nx:
            raise ValueError(f"gather: index of shape {index.shape} is larger than input of shape "
                             f"{x.shape} at dim {e} ({ni} > {nx}); only dim {d} may differ")
    _check_range(index.data, 0, x.shape[d], "gather", f"dim {d} of size {x.shape[d]} "
                 f"(input of shape {x.shape})")
    if any(e != d and ni < nx for e, (ni, nx) in enumerate(zip(index.shape, x.shape))):
        x = x[tuple(slice(None) if e == d else slice(0, ni) for e, ni in enumerate(index.shape))]
    return _gather(x, index.data.copy(), d)      # a copy: the backward reads it later


def one_hot(indices: Tensor, num_classes: int = -1) -> Tensor:
    """(..., num_classes) int64 with a 1 at each index (PyTorch's ``F.one_hot``).

    ``indices``: an integer tensor of classes in [0, num_classes); ``num_classes=-1``
    takes max(indices) + 1 (a host sync on a GPU). Cast the result
    (``.astype(x.dtype)``) to use it in float arithmetic."""
    if not isinstance(indices, Tensor) or indices.dtype.kind not in "iu":
        got = indices.dtype if isinstance(indices, Tensor) else type(indices).__name__
        raise TypeError(f"one_hot: indices must be an integer tensor of class indices, got {got}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"one_hot: num_classes must be an int, got {num_classes!r}")
    if num_classes < -1:
        raise ValueError(f"one_hot: num_classes must be -1 (from the data) or >= 0, got {num_classes}")
    if num_classes == -1:
        if indices.size == 0:
            raise ValueError("one_hot: cannot infer num_classes from an empty tensor; pass num_classes")
        num_classes = int(indices.data.max()) + 1
    _check_range(indices.data, 0, num_classes, "one_hot", f"{num_classes} classes")
    return OneHot.apply(indices, num_classes=int(num_classes))


# --------------------------------------------------------------------------- exports

__all__ = ["take_along_axis", "gather", "one_hot"]

METHODS = {"gather": gather}
