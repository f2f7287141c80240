"""Initialisers (``minigrad.nn.init``), in place, as PyTorch's ``torch.nn.init``.

Random draws come from the host generator that ``minigrad.manual_seed`` seeds,
then go to the tensor's device and dtype, so a seed gives the same weights on
every device.

``skip_init()`` turns every initialiser off while a model whose weights are
about to be loaded is built: no random draws (for GPT-2, 124M of them), the
tensors stay as allocated (zeros).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["skip_init", "calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_"]


_skipping = False


@contextlib.contextmanager
def skip_init():
    """Within this block the initialisers leave tensors as they are and draw nothing from
    the generator (for ``load_state_dict`` right after, as PyTorch's ``skip_init``)."""
    global _skipping
    before, _skipping = _skipping, True
    try:
        yield
    finally:
        _skipping = before


def _fill(t: Tensor, host: np.ndarray) -> Tensor:
    if t.dtype.kind != "f":
        raise TypeError(f"init: only floating tensors can be initialised, got {t.dtype}")
    t.data = backend.to_device(host.astype(t.dtype), t.device)
    return t


def _fans(t: Tensor) -> tuple[int, int]:
    if t.ndim < 2:
        raise ValueError(f"init: fan in/out need a tensor with at least 2 dims, got shape {t.shape}")
    receptive = math.prod(t.shape[2:])
    return t.shape[1] * receptive, t.shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    return _gain(nonlinearity, param, "calculate_gain")


def _gain(nonlinearity: str, param: float | None, op: str) -> float:
    gains = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0),
             "gelu": math.sqrt(2.0)}
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity not in gains:
        raise ValueError(f"{op}: unknown nonlinearity {nonlinearity!r}; valid: "
                         f"{sorted(gains) + ['leaky_relu']}")
    return gains[nonlinearity]


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    if _skipping:
        return t
    return _fill(t, backend.host_rng().uniform(a, b, t.shape))


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    if _skipping:
        return t
    return _fill(t, backend.host_rng().normal(mean, std, t.shape))


def constant_(t: Tensor, value: float) -> Tensor:
    if _skipping:
        return t
    return _fill(t, np.full(t.shape, value))


def zeros_(t: Tensor) -> Tensor:
    return constant_(t, 0.0)


def ones_(t: Tensor) -> Tensor:
    return constant_(t, 1.0)


def xavier_uniform_(t: Tensor, gain: float = 1.0) -> Tensor:
    """U(-a, a), a = gain √(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fi, fo = _fans(t)
    a = gain * math.sqrt(6.0 / (fi + fo))
    return uniform_(t, -a, a)


def xavier_normal_(t: Tensor, gain: float = 1.0) -> Tensor:
    fi, fo = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fi + fo)))


def _kaiming_std(t: Tensor, a: float, mode: str, nonlinearity: str, op: str) -> float:
    fi, fo = _fans(t)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"{op}: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fi if mode == "fan_in" else fo
    return _gain(nonlinearity, a, op) / math.sqrt(fan)


def kaiming_uniform_(t: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Tensor:
    """U(-b, b), b = gain √(3 / fan) (He et al. 2015)."""
    bound = math.sqrt(3.0) * _kaiming_std(t, a, mode, nonlinearity, "kaiming_uniform_")
    return uniform_(t, -bound, bound)


def kaiming_normal_(t: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Tensor:
    return normal_(t, 0.0, _kaiming_std(t, a, mode, nonlinearity, "kaiming_normal_"))


def orthogonal_(t: Tensor, gain: float = 1.0) -> Tensor:
    """A (semi-)orthogonal matrix from the QR decomposition of a Gaussian one
    (Saxe et al. 2013); dims after the first are flattened."""
    if t.ndim < 2:
        raise ValueError(f"orthogonal_: needs at least 2 dims, got shape {t.shape}")
    if _skipping:
        return t
    rows, cols = t.shape[0], math.prod(t.shape[1:])
    flat = backend.host_rng().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))  # make the decomposition unique (uniform over orthogonal matrices)
    if rows < cols:
        q = q.T
    return _fill(t, gain * q.reshape(t.shape))
