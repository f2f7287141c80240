"""Section 3 of the road: can a model use a token k steps back? (FAQ 2 and 3)

The task ("recall the first token") isolates one long-range dependency:

    position   0     1 .. k-1            k
    token      s     k-1 distractors     ?        target at position k: s

``s`` and the distractors are drawn uniformly from ``n_symbols`` symbols,
so nothing between position 0 and position k tells what s was: the model has
to carry it across k steps (a recurrent model in its state, a Transformer by
attending back). The loss is taken at position k only (the other targets
are -100, which cross-entropy ignores). Chance accuracy is 1/n_symbols.

For each distance k, each model is trained from scratch for the same number
of steps with the same batch size, then scored on fresh sequences.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import minigrad as mg

from .common import Progress, train_steps

__all__ = ["recall_batch", "LongRangeResult", "run_long_range"]

IGNORE = -100


def recall_batch(rng: np.random.Generator, batch_size: int, k: int,
                 n_symbols: int) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` recall sequences at distance ``k`` -> (idx, targets), each (B, k+1) int64.

    Symbols are ids 0 .. n_symbols-1; the query marker is id n_symbols (so the
    vocabulary has n_symbols + 1 tokens)."""
    if k < 1:
        raise ValueError(f"recall_batch: the distance k must be >= 1, got {k}")
    idx = rng.integers(0, n_symbols, size=(batch_size, k + 1))      # (B, k+1)
    idx[:, k] = n_symbols                                            # the query
    targets = np.full_like(idx, IGNORE)
    targets[:, k] = idx[:, 0]                                        # answer: the first token
    return idx, targets


@dataclass
class LongRangeResult:
    rows: list[dict]          # one per (model, k): accuracy, final loss, steps, seconds, parameters
    n_symbols: int
    steps: int
    batch_size: int

    @property
    def chance(self) -> float:
        return 1.0 / self.n_symbols


def _accuracy(model, k: int, n_symbols: int, n_eval: int, seed: int, device: str) -> float:
    rng = np.random.default_rng(10_000 + seed)
    idx, targets = recall_batch(rng, n_eval, k, n_symbols)
    model.eval()
    with mg.no_grad():
        logits, _ = model(mg.tensor(idx, device=device))
    model.train()
    # the answer is a symbol: argmax over the symbols only (never the query mark)
    guess = logits[:, k, :n_symbols].numpy().argmax(axis=-1)         # (n_eval,)
    return float((guess == targets[:, k]).mean())


def run_long_range(make_model: Callable[[str, int, int], object], models: list[str],
                   distances: list[int], steps: int, batch_size: int, n_symbols: int,
                   n_eval: int, lr: float, seed: int, device: str, progress: Progress) -> LongRangeResult:
    """Train ``make_model(name, vocab_size, max_len)`` on the recall task for every
    model and distance; returns one row per (model, k)."""
    rows = []
    for name in models:
        for k in distances:
            mg.manual_seed(seed)
            model = make_model(name, n_symbols + 1, k + 1).to(device)
            rng = np.random.default_rng(seed * 7919 + k)

            def batch(rng=rng, k=k):
                idx, targets = recall_batch(rng, batch_size, k, n_symbols)
                return mg.tensor(idx, device=device), mg.tensor(targets, device=device)

            t0 = time.perf_counter()
            stats = train_steps(model, batch, lr=lr, max_steps=steps)
            acc = _accuracy(model, k, n_symbols, n_eval, seed, device)
            seconds = time.perf_counter() - t0
            rows.append(dict(model=name, k=k, accuracy=acc, final_loss=stats.final_loss,
                             steps=stats.steps, seconds=seconds,
                             parameters=model.num_parameters()))
            progress.say(f"long range  {name:<12} k={k:<4} accuracy {acc:.2f} "
                         f"(loss {stats.final_loss:.3f}, {seconds:.1f}s)")
    return LongRangeResult(rows, n_symbols, steps, batch_size)
