"""AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay."""

from __future__ import annotations

from .adam import Adam
from .optimizer import ParamsT

__all__ = ["AdamW"]


class AdamW(Adam):
    r"""Adam whose weight decay shrinks the parameter directly,

        p ← p − lr · weight_decay · p,   then the Adam step on the raw gradient,

    instead of adding weight_decay · p to the gradient, where Adam's
    per-coordinate scaling would weaken it for coordinates with large
    gradients. Exclude biases and norm weights from the decay with
    ``param_groups_for_weight_decay``.

    A non-finite gradient entry makes its weight NaN, now and after every
    later step, as in ``Adam`` (the decay does not change that); nothing is
    checked, so skip ``step()`` when ``clip_grad_norm_``'s total is not finite.
    """

    decoupled_weight_decay = True

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, capturable: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         capturable=capturable)
