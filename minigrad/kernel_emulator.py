"""Old path of ``minigrad.testing.kernel_emulator`` (a kernel's CUDA C body run on
the CPU moved beside minigrad's other testing tools). An alias, not a copy, made
as ``minigrad/kernels.py`` makes its own (see there):
``minigrad.kernel_emulator is minigrad.testing.kernel_emulator``.
"""

import sys

from .testing import kernel_emulator as _new

sys.modules[__name__] = _new
