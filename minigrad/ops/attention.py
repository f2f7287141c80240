"""Scaled dot-product attention as one graph node that keeps only the
weights P for backward. Its softmax rows are ``ops/softmax.py``'s kernels.
"""

from __future__ import annotations

from .. import profile
from ..autograd import Function
from ..tensor import Tensor
from .elementwise import where
from .softmax import _softmax_last_backward_raw, _softmax_raw, softmax

__all__: list[str] = []     # user-facing in minigrad.functional


class Attention(Function):
    """out = P V,  P = softmax(Q Kᵀ · scale, masked),  for q (..., L, E), k (..., S, E),
    v (..., S, Ev); ``allowed`` (a bool array broadcasting to (..., L, S), or None) is
    True where a query may attend. A query allowed nothing gets zeros.

    One node instead of six, keeping only P for backward:
    dV = Pᵀ G,  dP = G Vᵀ,  dS = P ⊙ (dP - Σ_j dP ⊙ P),  dQ = dS K · scale,  dK = dSᵀ Q · scale."""
    op_name = "scaled_dot_product_attention"

    def forward(self, q, k, v):
        if profile.active:          # Q Kᵀ and P V, dense: every (L, S) score, masked or not
            kt = k.swapaxes(-1, -2)
            profile.add_matmul(q, kt)
            profile.add_matmul(profile.matmul_shape(q, kt), v)
        # scale, mask and softmax of the (..., L, S) scores: one pass on the CPU with numba
        self.p = _softmax_raw(q @ k.swapaxes(-1, -2), allowed=self.allowed, scale=self.scale)
        return self.p @ v

    def backward(self, g):
        q, k, v = self.inputs       # rebuild P from Tensors so the backward is differentiable
        s = (q @ k.swapaxes(-1, -2)) * self.scale
        if self.allowed is not None:
            s = where(Tensor._make(self.allowed, q._device), s, float("-inf"))
        p = softmax(s, axis=-1)
        gp = g @ v.swapaxes(-1, -2)
        gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True))
        return (gs @ k) * self.scale, (gs.swapaxes(-1, -2) @ q) * self.scale, p.swapaxes(-1, -2) @ g

    def backward_raw(self, ga):
        q, k, v = self.inputs
        p = self.p                                # first order: raw arrays, scale folded in
        vt, pt = v.data.swapaxes(-1, -2), p.swapaxes(-1, -2)   # (..., Ev, S), (..., S, L)
        gp = ga @ vt                              # dP, ours: dS may be written into it
        gs = _softmax_last_backward_raw(gp, p, self.scale, out=gp)   # dS (..., L, S)
        gst = gs.swapaxes(-1, -2)
        if profile.active:                        # dP = G Vᵀ, dQ = dS K, dK = dSᵀ Q, dV = Pᵀ G
            for a, b in ((ga, vt), (gs, k.data), (gst, q.data), (pt, ga)):
                profile.add_matmul(a, b)
        return gs @ k.data, gst @ q.data, pt @ ga
