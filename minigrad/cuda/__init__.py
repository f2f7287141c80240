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

from .. import backend

__all__ = ["is_available", "device_count", "unavailable_reason"]


def _probe() -> tuple[bool, str, int]:
    """(available, why not, device count): asked of the backend, where CuPy lives
    (``backend.cuda_probe``), so that the backend never has to import this module."""
    return backend.cuda_probe()


def is_available() -> bool:
    """True when CuPy imports and a tiny kernel runs on a GPU."""
    return _probe()[0]


def device_count() -> int:
    return _probe()[2]


def unavailable_reason() -> str:
    return _probe()[1] or "available"
