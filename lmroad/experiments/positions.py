"""Section 2 of the road: loss against position in the context (Kaplan et al. 2020, fig. 7).

How much does a model gain from seeing more of the past? Take many random
validation windows of n_ctx + 1 tokens and, for each position t = 1 .. n_ctx,
the mean loss of predicting token t + 1 from the t tokens before it:

    L(t) = mean over windows of  −log p(x_{t+1} | x_1 .. x_t)

Every window starts from a fresh state: a recurrent model from the zero state,
the Transformer with nothing cached, an n-gram with nothing before the
window. So L(t) measures what the model makes of exactly t tokens of context.
A curve that flattens early means the far past no longer helps; one that
keeps falling means the model still uses it. (A recurrent model is also
scored the way it was trained, with its state carried in from the text
before each window: ``carried_position_loss``; that curve is flat, since
every position then has the whole past behind it.)

``summarize`` reads the curve: L(1), L(10), L(100), L(n_ctx) (each but L(1)
the mean over positions within 10 % of t, since one position of a few
thousand windows has a standard error of a few hundredths of a nat), a fit

    L(t) ≈ a + b · t^(−c)

(a: the loss with unlimited context, c: how fast the gain from context
decays), and the position where the fitted curve comes within 0.01 nats of
its value at n_ctx (from the fit, which smooths that noise away).
"""

from __future__ import annotations

import numpy as np

import minigrad as mg
import minigrad.functional as F

__all__ = ["eval_windows", "per_position_loss", "carried_position_loss", "fit_power_law", "band", "smooth",
           "summarize"]


def eval_windows(ids: np.ndarray, n_windows: int, n_ctx: int, seed: int) -> np.ndarray:
    """``n_windows`` windows of ``n_ctx + 1`` tokens at random offsets of ``ids`` -> (N, n_ctx + 1)."""
    if len(ids) < n_ctx + 2:
        raise ValueError(f"eval_windows: {len(ids)} tokens cannot hold a window of n_ctx + 1 = {n_ctx + 1}")
    rng = np.random.default_rng([seed, 2])
    starts = rng.integers(0, len(ids) - n_ctx - 1, size=n_windows)
    return np.stack([ids[s:s + n_ctx + 1] for s in starts]).astype(np.int64)


def _token_losses(model, x: np.ndarray, y: np.ndarray, device: str, state=None):
    """Per-token losses (B, T) as float64, and the model's final state (None if it has none)."""
    kw = {} if state is None else {"state": state}
    logits, _ = model(mg.tensor(x, device=device), **kw)
    B, T, V = logits.shape
    loss = F.cross_entropy(logits.reshape(B * T, V), mg.tensor(y.reshape(-1), device=device),
                           reduction="none")
    return loss.numpy().astype(np.float64).reshape(B, T), getattr(model, "last_state", None)


def per_position_loss(model, windows: np.ndarray, device: str = "cpu", batch_size: int = 64) -> np.ndarray:
    """Mean loss at each position (n_ctx,) over ``windows`` (N, n_ctx + 1), each from a fresh state."""
    was_training = model.training
    model.eval()
    total = np.zeros(windows.shape[1] - 1)
    try:
        with mg.no_grad():
            for i in range(0, len(windows), batch_size):
                w = windows[i:i + batch_size]
                losses, _ = _token_losses(model, w[:, :-1], w[:, 1:], device)
                total += losses.sum(axis=0)
    finally:
        model.train(was_training)
    return total / len(windows)


