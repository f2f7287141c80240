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

__all__ = ["gradient_norms", "decay_summary", "recurrent_singular_value", "GradientFlowResult"]


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
    """What a curve of ‖∂L_T/∂h_{T−d}‖ against d says about vanishing gradients.

    * ``ratio_d``: ‖∂L/∂h_{T−d}‖ / ‖∂L/∂h_T‖ at a few distances d;
    * ``step_ratio``: the median of the per-step ratios norms[d+1] / norms[d];
    * ``factor_per_step``: the fitted decay per step, exp of the slope of a
      straight line through log norms against d (d >= 1; 1 = no decay);
    * ``half_life``: steps for the gradient to halve at that rate,
      ln ½ / ln(factor) (None when it does not decay)."""
    out = {}
    base = norms[0] if norms[0] > 0 else np.nan
    for d in distances:
        out[f"ratio_{d}"] = float(norms[d] / base) if d < len(norms) else None
    pos = norms > 0
    steps = norms[1:][pos[1:] & pos[:-1]] / norms[:-1][pos[1:] & pos[:-1]]
    out["step_ratio"] = float(np.median(steps)) if len(steps) else None
    d = np.arange(1, len(norms))
    ok = norms[1:] > 0
    if ok.sum() >= 2:
        slope = np.polyfit(d[ok], np.log(norms[1:][ok]), 1)[0]
        out["factor_per_step"] = float(np.exp(slope))
        out["half_life"] = float(np.log(0.5) / slope) if slope < 0 else None
    else:
        out["factor_per_step"] = out["half_life"] = None
    return out


def recurrent_singular_value(model) -> float:
    """The largest singular value of the top recurrent layer's W_hh (all gates stacked).

    For the tanh RNN, h_t = tanh(W_hh h_{t−1} + ...), so
    ‖∂h_t/∂h_{t−1}‖ <= γ·σ_max(W_hh) with γ = 1, the largest slope of tanh:
    when σ_max < 1/γ = 1 the gradient must vanish geometrically (Pascanu,
    Mikolov & Bengio 2013); above it, it may explode. For the LSTM and GRU
    the gates stand between W_hh and the state, so the bound does not apply
    as such; the number is reported for comparison."""
    w = top_cell(model).weight_hh.numpy().astype(np.float64)          # (G·H, H)
    return float(np.linalg.svd(w, compute_uv=False)[0])


@dataclass
class GradientFlowResult:
    curves: dict          # (model, stage) -> norms by distance
    rows: list[dict]      # one per (model, stage): summary numbers
    T: int
