"""``lmroad.layers``: the layers the language models are built from, one class
per file, on ``minigrad.nn.Module``.

Parameter names and layouts follow PyTorch's modules of the same name
(``Linear.weight`` (out, in), ``LSTMCell.weight_ih`` (4H, I), ``MultiHeadAttention
.in_proj_weight`` (3E, E), ...), so weights can be exchanged with PyTorch by
key and shape. Wrong input shapes raise ValueError naming the layer, what it
expected and what it got. ``minigrad.nn.testing.check_layer`` is the test kit
every layer here passes.
"""

from .dropout import Dropout
from .embedding import Embedding
from .gru import GRU
from .gru_cell import GRUCell
from .layer_norm import LayerNorm
from .linear import Linear
from .lstm import LSTM
from .lstm_cell import LSTMCell
from .rnn import RNN
from .rnn_cell import RNNCell

__all__ = ["Linear", "Embedding", "LayerNorm", "Dropout", "RNNCell", "LSTMCell", "GRUCell",
           "RNN", "LSTM", "GRU"]
