"""``RNN``: a stack of Elman RNN cells run over whole sequences."""

from __future__ import annotations

from ._recurrent import RecurrentLayer
from .rnn_cell import RNNCell


class RNN(RecurrentLayer):
    """h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh) per layer (relu with
    ``nonlinearity="relu"``), over whole sequences, ``num_layers`` deep.

    ``forward(x, h0=None) -> (output, h_n)``: x (T, B, I) (or (B, T, I) with
    ``batch_first``), h0 and h_n (num_layers, B, H), output (T, B, H) (or
    (B, T, H)). ``step(x_t, h)`` advances one time step (for generation).
    ``dropout`` applies between layers (not after the last), in training only.

    Parameters: ``cells.{k}.weight_ih`` etc., one ``RNNCell`` per layer;
    PyTorch's ``torch.nn.RNN`` names the same tensors ``weight_ih_l{k}``
    (``pytorch_state_dict()`` / ``load_pytorch_state_dict()`` translate).
    """

    cell_class = RNNCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, nonlinearity: str = "tanh"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         nonlinearity=nonlinearity)
        self.nonlinearity = nonlinearity
