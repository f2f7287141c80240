"""``RNNCell``: the simple recurrent network of Elman (1990)."""

from __future__ import annotations

from typing import ClassVar

from minigrad import functional as F
from minigrad.tensor import Tensor

from ._cell import RecurrentCell


class RNNCell(RecurrentCell):
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh)   (or relu instead of tanh).

    Shapes: x (B, input_size) or (input_size,); h (B, hidden_size) or
    (hidden_size,), zeros when not given; returns h'.

    Parameters as PyTorch's ``torch.nn.RNNCell`` (names, shapes, U(±1/√H)
    initialisation): ``weight_ih`` (H, I), ``weight_hh`` (H, H), ``bias_ih``
    (H,), ``bias_hh`` (H,). (The seed document writes σ "sigmoid or tanh" for
    the state; tanh is the usual choice, see docs/seed.md.)
    """

    gates: ClassVar[int] = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def recurrence(self, gx: Tensor, h: Tensor) -> Tensor:
        pre = gx + self.hidden_projection(h)                 # (B, H)
        return pre.tanh() if self.nonlinearity == "tanh" else pre.relu()

    def sequence(self, gx: Tensor, h: Tensor):
        """The whole sequence as one fused node (``F.rnn_sequence``: the same steps, with
        a hand-written backward through time), unless a probe asked for every step or a
        subclass changed the step."""
        if not self._may_fuse(RNNCell):
            return super().sequence(gx, h)
        return F.rnn_sequence(gx, h, self.weight_hh, self.bias_hh, self.nonlinearity)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"
