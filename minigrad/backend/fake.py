"""The strict fake device: NumPy arrays behind a wrapper that behaves like CuPy.

``Device("fake")`` holds its data in ``FakeArray``s. Like CuPy, a FakeArray
refuses implicit conversion to a host array (``np.asarray(x)``), refuses to
be mixed with host ``numpy.ndarray``s, and refuses NumPy functions called on
it (``np.sum(x)``): op code must ask the backend for its ``xp``. Every
explicit host synchronisation (``.get()``, ``.item()``, ``float(x)``, ...)
is counted (``sync_count``), so a test can check that a training step never
waits for the device. The whole op suite runs on it: a stray ``np.`` in op
code fails on any machine, without a GPU.

A test double, kept apart from the real backends in ``minigrad.backend``,
which only asks ``isinstance(a, FakeArray)`` and calls ``fake_xp``. This
module imports NumPy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FakeArray", "fake_xp", "sync_count", "reset_sync_count"]

_sync = [0]


def _count_sync() -> None:
    _sync[0] += 1


def sync_count() -> int:
    """How many explicit host synchronisations the fake device has seen."""
    return _sync[0]


def reset_sync_count() -> None:
    _sync[0] = 0


def _unwrap(x):
    """FakeArray -> ndarray, recursively in lists/tuples; host arrays refused like CuPy."""
    if isinstance(x, FakeArray):
        return x._a
    if isinstance(x, np.ndarray):
        raise TypeError("fake device: a host numpy.ndarray was mixed with device arrays; "
                        "move it with xp.asarray(...) first (CuPy refuses this too)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    return x


def _wrap(x):
    if isinstance(x, np.ndarray):
        return FakeArray(x)
    if isinstance(x, np.generic):  # CuPy returns 0-d device arrays, never host scalars
        return FakeArray(np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _binop(name):
    def op(self, other):
        return _wrap(getattr(self._a, name)(_unwrap(other)))
    op.__name__ = name
    return op


class FakeArray:
    """A NumPy array pretending to live on a GPU (see module docstring)."""

    __slots__ = ("_a",)
    __array_priority__ = 1000

    def __init__(self, a: np.ndarray):
        self._a = a

    # implicit conversion to host is refused, exactly as CuPy does
    def __array__(self, *args, **kwargs):
        raise TypeError("fake device: implicit conversion to a NumPy array is not allowed; "
                        "use backend.to_host() / Tensor.numpy()")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # Like CuPy: a NumPy ufunc on device arrays and scalars runs on the device
        # (this is what ``np.float32(2) * x`` calls); a host ndarray among them is refused.
        args = _unwrap(inputs)
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        return _wrap(getattr(ufunc, method)(*args, **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(f"fake device: numpy.{func.__name__} called on a device array; "
                        "op code must use the backend's xp, not numpy")

    # explicit synchronisations, counted
    def get(self) -> np.ndarray:
        _count_sync()
        return self._a.copy()

    def item(self):
        _count_sync()
        return self._a.item()

    def tolist(self):
        _count_sync()
        return self._a.tolist()

    def __float__(self):
        _count_sync()
        return float(self._a)

    def __int__(self):
        _count_sync()
        return int(self._a)

    def __index__(self):
        _count_sync()
        return self._a.__index__()

    def __bool__(self):
        _count_sync()
        return bool(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        raise TypeError("fake device: iterating a device array syncs per element; index it explicitly")

    def __repr__(self):
        return f"FakeArray({self._a!r})"

    def __getitem__(self, idx):
        return _wrap(self._a[_unwrap(idx)])

    def __setitem__(self, idx, value):
        self._a[_unwrap(idx)] = _unwrap(value)

    def __getattr__(self, name):
        if name.startswith("__"):   # e.g. __array_interface__, which np.asarray would use to copy
            raise AttributeError(name)
        attr = getattr(self._a, name)
        if callable(attr):
            def method(*args, **kwargs):
                return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
            return method
        return _wrap(attr)

    @property
    def T(self):
        return FakeArray(self._a.T)

    def __neg__(self):
        return FakeArray(-self._a)

    def __pos__(self):
        return self

    def __abs__(self):
        return FakeArray(abs(self._a))

    def __invert__(self):
        return FakeArray(~self._a)


for _name in ("add", "radd", "sub", "rsub", "mul", "rmul", "truediv", "rtruediv", "floordiv",
              "rfloordiv", "mod", "rmod", "pow", "rpow", "matmul", "rmatmul", "and", "rand", "or",
              "ror", "xor", "rxor", "eq", "ne", "lt", "le", "gt", "ge", "iadd", "isub", "imul",
              "itruediv"):
    setattr(FakeArray, f"__{_name}__", _binop(f"__{_name}__"))


class _FakeModule:
    """The fake device's ``xp``: numpy's functions on unwrapped arrays, results wrapped."""

    ndarray = FakeArray

    def __getattr__(self, name):
        attr = getattr(np, name)
        if name in ("asarray", "array", "ascontiguousarray"):
            def transfer(obj, *args, **kwargs):  # explicit host -> device is allowed
                inner = obj._a if isinstance(obj, FakeArray) else obj
                return FakeArray(getattr(np, name)(inner, *args, **kwargs))
            return transfer
        if isinstance(attr, np.ufunc):
            return _FakeUfunc(attr)
        if callable(attr) and not isinstance(attr, type):
            def fn(*args, **kwargs):
                return _wrap(attr(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
            fn.__name__ = name
            return fn
        return attr  # dtypes, constants (np.float32, np.inf, ...)


class _FakeUfunc:
    def __init__(self, uf):
        self._uf = uf

    def __call__(self, *args, **kwargs):
        return _wrap(self._uf(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    def __getattr__(self, name):  # .reduce, .accumulate, .at, ...
        meth = getattr(self._uf, name)

        def fn(*args, **kwargs):
            return _wrap(meth(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))
        return fn


fake_xp = _FakeModule()
