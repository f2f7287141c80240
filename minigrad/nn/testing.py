"""Old path of ``minigrad.testing.layer_kit`` (the layer test kit, ``check_layer``,
moved beside minigrad's other testing tools). An alias, not a copy, made as
``minigrad/kernels.py`` makes its own (see there):
``minigrad.nn.testing is minigrad.testing.layer_kit``.
"""

import sys

from ..testing import layer_kit as _new

sys.modules[__name__] = _new
