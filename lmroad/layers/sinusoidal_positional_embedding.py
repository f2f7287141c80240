"""``SinusoidalPositionalEmbedding``: the fixed position encoding of Vaswani et al. (2017)."""

from __future__ import annotations

import minigrad as mg
from minigrad import nn
from minigrad.tensor import Tensor

from ._checks import check_positive
from ._positions import positions_index


class SinusoidalPositionalEmbedding(nn.Module):
    """PE[pos, 2i] = sin(pos / 10000^(2i/dim)),  PE[pos, 2i+1] = cos(pos / 10000^(2i/dim)).

    ``forward(positions)`` returns the rows for ``positions``: an int T
    (positions 0..T-1) -> (T, dim), or an integer tensor (...,) -> (..., dim).
    Add the result to the token embeddings. Nothing is learned: the table is
    a non-persistent buffer ``pe`` (max_len, dim), so it moves with ``.to()``
    but is not in ``state_dict`` (it is recomputed on construction). Each pair
    of columns is a rotation at its own frequency, so PE[pos + k] is a linear
    function of PE[pos] for every offset k.
    """

    def __init__(self, max_len: int, dim: int):
        super().__init__()
        check_positive("SinusoidalPositionalEmbedding", max_len=max_len, dim=dim)
        self.max_len, self.dim = max_len, dim
        pos = mg.arange(max_len, dtype="float64").unsqueeze(1)               # (max_len, 1)
        freq = 10000.0 ** (-mg.arange(0, dim, 2, dtype="float64") / dim)   # (ceil(dim/2),)
        angle = pos * freq                                                 # (max_len, ceil(dim/2))
        # columns sin, cos, sin, cos, ...: the pairs stacked last, then merged (an odd dim drops a cos)
        pe = mg.stack([mg.sin(angle), mg.cos(angle)], axis=-1).reshape(max_len, -1)[:, :dim]
        self.register_buffer("pe", pe.astype(mg.get_default_dtype()), persistent=False)

    def forward(self, positions: int | Tensor) -> Tensor:
        name = f"SinusoidalPositionalEmbedding(max_len={self.max_len}, dim={self.dim})"
        return self.pe[positions_index(name, positions, self.max_len, self.pe.device)]

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, dim={self.dim}"
