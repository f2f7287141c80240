"""What the road's sections share: progress lines, and the training loop of the
synthetic tasks (the text models train in ``quality.train_lm``)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import minigrad as mg
from minigrad import optim

__all__ = ["Progress", "run_steps", "train_steps", "fmt_seconds"]


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


def run_steps(model, opt, *, steps: int, warmup: int, loss_of_step: Callable[[int], mg.Tensor],
              after_step: Callable[[int, list[float]], None] | None = None) -> list[float]:
    """The road's one optimisation loop, for the text models and the tasks alike.

    For each step: ``loss_of_step(step)`` (the caller draws the batch and runs the
    model), backward, gradients clipped to total norm 1 (Pascanu et al. 2013),
    ``opt.step()``, and the learning rate of every group set by
    ``CosineWithWarmup``: a linear warmup over ``warmup`` steps, then a cosine to
    0 at the last step. ``after_step(steps_done, losses)`` runs after each step
    (for a learning curve). Returns the training losses."""
    sched = optim.CosineWithWarmup(opt, warmup_steps=warmup, total_steps=steps)
    model.train()
    losses: list[float] = []
    for step in range(steps):
        loss = loss_of_step(step)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.item()))
        if after_step is not None:
            after_step(step + 1, losses)
    return losses


def train_steps(model, next_batch: Callable[[], tuple[mg.Tensor, mg.Tensor]], *, steps: int, lr: float,
                weight_decay: float = 0.0, warmup_fraction: float = 0.1, curve_points: int = 20,
                curve_every: int | None = None, evaluate: Callable[[object], float] | None = None) -> dict:
    """AdamW on ``model(x, y) -> (logits, loss)`` for exactly ``steps`` steps of
    ``run_steps``, warming up over the first ``warmup_fraction`` of them.

    Returns ``final_loss`` (the mean training loss over the last tenth of the
    steps) and ``curve``: at ``curve_points`` evenly spaced steps, the mean
    training loss since the previous point and, if given, ``evaluate(model)``
    (``curve_every``: a point after every that many steps and after the last instead)."""
    if steps < 1:
        raise ValueError(f"train_steps: steps must be >= 1, got {steps}")
    if curve_every:
        marks = sorted(set(range(curve_every, steps + 1, curve_every)) | {steps})
    else:
        marks = sorted({max(1, round(steps * (i + 1) / curve_points)) for i in range(curve_points)})
    curve: list[dict] = []

    def after_step(done: int, losses: list[float]) -> None:
        if done in marks:
            start = marks[marks.index(done) - 1] if marks.index(done) else 0
            point = dict(step=done, train_loss=float(sum(losses[start:]) / (done - start)))
            if evaluate is not None:
                point["eval_loss"] = float(evaluate(model))
                model.train()
            curve.append(point)

    def loss_of_step(step: int):
        return model(*next_batch())[1]

    opt = optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = run_steps(model, opt, steps=steps, warmup=max(1, round(warmup_fraction * steps)),
                       loss_of_step=loss_of_step, after_step=after_step)
    tail = losses[-max(1, steps // 10):]
    return dict(final_loss=float(sum(tail) / len(tail)), curve=curve)
