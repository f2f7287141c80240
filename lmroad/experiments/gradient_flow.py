"""Section 2 of the road: do gradients vanish through time? (FAQ 1)

For a window of T characters, take the loss at the last position only,
L_T = -log p(x_{T+1} | x_1..x_T), and ask how strongly it depends on each
earlier hidden state: ‖∂L_T/∂h_t‖ for t = 1..T, plotted against the distance
T − t. A vanishing gradient shows as a straight fall on a log scale (the
norm shrinks by a roughly constant factor per step); a long flat stretch
means the past still matters to the loss.

h_t is the top recurrent layer's state; ``probes.record_states`` collects
the h_t the model makes during its own forward pass, and
``minigrad.grad(L_T, [h_1..h_T])`` returns every ∂L_T/∂h_t in one backward
pass (the total derivative: for the LSTM it includes the paths through the
cell state c). The norm is taken per sequence and averaged over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import minigrad as mg
import minigrad.functional as F

from .probes import record_states, top_cell

__all__ = ["gradient_norms", "decay_summary", "GradientFlowResult"]


def gradient_norms(model, idx: mg.Tensor, targets: mg.Tensor) -> np.ndarray:
    """Mean over the batch of ‖∂L_T/∂h_t‖, indexed by distance d = T − t (d = 0 .. T−1)."""
    was_training = model.training
    model.eval()                                   # no dropout while measuring
    try:
        with record_states(top_cell(model)) as hs:
            logits, _ = model(idx)                 # (B, T, V)
        T = idx.shape[1]
        hs = hs[-T:]                               # the top layer's h_1 .. h_T, each (B, H)
        loss_T = F.cross_entropy(logits[:, -1, :], targets[:, -1], reduction="sum")
        grads = mg.grad(loss_T, hs, allow_unused=True)
    finally:
        model.train(was_training)
    norms = np.zeros(T)
    for t, g in enumerate(grads):
        if g is not None:
            norms[t] = np.sqrt((g.numpy().astype(np.float64) ** 2).sum(axis=-1)).mean()
    return norms[::-1].copy()                      # distance 0 first


def decay_summary(norms: np.ndarray, distances=(10, 25, 50, 100)) -> dict:
    """Ratios ‖∂L/∂h_{T−d}‖ / ‖∂L/∂h_T‖ at a few distances, and the fitted
    factor per step (geometric mean of the decay over the measured range)."""
    out = {}
    base = norms[0] if norms[0] > 0 else np.nan
    for d in distances:
        out[f"ratio_{d}"] = float(norms[d] / base) if d < len(norms) else None
    d = np.arange(1, len(norms))
    ok = norms[1:] > 0
    if ok.sum() >= 2:
        slope = np.polyfit(d[ok], np.log(norms[1:][ok]), 1)[0]
        out["factor_per_step"] = float(np.exp(slope))
    else:
        out["factor_per_step"] = None
    return out


@dataclass
class GradientFlowResult:
    curves: dict          # (model, stage) -> norms by distance
    rows: list[dict]      # one per (model, stage): summary numbers
    T: int
