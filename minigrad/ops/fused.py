"""Kept for old imports: the fused ops now live in their family files.

``softmax``, ``log_softmax`` and ``cross_entropy`` in ``ops/softmax.py``,
``layer_norm`` in ``ops/norm.py``, attention in ``ops/attention.py``, the LSTM
and GRU steps and sequences in ``ops/recurrent.py``, ``Linear`` in
``ops/linalg.py``. Import from there in new code.
"""

from .attention import Attention
from .linalg import Linear, linear_reference
from .norm import LayerNorm
from .recurrent import (
    GRUCellUpdate,
    LSTMCellUpdate,
    LSTMSequence,
    gru_cell_reference,
    lstm_cell_reference,
    lstm_sequence_reference,
)
from .softmax import CrossEntropy, LogSoftmax, Softmax, log_softmax, softmax

__all__ = ["Attention", "CrossEntropy", "GRUCellUpdate", "LSTMCellUpdate", "LSTMSequence",
           "LayerNorm", "Linear", "LogSoftmax", "Softmax", "gru_cell_reference",
           "linear_reference", "log_softmax", "lstm_cell_reference", "lstm_sequence_reference",
           "softmax"]
