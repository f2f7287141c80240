"""``minigrad.testing``: what minigrad's own tests use, for testing your ops and layers.

    minigrad.testing.strategies       hypothesis strategies (shapes, arrays, ...) and
                                      dtype tolerances; its names are also importable
                                      from here: ``from minigrad.testing import shapes``
    minigrad.testing.layer_kit        ``check_layer``: one call checks everything a layer
                                      owes its users (old path: ``minigrad.nn.testing``)
    minigrad.testing.kernel_emulator  a custom kernel's CUDA C body compiled for the CPU,
                                      to test it without a GPU (old path:
                                      ``minigrad.kernel_emulator``)

The strategies need ``hypothesis`` (a dev dependency); the layer kit and the
emulator do not. So this package imports nothing itself: a strategy's name
asked of it (``minigrad.testing.shapes``) imports ``strategies`` then, and
``import minigrad.testing.layer_kit`` works where hypothesis is not installed.
"""

from __future__ import annotations

import importlib

__all__ = ["MAX_SIZE", "shapes", "broadcastable_shapes", "axes", "arrays", "distinct_arrays",
           "lattice_arrays", "strided_tensor", "tolerance", "gradcheck_tolerance"]


def __getattr__(name: str):
    """The strategies' names, imported on first use (Python calls this for a missing name)."""
    if name in __all__:
        return getattr(importlib.import_module(".strategies", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
