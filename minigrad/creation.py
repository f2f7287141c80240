"""Making tensors: zeros, ones, full, arange, linspace, eye, random draws, and *_like."""

from __future__ import annotations

import numpy as np

from . import backend
from .tensor import Tensor, _check_dtype, get_default_dtype

__all__ = ["zeros", "ones", "full", "arange", "linspace", "eye", "randn", "rand", "randint",
           "zeros_like", "ones_like", "full_like", "empty"]


def _shape(shape, op: str) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise TypeError(f"{op}: shape must be ints, got {shape!r}") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"{op}: negative dimension in shape {shape}")
    return shape


def _make(arr_fn, shape, dtype, device, requires_grad, op):
    dev = backend.device(device)
    dt = _check_dtype(dtype, op) if dtype is not None else get_default_dtype()
    t = Tensor._make(arr_fn(backend.xp_for(dev), _shape(shape, op), dt), dev)
    if requires_grad:
        t.requires_grad = True
    return t


def zeros(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(lambda xp, s, dt: xp.zeros(s, dtype=dt), shape, dtype, device, requires_grad, "zeros")


def empty(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(lambda xp, s, dt: xp.empty(s, dtype=dt), shape, dtype, device, requires_grad, "empty")


def ones(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(lambda xp, s, dt: xp.ones(s, dtype=dt), shape, dtype, device, requires_grad, "ones")


def full(shape, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    if dtype is None and isinstance(fill_value, bool):
        dtype = "bool"
    elif dtype is None and isinstance(fill_value, int):
        dtype = "int64"
    return _make(lambda xp, s, dt: xp.full(s, fill_value, dtype=dt), (shape,) if isinstance(shape, int)
                 else shape, dtype, device, requires_grad, "full")


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _make(lambda xp, s, dt: xp.eye(s[0], s[1], dtype=dt), (n, n if m is None else m), dtype,
                 device, requires_grad, "eye")


def arange(start, stop=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Like ``numpy.arange``; integer arguments give int64, others the default float."""
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError("arange: step must not be zero")
    if dtype is None:
        ints = all(isinstance(v, (int, np.integer)) for v in (start, stop, step))
        dtype = "int64" if ints else get_default_dtype()
    dev = backend.device(device)
    t = Tensor._make(backend.xp_for(dev).arange(start, stop, step, dtype=_check_dtype(dtype, "arange")), dev)
    if requires_grad:
        t.requires_grad = True
    return t


def linspace(start, stop, num: int = 50, endpoint: bool = True, dtype=None, device=None,
             requires_grad: bool = False) -> Tensor:
    """``num`` evenly spaced numbers from ``start`` to ``stop`` (included unless
    ``endpoint=False``), as ``numpy.linspace`` (PyTorch's ``linspace(start, end, steps)``
    always includes the end); the default float dtype unless ``dtype`` is given."""
    for name, v in (("start", start), ("stop", stop)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"linspace: {name} must be a number, got {v!r}")
        if not np.isfinite(v):
            raise ValueError(f"linspace: {name} must be finite, got {v}")
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)):
        raise TypeError(f"linspace: num must be an int, got {num!r}")
    if num < 0:
        raise ValueError(f"linspace: num must be >= 0, got {num}")
    dev = backend.device(device)
    dt = _check_dtype(dtype, "linspace") if dtype is not None else get_default_dtype()
    arr = backend.xp_for(dev).linspace(start, stop, int(num), endpoint=bool(endpoint), dtype=dt)
    t = Tensor._make(arr, dev)
    if requires_grad:
        t.requires_grad = True
    return t


def _host_draw(draw, shape, dtype, device, requires_grad, op):
    """Random numbers drawn on the host (same seed, same numbers on every device)."""
    dev = backend.device(device)
    dt = _check_dtype(dtype, op) if dtype is not None else get_default_dtype()
    if dt.kind != "f":
        raise TypeError(f"{op}: dtype must be floating, got {dt}")
    arr = draw(backend.host_rng(), _shape(shape, op)).astype(dt)
    t = Tensor._make(backend.to_device(arr, dev), dev)
    if requires_grad:
        t.requires_grad = True
    return t


def randn(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples, from the generator ``minigrad.manual_seed`` seeds."""
    return _host_draw(lambda g, s: g.standard_normal(s), shape, dtype, device, requires_grad, "randn")


def rand(*shape, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1)."""
    return _host_draw(lambda g, s: g.random(s), shape, dtype, device, requires_grad, "rand")


def randint(low: int, high: int, shape, dtype="int64", device=None) -> Tensor:
    """Integers uniform in [low, high)."""
    if high <= low:
        raise ValueError(f"randint: need low < high, got {low} and {high}")
    dev = backend.device(device)
    arr = backend.host_rng().integers(low, high, size=_shape((shape,) if isinstance(shape, int)
                                                             else shape, "randint"))
    return Tensor._make(backend.to_device(arr.astype(dtype), dev), dev)


def zeros_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return zeros(x.shape, dtype=dtype or x.dtype, device=device or x.device, requires_grad=requires_grad)


def ones_like(x: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return ones(x.shape, dtype=dtype or x.dtype, device=device or x.device, requires_grad=requires_grad)


def full_like(x: Tensor, fill_value, dtype=None, device=None) -> Tensor:
    return full(x.shape, fill_value, dtype=dtype or x.dtype, device=device or x.device)
