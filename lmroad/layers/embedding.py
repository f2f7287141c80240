"""``Embedding``: a lookup table of learned vectors, one per token id."""

from __future__ import annotations

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.tensor import Tensor

from ._checks import check_positive, check_tensor


class Embedding(nn.Module):
    """Row ``idx`` of ``weight`` for every integer in the input: (...,) -> (..., embedding_dim).

    ``weight`` (num_embeddings, embedding_dim), N(0, 1), as PyTorch's
    ``torch.nn.Embedding`` (same name, shape and initialisation), so weights
    can be exchanged with PyTorch. Its gradient is a scatter-add: a token that
    appears twice in the batch gets both rows' gradients.

    An index outside [0, num_embeddings) is an IndexError naming the layer,
    the index and the size (no negative wrap-around); non-integer input is a
    TypeError.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        check_positive("Embedding", num_embeddings=num_embeddings, embedding_dim=embedding_dim)
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = nn.Parameter(mg.zeros(num_embeddings, embedding_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, 0.0, 1.0)

    def forward(self, idx: Tensor) -> Tensor:
        name = f"Embedding(num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim})"
        check_tensor(name, idx, "indices")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"{name}: indices must be an integer tensor, got {idx.dtype}")
        try:
            return F.embedding(idx, self.weight)            # (..., embedding_dim)
        except IndexError as e:   # F.embedding names the index and the size; add the layer
            raise IndexError(f"{name}: {str(e).removeprefix('embedding: ')}") from None

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
