"""Backends: which array library holds a tensor's data, and the few things
that differ between them.

    cpu   -> NumPy
    cuda  -> CuPy (imported lazily, by ``_cupy()`` here: the only place that
             imports it; ``minigrad.cuda`` asks this module for it too)
    fake  -> NumPy behind a strict wrapper that behaves like CuPy: it refuses
             implicit conversion to host arrays and mixing with them, and it
             counts explicit host synchronisations. Tests run the whole op
             suite on it, so a stray ``np.`` in op code fails without a GPU.
             It is a test double and lives apart, in ``minigrad.backend.fake``.

Op code never imports numpy or cupy for array work: it asks ``xp_of(array)``
(or ``tensor.xp``) for the array module and calls through it. Scatter-add,
host transfer and random numbers go through the helpers here.

This module, in order: devices; the array module of a device or an array;
transfers; scatter-add; the ``Switch`` settings and the device-side checks
they turn off; erf; random numbers.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np

from ..errors import DeviceError
from .fake import FakeArray, _count_sync, _unwrap, fake_xp, reset_sync_count, sync_count

__all__ = ["Device", "device", "xp_of", "xp_for", "to_device", "to_host", "index_add",
           "device_checks", "device_checks_enabled", "first_out_of_range",
           "manual_seed", "host_rng", "erf", "sync_count", "reset_sync_count", "FakeArray"]


# --------------------------------------------------------------------------- devices

class Device:
    """A place where arrays live: ``Device("cpu")``, ``Device("cuda:0")``, ``Device("fake")``."""

    __slots__ = ("type", "index")

    def __init__(self, spec: str | Device = "cpu"):
        if isinstance(spec, Device):
            self.type, self.index = spec.type, spec.index
            return
        if not isinstance(spec, str):
            raise TypeError(f"device: expected a string ('cpu', 'cuda', 'cuda:N' or 'fake') or a "
                            f"Device, got {type(spec).__name__}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda", "fake"):
            raise ValueError(f"device: unknown device {spec!r}; valid: 'cpu', 'cuda', 'cuda:N', 'fake'")
        if idx and (kind != "cuda" or not idx.isdigit()):
            raise ValueError(f"device: bad device index in {spec!r}; only 'cuda:N' takes an index")
        self.type = kind
        self.index = (int(idx) if idx else 0) if kind == "cuda" else None

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.type == "cuda" else self.type

    def __repr__(self) -> str:
        return f"device('{self}')"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            other = Device(other)
        return isinstance(other, Device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = Device("cpu")
FAKE = Device("fake")


@functools.cache
def device(spec: str | Device | None) -> Device:
    """Parse and validate a device spec; ``cuda`` without a usable GPU is a clear error."""
    if spec is None:
        return CPU
    d = Device(spec)
    if d.type == "cuda":
        ok, why, _ = cuda_probe()
        if not ok:
            raise DeviceError(f"device {str(d)!r} requested but CUDA is not available "
                              f"({why}); use 'cpu', or, on a machine with an "
                              "NVIDIA GPU, install CuPy: pip install -e \".[cuda]\" in a checkout of "
                              "minigrad-lmroad (CUDA 13), or pip install cupy-cuda12x (CUDA 12)")
    return d


@functools.lru_cache(maxsize=1)
def cuda_probe() -> tuple[bool, str, int]:
    """(available, why not, device count), once per process: CuPy imports, sees a
    device, and a tiny kernel gives the right answer (CuPy can import with a driver
    that cannot run kernels). Never raises. ``minigrad.cuda.is_available`` reads it."""
    try:
        cupy = _cupy()
    except Exception as e:  # ImportError, or a broken CUDA install
        return False, f"CuPy is not importable: {type(e).__name__}: {e}", 0
    try:
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            return False, "no CUDA device found", 0
        x = cupy.arange(4, dtype=cupy.float32)
        if float((x * 2).sum()) != 12.0:
            return False, "a test kernel returned a wrong result", 0
        return True, "", n
    except Exception as e:
        return False, f"{type(e).__name__}: {e}", 0


def _cupy():
    """CuPy, imported on first use. The one import of CuPy in minigrad: whatever
    needs it (``minigrad.cuda``, the kernels, CUDA graphs) calls this."""
    import cupy  # noqa: PLC0415  (lazy: only this module imports CuPy)
    return cupy


def _nccl():
    """CuPy's NCCL bindings (``cupy.cuda.nccl``), for ``minigrad.distributed`` on GPUs."""
    from cupy.cuda import nccl  # noqa: PLC0415
    return nccl


