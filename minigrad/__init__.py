"""minigrad: tensors and reverse-mode automatic differentiation over NumPy
(cpu) and CuPy (cuda), written to be read.

    import minigrad as mg
    x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    x.grad          # tensor([2., 4., 6.])
"""

from . import cuda, functional, nn, ops, optim, profile, viz  # noqa: F401  (ops binds Tensor's operator methods)  # noqa: E402,F401
from .autograd import (
    Function,
    backward,
    detect_anomaly,
    enable_grad,
    grad,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)
from .backend import Device, device_checks, manual_seed
from .creation import (
    arange,
    empty,
    eye,
    full,
    full_like,
    linspace,
    ones,
    ones_like,
    rand,
    randint,
    randn,
    zeros,
    zeros_like,
)
from .cuda.kernels import use_kernels
from .errors import AnomalyError, DeviceError, GraphError
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .ops import *  # noqa: F403  (every family's __all__: add, exp, sum, reshape, ...)
from .tensor import (
    Tensor,
    bool_,
    float16,
    float32,
    float64,
    get_default_dtype,
    int32,
    int64,
    set_default_dtype,
    tensor,
)


def device(spec: str = "cpu") -> Device:
    """A validated device: ``minigrad.device("cuda")`` fails clearly without a GPU."""
    from .backend import device as _device
    return _device(spec)


__version__ = "0.1.0"

__all__ = [
    # tensors
    "Tensor", "tensor", "Device", "device", "float16", "float32", "float64", "int32", "int64",
    "bool_", "get_default_dtype", "set_default_dtype",
    "zeros", "ones", "full", "empty", "arange", "linspace", "eye", "randn", "rand", "randint", "zeros_like",
    "ones_like", "full_like", "manual_seed", "device_checks", "use_kernels",
    # autograd
    "Function", "backward", "grad", "no_grad", "enable_grad", "set_grad_enabled",
    "is_grad_enabled", "detect_anomaly", "gradcheck", "gradgradcheck",
    # errors
    "DeviceError", "GraphError", "AnomalyError", "GradcheckError",
    # ops: gathered from the family files (minigrad/ops/__init__.py)
    *ops.__all__,
    "cuda", "functional", "nn", "optim", "profile", "viz", "__version__",
]
