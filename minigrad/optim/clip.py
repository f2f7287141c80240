"""Gradient clipping: by the total norm of all gradients, or elementwise by value.

Both replace each ``p.grad``'s array with a new one rather than writing into
it: the engine lets one gradient array be shared by several parameters (both
inputs of an ``add`` get the same array), and scaling it in place once per
parameter would scale it twice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

from .. import backend
from ..tensor import Tensor, tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters: Tensor | Iterable[Tensor]) -> list[Tensor]:
    """The distinct gradient tensors of ``parameters`` (each counted once)."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    out, seen = [], set()
    for p in params:
        if p.grad is not None and id(p) not in seen and id(p.grad) not in seen:
            seen.update((id(p), id(p.grad)))
            out.append(p.grad)
    return out


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    r"""Scale all gradients together so that their total norm is at most ``max_norm``:

        total = ‖(‖g₁‖ₚ, ‖g₂‖ₚ, ...)‖ₚ      (the p-norm of all gradients as one vector)
        g ← g · max_norm / (total + 1e-6)   if total > max_norm

    Returns ``total`` (before clipping) as a 0-d tensor. ``norm_type`` may be
    ``float("inf")`` (largest absolute entry). The total is NaN or infinite
    when some gradient entry is, or when the entries are so large that their
    sum of powers overflows the dtype; then nothing is scaled (the gradients
    are left exactly as they were) and it is reported: with
    ``error_if_nonfinite=True`` a RuntimeError, otherwise a ``RuntimeWarning``.
    An optimizer step with a NaN or infinite gradient writes it into the
    weights (see ``SGD``, ``Adam``): skip the step when the returned total is
    not finite.

    Deciding whether to clip reads the total on the host: one synchronisation.
    Except on a device other than the CPU (a GPU, the fake device) while device
    checks are off (``minigrad.device_checks(False)``): then the decision is made
    on the device, with no synchronisation, and a non-finite total is not
    reported (no error, no warning, whatever ``error_if_nonfinite`` says): the
    returned total is the caller's to check.
    """
    max_norm, norm_type = float(max_norm), float(norm_type)
    if max_norm < 0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    if norm_type <= 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be > 0 or inf, got {norm_type}")
    grads = _grads(parameters)
    if not grads:
        return tensor(0.0)
    xp, dev = grads[0].xp, grads[0].device
    if math.isinf(norm_type):
        total = xp.max(xp.stack([xp.max(xp.abs(g.data)) if g.size else xp.zeros((), g.dtype)
                                 for g in grads]))
    else:
        sums = xp.stack([xp.sum(xp.abs(g.data) ** norm_type) for g in grads])
        total = xp.sum(sums) ** (1.0 / norm_type)
    if dev.type != "cpu" and not backend.device_checks_enabled():
        # no host synchronisation: decide on the device; a non-finite total leaves the
        # gradients unchanged and is the caller's to report (the returned norm)
        finite = xp.isfinite(total)
        scale = xp.where(finite & (total > max_norm), max_norm / (total + 1e-6), 1.0)
        for g in grads:
            g.data = g.data * scale.astype(g.dtype)
        return Tensor._make(total, dev)
    value = float(total)                              # the one host synchronisation
    if not math.isfinite(value):
        msg = (f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is {value}; "
               "the gradients were left unchanged")
        if error_if_nonfinite:
            raise RuntimeError(msg)
        warnings.warn(msg + " (skip this optimizer step, or lower the learning rate)",
                      RuntimeWarning, stacklevel=2)
    elif value > max_norm:
        scale = max_norm / (value + 1e-6)             # a Python float: the dtype stays the grads'
        for g in grads:
            g.data = g.data * scale
    return Tensor._make(total, dev)


def clip_grad_value_(parameters: Tensor | Iterable[Tensor], clip_value: float) -> None:
    """Clip every gradient entry to [-clip_value, clip_value]. An infinity becomes ±clip_value;
    a NaN stays NaN (nothing is reported)."""
    c = float(clip_value)
    if c < 0:
        raise ValueError(f"clip_grad_value_: clip_value must be >= 0, got {clip_value}")
    for g in _grads(parameters):
        g.data = g.xp.clip(g.data, -c, c)
