"""``FeedForward``: the position-wise MLP of a Transformer block."""

from __future__ import annotations

import minigrad.functional as F
from minigrad import nn
from minigrad.tensor import Tensor

from ._checks import check_positive
from .dropout import Dropout
from .linear import Linear

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),                            # exact, x·Φ(x) (PyTorch's default)
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),   # GPT-2's approximation
    "relu": lambda x: F.relu(x),                            # the original Transformer's
}


class FeedForward(nn.Module):
    """FFN(x) = Dropout(W₂ act(W₁ x + b₁) + b₂), applied at every position:
    (..., n_embd) -> (..., n_embd), through ``hidden`` (4·n_embd by default)
    features.

    Submodules: ``fc`` (Linear(n_embd, hidden), the expansion) and ``proj``
    (Linear(hidden, n_embd), the projection back to the residual stream),
    nanoGPT's ``c_fc``/``c_proj`` without the GPT-2 prefix; ``drop``.
    ``activation``: "gelu" (exact), "gelu_tanh" (GPT-2) or "relu" (Vaswani
    et al. 2017).
    """

    def __init__(self, n_embd: int, hidden: int | None = None, dropout: float = 0.0,
                 activation: str = "gelu", bias: bool = True):
        super().__init__()
        hidden = 4 * n_embd if hidden is None else hidden
        check_positive("FeedForward", n_embd=n_embd, hidden=hidden)
        if activation not in ACTIVATIONS:
            raise ValueError(f"FeedForward: activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.n_embd, self.hidden, self.activation = n_embd, hidden, activation
        self.fc = Linear(n_embd, hidden, bias=bias)
        self.proj = Linear(hidden, n_embd, bias=bias)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.proj(ACTIVATIONS[self.activation](self.fc(x))))

    def extra_repr(self) -> str:
        return f"n_embd={self.n_embd}, hidden={self.hidden}, activation={self.activation!r}"
