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
of steps with the same batch size, then scored on fresh sequences
(``runs.py`` runs it; ``recall_accuracy`` scores it).
"""

from __future__ import annotations

import numpy as np

import minigrad as mg

__all__ = ["recall_batch", "recall_accuracy"]

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


def recall_accuracy(model, k: int, n_symbols: int, n_eval: int, seed: int, device: str = "cpu") -> float:
    """Accuracy on ``n_eval`` fresh sequences (a fixed stream per seed, the same for every model)."""
    rng = np.random.default_rng([seed, 10_000])
    idx, targets = recall_batch(rng, n_eval, k, n_symbols)
    was_training = model.training
    model.eval()
    with mg.no_grad():
        logits, _ = model(mg.tensor(idx, device=device))
    model.train(was_training)
    # the answer is a symbol: argmax over the symbols only (never the query mark)
    guess = logits[:, k, :n_symbols].numpy().argmax(axis=-1)         # (n_eval,)
    return float((guess == targets[:, k]).mean())
