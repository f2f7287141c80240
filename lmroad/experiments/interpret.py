"""Section 4 of the road: what the trained models look at (the seed's "interpretability").

* Attention maps: the trained Transformer reads one line of validation text;
  every head of every layer gives a (T, T) matrix, row i = how query
  position i spreads its attention over positions 0..i. The summary number
  per head is its mean attention distance Σ_j w_ij (i − j), averaged over
  queries: how far back the head looks.
* LSTM gates: the trained LSTM reads the same line; for every step we record
  the input, forget and output gates and the cell state of its top layer.
  A forget gate near 1 keeps the cell's memory, near 0 wipes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import minigrad as mg

from .probes import record_attention, record_lstm_gates, top_cell

__all__ = ["attention_maps", "lstm_gates", "pick_line", "mean_attention_distance", "InterpretResult"]


def pick_line(text: str, min_len: int, max_len: int) -> str:
    """The first line of ``text`` with at least ``min_len`` characters, cut to
    ``max_len`` (or the text's start if no line is long enough)."""
    for line in text.splitlines():
        if len(line.strip()) >= min_len:
            return line.strip()[:max_len]
    return text[:max_len]


def attention_maps(model, ids: np.ndarray, device: str) -> np.ndarray:
    """(n_layer, n_head, T, T) attention weights of ``model`` reading ``ids`` (T,)."""
    model.eval()
    with mg.no_grad(), record_attention(model) as maps:
        model(mg.tensor(ids[None, :], device=device))
    model.train()
    return np.stack([m[0] for m in maps])           # each map (1, nh, T, T) -> (nh, T, T)


def mean_attention_distance(maps: np.ndarray) -> np.ndarray:
    """(n_layer, n_head): Σ_j w_ij (i − j), averaged over query positions i."""
    T = maps.shape[-1]
    dist = np.arange(T)[:, None] - np.arange(T)[None, :]             # (T, T): i − j
    return (maps * dist).sum(axis=-1).mean(axis=-1)


def lstm_gates(model, ids: np.ndarray, device: str) -> dict[str, np.ndarray]:
    """Gate activations of the top LSTM layer reading ``ids`` (T,): each (T, H)."""
    model.eval()
    with mg.no_grad(), record_lstm_gates(top_cell(model)) as gates:
        model(mg.tensor(ids[None, :], device=device))
    model.train()
    return {k: np.stack([step[0] for step in v]) for k, v in gates.items()}


@dataclass
class InterpretResult:
    line: str
    attention: np.ndarray | None           # (n_layer, n_head, T, T)
    gates: dict | None                     # name -> (T, H)
