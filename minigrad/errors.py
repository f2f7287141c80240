"""The exceptions minigrad raises for mistakes a user can make.

Besides Python's own (ValueError for shapes and values, TypeError for dtypes
and argument types, IndexError for indices), two project errors:
"""

__all__ = ["DeviceError", "GraphError", "AnomalyError"]


class DeviceError(RuntimeError):
    """Tensors on different devices met in one op, or a device is unavailable."""


class GraphError(RuntimeError):
    """Misuse of the autograd graph: backward twice, non-scalar backward, ..."""


class AnomalyError(RuntimeError):
    """``detect_anomaly()`` found a NaN or inf in a forward output or a gradient."""
