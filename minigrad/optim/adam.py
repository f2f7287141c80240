"""Adam (Kingma & Ba 2015), with L2 weight decay added to the gradient, as
PyTorch's ``torch.optim.Adam``. ``AdamW`` (adamw.py) decouples the decay."""

from __future__ import annotations

import math
from typing import Any

from .. import backend
from ..cuda.kernels import Elementwise
from ..tensor import Tensor
from .optimizer import Optimizer, ParamsT

__all__ = ["Adam"]


class Adam(Optimizer):
    r"""One step t = 1, 2, ... with gradient g of parameter p:

        g ← g + weight_decay · p               (L2; AdamW instead: p ← p − lr·wd·p)
        m ← β₁ m + (1 − β₁) g                  (first moment,  ``exp_avg``)
        v ← β₂ v + (1 − β₂) g²                 (second moment, ``exp_avg_sq``)
        p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)

    The bias corrections 1 − βᵗ undo the zero initialisation of m and v.
    The step count t is a host integer, so no device value is ever read.

    ``capturable=True`` (as PyTorch's): t and the learning rate live on the
    device instead (a 0-d array per parameter, one per group), so that a step
    captured in a CUDA graph (``minigrad.cuda.graphs``) advances the bias correction
    and follows a learning-rate schedule when replayed. Each ``step()`` copies
    the groups' ``lr`` to the device first, except while being captured (a
    graphed step does it before each replay).

    A non-finite gradient is not checked for (that would read a device
    value on the host every step) and goes into the weights: an entry whose
    gradient is NaN, +inf or −inf becomes NaN (m and v take the NaN or the
    infinity, and m / √v is then NaN or ∞/∞), and the other entries update as
    usual; on the GPU too (the fused kernel computes the same expression).
    The damage stays: m and v keep the NaN or inf, so that entry is NaN
    after every later step. To keep NaN out of the weights, check the total
    norm ``clip_grad_norm_`` returns and skip ``step()`` when it is not
    finite, as a mixed-precision gradient scaler does (lmroad's trainer does
    this; a skipped step leaves t, m and v as they were).
    """

    state_keys = ("exp_avg", "exp_avg_sq")
    decoupled_weight_decay = False

    def __init__(self, params: ParamsT, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, capturable: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))
        self.capturable = bool(capturable)
        self._lr_device: dict[tuple, Any] = {}     # (group index, device, dtype) -> 0-d array

    def write_lr_to_device(self) -> None:
        """Copy each group's ``lr`` into its device array (capturable mode)."""
        for (gi, _, _), arr in self._lr_device.items():
            arr.fill(float(self.param_groups[gi]["lr"]))

    def step(self, closure=None):
        if self.capturable and not backend.is_capturing():
            self.write_lr_to_device()
        return super().step(closure)

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()
        for entry in sd["state"].values():   # a device step count is saved as the integer it holds
            entry["step"] = int(round(float(backend.to_host(entry["step"])))) \
                if backend.is_array(entry["step"]) else entry["step"]
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if self.capturable:
            for p, entry in self.state.items():
                entry["step"] = p.xp.full((), entry["step"], dtype=p.dtype)

    def _check_hyperparameters(self, group: dict[str, Any]) -> None:
        super()._check_hyperparameters(group)
        betas = group["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{self._name()}: betas must be two numbers in [0, 1), got {betas!r}")
        if group["eps"] < 0:
            raise ValueError(f"{self._name()}: eps must be >= 0, got {group['eps']}")

    def _update(self, p: Tensor, g, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = p.xp
        lr, eps, wd = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(b) for b in group["betas"])
        if not state:
            state["step"] = xp.zeros((), dtype=p.dtype) if self.capturable else 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1                        # capturable: in place on the device
        # capturable: lr and t are 0-d device arrays; otherwise the Python numbers themselves
        lr_arg = self._lr_array(group, p) if self.capturable else lr
        decoupled = self.decoupled_weight_decay
        _ADAM_STEP(g, lr_arg, state["step"], wd if decoupled else 0.0, 0.0 if decoupled else wd,
                   beta1, beta2, eps, p.data, state["exp_avg"], state["exp_avg_sq"])

    def _lr_array(self, group: dict[str, Any], p: Tensor):
        key = (group["_index"], str(p.device), p.dtype.str)
        arr = self._lr_device.get(key)
        if arr is None:
            arr = self._lr_device[key] = p.xp.full((), float(group["lr"]), dtype=p.dtype)
        return arr


def _sqrt(x):
    """√x of a Python number (staying a Python float: no float64 array scalar) or an array."""
    return math.sqrt(x) if isinstance(x, float) else backend.xp_of(x).sqrt(x)


def _adam_step_raw(g, lr, t, decoupled_wd, l2, beta1, beta2, eps, p, m, v):
    """One Adam step in place on p, m, v (g is never modified). ``lr`` and ``t`` are
    Python numbers, or 0-d device arrays for a capturable optimizer."""
    if l2 != 0.0:
        g = g + l2 * p                            # Adam's L2: a new array
    if decoupled_wd != 0.0:
        p *= 1 - lr * decoupled_wd                # AdamW: p ← p − lr·wd·p, before the Adam step
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * (g * g)
    denom = backend.xp_of(v).sqrt(v) / _sqrt(1 - beta2 ** t) + eps
    p -= lr / (1 - beta1 ** t) * (m / denom)      # Python floats: the dtype stays p's
    return p, m, v


# The whole update of one parameter as one CUDA kernel (the fallback is ~10 launches); the
# bias corrections are computed per element from t, which costs nothing there and lets t
# and lr be device arrays (capturable) as well as numbers
_ADAM_STEP = Elementwise(
    "adam_step", "T g, T lr, T t, T decoupled_wd, T l2, T beta1, T beta2, T eps",
    "T p, T m, T v",
    """const T gg = g + l2 * p;
    p = p * (T(1) - lr * decoupled_wd);
    m = beta1 * m + (T(1) - beta1) * gg;
    v = beta2 * v + (T(1) - beta2) * gg * gg;
    const T step_size = lr / (T(1) - pow(beta1, t));
    p = p - step_size * (m / (sqrt(v) / sqrt(T(1) - pow(beta2, t)) + eps));""",
    fallback=_adam_step_raw, cpu_kernel="adam_step")
