"""Hypothesis strategies and helpers for testing minigrad ops and layers.

Importable (``from minigrad.testing import shapes, arrays``) so that a
user who adds an op tests it the way minigrad tests its own: small shapes
with 0-d and size-1 dimensions, broadcast-compatible shape pairs, values
kept away from kinks (relu at 0) and poles (1/x at 0), values far enough
apart that max/min never meet a tie; and tolerances derived from the dtype.
Needs the ``hypothesis`` package (a dev dependency).

The strategies draw plain NumPy float64 arrays; a test turns them into
tensors on the device it is checking (``strided_tensor`` makes one whose
memory is not contiguous).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["MAX_SIZE", "shapes", "broadcastable_shapes", "axes", "arrays", "distinct_arrays",
           "lattice_arrays", "strided_tensor", "tolerance", "gradcheck_tolerance"]

MAX_SIZE = 24
"""Default cap on elements per array: gradcheck perturbs every element, so keep it tiny."""


def shapes(min_dims: int = 0, max_dims: int = 3, min_side: int = 1, max_side: int = 3,
           max_size: int = MAX_SIZE) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes, 0-d and size-1 dimensions included; ``min_side=0`` adds empty ones."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side).filter(lambda s: math.prod(s) <= max_size)


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = 3,
                         min_side: int = 1, max_side: int = 3,
                         max_size: int = MAX_SIZE) -> st.SearchStrategy[tuple[tuple[int, ...], ...]]:
    """``num_shapes`` shapes that broadcast together under NumPy's rules
    (different ranks, size-1 dims against larger ones), result size capped."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side,
        max_side=max_side).filter(lambda b: math.prod(b.result_shape) <= max_size).map(
        lambda b: tuple(b.input_shapes))


def axes(ndim: int, allow_none: bool = True, allow_tuple: bool = True,
         ) -> st.SearchStrategy[int | tuple[int, ...] | None]:
    """An ``axis=`` argument valid for ``ndim`` dims: None, an int (negative
    ones too) or a tuple of distinct axes."""
    options: list[st.SearchStrategy] = []
    if allow_none:
        options.append(st.none())
    if ndim > 0:
        options.append(st.integers(-ndim, ndim - 1))
        if allow_tuple:
            options.append(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim,
                                    unique=True).flatmap(
                lambda ax: st.tuples(*[st.sampled_from([a, a - ndim]) for a in ax])))
    return st.one_of(options)


def arrays(shape: Sequence[int], low: float = -2.0, high: float = 2.0,
           avoid: Sequence[float] = (), margin: float = 0.1) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays with values in [low, high], none within ``margin`` of a
    point in ``avoid`` (the op's kinks or poles)."""
    def push_away(v: float) -> float:
        for k in avoid:
            if abs(v - k) < margin:
                v = k - margin if v < k else k + margin
        return v

    elements = st.floats(low, high, allow_nan=False, allow_infinity=False).map(push_away)
    return hnp.arrays(np.float64, tuple(shape), elements=elements)


def distinct_arrays(shape: Sequence[int], low: float = -2.0, high: float = 2.0,
                    ) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays whose values are pairwise at least (high-low)/(2n) apart:
    no ties for max/min/sort, and no constant rows for normalisations."""
    shape = tuple(shape)
    n = math.prod(shape)
    step = (high - low) / max(n, 1)

    def build(perm_jitter) -> np.ndarray:
        perm, jitter = perm_jitter
        vals = low + (np.asarray(perm, dtype=np.float64) + np.asarray(jitter)) * step
        return vals.reshape(shape)

    return st.tuples(st.permutations(range(n)),
                     st.lists(st.floats(0.0, 0.5), min_size=n, max_size=n)).map(build)


def lattice_arrays(shape: Sequence[int], offset: float = 0.0, low: int = -4, high: int = 4,
                   ) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of values ``k/2 + offset + j`` (k in [low, high], jitter j
    in [0, 0.1]). Two of them with offsets 0 and 0.25 never come closer than
    0.15 elementwise, whatever the broadcasting: maximum/minimum without ties."""
    elements = st.tuples(st.integers(low, high), st.floats(0.0, 0.1)).map(
        lambda kj: kj[0] * 0.5 + offset + kj[1])
    return hnp.arrays(np.float64, tuple(shape), elements=elements)


def strided_tensor(a: np.ndarray, device: str = "cpu", dtype=None, requires_grad: bool = False):
    """A leaf tensor on ``device`` holding ``a``'s values in a strided view of a
    larger array, with its axes reversed in memory (not C-contiguous when ``a``
    has more than one element): checks that ops do not assume a layout."""
    from ..tensor import tensor  # noqa: PLC0415  (minigrad imports this module only on demand)
    base = np.zeros(a.shape[::-1] + (2,), dtype=a.dtype if dtype is None else dtype)
    base[..., 1] = a.T
    view = tensor(base, device=device)[..., 1].T    # basic indexing and .T: views, no copies
    return view.detach().requires_grad_(requires_grad)


def tolerance(dtype) -> dict[str, float]:
    """``rtol``/``atol`` for comparing a result of ``dtype`` with an exact
    (float64) reference: eps^(2/3), i.e. about two thirds of the digits
    (float64: 4e-11, float32: 2.4e-5, float16: 1e-2)."""
    eps = float(np.finfo(np.dtype(dtype)).eps)
    tol = eps ** (2.0 / 3.0)
    return {"rtol": tol, "atol": tol}


def gradcheck_tolerance(dtype) -> dict[str, float]:
    """``eps``/``atol``/``rtol`` for ``minigrad.gradcheck`` when the function
    rounds through ``dtype``: the central difference's best step is about
    eps^(1/3), and its error is then of the same order (float64: 6e-6,
    float32: 4.9e-3)."""
    cube_root = float(np.finfo(np.dtype(dtype)).eps) ** (1.0 / 3.0)
    return {"eps": cube_root, "atol": cube_root, "rtol": cube_root}