def xp_for(dev: Device):
    """The array module for a device."""
    if dev.type == "cpu":
        return np
    if dev.type == "fake":
        return fake_xp
    return _cupy()


def device_of(a: Any) -> Device:
    """The device an array lives on."""
    if isinstance(a, np.ndarray) or isinstance(a, np.generic):
        return CPU
    if isinstance(a, FakeArray):
        return FAKE
    return Device(f"cuda:{a.device.id}")


def is_array(a: Any) -> bool:
    """Is ``a`` an array of some backend (not a Python number or list)?"""
    return isinstance(a, (np.ndarray, FakeArray)) or type(a).__module__.startswith("cupy")


def xp_of(a: Any):
    """The array module of an array (NumPy, CuPy or the fake module)."""
    if isinstance(a, FakeArray):
        return fake_xp
    if isinstance(a, (np.ndarray, np.generic)):
        return np
    return _cupy().get_array_module(a)


def to_host(a: Any) -> np.ndarray:
    """Explicit copy to a NumPy array (a host synchronisation on cuda and fake)."""
    if isinstance(a, np.ndarray):
        return a
    if isinstance(a, FakeArray):
        _count_sync()
        return a._a.copy()
    if isinstance(a, np.generic):
        return np.asarray(a)
    return _cupy().asnumpy(a)


def to_device(a: Any, dev: Device):
    """Move an array to ``dev`` (a no-op when it is already there)."""
    src = device_of(a)
    if src == dev:
        return a
    host = to_host(a)
    if dev.type == "cpu":
        return host
    if dev.type == "fake":
        return FakeArray(np.array(host))
    cp = _cupy()
    with cp.cuda.Device(dev.index):
        return cp.asarray(host)


def index_add(target, index, values) -> None:
    """``target[index] += values`` with repeated indices accumulating (in place).

    NumPy's ``a[idx] += v`` would keep only one of the repeated updates; this
    is the scatter-add that gathers' gradients need. NumPy: ``np.add.at``;
    CuPy: ``cupyx.scatter_add``.
    """
    if values.size == 0:   # nothing to add (and np.add.at cannot reshape some empty updates)
        return
    if isinstance(target, FakeArray):
        index_add(target._a, _unwrap(index), _unwrap(values))
    elif isinstance(target, np.ndarray):
        if _is_row_scatter(target, index, values):
            _row_scatter_add(target, index[0], values)
        else:
            np.add.at(target, index, values)
    else:
        import cupyx  # noqa: PLC0415
        cupyx.scatter_add(target, index, values)


def _is_row_scatter(target, index, values) -> bool:
    """``target[idx] += values`` with one integer array picking whole rows (the
    embedding gradient's shape), which has faster NumPy paths than np.add.at."""
    return (isinstance(index, tuple) and len(index) == 1 and isinstance(index[0], np.ndarray)
            and index[0].dtype.kind in "iu" and target.ndim >= 2
            and values.shape == index[0].shape + target.shape[1:])


