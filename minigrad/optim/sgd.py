"""Stochastic gradient descent, with optional momentum (heavy-ball or
Nesterov) and L2 weight decay, as PyTorch's ``torch.optim.SGD``."""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT

__all__ = ["SGD"]


class SGD(Optimizer):
    r"""One step, with gradient g of parameter p:

        g ← g + weight_decay · p                          (L2 penalty ½·wd·|p|²)
        b ← g                        on the first step     (momentum ≠ 0)
        b ← momentum · b + (1 − dampening) · g   later
        g ← g + momentum · b   (nesterov)   or   g ← b
        p ← p − lr · g

    A non-finite gradient is not checked for (that would read a device
    value on the host every step) and goes into the weights: an entry whose
    gradient is NaN becomes NaN, one whose gradient is +inf or −inf becomes
    −inf or +inf, and the other entries update as usual. The damage stays:
    the momentum buffer keeps the NaN or inf, and later steps keep such an
    entry non-finite (an infinity turns into NaN once it meets another, e.g.
    through weight decay). To keep NaN out of the weights, check the total
    norm ``clip_grad_norm_`` returns and skip ``step()`` when it is not
    finite, as a mixed-precision gradient scaler does (lmroad's trainer does
    this).
    """

    state_keys = ("momentum_buffer",)

    def __init__(self, params: ParamsT, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay))

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        super()._check_hyperparameters(group)
        if group["momentum"] < 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _update(self, p: Tensor, g, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, wd = float(group["lr"]), float(group["weight_decay"])
        momentum, dampening = float(group["momentum"]), float(group["dampening"])
        if wd != 0.0:
            g = g + wd * p.data                       # a new array: g itself is never modified
        if momentum != 0.0:
            if "momentum_buffer" not in state:
                state["step"] = 0
                state["momentum_buffer"] = g.copy()
            else:
                buf = state["momentum_buffer"]
                buf *= momentum
                buf += (1.0 - dampening) * g
            buf = state["momentum_buffer"]
            g = g + momentum * buf if group["nesterov"] else buf
            state["step"] += 1
        p.data -= lr * g
