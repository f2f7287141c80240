"""``LSTMCell``: long short-term memory (Hochreiter & Schmidhuber 1997), with
the forget gate of Gers, Schmidhuber & Cummins (2000)."""

from __future__ import annotations

from typing import ClassVar

import minigrad.functional as F
from minigrad.tensor import Tensor

from ._cell import RecurrentCell


class LSTMCell(RecurrentCell):
    """One LSTM step, with PyTorch's equations and gate order (i, f, g, o)::

        i  = σ(W_ii x + b_ii + W_hi h + b_hi)     input gate
        f  = σ(W_if x + b_if + W_hf h + b_hf)     forget gate
        g  = tanh(W_ig x + b_ig + W_hg h + b_hg)  candidate cell
        o  = σ(W_io x + b_io + W_ho h + b_ho)     output gate
        c' = f ⊙ c + i ⊙ g
        h' = o ⊙ tanh(c')

    All four gates come from one matrix product per input: ``weight_ih``
    (4H, I) stacks W_ii, W_if, W_ig, W_io (and ``weight_hh`` (4H, H) the W_h*),
    so x Wᵢₕᵀ gives a (B, 4H) row that is then cut into the four gates.
    Names, shapes and U(±1/√H) initialisation are PyTorch's
    ``torch.nn.LSTMCell``'s, so weights can be exchanged with PyTorch.

    ``forget_bias``: when nonzero, the f-gate slice of ``bias_ih`` (entries
    H to 2H) starts at this value instead of its random draw (``bias_hh``
    keeps its PyTorch initialisation), so the forget gate starts mostly open
    and the cell state is remembered early in training (Gers et al. 2000;
    Jozefowicz et al. 2015 recommend 1.0). 0.0 keeps PyTorch's initialisation.

    Shapes: x (B, I) or (I,); state (h, c), each (B, H) or (H,), zeros when
    not given; returns (h', c'). The additive update of c is what lets
    gradients survive many steps (it eases, not removes, vanishing gradients;
    exploding ones still need clipping: see docs/seed.md).
    """

    gates: ClassVar[int] = 4
    state_names: ClassVar[tuple[str, ...]] = ("h", "c")

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 forget_bias: float = 0.0):
        if forget_bias and not bias:
            raise ValueError(f"LSTMCell: forget_bias={forget_bias} needs bias=True")
        super().__init__(input_size, hidden_size, bias)
        self.forget_bias = float(forget_bias)
        self._init_forget_bias()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self._init_forget_bias()

    def _init_forget_bias(self) -> None:
        fb = getattr(self, "forget_bias", 0.0)   # not set yet while the base class initialises
        if fb and self.bias_ih is not None:
            h = self.hidden_size
            self.bias_ih.data[h:2 * h] = self.bias_ih.xp.asarray(fb, dtype=self.bias_ih.dtype)

    def recurrence(self, gx: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state
        gates = gx + self.hidden_projection(h)              # (B, 4H), order i, f, g, o
        # c' = σ(f)⊙c + σ(i)⊙tanh(g),  h' = σ(o)⊙tanh(c'): one fused node (see the docstring of
        # minigrad.ops.fused.LSTMCellUpdate; lstm_cell_reference there is the same in plain ops)
        return F.lstm_cell(gates, c)                        # (h', c'), each (B, H)

    def sequence(self, gx: Tensor, state: tuple[Tensor, Tensor]):
        """The whole sequence as one fused node (``F.lstm_sequence``: the same
        steps, with a hand-written backward through time), unless a probe asked
        for every step or a subclass changed the step (a peephole cell, say)."""
        if not self._may_fuse(LSTMCell):
            return super().sequence(gx, state)
        hs, final = F.lstm_sequence(gx, *state, self.weight_hh, self.bias_hh)
        return hs, final                                    # (T, B, H), (h_T, c_T)

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", forget_bias={self.forget_bias}" if self.forget_bias else "")
