"""``Dropout`` (Srivastava et al. 2014)."""

from __future__ import annotations

import minigrad.functional as F
from minigrad import nn
from minigrad.tensor import Tensor

from ._checks import check_probability, check_tensor


class Dropout(nn.Module):
    """In training, zero each element with probability ``p`` and scale the
    survivors by 1/(1-p), so the expected value is unchanged ("inverted"
    dropout); in eval mode (``.eval()``), the identity.

    Masks come from the generator that ``minigrad.manual_seed`` seeds: call
    ``manual_seed(s)`` before two forward passes and they drop the same
    elements (this is how the tests pin the mask for gradient checks).
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = check_probability("Dropout", p, "p")

    def forward(self, x: Tensor) -> Tensor:
        check_tensor(f"Dropout(p={self.p})", x)
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
