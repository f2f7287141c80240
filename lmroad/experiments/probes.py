"""Probes: look inside a model while it runs, without changing its code.

A probe temporarily shadows one method on one module *instance* (an instance
attribute hides the class's method; deleting it restores the class's), so
the model's own forward runs unchanged and the probe sees every call (a
recurrent probe also turns off the cell's fused whole-sequence op, which
would run every step without calling ``recurrence``):

    with record_states(cell) as hs:        # every h_t a recurrent cell makes
        logits, _ = model(idx)
    with record_attention(model) as maps:  # every attention layer's weights
        model(idx)

Recurrent layers call ``cell.recurrence(gx_t, state)`` once per time step
(``lmroad/layers/_recurrent.py``), and every Transformer block calls its
``MultiHeadAttention``, so these two hooks see all that the road measures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from lmroad.layers import LSTMCell, MultiHeadAttention
from lmroad.layers._cell import RecurrentCell
from minigrad.tensor import Tensor

__all__ = ["recurrent_cells", "top_cell", "record_states", "record_lstm_gates", "record_attention"]


def recurrent_cells(model) -> list[RecurrentCell]:
    """The model's recurrent cells in registration order (layer 0 first)."""
    return [m for m in model.modules() if isinstance(m, RecurrentCell)]


def top_cell(model) -> RecurrentCell:
    cells = recurrent_cells(model)
    if not cells:
        raise ValueError(f"{type(model).__name__} has no recurrent cell to probe")
    return cells[-1]


@contextlib.contextmanager
def _shadow(module, name: str, replacement):
    object.__setattr__(module, name, replacement)
    try:
        yield
    finally:
        del module.__dict__[name]


@contextlib.contextmanager
def record_states(cell: RecurrentCell) -> Iterator[list[Tensor]]:
    """Collect the hidden state h_t (B, H) of every step ``cell`` runs, as graph
    tensors (so ``minigrad.grad(loss, hs)`` gives ∂loss/∂h_t)."""
    hs: list[Tensor] = []
    original = cell.recurrence

    def recurrence(gx, state):
        new = original(gx, state)
        hs.append(new[0] if isinstance(new, tuple) else new)
        return new

    with _shadow(cell, "recurrence", recurrence), _shadow(cell, "fused_sequence", False):
        yield hs


@contextlib.contextmanager
def record_lstm_gates(cell: LSTMCell) -> Iterator[dict[str, list[np.ndarray]]]:
    """Collect an LSTM cell's gate activations per step, as host arrays (B, H):
    ``i``, ``f``, ``o`` (sigmoids), ``g`` (tanh candidate) and the new cell ``c``.

    The gates are recomputed from the same pre-activations the cell uses
    (PyTorch's gate order i, f, g, o), beside the cell's own step."""
    if not isinstance(cell, LSTMCell):
        raise TypeError(f"record_lstm_gates: expected an LSTMCell, got {type(cell).__name__}")
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("i", "f", "g", "o", "c")}
    original = cell.recurrence

    def recurrence(gx, state):
        h, _ = state
        i, f, g, o = (gx + cell.hidden_projection(h)).split(4, axis=-1)     # each (B, H)
        for key, t in (("i", i.sigmoid()), ("f", f.sigmoid()), ("g", g.tanh()), ("o", o.sigmoid())):
            out[key].append(t.numpy().copy())
        new = original(gx, state)
        out["c"].append(new[1].numpy().copy())
        return new

    with _shadow(cell, "recurrence", recurrence), _shadow(cell, "fused_sequence", False):
        yield out


@contextlib.contextmanager
def record_attention(model) -> Iterator[list[np.ndarray]]:
    """Collect the per-head attention weights (B, n_head, L, S) of every
    MultiHeadAttention call in ``model``, in call order (layer 0 first)."""
    maps: list[np.ndarray] = []
    stack = contextlib.ExitStack()
    for attn in (m for m in model.modules() if isinstance(m, MultiHeadAttention)):
        original = attn.forward

        def forward(*args, _original=original, **kwargs):
            wanted = kwargs.get("need_weights", False)
            average = kwargs.get("average_attn_weights", False)
            kwargs.update(need_weights=True, average_attn_weights=False)
            y, w = _original(*args, **kwargs)                    # w: (B, n_head, L, S)
            maps.append(w.numpy().copy())
            return (y, w.mean(axis=-3) if average else w) if wanted else y

        stack.enter_context(_shadow(attn, "forward", forward))
    with stack:
        yield maps
