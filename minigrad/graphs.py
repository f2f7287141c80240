"""Old path of ``minigrad.cuda.graphs``: CUDA graph capture moved into the
``minigrad.cuda`` package (the old name suggested autodiff's graph, which
lives in ``minigrad.autograd``). ``from minigrad.graphs import graphed_step``
keeps working.

An alias, not a copy, made as ``minigrad/kernels.py`` makes its own (see
there): ``minigrad.graphs is minigrad.cuda.graphs``.
"""

import sys

from .cuda import graphs as _new

sys.modules[__name__] = _new
