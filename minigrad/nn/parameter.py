"""``Parameter``: a tensor a Module trains."""

from __future__ import annotations

from ..tensor import Tensor, tensor


class Parameter(Tensor):
    """A leaf tensor that requires grad and that a ``Module`` registers when
    it is assigned as an attribute. ``Parameter(t)`` shares ``t``'s data."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        t = data if isinstance(data, Tensor) else tensor(data)
        self._data, self._device, self._version_cell = t._data, t._device, t._version_cell
        self._requires_grad, self.grad, self._ctx = False, None, None
        self._hooks, self._post_hooks, self._retains_grad = [], None, False
        self.requires_grad = requires_grad

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
