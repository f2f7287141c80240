"""Running sums and products: cumsum, and prod, whose gradient is a product of
the other elements (a pair of running products on the fast path).
"""

from __future__ import annotations

import math

from .. import backend
from ..autograd import Function
from ..tensor import Tensor
from ._lift import normalize_axes, single_axis
from .elementwise import where


class CumSum(Function):
    """y_i = Σ_{j<=i} x_j along ``axis``;  dx_j = Σ_{i>=j} g_i: g's cumsum taken backwards."""
    op_name = "cumsum"

    def forward(self, x):
        return backend.xp_of(x).cumsum(x, axis=self.axis)

    def backward(self, g):
        return cumsum(g.flip(self.axis), self.axis).flip(self.axis)


def cumsum(x: Tensor, axis: int | None = None) -> Tensor:
    """Running sum along ``axis``, as ``numpy.cumsum``: ``axis=None`` (the default)
    sums the flattened tensor. Bool and small integers accumulate in int64."""
    if axis is None or x.ndim == 0:
        if axis is not None:
            single_axis(axis, 1, "cumsum")      # only 0 or -1, as NumPy
        x, axis = x.reshape(-1), 0
    ax = single_axis(axis, x.ndim, "cumsum")
    if x.dtype.kind == "b":
        x = x.astype("int64")
    return CumSum.apply(x, axis=ax)


def _to_rows(x, axes: tuple[int, ...]):
    """The reduced ``axes`` of ``x`` moved last and flattened: (..kept.., n); and the inverse."""
    kept = tuple(d for d in range(x.ndim) if d not in axes)
    perm = kept + tuple(axes)
    kept_shape = tuple(x.shape[d] for d in kept)
    moved_shape = tuple(x.shape[d] for d in perm)
    inverse = tuple(perm.index(d) for d in range(x.ndim))
    n = math.prod(x.shape[d] for d in axes)

    def back(rows):
        return rows.reshape(moved_shape).transpose(inverse)
    return x.transpose(perm).reshape(kept_shape + (n,)), back


class Prod(Function):
    """y = Π x over ``axes``;  dx_i = g · Π_{j≠i} x_j (the product of the others).

    The product of the others is computed as such, never as y / x_i, so zeros in x
    are fine. Differentiably, row i of an (n, n) table holds x with x_i replaced by
    1; the first-order fast path multiplies the running products before and after
    i instead (O(n), not O(n²))."""
    op_name = "prod"

    def forward(self, x):
        return x.prod(axis=self.axes, keepdims=self.keepdims)

    def _g_full(self, g):
        """g broadcast back over the reduced axes (Tensor or raw array)."""
        x_shape = self.inputs[0].shape
        keep = tuple(1 if d in self.axes else n for d, n in enumerate(x_shape))
        return g.reshape(keep) if not self.keepdims else g

    def backward(self, g):
        x = self.inputs[0]
        rows, back = _to_rows(x, self.axes)                       # (..., n)
        n = rows.shape[-1]
        eye = Tensor._make(x.xp.eye(n, dtype=bool), x._device)
        others = where(eye, 1.0, rows.unsqueeze(-2)).prod(axis=-1)   # (..., n, n) -> (..., n)
        return self._g_full(g) * back(others)

    def backward_raw(self, g):
        x = self.inputs[0].data
        xp = backend.xp_of(x)
        rows, back = _to_rows(x, self.axes)                       # (..., n)
        if rows.shape[-1] == 0:
            return xp.zeros(x.shape, dtype=x.dtype)
        ones = xp.ones(rows.shape[:-1] + (1,), dtype=x.dtype)
        before = xp.concatenate([ones, xp.cumprod(rows[..., :-1], axis=-1)], axis=-1)
        after = xp.flip(xp.cumprod(xp.flip(rows[..., 1:], axis=-1), axis=-1), axis=-1)
        after = xp.concatenate([after, ones], axis=-1)
        return self._g_full(g) * back(before * after)


def prod(x: Tensor, axis=None, keepdims: bool = False) -> Tensor:
    """Product over ``axis`` (None: all; an int or a tuple), as ``numpy.prod``; the
    empty product is 1. Bool and small integers multiply in int64."""
    axes = normalize_axes(axis, x.ndim, "prod")
    if x.dtype.kind == "b":
        x = x.astype("int64")
    return Prod.apply(x, axes=axes, keepdims=bool(keepdims))


# --------------------------------------------------------------------------- exports

__all__ = ["cumsum", "prod"]

METHODS = {"cumsum": cumsum, "prod": prod}
