"""What the three recurrent cells share: PyTorch's parameter layout and
initialisation, input and state checks, and the split of a step into an input
projection (which a sequence layer computes for all time steps in one matrix
product) and the recurrence proper (which must go step by step)."""

from __future__ import annotations

import math
from typing import ClassVar

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.tensor import Tensor

from ._checks import check_features, check_positive, check_tensor


class RecurrentCell(nn.Module):
    """Base of RNNCell, LSTMCell and GRUCell (not used directly).

    Parameters (G = number of gates, H = hidden_size, I = input_size), named
    and laid out as PyTorch's cells, gate blocks stacked along the first axis:
    ``weight_ih`` (G·H, I), ``weight_hh`` (G·H, H), ``bias_ih`` (G·H,),
    ``bias_hh`` (G·H,); all U(-1/√H, 1/√H) as in PyTorch.

    A subclass sets ``gates`` and ``state_names`` and writes ``recurrence``;
    it may also override ``sequence`` with a fused whole-sequence op.
    """

    gates: ClassVar[int] = 1
    state_names: ClassVar[tuple[str, ...]] = ("h",)   # ("h", "c") for the LSTM
    #: whether ``sequence`` may use a fused whole-sequence op (a probe that must see every
    #: step's ``recurrence`` call sets it False on the instance)
    fused_sequence: bool = True

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True):
        super().__init__()
        check_positive(type(self).__name__, input_size=input_size, hidden_size=hidden_size)
        self.input_size, self.hidden_size = input_size, hidden_size
        gh = self.gates * hidden_size
        self.weight_ih = nn.Parameter(mg.zeros(gh, input_size))
        self.weight_hh = nn.Parameter(mg.zeros(gh, hidden_size))
        self.register_parameter("bias_ih", nn.Parameter(mg.zeros(gh)) if bias else None)
        self.register_parameter("bias_hh", nn.Parameter(mg.zeros(gh)) if bias else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters(recurse=False):
            nn.init.uniform_(p, -bound, bound)

    @property
    def _name(self) -> str:
        return f"{type(self).__name__}(input_size={self.input_size}, hidden_size={self.hidden_size})"

    # ------------------------------------------------------------------ the two halves of a step
    def input_projection(self, x: Tensor) -> Tensor:
        """W_ih x + b_ih for every gate at once: (..., I) -> (..., G·H)."""
        return F.linear(x, self.weight_ih, self.bias_ih)    # one fused node

    def hidden_projection(self, h: Tensor) -> Tensor:
        """W_hh h + b_hh for every gate at once: (..., H) -> (..., G·H)."""
        return F.linear(h, self.weight_hh, self.bias_hh)

    def recurrence(self, gx: Tensor, state):
        """The new state from the projected input ``gx`` (B, G·H) and the state."""
        raise NotImplementedError

    def sequence(self, gx: Tensor, state):
        """The recurrence over a whole sequence: ``gx`` (T, B, G·H), the initial
        state -> (hs (T, B, H), final state). Step by step here."""
        outs = []
        for t in range(gx.shape[0]):
            state = self.recurrence(gx[t], state)
            outs.append(state[0] if isinstance(state, tuple) else state)   # h_t (B, H)
        return mg.stack(outs, axis=0), state

    def _may_fuse(self, cls: type) -> bool:
        """Whether ``sequence`` may run ``cls``'s fused whole-sequence op: not when a probe
        asked for every step, nor when a subclass changed the step (a peephole LSTM, say)."""
        return self.fused_sequence and type(self).recurrence is cls.recurrence

    # ------------------------------------------------------------------ states
    def zero_state(self, batch_shape: tuple[int, ...], like: Tensor):
        """The default state: zeros (batch_shape + (H,)) of ``like``'s dtype and device."""
        zeros = [mg.zeros(batch_shape + (self.hidden_size,), dtype=like.dtype, device=like.device)
                 for _ in self.state_names]
        return zeros[0] if len(zeros) == 1 else tuple(zeros)

    def check_state(self, state, batch_shape: tuple[int, ...]):
        """``state`` as the cell expects it, or a ValueError/TypeError naming the layer."""
        parts = state if isinstance(state, (tuple, list)) else (state,)
        if len(self.state_names) == 1 and isinstance(state, (tuple, list)) or \
                len(parts) != len(self.state_names):
            want = "a tensor h" if len(self.state_names) == 1 else "a tuple (h, c)"
            raise TypeError(f"{self._name}: state must be {want}, got {type(state).__name__}"
                            f"{'' if not isinstance(state, (tuple, list)) else f' of {len(parts)}'}")
        want = batch_shape + (self.hidden_size,)
        for name, s in zip(self.state_names, parts):
            check_tensor(self._name, s, f"state {name}")
            if s.shape != want:
                raise ValueError(f"{self._name}: state {name} has shape {s.shape}, expected {want}")
        return state if len(parts) > 1 else parts[0]

    # ------------------------------------------------------------------ one step
    def forward(self, x: Tensor, state=None):
        """One time step. ``x`` (B, I) or (I,); ``state`` as returned by a
        previous call (zeros when None). Returns the new state: h' (B, H), or
        (h', c') for the LSTM; without a batch axis in, none out."""
        shown = f"(B, {self.input_size}) or ({self.input_size},)"
        check_features(self._name, x, self.input_size, ndims=(1, 2), expected=shown)
        batch_shape = x.shape[:-1]
        state = self.zero_state(batch_shape, x) if state is None else self.check_state(state, batch_shape)
        return self.recurrence(self.input_projection(x), state)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias_ih is not None}"
