"""``LSTM``: a stack of LSTM cells run over whole sequences."""

from __future__ import annotations

from ._recurrent import RecurrentLayer
from .lstm_cell import LSTMCell


class LSTM(RecurrentLayer):
    """The LSTM cell's equations (see ``LSTMCell``) over whole sequences,
    ``num_layers`` deep.

    ``forward(x, (h0, c0)=None) -> (output, (h_n, c_n))``: x (T, B, I) (or
    (B, T, I) with ``batch_first``), h and c (num_layers, B, H), output
    (T, B, H) (or (B, T, H)), the top layer's h_t at every step.
    ``step(x_t, (h, c))`` advances one time step (for generation).
    ``dropout`` applies between layers (not after the last), in training only.
    ``forget_bias`` is passed to every cell (see ``LSTMCell``).

    Parameters: ``cells.{k}.weight_ih`` (4H, I or H) etc., one ``LSTMCell``
    per layer, gate order (i, f, g, o); PyTorch's ``torch.nn.LSTM`` names the
    same tensors ``weight_ih_l{k}`` (``pytorch_state_dict()`` /
    ``load_pytorch_state_dict()`` translate).
    """

    cell_class = LSTMCell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, forget_bias: float = 0.0):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         forget_bias=forget_bias)
        self.forget_bias = float(forget_bias)
