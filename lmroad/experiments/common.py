"""What the road's sections share: progress lines, and a small training loop
for the synthetic tasks (the text models use ``lmroad.train``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import minigrad as mg
from minigrad import optim

__all__ = ["Progress", "TrainStats", "train_steps", "fmt_seconds"]


def fmt_seconds(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class Progress:
    """Prints ``[elapsed] message`` lines as the road goes (flushed, so a log shows them live)."""

    def __init__(self, quiet: bool = False, stream=None):
        self.t0 = time.perf_counter()
        self.quiet = quiet
        self.stream = stream or sys.stdout

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"[{fmt_seconds(self.elapsed()):>6}] {message}", file=self.stream, flush=True)


@dataclass
class TrainStats:
    steps: int
    tokens: int
    seconds: float
    final_loss: float          # mean training loss over the last tenth of the steps
    losses: list[float]


def train_steps(model, next_batch: Callable[[], tuple[mg.Tensor, mg.Tensor]], lr: float,
                max_steps: int | None = None, max_seconds: float | None = None,
                clip: float = 1.0, weight_decay: float = 0.0) -> TrainStats:
    """AdamW on ``model(x, y) -> (logits, loss)`` for ``max_steps`` steps or
    ``max_seconds`` seconds, whichever comes first (at least one step).

    Gradients are clipped to total norm ``clip`` (recurrent models need it)."""
    if max_steps is None and max_seconds is None:
        raise ValueError("train_steps: give max_steps or max_seconds")
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    losses: list[float] = []
    tokens = 0
    t0 = time.perf_counter()
    while True:
        x, y = next_batch()
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(float(loss.item()))
        tokens += x.size
        elapsed = time.perf_counter() - t0
        if (max_steps is not None and len(losses) >= max_steps) or \
                (max_seconds is not None and elapsed >= max_seconds):
            break
    tail = losses[-max(1, len(losses) // 10):]
    return TrainStats(len(losses), tokens, elapsed, sum(tail) / len(tail), losses)
