"""What RNN, LSTM and GRU share: running a stack of cells over a sequence.

Each layer runs over the whole sequence before the next starts (layer-major);
a time step is the cell's own step, two matrix products (W_ih x_t and
W_hh h_{t-1}), each for all gates at once.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.tensor import Tensor

from ._cell import RecurrentCell
from ._checks import check_features, check_positive, check_probability, check_tensor

_PYTORCH_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


class RecurrentLayer(nn.Module):
    """Base of RNN, LSTM and GRU (not used directly).

    ``cells`` is a ModuleList of ``num_layers`` cells; layer 0 reads the
    input, layer k > 0 reads layer k-1's outputs (through dropout, in
    training, when ``dropout > 0``). Parameters are therefore named
    ``cells.{k}.weight_ih`` etc.; PyTorch's ``nn.RNN/LSTM/GRU`` call the same
    tensors ``weight_ih_l{k}`` etc. (same shapes and layout):
    ``pytorch_state_dict()`` and ``load_pytorch_state_dict()`` translate.
    """

    cell_class: ClassVar[type[RecurrentCell]]

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, **cell_kwargs):
        super().__init__()
        name = type(self).__name__
        check_positive(name, input_size=input_size, hidden_size=hidden_size, num_layers=num_layers)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.batch_first, self.bias = bool(batch_first), bool(bias)
        self.dropout = check_probability(name, dropout)
        self.cells = nn.ModuleList(
            self.cell_class(input_size if k == 0 else hidden_size, hidden_size, bias, **cell_kwargs)
            for k in range(num_layers))

    @property
    def _name(self) -> str:
        return (f"{type(self).__name__}(input_size={self.input_size}, "
                f"hidden_size={self.hidden_size}, num_layers={self.num_layers})")

    @property
    def _n_state(self) -> int:
        return len(self.cell_class.state_names)

    # ------------------------------------------------------------------ states
    def _initial(self, state, batch_shape: tuple[int, ...], like: Tensor) -> list:
        """Per-layer cell states from the layer state (num_layers, *batch_shape, H), or zeros."""
        want = (self.num_layers,) + batch_shape + (self.hidden_size,)
        if state is None:
            return [cell.zero_state(batch_shape, like) for cell in self.cells]
        parts = state if isinstance(state, (tuple, list)) else (state,)
        if (self._n_state == 1) == isinstance(state, (tuple, list)) or len(parts) != self._n_state:
            kind = "a tensor h" if self._n_state == 1 else "a tuple (h, c)"
            raise TypeError(f"{self._name}: state must be {kind} of shape {want}, "
                            f"got {type(state).__name__}")
        for sname, s in zip(self.cell_class.state_names, parts):
            check_tensor(self._name, s, f"state {sname}")
            if s.shape != want:
                raise ValueError(f"{self._name}: state {sname} has shape {s.shape}, expected {want} "
                                 "(num_layers, batch, hidden_size)")
        per_layer = [tuple(s[k] for s in parts) for k in range(self.num_layers)]
        return [p[0] if self._n_state == 1 else p for p in per_layer]

    def _stack(self, states: list):
        """Per-layer cell states -> the layer state (num_layers, *batch, H) (a tuple for the LSTM)."""
        if self._n_state == 1:
            return mg.stack(states, axis=0)
        return tuple(mg.stack([s[j] for s in states], axis=0) for j in range(self._n_state))

    @staticmethod
    def _h(state) -> Tensor:
        return state[0] if isinstance(state, tuple) else state

    def _between_layers(self, y: Tensor, k: int) -> Tensor:
        if self.dropout and self.training and k < self.num_layers - 1:
            return F.dropout(y, self.dropout, True)
        return y

    # ------------------------------------------------------------------ whole sequences
    def forward(self, x: Tensor, state=None):
        """Run over a sequence. ``x``: (T, B, I), or (B, T, I) with
        ``batch_first``, or (T, I) without a batch. ``state``: the initial
        state, (num_layers, B, H) (the LSTM: a tuple (h0, c0)); zeros when None.

        Returns ``(output, final_state)``: ``output`` holds the top layer's h_t
        for every step, (T, B, H) (or (B, T, H)); ``final_state`` has the
        shape of ``state``. A zero-length sequence gives an empty output and
        returns the initial state."""
        shown = (f"(B, T, {self.input_size})" if self.batch_first else f"(T, B, {self.input_size})") \
            + f" or (T, {self.input_size})"
        check_features(self._name, x, self.input_size, ndims=(2, 3), expected=shown)
        batched = x.ndim == 3
        if batched and self.batch_first:
            x = x.swapaxes(0, 1)                                # (T, B, I)
        batch_shape = x.shape[1:-1]
        states = self._initial(state, batch_shape, x)
        T = x.shape[0]
        if T == 0:
            out = mg.zeros((0,) + batch_shape + (self.hidden_size,), dtype=x.dtype, device=x.device)
            final = state if state is not None else self._stack(states)
            return (out.swapaxes(0, 1) if batched and self.batch_first else out), final
        # The input projection W_ih x_t + b_ih of every step is one matrix product over the
        # whole sequence (and so is its weight gradient); only the recurrence goes step by step,
        # in the cell's ``sequence``: gx[t] per step (cheap in backward: the engine adds each
        # slice's gradient into one buffer in place), or one fused node (the LSTM's).
        y = x                                                   # (T, B, I)
        for k, cell in enumerate(self.cells):
            gx = cell.input_projection(y)                       # (T, B, G·H)
            hs, states[k] = cell.sequence(gx, states[k])        # (T, B, H), final state
            y = self._between_layers(hs, k)
        if batched and self.batch_first:
            y = y.swapaxes(0, 1)                                # (B, T, H)
        return y, self._stack(states)

    def step(self, x_t: Tensor, state=None):
        """One time step through every layer (for generation): ``x_t`` (B, I)
        or (I,), ``state`` as in ``forward``. Returns ``(h_top, new_state)``
        with ``h_top`` (B, H), the top layer's new hidden state."""
        shown = f"(B, {self.input_size}) or ({self.input_size},)"
        check_features(self._name, x_t, self.input_size, ndims=(1, 2), expected=shown)
        states = self._initial(state, x_t.shape[:-1], x_t)
        y = x_t
        for k, cell in enumerate(self.cells):
            states[k] = cell.recurrence(cell.input_projection(y), states[k])
            y = self._between_layers(self._h(states[k]), k)
        return y, self._stack(states)

    # ------------------------------------------------------------------ PyTorch names
    def pytorch_state_dict(self) -> OrderedDict[str, Tensor]:
        """The parameters under PyTorch's names (``weight_ih_l0``, ...), for
        ``torch.nn.RNN/LSTM/GRU(...).load_state_dict({k: torch.tensor(v.numpy()) ...})``."""
        out = OrderedDict()
        for k, cell in enumerate(self.cells):
            for n in _PYTORCH_NAMES:
                p = getattr(cell, n)
                if p is not None:
                    out[f"{n}_l{k}"] = p.detach()
        return out

    def load_pytorch_state_dict(self, state_dict: dict, strict: bool = True):
        """Load parameters saved under PyTorch's names (values: Tensors or
        arrays, e.g. ``{k: v.numpy() for k, v in torch_lstm.state_dict().items()}``)."""
        ours = {}
        for key, v in state_dict.items():
            stem, _, layer = key.rpartition("_l")
            ours[f"cells.{layer}.{stem}" if stem in _PYTORCH_NAMES and layer.isdigit() else key] = v
        return self.load_state_dict(ours, strict=strict)

    def extra_repr(self) -> str:
        extra = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers != 1:
            extra.append(f"num_layers={self.num_layers}")
        if not self.bias:
            extra.append("bias=False")
        if self.batch_first:
            extra.append("batch_first=True")
        if self.dropout:
            extra.append(f"dropout={self.dropout}")
        return ", ".join(extra)
