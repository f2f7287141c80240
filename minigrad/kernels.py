"""Old path of ``minigrad.cuda.kernels``: the custom CUDA kernels moved into the
``minigrad.cuda`` package. ``import minigrad.kernels`` and ``from
minigrad.kernels import Elementwise`` keep working.

An alias, not a copy: the last line puts the new module into ``sys.modules``
under this old name, and Python's import returns whatever ``sys.modules``
holds once a module has run. So ``minigrad.kernels is minigrad.cuda.kernels``:
the registry of kernels and the on/off switch exist once, and patching a
name on one patches it on the other. (A module of re-exported names would give
the names, but a second namespace that patches and ``global``s would miss.)
"""

import sys

from .cuda import kernels as _new

sys.modules[__name__] = _new