def _row_scatter_add(target: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    """Row scatter-add on the host. Measured (benchmarks/ops.py, embedding rows):
    np.add.at is 3-6x slower than sorting the indices and summing each run with
    np.add.reduceat; for a small vocabulary a one-hot matrix product is faster still."""
    n_rows = target.shape[0]
    flat = idx.reshape(-1)
    flat = np.where(flat < 0, flat + n_rows, flat)
    vals = values.reshape(flat.size, -1)
    if n_rows <= 256 and flat.size:
        onehot = np.zeros((n_rows, flat.size), dtype=vals.dtype)
        onehot[flat, np.arange(flat.size)] = 1
        # not reported to minigrad.profile: a scatter-add done as a product, not a model's product
        target += (onehot @ vals).reshape(target.shape)
        return
    order = np.argsort(flat, kind="stable")
    rows = flat[order]
    if not rows.size:
        return
    starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    sums = np.add.reduceat(vals[order], starts, axis=0)
    target.reshape(n_rows, -1)[rows[starts]] += sums


# --------------------------------------------------------------------------- validation syncs

class Switch:
    """A global on/off setting: a context manager, or called once to set the mode
    (``restore()`` undoes). A subclass names its one-element list ``_state``."""

    _state: list[bool]

    def __init__(self, enabled: bool):
        self._prev = self._state[0]
        self._state[0] = bool(enabled)

    def restore(self) -> None:
        self._state[0] = self._prev

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.restore()
        return False


_device_checks = [True]


class device_checks(Switch):
    """Turn the validation of index values on device arrays on or off (on by default).

    Checking that indices, targets or token ids are in range is free on the cpu
    but costs a host synchronisation on a GPU (the answer must come back to
    Python). A training loop whose data were validated once can run its steps
    inside ``with minigrad.device_checks(False):`` so that no step waits for the
    GPU; out-of-range values on a device are then not reported (CuPy would wrap
    or read garbage). Checks on cpu arrays always run. Also usable as
    ``device_checks(False)`` called once (it sets the mode; ``restore()`` undoes)."""

    _state = _device_checks


def device_checks_enabled() -> bool:
    return _device_checks[0]


def first_out_of_range(a, low: int, high: int, ignore: int | None = None):
    """The first value of the integer array ``a`` outside [low, high) (values equal
    to ``ignore`` excepted), or None. Skipped (None) for device arrays while
    ``device_checks(False)`` is in force; see there."""
    if not a.size or (not isinstance(a, np.ndarray) and not _device_checks[0]):
        return None
    bad = (a < low) | (a >= high)
    if ignore is not None:
        bad = bad & (a != ignore)
    if bool(bad.any()):
        return int(a[bad][0])
    return None


def erf(x):
    """The error function, elementwise, on any backend (needed by exact GELU)."""
    if isinstance(x, FakeArray):
        return FakeArray(erf(x._a))
    if isinstance(x, (np.ndarray, np.generic)):   # a 0-d NumPy result may be a scalar
        x = np.asarray(x)
        try:
            from scipy.special import erf as _erf  # optional, fast
        except ImportError:  # exact, slower: math.erf per element
            import math
            return np.vectorize(math.erf, otypes=[x.dtype])(x) if x.size else x.copy()
        return _erf(x).astype(x.dtype, copy=False)
    from cupyx.scipy.special import erf as _cerf  # noqa: PLC0415
    return _cerf(x)


# --------------------------------------------------------------------------- random numbers

class _RNGState(threading.local):
    def __init__(self):
        self.seed = None
        self.gen = np.random.default_rng()
        self.cuda_gens: dict[int, Any] = {}


_rng = _RNGState()


def manual_seed(seed: int) -> None:
    """Seed every backend. Random numbers for ``cpu`` and ``fake`` come from one
    host generator and are identical for the same seed; tensors created on
    ``cuda`` (``randn``, initialisers) are drawn on the host too and then
    transferred, so a seed gives the same initial weights on every device.
    Only dropout masks on ``cuda`` are drawn on the GPU, from a CuPy generator
    seeded with the same seed (fast, but different numbers from the CPU's)."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    _rng.seed = int(seed)
    _rng.gen = np.random.default_rng(int(seed))
    _rng.cuda_gens.clear()


def host_rng() -> np.random.Generator:
    """The host generator all cpu/fake randomness comes from."""
    return _rng.gen


def get_rng_state() -> dict:
    """A JSON-able snapshot of the host generator (for checkpoints)."""
    return {"bit_generator": _rng.gen.bit_generator.state}


def set_rng_state(state: dict) -> None:
    gen = np.random.default_rng()
    gen.bit_generator.state = state["bit_generator"]
    _rng.gen = gen


def is_capturing() -> bool:
    """Is the current CUDA stream being captured into a graph (``minigrad.cuda.graphs``)?
    False when CuPy was never imported."""
    import sys
    cp = sys.modules.get("cupy")
    if cp is None:
        return False
    try:
        return bool(cp.cuda.get_current_stream().is_capturing())
    except Exception:  # no GPU, or a query the driver refuses: not capturing
        return False


def random_uniform(shape, dtype, dev: Device):
    """U[0, 1) on ``dev``; on cuda drawn on the GPU (see ``manual_seed``)."""
    if dev.type == "cuda":
        if is_capturing():
            raise RuntimeError(
                "random numbers (dropout, ...) drawn inside a captured CUDA graph would repeat "
                "the same values at every replay (the generator's state is on the host); "
                "capture a step without dropout, or run it eagerly")
        cp = _cupy()
        gen = _rng.cuda_gens.get(dev.index)
        if gen is None:
            gen = _rng.cuda_gens[dev.index] = cp.random.default_rng(_rng.seed)
        with cp.cuda.Device(dev.index):
            return gen.random(shape, dtype=np.float32).astype(dtype, copy=False)
    # drawn as float32 whatever the dtype: no float64 array per mask on the float32 path, and a
    # seed gives the same mask in float32 and float64 (a float64 gradcheck of a float32 model)
    return to_device(_rng.gen.random(shape, dtype=np.float32).astype(dtype, copy=False), dev)
