"""``lmroad.layers``: the layers the language models are built from, one class
per file, on ``minigrad.nn.Module``.

Parameter names and layouts follow PyTorch's modules of the same name
(``Linear.weight`` (out, in), ``LSTMCell.weight_ih`` (4H, I), ``MultiHeadAttention
.in_proj_weight`` (3E, E), ...), so weights can be exchanged with PyTorch by
key and shape. Wrong input shapes raise ValueError naming the layer, what it
expected and what it got. ``minigrad.nn.testing.check_layer`` is the test kit
every layer here passes.
"""

from .attention import MultiHeadAttention
from .dropout import Dropout
from .embedding import Embedding
from .feed_forward import FeedForward
from .gru import GRU
from .gru_cell import GRUCell
from .kv_cache import KVCache
from .layer_norm import LayerNorm
from .learned_positional_embedding import LearnedPositionalEmbedding
from .linear import Linear
from .lstm import LSTM
from .lstm_cell import LSTMCell
from .rnn import RNN
from .rnn_cell import RNNCell
from .sinusoidal_positional_embedding import SinusoidalPositionalEmbedding
from .transformer_block import TransformerBlock

__all__ = ["Linear", "Embedding", "LayerNorm", "Dropout", "RNNCell", "LSTMCell", "GRUCell",
           "RNN", "LSTM", "GRU", "MultiHeadAttention", "KVCache", "FeedForward", "TransformerBlock",
           "SinusoidalPositionalEmbedding", "LearnedPositionalEmbedding"]
