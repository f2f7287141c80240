"""The recurrent language models in PyTorch's modules.

An ``RNNLM`` (``LSTMLM``, ``GRULM``) is ``nn.Embedding`` -> ``nn.RNN`` (``nn.LSTM``,
``nn.GRU``, ``batch_first=True``) -> ``nn.Linear``, with PyTorch's equations and gate
order (i, f, g, o for the LSTM; r, z, n for the GRU) in every cell, so the weights
go across unchanged; only the names differ:

    lmroad RNNLM                      PyTorch (module names embedding, rnn, head)
    embedding.weight     (V, E)       embedding.weight
    core.cells.l.weight_ih (G·H, ·)   rnn.weight_ih_l{l}
    core.cells.l.weight_hh (G·H, H)   rnn.weight_hh_l{l}
    core.cells.l.bias_ih, bias_hh     rnn.bias_ih_l{l}, rnn.bias_hh_l{l}
    head.weight (V, H), head.bias     head.weight, head.bias

The module on the PyTorch side (``dropout`` as trained; it only acts in training)::

    class RNNLM(nn.Module):
        def __init__(self, cell, vocab_size, n_embd, hidden_size, num_layers, dropout=0.0):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, n_embd)
            self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](
                n_embd, hidden_size, num_layers, batch_first=True, dropout=dropout)
            self.head = nn.Linear(hidden_size, vocab_size)

        def forward(self, idx):                        # (B, T) -> (B, T, V)
            y, _ = self.rnn(self.embedding(idx))
            return self.head(y)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..models import RNNConfig

__all__ = ["names", "from_lmroad", "torch_config"]


def names(cfg: RNNConfig) -> Iterator[tuple[str, str]]:
    """(lmroad name, PyTorch name) for every weight."""
    yield "embedding.weight", "embedding.weight"
    for layer in range(cfg.num_layers):
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            yield f"core.cells.{layer}.{w}", f"rnn.{w}_l{layer}"
    yield "head.weight", "head.weight"
    yield "head.bias", "head.bias"


def from_lmroad(cfg: RNNConfig, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The PyTorch state dict of the same model (a tied head written under both names, as
    PyTorch's own state dict lists it)."""
    return {theirs: np.ascontiguousarray(weights[ours], dtype=np.float32) for ours, theirs in names(cfg)}


def torch_config(cfg: RNNConfig) -> dict:
    """What the PyTorch module above needs to be built (config.json beside the weights)."""
    return {"model_type": cfg.cell, "vocab_size": cfg.vocab_size, "n_embd": cfg.n_embd,
            "hidden_size": cfg.hidden_size, "num_layers": cfg.num_layers, "dropout": cfg.dropout,
            "tie_weights": cfg.tie_weights, "batch_first": True}
