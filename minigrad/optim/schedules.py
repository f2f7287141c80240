"""Learning-rate schedules.

A scheduler sets ``group["lr"]`` of every parameter group of an optimizer
from a closed formula of the step number, ``lr_at(step, base_lr)``. Call
``scheduler.step()`` after ``optimizer.step()``; during training step i
(counting from 0) the learning rate is ``lr_at(i, base_lr)``:

    sched = CosineWithWarmup(opt, warmup_steps=100, total_steps=5000, min_lr=3e-5)
    for it in range(5000):
        ...; opt.step(); sched.step()

The base learning rate of a group is its ``lr`` when the first scheduler
is attached (remembered as ``group["initial_lr"]``, as PyTorch does).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .optimizer import Optimizer

__all__ = ["LRScheduler", "ConstantLR", "StepLR", "CosineWithWarmup", "cosine_with_warmup"]


def cosine_with_warmup(step: int, base_lr: float, warmup: int, total: int,
                       min_lr: float = 0.0) -> float:
    r"""nanoGPT's ``get_lr``: a linear warmup, then a half cosine down to ``min_lr``.

        step < warmup:           base_lr · (step + 1) / (warmup + 1)       (from ~0 up)
        warmup <= step < total:  min_lr + ½ (1 + cos(π r)) (base_lr − min_lr),
                                 r = (step − warmup) / (total − warmup)
        step >= total:           min_lr
    """
    if step < warmup:
        return base_lr * (step + 1) / (warmup + 1)
    if step >= total:
        return min_lr
    ratio = (step - warmup) / (total - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (base_lr - min_lr)


class LRScheduler:
    """Base class: subclasses define ``lr_at(step, base_lr) -> float`` (or,
    when groups need more than their base lr, ``lrs_at(step) -> list``)."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base_lrs = [float(g["initial_lr"]) for g in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def lr_at(self, step: int, base_lr: float) -> float:
        raise NotImplementedError

    def lrs_at(self, step: int) -> list[float]:
        """The learning rate of every group at ``step``."""
        return [self.lr_at(step, base) for base in self.base_lrs]

    def _apply(self) -> None:
        for g, lr in zip(self.optimizer.param_groups, self.lrs_at(self.last_step)):
            g["lr"] = lr

    def step(self) -> None:
        """Advance one step and set each group's learning rate."""
        self.last_step += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        """The learning rates the schedule set last, one per group."""
        return self.lrs_at(self.last_step)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able: the step, the base learning rates and the schedule's settings."""
        return {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in self.__dict__.items()
                if k != "optimizer"}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the step and settings, and set the optimizer's learning rates to match."""
        where = f"{type(self).__name__}.load_state_dict"
        unknown = set(state_dict) - set(self.__dict__)
        if unknown or "last_step" not in state_dict:
            raise ValueError(f"{where}: unexpected keys {sorted(unknown)} (a state dict of another "
                             "schedule?); nothing was loaded")
        if len(state_dict.get("base_lrs", self.base_lrs)) != len(self.optimizer.param_groups):
            raise ValueError(f"{where}: {len(state_dict['base_lrs'])} base learning rates for "
                             f"{len(self.optimizer.param_groups)} parameter groups; nothing was loaded")
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "optimizer"})
        self.last_step = int(self.last_step)
        self._apply()


class ConstantLR(LRScheduler):
    """``base_lr · factor`` for the first ``total_iters`` steps, ``base_lr`` after.

    The defaults (factor=1, total_iters=0) keep the learning rate constant;
    PyTorch's ConstantLR has the same formula but defaults factor=1/3, total_iters=5.
    """

    def __init__(self, optimizer: Optimizer, factor: float = 1.0, total_iters: int = 0):
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"ConstantLR: factor must be in (0, 1], got {factor}")
        self.factor, self.total_iters = float(factor), int(total_iters)
        super().__init__(optimizer)

    def lr_at(self, step: int, base_lr: float) -> float:
        return base_lr * self.factor if step < self.total_iters else base_lr


class StepLR(LRScheduler):
    """``base_lr · gamma^(step // step_size)``: decay by ``gamma`` every ``step_size`` steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        if int(step_size) < 1:
            raise ValueError(f"StepLR: step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer)

    def lr_at(self, step: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (step // self.step_size)


class CosineWithWarmup(LRScheduler):
    """Linear warmup over ``warmup_steps``, cosine decay to ``min_lr`` at
    ``total_steps``, then ``min_lr`` (see ``cosine_with_warmup``). ``min_lr``
    is one number for every group, or one per group."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int,
                 min_lr: float | Sequence[float] = 0.0):
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"CosineWithWarmup: need 0 <= warmup_steps <= total_steps, got "
                             f"{warmup_steps} and {total_steps}")
        n = len(optimizer.param_groups)
        mins = [float(m) for m in min_lr] if isinstance(min_lr, (list, tuple)) else [float(min_lr)] * n
        if len(mins) != n:
            raise ValueError(f"CosineWithWarmup: {len(mins)} min_lr values for {n} parameter groups")
        self.warmup_steps, self.total_steps, self.min_lrs = int(warmup_steps), int(total_steps), mins
        super().__init__(optimizer)

    def lrs_at(self, step: int) -> list[float]:
        return [cosine_with_warmup(step, base, self.warmup_steps, self.total_steps, low)
                for base, low in zip(self.base_lrs, self.min_lrs)]
