"""What the road's sections share: progress lines, and the training loop of the
synthetic tasks (the text models train in ``quality.train_lm``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import minigrad as mg
from minigrad import optim

__all__ = ["Progress", "train_steps", "fmt_seconds"]


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


def train_steps(model, next_batch: Callable[[], tuple[mg.Tensor, mg.Tensor]], *, steps: int, lr: float,
                weight_decay: float = 0.0, warmup_fraction: float = 0.1, curve_points: int = 20,
                curve_every: int | None = None, evaluate: Callable[[object], float] | None = None) -> dict:
    """AdamW on ``model(x, y) -> (logits, loss)`` for exactly ``steps`` steps:
    linear warmup over the first ``warmup_fraction`` of them, then a cosine to
    zero at the last step; gradients clipped to total norm 1.

    Returns ``final_loss`` (the mean training loss over the last tenth of the
    steps) and ``curve``: at ``curve_points`` evenly spaced steps, the mean
    training loss since the previous point and, if given, ``evaluate(model)``
    (``curve_every``: a point after every that many steps and after the last instead)."""
    if steps < 1:
        raise ValueError(f"train_steps: steps must be >= 1, got {steps}")
    warmup = max(1, round(warmup_fraction * steps))
    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if curve_every:
        marks = sorted(set(range(curve_every, steps + 1, curve_every)) | {steps})
    else:
        marks = sorted({max(1, round(steps * (i + 1) / curve_points)) for i in range(curve_points)})
    losses: list[float] = []
    curve: list[dict] = []
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = optim.cosine_with_warmup(step, lr, warmup, steps, 0.0)
        x, y = next_batch()
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.item()))
        if step + 1 in marks:
            since = marks.index(step + 1)
            start = marks[since - 1] if since else 0
            point = dict(step=step + 1, train_loss=float(sum(losses[start:]) / (step + 1 - start)))
            if evaluate is not None:
                point["eval_loss"] = float(evaluate(model))
                model.train()
            curve.append(point)
    tail = losses[-max(1, steps // 10):]
    return dict(final_loss=float(sum(tail) / len(tail)), curve=curve)
