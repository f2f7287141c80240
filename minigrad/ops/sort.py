"""Sorting: argsort (integer, no gradient), and sort and topk built on it.

The permutation is computed without a graph; the values are then a gather
(``take_along_axis``), so their gradient goes back to the elements that were
picked, whatever the order. Sorts are stable: equal elements keep their index
order (descending too), so ties are broken the same way on every device, and
the gradient of a tie goes to the element that was ranked, not split.
NaN sorts as the largest value (last ascending, first descending), as PyTorch.
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from ._lift import single_axis
from .gather import take_along_axis


class ArgSort(Function):
    """The indices that sort ``x`` along ``axis`` (stable), as int64."""
    op_name = "argsort"
    differentiable = False

    def forward(self, x):
        xp = backend.xp_of(x)
        if not self.descending:
            return xp.argsort(x, axis=self.axis, kind="stable").astype(xp.int64)
        # a stable descending sort: sort the reversed array ascending, then map back, so that
        # equal elements keep their original order (negating x would not work for unsigned ints)
        n = x.shape[self.axis]
        rev = xp.argsort(xp.flip(x, axis=self.axis), axis=self.axis, kind="stable")
        return (n - 1 - xp.flip(rev, axis=self.axis)).astype(xp.int64)


def _axis(x: Tensor, axis, op: str) -> tuple[Tensor, int]:
    """``x`` (flattened for axis=None) and its axis as a non-negative int."""
    if axis is None:
        return x.reshape(-1), 0
    if x.ndim == 0:                          # axis 0 or -1: the one element, as 1-d
        single_axis(axis, 1, op)
        return x.reshape(-1), 0
    return x, single_axis(axis, x.ndim, op)


def argsort(x: Tensor, axis: int | None = -1, descending: bool = False) -> Tensor:
    """The int64 indices that sort ``x`` along ``axis`` (``axis=None``: flattened), stably:
    ``take_along_axis(x, argsort(x, axis), axis)`` is ``sort(x, axis)``. No gradient."""
    x, ax = _axis(x, axis, "argsort")
    return ArgSort.apply(x, axis=ax, descending=bool(descending))


def sort(x: Tensor, axis: int | None = -1, descending: bool = False) -> Tensor:
    """``x`` sorted along ``axis`` (``axis=None``: flattened), ascending unless
    ``descending``; the values only, as ``numpy.sort`` (``argsort`` gives the order).
    The gradient is routed back through the permutation."""
    x, ax = _axis(x, axis, "sort")
    return take_along_axis(x, ArgSort.apply(x, axis=ax, descending=bool(descending)), ax)


def topk(x: Tensor, k: int, axis: int = -1, largest: bool = True) -> tuple[Tensor, Tensor]:
    """The ``k`` largest (``largest=False``: smallest) elements along ``axis`` and their
    int64 indices, best first, as PyTorch's ``topk``: (values, indices), each of
    x's shape with ``axis`` cut to k. Ties go to the lower index. The gradient of
    ``values`` goes back to the picked elements."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"topk: k must be an int, got {k!r}")
    x, ax = _axis(x, axis, "topk")
    n = x.shape[ax]
    if not 0 <= k <= n:
        raise ValueError(f"topk: k={k} is out of range for axis {ax} of size {n} "
                         f"(x of shape {x.shape}; valid: 0 to {n})")
    order = ArgSort.apply(x, axis=ax, descending=bool(largest))
    indices = order[(slice(None),) * ax + (slice(0, int(k)),)]
    return take_along_axis(x, indices, ax), indices


# --------------------------------------------------------------------------- exports

__all__ = ["sort", "argsort", "topk"]

METHODS = {"sort": sort, "argsort": argsort, "topk": topk}
