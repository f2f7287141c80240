"""``minigrad.cuda``: everything about CUDA in one package.

Here: is a usable CUDA GPU here? (``is_available``, ``device_count``,
``unavailable_reason``: cheap, cached, never raise.) Beside it:

    minigrad.cuda.kernels   custom CUDA kernels (Elementwise, Reduction), each
                            beside its xp fallback; ``use_kernels``
    minigrad.cuda.graphs    CUDA graphs: record a training step once, replay it
                            (the GPU's graph of launches, not autograd's graph)

The submodules are imported on demand (``import minigrad.cuda.graphs``;
minigrad's ops import the kernels), so this package stays cheap to import.
Their old paths ``minigrad.kernels`` and ``minigrad.graphs`` are aliases of
the same module objects. CuPy itself comes from ``minigrad.backend``
(``backend._cupy()``), the one module that imports it."""

from __future__ import annotations

import functools

from .. import backend

__all__ = ["is_available", "device_count", "unavailable_reason"]


@functools.lru_cache(maxsize=1)
def _probe() -> tuple[bool, str, int]:
    try:
        cupy = backend._cupy()
    except Exception as e:  # ImportError, or a broken CUDA install
        return False, f"CuPy is not importable: {type(e).__name__}: {e}", 0
    try:
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            return False, "no CUDA device found", 0
        # CuPy can import with a driver that cannot run kernels: run a tiny one to be sure
        x = cupy.arange(4, dtype=cupy.float32)
        if float((x * 2).sum()) != 12.0:
            return False, "a test kernel returned a wrong result", 0
        return True, "", n
    except Exception as e:
        return False, f"{type(e).__name__}: {e}", 0


def is_available() -> bool:
    """True when CuPy imports and a tiny kernel runs on a GPU."""
    return _probe()[0]


def device_count() -> int:
    return _probe()[2]


def unavailable_reason() -> str:
    return _probe()[1] or "available"
