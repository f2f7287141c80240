"""``GRU``: a stack of GRU cells run over whole sequences."""

from __future__ import annotations

from ._recurrent import RecurrentLayer
from .gru_cell import GRUCell


class GRU(RecurrentLayer):
    """The GRU cell's equations (see ``GRUCell``) over whole sequences,
    ``num_layers`` deep.

    ``forward(x, h0=None) -> (output, h_n)``: x (T, B, I) (or (B, T, I) with
    ``batch_first``), h0 and h_n (num_layers, B, H), output (T, B, H) (or
    (B, T, H)). ``step(x_t, h)`` advances one time step (for generation).
    ``dropout`` applies between layers (not after the last), in training only.

    Parameters: ``cells.{k}.weight_ih`` (3H, I or H) etc., one ``GRUCell`` per
    layer, gate order (r, z, n); PyTorch's ``torch.nn.GRU`` names the same
    tensors ``weight_ih_l{k}`` (``pytorch_state_dict()`` /
    ``load_pytorch_state_dict()`` translate).
    """

    cell_class = GRUCell
