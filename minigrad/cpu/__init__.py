"""``minigrad.cpu``: the CPU fast path for the fused ops, beside ``minigrad.cuda``.

On a GPU a fused op is one CUDA kernel (``minigrad/cuda/kernels.py``). On the
CPU its NumPy fallback is a chain of whole-array passes (GELU's backward is
about ten), each reading and writing the whole array and most allocating a
temporary: for arrays larger than the caches each pass costs a trip to main
memory. ``minigrad/cpu/kernels.py`` writes the same bodies as loops compiled
by numba: one pass per element (or per row, for the softmax and LayerNorm),
nothing allocated but the result, SIMD-vectorised by LLVM.

It is optional: ``pip install -e ".[fast]"`` brings numba. Without it, or
with ``MINIGRAD_CPU_KERNELS=0`` in the environment, or inside
``with minigrad.cpu.use_cpu_kernels(False):``, the NumPy code runs, and
everything computes the same values to rounding (the tests compare each
compiled loop with its NumPy code on generated inputs).

    import minigrad.cpu
    minigrad.cpu.is_available()         # numba importable, and the switch on
    minigrad.cpu.set_num_threads(2)     # the compiled loops on 2 threads (default 1)

What an op asks here: ``kernel(name, *arrays)`` gives the compiled function
when the fast path takes these arrays (NumPy arrays, all float32 or all
float64) and None otherwise; the op then runs its NumPy code. A compiled
function may itself decline a layout it was not written for by returning
``NotImplemented``. Compiling takes about a second per kernel and dtype the
first time; numba caches the machine code on disk (``cache=True``), so later
processes load it in milliseconds.

Threads: one by default, like BLAS (``lmroad/threads.py`` says why: beside
another busy process a multi-threaded loop waits for its descheduled thread).
``set_num_threads(n)`` with n > 1 switches to parallel builds of the same
loops (numba's ``prange`` over rows), compiled on first use.
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from .. import backend

__all__ = ["is_available", "unavailable_reason", "use_cpu_kernels", "cpu_kernels_enabled", "kernel",
           "set_num_threads", "get_num_threads", "max_num_threads"]

_enabled = [os.environ.get("MINIGRAD_CPU_KERNELS", "1") not in ("0", "false", "no")]
_threads = [1]
_module = []           # the imported minigrad.cpu.kernels, once asked for (numba costs ~0.5 s to import)
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class use_cpu_kernels(backend.Switch):
    """Turn the compiled CPU loops on (default, when numba is installed) or off; off,
    NumPy arrays take the ops' NumPy code. A context manager, or call once to set the
    mode (``restore()`` undoes). For benchmarking one against the other, and as an
    escape hatch."""

    _state = _enabled


def cpu_kernels_enabled() -> bool:
    return _enabled[0]


_installed: list[bool] = []


def _numba_installed() -> bool:
    if not _installed:                   # asked once: every fused op asks on every call
        _installed.append(importlib.util.find_spec("numba") is not None)
    return _installed[0]


def is_available() -> bool:
    """Will the fused ops run compiled loops on NumPy arrays? (numba installed, switch on)"""
    return _enabled[0] and _numba_installed()


def unavailable_reason() -> str:
    if not _numba_installed():
        return 'numba is not installed (pip install -e ".[fast]")'
    if not _enabled[0]:
        return "turned off (MINIGRAD_CPU_KERNELS=0 or use_cpu_kernels(False))"
    return "available"


def _kernels():
    if not _module:
        from . import kernels
        _module.append(kernels)
        _numba_threads()
    return _module[0]


def _numba_threads() -> None:
    """Size numba's pool for the parallel builds (the serial ones, n = 1, need none)."""
    if _module and _threads[0] > 1:
        import numba
        numba.set_num_threads(_threads[0])


def kernel(name: str, *arrays):
    """The compiled function ``name`` of ``minigrad.cpu.kernels`` if the fast path takes
    ``arrays``: every array among them a NumPy array, the float ones all of one dtype,
    float32 or float64, and at least one float array (None, Python and NumPy numbers
    are passed over; int and bool arrays, such as targets and masks, are fine). Else None."""
    if not _enabled[0]:
        return None
    dtype = None
    for a in arrays:
        if a is None or isinstance(a, (int, float, np.generic)):
            continue
        if type(a) is not np.ndarray:
            return None                      # CuPy, the fake device, a list: not this path
        if a.dtype.kind == "f":
            if a.dtype not in _FLOATS or (dtype is not None and a.dtype != dtype):
                return None
            dtype = a.dtype
    if dtype is None or not _numba_installed():
        return None
    loop = getattr(_kernels(), name, None)
    if loop is None or name.startswith("_"):
        raise ValueError(f"minigrad.cpu.kernel: no CPU loop named {name!r} in minigrad/cpu/kernels.py")
    return loop


def set_num_threads(n: int) -> int:
    """Run the compiled loops on ``n`` threads (1, the default: serial builds; more:
    parallel builds, compiled on first use). Returns ``n``. lmroad's ``--threads N``
    sets this together with the BLAS thread count."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer (1, 2, ...), got {n!r}")
    if n > max_num_threads():
        raise ValueError(f"set_num_threads: {n} threads asked, at most {max_num_threads()} here "
                         "(numba's pool: the cores, or NUMBA_NUM_THREADS)")
    _threads[0] = n          # the kernels module reads this list at each call
    _numba_threads()
    return n


def get_num_threads() -> int:
    return _threads[0]


def max_num_threads() -> int:
    """The most threads ``set_num_threads`` accepts: numba's pool size (the cores, or
    ``NUMBA_NUM_THREADS``); without numba, the cores."""
    if _numba_installed():
        import numba
        return int(numba.config.NUMBA_NUM_THREADS)
    return os.cpu_count() or 1
