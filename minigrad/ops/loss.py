"""Loss ops whose gradient is not that of their composition.

``binary_cross_entropy`` clamps each log at -100 so that x = 0 or 1 gives a
finite loss. Differentiating the clamped composition would give a zero
gradient exactly where the prediction is most wrong (x = 0 with t = 1);
PyTorch's gradient, kept here, is the unclamped formula with its denominator
kept away from 0:  d/dx = (x - t) / max(x (1 - x), 1e-12).
"""

from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function
from .elementwise import log, maximum

_EPS = 1e-12      # PyTorch's floor for x (1 - x) in the gradient


def _clamped_log(x, xp):
    """log x clamped at -100 (x = 0 gives -100, with no divide-by-zero warning)."""
    tiny = x.dtype.type(np.finfo(x.dtype).smallest_subnormal)
    return xp.maximum(xp.log(xp.maximum(x, tiny)), x.dtype.type(-100))


class BinaryCrossEntropy(Function):
    """l = -(t log x + (1 - t) log(1 - x)), each log clamped at -100, elementwise.

    d/dx = (x - t) / max(x (1 - x), ε);  d/dt = log(1 - x) - log x (clamped logs)."""
    op_name = "binary_cross_entropy"
    saves_output = False

    def forward(self, x, t):
        xp = backend.xp_of(x)
        return -(t * _clamped_log(x, xp) + (1 - t) * _clamped_log(1 - x, xp))

    def backward(self, g):
        x, t = self.inputs
        gx = g * (x - t) / maximum(x * (1.0 - x), _EPS) if x.requires_grad else None
        gt = None
        if t.requires_grad:
            tiny = float(np.finfo(x.dtype).smallest_subnormal)
            gt = g * (log(maximum(1.0 - x, tiny)).clip(min=-100.0) - log(maximum(x, tiny)).clip(min=-100.0))
        return gx, gt


__all__: list[str] = []     # used by minigrad.functional.binary_cross_entropy

METHODS: dict = {}