def carried_position_loss(model, ids: np.ndarray, n_ctx: int, n_lanes: int, max_windows: int,
                          device: str = "cpu") -> np.ndarray:
    """Mean loss at each position of consecutive windows along ``n_lanes`` lanes of
    ``ids``, the recurrent state carried from window to window (the first
    window of each lane, which starts from zero, is not counted)."""
    L = len(ids) // n_lanes
    n_win = min(max_windows, (L - 1) // n_ctx)
    if n_win < 2:
        raise ValueError(f"carried_position_loss: {len(ids)} tokens in {n_lanes} lanes hold {n_win} "
                         f"windows of {n_ctx}; need at least 2")
    lanes = ids[:n_lanes * L].reshape(n_lanes, L)
    was_training = model.training
    model.eval()
    total, state = np.zeros(n_ctx), None
    try:
        with mg.no_grad():
            for k in range(n_win):
                x = lanes[:, k * n_ctx:(k + 1) * n_ctx]
                y = lanes[:, k * n_ctx + 1:(k + 1) * n_ctx + 1]
                losses, state = _token_losses(model, x, y, device, state)
                if k > 0:
                    total += losses.sum(axis=0)
    finally:
        model.train(was_training)
    return total / (n_lanes * (n_win - 1))


def fit_power_law(curve: np.ndarray) -> dict:
    """Least-squares fit of L(t) = a + b·t^(−c) over t = 1 .. len(curve).

    For each c on a fine grid the best (a, b) is a linear least-squares
    problem; the c with the smallest squared error wins."""
    curve = np.asarray(curve, dtype=np.float64)
    t = np.arange(1, len(curve) + 1, dtype=np.float64)
    best = None
    for c in np.geomspace(0.02, 4.0, 400):
        A = np.stack([np.ones_like(t), t ** -c], axis=1)
        (a, b), *_ = np.linalg.lstsq(A, curve, rcond=None)
        sse = float(((A @ np.array([a, b]) - curve) ** 2).sum())
        if best is None or sse < best["sse"]:
            best = dict(a=float(a), b=float(b), c=float(c), sse=sse)
    best["rmse"] = float(np.sqrt(best.pop("sse") / len(curve)))
    return best


def band(curve: np.ndarray, t: int, frac: float = 0.1) -> float:
    """The mean of ``curve`` over positions t·(1 − frac) .. t·(1 + frac) (1-based, clipped)."""
    n = len(curve)
    lo, hi = max(1, round(t * (1 - frac))), min(n, round(t * (1 + frac)))
    return float(np.mean(curve[lo - 1:hi]))


def smooth(curve: np.ndarray, bins: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """(positions, mean loss) over log-spaced bins of positions: the curve for a plot."""
    n = len(curve)
    edges = np.unique(np.round(np.geomspace(1, n + 1, bins + 1)).astype(int))
    t = np.array([(a + b - 1) / 2 for a, b in zip(edges[:-1], edges[1:])])
    return t, np.array([np.mean(curve[a - 1:b - 1]) for a, b in zip(edges[:-1], edges[1:])])


def summarize(curve: np.ndarray, tol: float = 0.01) -> dict:
    """L(1), L(10), L(100), L(n_ctx) (``band``), the gain from 100 tokens of context
    to n_ctx, the power-law fit, and the position where the fitted curve comes
    within ``tol`` nats of its value at n_ctx."""
    curve = np.asarray(curve, dtype=np.float64)
    n = len(curve)
    fit = fit_power_law(curve)
    t = np.arange(1, n + 1, dtype=np.float64)
    fitted = fit["a"] + fit["b"] * t ** -fit["c"]
    close = np.abs(fitted - fitted[-1]) <= tol
    # the first position from which the fitted curve stays within tol of its end
    not_close = np.nonzero(~close)[0]
    within = int(not_close[-1] + 2) if len(not_close) else 1
    out = {"L1": float(curve[0])}
    out.update({f"L{k}": band(curve, k) if k <= n else None for k in (10, 100)})
    out.update(L_ctx=band(curve, n), n_ctx=n, gain_100=band(curve, 100) - band(curve, n) if n > 100 else None,
               within_001=within, fit_a=fit["a"], fit_b=fit["b"], fit_c=fit["c"], fit_rmse=fit["rmse"])
    return out
