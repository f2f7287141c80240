"""Matrix products: ``matmul`` with NumPy's semantics (1-D, 2-D, batched, broadcast
batch dims), and the fused ``Linear`` node, y = x Wᵀ + b."""

from __future__ import annotations

import math

from .. import profile
from ..autograd import Function, vjp
from ..tensor import Tensor
from ._lift import broadcast_shape, lift, match_float, reflected


class MatMul(Function):
    """C = A @ B;  dA = G Bᵀ,  dB = Aᵀ G  (batch dims reduced by the engine).

    A 1-D operand is treated as a row (left) or column (right) vector, then
    that dimension is dropped, as in NumPy. The backward's two products are
    Tensor ``@`` again, so ``minigrad.profile`` counts them here too."""
    op_name = "matmul"

    def forward(self, a, b):
        if profile.active:
            profile.add_matmul(a, b)
        return a @ b

    def backward(self, g):
        a, b = self.inputs
        a2 = a.reshape((1,) + a.shape) if a.ndim == 1 else a    # (..., n, k)
        b2 = b.reshape(b.shape + (1,)) if b.ndim == 1 else b    # (..., k, m)
        g2 = g
        if a.ndim == 1:
            g2 = g2.unsqueeze(-2 if b.ndim > 1 else 0)
        if b.ndim == 1:
            g2 = g2.unsqueeze(-1)                               # (..., n, m)
        ga = gb = None
        if a.requires_grad:
            ga = g2 @ b2.swapaxes(-1, -2)
            if a.ndim == 1:
                ga = ga.squeeze(-2)
        if b.requires_grad:
            if b.ndim == 2 and a.ndim > 2:
                # a shared weight (x (..., n, k) @ W (k, m)): fold the batch dims into
                # one product instead of making a (..., k, m) gradient and summing it
                rows, k = math.prod(a.shape[:-1]), a.shape[-1]   # not -1: a may be empty
                gb = a.reshape((rows, k)).swapaxes(0, 1) @ g.reshape((rows, b.shape[1]))
            else:
                gb = a2.swapaxes(-1, -2) @ g2
                if b.ndim == 1:
                    gb = gb.squeeze(-1)
        return ga, gb


def matmul(a, b) -> Tensor:
    if not isinstance(a, Tensor):
        a = lift(a, b, "matmul")
    b = lift(b, a, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and "
                         f"{b.shape}; use * to multiply by a scalar")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align ({k_a} != {k_b})")
    if a.ndim > 2 or b.ndim > 2:
        try:
            broadcast_shape("matmul", a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be "
                             "broadcast together") from None
    return MatMul.apply(*match_float(a, b))      # float dtypes promote in Function.apply


def linear_reference(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x Wᵀ + b from composite ops."""
    y = x @ w.swapaxes(0, 1)
    return y if b is None else y + b


class Linear(Function):
    """y = x Wᵀ + b for x (..., in), W (out, in), b (out,), as one node.

    As a composite, the bias add would keep the product x Wᵀ alive until
    backward although nothing needs it (a (..., out) array per layer); this
    node keeps only x and W. Backward: dx = G W, dW = Gᵀ x (batch dims folded
    into one product), db = Σ G over the batch dims."""
    op_name = "linear"

    def forward(self, x, w, *b):
        x2 = _rows(x)
        if profile.active:
            profile.add_matmul(x2, w.T)                  # (rows, in) @ (in, out)
        y = x2 @ w.T
        if b:
            y += b[0]                                    # y is new: no second array
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, g):
        return _vjp_of(linear_reference, self.inputs, g)

    def backward_raw(self, g):
        x, w = self.inputs[0], self.inputs[1]
        g2 = _rows(g)                           # (rows, out)
        if profile.active:                      # dx = G W (rows, out) @ (out, in), dW = Gᵀ x
            if x.requires_grad:
                profile.add_matmul(g2, w.data)
            if w.requires_grad:
                profile.add_matmul(g2.T, _rows(x.data))
        grads = [(g2 @ w.data).reshape(x.shape) if x.requires_grad else None,
                 g2.T @ _rows(x.data) if w.requires_grad else None]
        if len(self.inputs) == 3:
            grads.append(g2.sum(axis=0))
        return grads


def _rows(x):
    """``x`` (..., n) as one matrix (rows, n; the row count explicit, so that an empty batch
    reshapes too): a single BLAS product then, where NumPy's
    matmul of a 3-D array by a matrix runs one product per leading index (measured 1.3
    to 2 times slower for the baby GPT's layers, 12 × 64 rows, on an AMD EPYC)."""
    return x if x.ndim == 2 else x.reshape(math.prod(x.shape[:-1]), x.shape[-1])


def _vjp_of(composite, inputs: tuple[Tensor, ...], g: Tensor) -> tuple[Tensor | None, ...]:
    """The gradients of ``composite(*inputs)`` built from differentiable ops: the
    higher-order path of a fused op whose first-order backward is on raw arrays."""
    wanted = [t for t in inputs if t.requires_grad]
    grads = iter(vjp(composite(*inputs), wanted, g))     # partial: the walk stops at the inputs
    return tuple(next(grads) if t.requires_grad else None for t in inputs)


# --------------------------------------------------------------------------- exports

__all__ = ["matmul"]

METHODS = {"__matmul__": matmul, "__rmatmul__": reflected(matmul), "matmul": matmul}
