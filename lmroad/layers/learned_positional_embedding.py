"""``LearnedPositionalEmbedding``: one trained vector per position (GPT, GPT-2)."""

from __future__ import annotations

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.tensor import Tensor

from ._checks import check_positive
from ._positions import positions_index


class LearnedPositionalEmbedding(nn.Module):
    """A table ``weight`` (max_len, dim) of trained position vectors,
    initialised N(0, 0.02²) as GPT-2 and nanoGPT do (an Embedding over
    positions; PyTorch models store it as an ``nn.Embedding`` weight of the
    same shape).

    ``forward(positions)``: an int T (positions 0..T-1) -> (T, dim), or an
    integer tensor (...,) -> (..., dim). A position >= max_len is an
    IndexError: unlike sinusoids, learned positions do not extrapolate.
    """

    def __init__(self, max_len: int, dim: int, std: float = 0.02):
        super().__init__()
        check_positive("LearnedPositionalEmbedding", max_len=max_len, dim=dim)
        self.max_len, self.dim = max_len, dim
        self.weight = nn.Parameter(mg.zeros(max_len, dim))
        nn.init.normal_(self.weight, 0.0, std)

    def forward(self, positions: int | Tensor) -> Tensor:
        name = f"LearnedPositionalEmbedding(max_len={self.max_len}, dim={self.dim})"
        return F.embedding(positions_index(name, positions, self.max_len, self.weight.device),
                           self.weight)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}"
