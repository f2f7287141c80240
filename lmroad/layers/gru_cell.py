"""``GRUCell``: the gated recurrent unit (Cho et al. 2014)."""

from __future__ import annotations

from typing import ClassVar

from minigrad import functional as F
from minigrad.tensor import Tensor

from ._cell import RecurrentCell


class GRUCell(RecurrentCell):
    """One GRU step, with PyTorch's equations and gate order (r, z, n)::

        r  = σ(W_ir x + b_ir + W_hr h + b_hr)         reset gate
        z  = σ(W_iz x + b_iz + W_hz h + b_hz)         update gate
        n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)) candidate
        h' = (1 - z) ⊙ n + z ⊙ h

    (The reset gate multiplies W_hn h + b_hn, after the product, as in PyTorch
    and cuDNN; Cho et al. apply it to h before the product.) ``weight_ih``
    (3H, I) and ``weight_hh`` (3H, H) stack the three gates' weights; names,
    shapes and U(±1/√H) initialisation are PyTorch's ``torch.nn.GRUCell``'s.

    Shapes: x (B, I) or (I,); h (B, H) or (H,), zeros when not given; returns h'.
    """

    gates: ClassVar[int] = 3

    def recurrence(self, gx: Tensor, h: Tensor) -> Tensor:
        gh = self.hidden_projection(h)                             # (B, 3H), order r, z, n
        # r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r⊙h_n), h' = n + z⊙(h - n):
        # one fused node (minigrad.ops.fused.GRUCellUpdate; gru_cell_reference there is the
        # same in plain ops)
        return F.gru_cell(gx, gh, h)                               # (B, H)

    def sequence(self, gx: Tensor, h: Tensor):
        """The whole sequence as one fused node (``F.gru_sequence``: the same steps, with
        a hand-written backward through time), unless a probe asked for every step or a
        subclass changed the step."""
        if not self._may_fuse(GRUCell):
            return super().sequence(gx, h)
        return F.gru_sequence(gx, h, self.weight_hh, self.bias_hh)   # (T, B, H), h_T
