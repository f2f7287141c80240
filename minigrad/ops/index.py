"""Indexing: ``x[...]`` (gather) and its gradient, a scatter-add.

Basic indices (ints, slices, None, ...) and boolean masks never repeat an
element, so their backward is a plain assignment. Integer-array indices can
repeat, and the gradients of repeated picks must accumulate: that is
``backend.index_add`` (np.add.at / cupyx.scatter_add).
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, is_grad_enabled
from ..errors import DeviceError
from ..tensor import Tensor
from ._lift import begin_inplace, lift


def _is_int_array(i) -> bool:
    return backend.is_array(i) and i.dtype.kind in "iu"


class GetItem(Function):
    op_name = "getitem"
    saves, saves_output = (), False

    def forward(self, x):
        return x[self.index]

    def backward(self, g):
        return IndexAdd.apply(g, index=self.index, shape=self.inputs[0].shape,
                              advanced=self.advanced)

    def backward_into(self, g, buffer) -> None:
        """buffer[index] += g, in place (first-order fast path, see Function)."""
        if self.advanced:
            backend.index_add(buffer, self.index, g)
        else:
            buffer[self.index] += g


class IndexAdd(Function):
    """zeros(shape) with ``g`` added at ``index``: the adjoint of ``x[index]``."""
    op_name = "index_add"
    saves, saves_output = (), False

    def forward(self, g):
        out = backend.xp_of(g).zeros(self.shape, dtype=g.dtype)
        if self.advanced:
            backend.index_add(out, self.index, g)
        else:
            out[self.index] = g
        return out

    def backward(self, gg):
        return GetItem.apply(gg, index=self.index, advanced=self.advanced)


def _normalize_index(x: Tensor, index) -> tuple[tuple, bool]:
    """The index as a tuple of ints/slices/None/Ellipsis/device arrays, checked
    against ``x.shape``; and whether it holds an integer array."""
    xp = x.xp
    items = index if isinstance(index, tuple) else (index,)
    out = []
    for i in items:
        if isinstance(i, Tensor):
            if i._device != x._device:
                raise DeviceError(f"getitem: index on {i._device} for a tensor on {x._device}")
            # a recorded gather's backward reads the index: a copy, so that a later
            # idx[...] = v cannot move the gradient (no copy when nothing is recorded)
            i = i.data.copy() if x.requires_grad and is_grad_enabled() else i.data
        elif isinstance(i, (list, np.ndarray)):
            i = xp.asarray(np.asarray(i))
        if backend.is_array(i):
            if i.dtype.kind not in "iub":
                raise IndexError(f"getitem: index arrays must be integer or bool, got {i.dtype}")
            if i.ndim == 0 and i.dtype.kind != "b":
                i = int(i)
        elif not (i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer))):
            raise IndexError(f"getitem: unsupported index {i!r} of type {type(i).__name__}; valid: "
                             "int, slice, None, ..., bool or integer tensors/arrays/lists")
        out.append(i)
    # walk the index against the dims it consumes, to check bounds before NumPy wraps or fails
    n_consumed = sum(1 if not backend.is_array(i) or i.dtype.kind != "b" else i.ndim
                     for i in out if i is not None and i is not Ellipsis)
    if n_consumed > x.ndim:
        raise IndexError(f"getitem: too many indices ({n_consumed}) for a tensor of shape {x.shape}")
    dim = 0
    advanced = False
    for i in out:
        if i is None:
            continue
        if i is Ellipsis:
            dim += x.ndim - n_consumed
            continue
        if backend.is_array(i) and i.dtype.kind == "b":
            if tuple(i.shape) != x.shape[dim:dim + i.ndim]:
                raise IndexError(f"getitem: boolean mask of shape {tuple(i.shape)} does not match "
                                 f"dims {x.shape[dim:dim + i.ndim]} of a tensor of shape {x.shape}")
            dim += i.ndim
            continue
        size = x.shape[dim]
        if isinstance(i, (int, np.integer)):
            if not -size <= i < size:
                raise IndexError(f"getitem: index {i} is out of range for axis {dim} with size {size}")
        elif backend.is_array(i):
            advanced = True
            bad = backend.first_out_of_range(i, -size, size)
            if bad is not None:
                raise IndexError(f"getitem: index {bad} is out of range for axis {dim} with size "
                                 f"{size} (valid: {-size} to {size - 1})")
        dim += 1
    return tuple(out), advanced


def getitem(x: Tensor, index) -> Tensor:
    idx, advanced = _normalize_index(x, index)
    try:
        return GetItem.apply(x, index=idx, advanced=advanced, is_view=not advanced)
    except (IndexError, ValueError) as e:
        raise IndexError(f"getitem: {e} (tensor of shape {x.shape})") from None


def setitem(x: Tensor, index, value) -> None:
    """In-place ``x[index] = value``, for tensors outside any graph (masks, buffers, and
    weights under ``no_grad()``); a graph that saved ``x`` then refuses its backward."""
    idx, _ = _normalize_index(x, index)
    v = lift(value, x, "setitem")
    if v.dtype.kind == "f" and x.dtype.kind != "f":
        raise TypeError(f"setitem: cannot write {v.dtype} values into a {x.dtype} tensor "
                        "without losing the fraction; cast one of them with .astype()")
    if v._device != x._device:
        raise DeviceError(f"setitem: value on {v._device} for a tensor on {x._device}; move it "
                          "with .to()")
    begin_inplace(x, "setitem")
    try:
        x._data[idx] = v._data
    except ValueError:
        raise ValueError(f"setitem: a value of shape {v.shape} cannot be written into "
                         f"x[{index!r}] of a tensor of shape {x.shape} (it must broadcast to "
                         "the selection's shape)") from None


# --------------------------------------------------------------------------- exports

__all__ = ["getitem"]

METHODS = {"__getitem__": getitem, "__setitem__": setitem}
