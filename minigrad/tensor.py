"""``Tensor``: one backend array, plus what autograd needs to know about it.

This file imports only the backend (and the error classes). What needs more is
bound onto ``Tensor`` by the modules that define it, so the imports form no
circle: the operator methods (``+``, ``@``, ``.sum()``, ``.reshape()``,
``.to()``, ...) by the op families (each file's ``METHODS``, gathered in
``minigrad/ops/__init__.py``), and ``.backward()`` by ``minigrad/autograd.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import backend
from .backend import Device
from .errors import GraphError

__all__ = ["Tensor", "tensor", "float32", "float64", "float16", "int32", "int64", "bool_",
           "get_default_dtype", "set_default_dtype"]

float16 = np.dtype("float16")
float32 = np.dtype("float32")
float64 = np.dtype("float64")
int32 = np.dtype("int32")
int64 = np.dtype("int64")
bool_ = np.dtype("bool")

_default_float = [float32]


def get_default_dtype() -> np.dtype:
    return _default_float[0]


def set_default_dtype(dtype) -> None:
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise TypeError(f"set_default_dtype: only floating dtypes, got {dt}")
    _default_float[0] = dt


def _check_dtype(dtype, where: str) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{where}: {dtype!r} is not a dtype; use e.g. minigrad.float32") from None
    if dt.kind not in "fiub":
        raise TypeError(f"{where}: unsupported dtype {dt}; valid: floating, integer or bool")
    return dt


class Tensor:
    """An n-dimensional array that can record the ops applied to it.

    ``data`` is the backend array (``numpy.ndarray`` on cpu, ``cupy.ndarray``
    on cuda). ``requires_grad`` marks tensors whose gradient ``backward()``
    should compute; ``grad`` holds it afterwards (for leaves). A tensor made by
    an op remembers that op in ``_ctx`` (None for leaves).
    """

    __slots__ = ("_data", "_version_cell", "_requires_grad", "grad", "_ctx", "_hooks",
                 "_post_hooks", "_retains_grad", "_device", "__weakref__")
    __array_priority__ = 1000  # so ndarray <op> Tensor defers to Tensor's reflected operators

    def __init__(self, data: Any, dtype=None, device=None, requires_grad: bool = False):
        t = tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)
        self._data, self._device, self._version_cell = t._data, t._device, [0]
        self._requires_grad, self.grad, self._ctx = requires_grad, None, None
        self._hooks, self._post_hooks, self._retains_grad = [], None, False

    @classmethod
    def _make(cls, data, dev: Device, requires_grad: bool = False) -> Tensor:
        """Wrap a backend array without copying or checking (internal fast path)."""
        t = object.__new__(cls)
        if isinstance(data, np.generic):   # NumPy gives 0-d results as scalars; hold an array
            data = np.asarray(data)
        t._data, t._device, t._version_cell = data, dev, [0]
        t._requires_grad, t.grad, t._ctx = requires_grad, None, None
        t._hooks, t._post_hooks, t._retains_grad = [], None, False
        return t

    # ----------------------------------------------------------------- data and its version
    @property
    def data(self):
        """The backend array. Assigning to ``.data`` (``t.data = a``, ``t.data -= a``)
        counts as an in-place change (it bumps ``_version``); writing *into* the array
        (``t.data[0] = 1``, NumPy ufuncs with ``out=``) is invisible to autograd, as
        PyTorch's ``.data`` is: use ``t[0] = 1`` or the in-place methods instead."""
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data = value
        self._version_cell[0] += 1

    @property
    def _version(self) -> int:
        """How many in-place changes this tensor's memory has seen (PyTorch's
        ``_version``). Views (``detach()``, basic slices, reshapes, transposes) share
        the counter of the tensor they view. An op that saves a tensor for its backward
        records the version, and backward refuses to run if it changed since."""
        return self._version_cell[0]

    def _bump_version(self) -> None:
        self._version_cell[0] += 1

    # ----------------------------------------------------------------- attributes
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def device(self) -> Device:
        return self._device

    @property
    def xp(self):
        """The array module of this tensor's backend (numpy, cupy, or the fake one)."""
        return backend.xp_for(self._device)

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self):
        return self._ctx

    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if value and self.data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require grad; this one is "
                            f"{self.dtype} (cast with .astype(minigrad.float32) first)")
        if not value and self._ctx is not None:
            raise GraphError("requires_grad can only be turned off on leaf tensors; use .detach()")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    # ----------------------------------------------------------------- autograd
    # backward(gradient=None, retain_graph=None, create_graph=False): minigrad/autograd.py

    def register_hook(self, hook: Callable[[Tensor], Tensor | None]) -> Callable[[], None]:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned
        Tensor replaces the gradient. Returns a function that removes the hook."""
        if not self.requires_grad:
            raise GraphError("register_hook: this tensor does not require grad")
        self._hooks.append(hook)
        return lambda: self._hooks.remove(hook) if hook in self._hooks else None

    def register_post_accumulate_grad_hook(self, hook: Callable[[Tensor], None]) -> Callable[[], None]:
        """Call ``hook(self)`` each time a backward pass has added this leaf's gradient
        into ``.grad`` (PyTorch's name): its gradient for that pass is final then, which
        is when data-parallel training can send it. Returns a function that removes it."""
        if not self.requires_grad or self._ctx is not None:
            raise GraphError("register_post_accumulate_grad_hook: only a leaf tensor that "
                             "requires grad has .grad accumulated")
        if self._post_hooks is None:
            self._post_hooks = []
        self._post_hooks.append(hook)
        return lambda: self._post_hooks.remove(hook) if hook in self._post_hooks else None

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor too."""
        if not self.requires_grad:
            raise GraphError("retain_grad: this tensor does not require grad")
        self._retains_grad = True

    def detach(self) -> Tensor:
        """The same data, cut from the graph (no copy; it shares the version counter,
        so an in-place change through it is still caught by a graph that saved ``self``)."""
        t = Tensor._make(self._data, self._device)
        t._version_cell = self._version_cell
        return t

    def zero_grad(self) -> None:
        self.grad = None

    # ----------------------------------------------------------------- conversion
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (a copy from the device; shared memory on cpu)."""
        return backend.to_host(self.data)

    def item(self) -> float | int | bool:
        if self.size != 1:
            raise ValueError(f"item: only one-element tensors can be converted to Python "
                             f"scalars; this one has shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.numpy().tolist()

    # to(device=None, dtype=None), cpu(), cuda(): minigrad/ops/shape.py

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError(f"the truth value of a tensor with shape {self.shape} is ambiguous; "
                             "use .any() or .all()")
        return bool(self.item())

    def __array__(self, dtype=None, copy=None):
        if self._device.type != "cpu":
            raise TypeError(f"cannot convert a {self._device} tensor to a NumPy array implicitly; "
                            "use .numpy() (copies to host) or .cpu()")
        return self.data if dtype is None else self.data.astype(dtype)

    __hash__ = object.__hash__  # __eq__ is elementwise, tensors stay usable as dict keys

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", precision=4, threshold=20,
                               edgeitems=3, prefix="tensor(")
        extra = []
        if self._device.type != "cpu":
            extra.append(f"device='{self._device}'")
        if self.dtype not in (get_default_dtype(), int64, bool_):
            extra.append(f"dtype={self.dtype}")
        if self._ctx is not None:
            extra.append(f"grad_fn=<{self._ctx.name()}>")
        elif self.requires_grad:
            extra.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extra) + ")"


def _infer_dtype(data: Any) -> np.dtype | None:
    """Python data: floats -> default float dtype, ints -> int64, bools -> bool."""
    probe = np.asarray(data)
    if probe.dtype.kind == "f" and not isinstance(data, (np.ndarray, np.generic)):
        return get_default_dtype()
    if probe.dtype.kind == "O":
        raise TypeError("tensor: data must be numbers, nested lists of numbers, or an array; "
                        f"got {type(data).__name__} with ragged or non-numeric items")
    return None


def tensor(data: Any, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Make a leaf tensor from a number, a (nested) list, or an array (copied).

    Python floats become the default float dtype (float32); NumPy arrays keep
    their dtype unless ``dtype`` is given."""
    dev = backend.device(device)
    if isinstance(data, Tensor):
        data = data.data
    dt = _check_dtype(dtype, "tensor") if dtype is not None else None
    if backend.is_array(data):
        arr = data.astype(dt) if dt is not None else data.copy()
    else:
        try:
            arr = np.array(data, dtype=dt if dt is not None else _infer_dtype(data))
        except ValueError:   # NumPy 2 refuses ragged lists and non-numeric strings outright
            raise TypeError("tensor: data must be numbers, nested lists of numbers, or an array; "
                            f"got {type(data).__name__} with ragged or non-numeric items") from None
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"tensor: unsupported data of dtype {arr.dtype}")
    arr = backend.to_device(arr, dev)
    t = Tensor._make(arr, dev)
    if requires_grad:
        t.requires_grad = True
    return t
