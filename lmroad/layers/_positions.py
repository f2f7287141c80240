"""Turning the ``positions`` argument of the positional embeddings into an
index tensor, with an IndexError that names the layer."""

from __future__ import annotations

import minigrad as mg
from minigrad.tensor import Tensor


def positions_index(layer: str, positions, max_len: int, device) -> Tensor:
    """``positions``: an int T (meaning 0..T-1) or an integer tensor of positions."""
    if isinstance(positions, int) and not isinstance(positions, bool):
        if not 0 <= positions <= max_len:
            raise IndexError(f"{layer}: a sequence of length {positions} does not fit "
                             f"max_len={max_len}")
        return mg.arange(positions, device=device)
    if not isinstance(positions, Tensor) or positions.dtype.kind not in "iu":
        got = positions.dtype if isinstance(positions, Tensor) else type(positions).__name__
        raise TypeError(f"{layer}: positions must be an int (the length) or an integer tensor, "
                        f"got {got}")
    bad = mg.backend.first_out_of_range(positions.data, 0, max_len)
    if bad is not None:
        raise IndexError(f"{layer}: position {bad} is out of range for max_len={max_len} "
                         f"(valid: 0 to {max_len - 1})")
    return positions
