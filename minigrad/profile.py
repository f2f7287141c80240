"""Counting the FLOPs of matrix products as they run.

    import minigrad as mg
    with mg.profile.count_flops() as fc:
        logits, loss = model(x, y)       # forward
        loss.backward()                  # backward
    fc.forward, fc.backward, fc.total    # FLOPs (ints)
    fc.products                          # how many matrix products

A product (..., m, k) @ (..., k, n) costs 2·m·k·n FLOPs (a multiply and an
add per term) times the size of its broadcast batch dims; a 1-D operand is a
row (left) or column (right) vector, as in NumPy, so a dot product of two
k-vectors is 2k. Only matrix products are counted: they are what dominates a
model's arithmetic, and what the usual FLOP estimates (6·N per token, Kaplan
et al. 2020) count. Elementwise ops, reductions, softmax, layer norm and
embedding gathers are 0 here.

What is counted is what is computed, densely: a causal attention's Q Kᵀ
counts all L×S scores although half of them are masked out, and a product in
a backward pass counts when the engine runs it, whatever it is for (a
gradient that nobody asked for but the op computes anyway, say).

Forward or backward: a product counts as ``backward`` while the engine
(``minigrad.backward`` / ``minigrad.grad``, hence ``Tensor.backward``) is
walking a graph, including forward ops that a node's backward builds (a
``create_graph`` path that recomputes its composite), and as ``forward``
otherwise.

Every raw product in minigrad reports here: ``MatMul.forward`` (the ``@``
of Tensors; its backward is written with ``@`` too, so it comes back
through it) and the hand-written products of the fused ops (``Linear``,
``Attention``, ``LSTMSequence``). Not counted, on purpose: the host
scatter-add that an embedding's gradient uses for a small table
(``backend._row_scatter_add`` does ``target[idx] += values`` as a one-hot
matrix product because that is faster in NumPy; it is an addition, and a
GPU does it without one); and anything a replayed CUDA graph
(``minigrad.graphs``) runs, since no Python op runs then.

Counters nest: every counter whose ``with`` block is open gets every count
(a module-level stack; products on any thread count). With no counter open
each product site costs one truthiness check of ``active``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from . import autograd

__all__ = ["count_flops", "FlopCounter", "Product", "matmul_flops", "matmul_shape", "add_matmul", "add"]

#: the counters whose ``with`` block is open, innermost last (empty almost always:
#: a product site checks ``if profile.active:`` before it counts)
active: list[FlopCounter] = []


class FlopCounter:
    """FLOPs of the matrix products run while it is open (``with``), split by phase.

    ``forward``, ``backward``: FLOPs outside and inside the engine's backward
    pass; ``total``: their sum; ``products``: how many products were counted
    (``forward_products``, ``backward_products``: by phase). Ints, readable
    during and after the ``with`` block."""

    def __init__(self, record: bool = False) -> None:
        self.forward = self.backward = 0
        self.forward_products = self.backward_products = 0
        #: with ``record=True``: every product counted, in order, as a ``Product``
        self.records: list[Product] | None = [] if record else None

    @property
    def total(self) -> int:
        return self.forward + self.backward

    @property
    def products(self) -> int:
        return self.forward_products + self.backward_products

    def __enter__(self) -> FlopCounter:
        active.append(self)
        return self

    def __exit__(self, *exc) -> bool:
        # by identity, not position: counters opened and closed out of order still work
        for i in range(len(active) - 1, -1, -1):
            if active[i] is self:
                del active[i]
                break
        return False

    def __repr__(self) -> str:
        return (f"FlopCounter(forward={self.forward:,}, backward={self.backward:,}, "
                f"products={self.products})")


def count_flops(record: bool = False) -> FlopCounter:
    """A new counter; use it as ``with count_flops() as fc: ...``. ``record=True`` also
    keeps each product's shapes, memory layouts and dtype in ``fc.records`` (what
    ``benchmarks/`` replays in NumPy alone: the matrix-product floor of a workload)."""
    return FlopCounter(record)


class Product(NamedTuple):
    """One recorded product ``a @ b``, run ``times`` times. A layout is "C" (C-contiguous),
    "T" (its last two axes swapped are: a transposed view) or "S" (other strides)."""
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    layout_a: str
    layout_b: str
    dtype: str
    times: int


def _layout(x: Any) -> str:
    if not hasattr(x, "flags"):
        return "C"                     # a shape: the product's left side built as it runs
    if x.flags.c_contiguous:
        return "C"
    return "T" if x.ndim >= 2 and x.swapaxes(-1, -2).flags.c_contiguous else "S"


def _shape(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else tuple(x)


def matmul_shape(a: Any, b: Any) -> tuple[int, ...]:
    """The shape of ``a @ b`` (arrays or shapes), by NumPy's rules: batch dims broadcast,
    a 1-D left operand is a row vector and a 1-D right one a column, their dim dropped."""
    sa, sb = _shape(a), _shape(b)
    rows = sa[-2:-1] if len(sa) > 1 else ()             # (m,), or () for a vector
    cols = sb[-1:] if len(sb) > 1 else ()               # (n,), or ()
    ba, bb = sa[:-2], sb[:-2]
    if len(ba) < len(bb):
        ba, bb = bb, ba
    bb = (1,) * (len(ba) - len(bb)) + bb                # aligned from the right
    return tuple(x if y == 1 else y for x, y in zip(ba, bb)) + rows + cols


def matmul_flops(a: Any, b: Any) -> int:
    """2·m·k·n · batch for ``a @ b`` (arrays or shapes): 2·k per entry of the result.

    (m, k) @ (k, n) -> 2mkn; (k,) @ (k, n) -> 2kn; (m, k) @ (k,) -> 2mk;
    (k,) @ (k,) -> 2k; batch dims (all but the last two) broadcast and multiply."""
    return 2 * math.prod(matmul_shape(a, b)) * _shape(a)[-1]


def add(flops: int, products: int = 1) -> None:
    """Add ``flops`` (from ``products`` products) to every open counter, in the current phase."""
    flops = int(flops)
    if autograd._mode.backward_pass:
        for c in active:
            c.backward += flops
            c.backward_products += products
    else:
        for c in active:
            c.forward += flops
            c.forward_products += products


def add_matmul(a: Any, b: Any, times: int = 1) -> None:
    """Count the product ``a @ b`` (arrays or their shapes), ``times`` times (a loop's
    products counted once, before it). Call sites guard it:

        if profile.active:
            profile.add_matmul(x, w_t)
        y = x @ w_t
    """
    add(times * matmul_flops(a, b), products=times)
    for c in active:
        if c.records is not None:
            dtype = str(getattr(a, "dtype", getattr(b, "dtype", "float32")))
            c.records.append(Product(_shape(a), _shape(b), _layout(a), _layout(b), dtype, times))
