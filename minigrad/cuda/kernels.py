"""Custom CUDA kernels for the fused ops, each beside its portable fallback.

On a GPU every ``xp`` call is one kernel launch and, usually, one temporary
array: GELU's backward written with ``xp`` is a dozen launches, the same math
as one CUDA C loop body is one. A kernel here is that body, written for
CuPy's ``ElementwiseKernel`` (one output element per thread) or
``ReductionKernel`` (map, then reduce over the last axis), together with a
``fallback``: ``xp`` code computing the same thing, and optionally
``cpu_kernel``: the name of the same body as a compiled CPU loop in
``minigrad/cpu/kernels.py`` (numba; see ``minigrad.cpu``). The kernel runs on
CuPy arrays; the CPU loop on NumPy arrays when numba is installed; the
fallback runs everywhere else (the fake device, NumPy without numba) and on
CuPy too when kernels are turned off (``use_kernels(False)`` or the
environment variable ``MINIGRAD_KERNELS=0``) or a kernel fails to compile
(a warning names it, once).

    GELU_TANH = Elementwise(
        "gelu_tanh", "T x", "T y",
        "y = T(0.5) * x * (T(1) + tanh(T(0.7978845608028654) * (x + T(0.044715) * x * x * x)))",
        fallback=lambda x: ...)      # the same formula with xp calls
    y = GELU_TANH(x)                 # one launch on CuPy, the fallback elsewhere

In a body: ``T`` is the floating type of the arrays; a non-raw parameter is
one element (broadcast like a ufunc's operands); a ``raw`` parameter is the
whole C-contiguous array, indexed by a flat index; ``i`` is the index of the
element being computed. Scalars are declared with a type (``T lr``,
``int32 H``).

Checked without a GPU: ``minigrad.testing.kernel_emulator`` compiles the same body
for the CPU with the host C++ compiler and runs it on NumPy arrays; the tests
compare it with the fallback on generated inputs, and compile every body
with ``nvcc`` when that is installed. On a GPU the cuda-marked tests compare
the launched kernel with the fallback.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import backend, cpu

__all__ = ["Elementwise", "Reduction", "use_kernels", "kernels_enabled", "will_launch", "REGISTRY",
           "Param", "parse_params"]

#: every kernel defined, by name (the tests run each one through the emulator)
REGISTRY: dict[str, Elementwise | Reduction] = {}

_enabled = [os.environ.get("MINIGRAD_KERNELS", "1") not in ("0", "false", "no")]


class use_kernels(backend.Switch):
    """Turn the custom CUDA kernels on (default) or off; off, CuPy arrays take
    the ``xp`` fallbacks. A context manager, or call once to set the mode
    (``restore()`` undoes). For benchmarking one against the other, and as an
    escape hatch should a kernel misbehave on some GPU."""

    _state = _enabled


def kernels_enabled() -> bool:
    return _enabled[0]


def will_launch(array) -> bool:
    """Would a kernel given ``array`` launch on the GPU (rather than run its fallback)?
    For op code that strings kernels together where one pass of ``xp`` code does the
    same job elsewhere (the softmax: three kernels on a GPU, one exp on the CPU)."""
    return _enabled[0] and _is_cupy((array,))


@dataclass(frozen=True)
class Param:
    """One kernel parameter: ``raw T a`` -> Param("a", "T", raw=True)."""
    name: str
    type: str          # "T", "float32", "float64", "int32", "int64" or "bool"
    raw: bool


_TYPES = ("T", "float32", "float64", "int32", "int64", "bool")


def parse_params(spec: str) -> tuple[Param, ...]:
    """Parse CuPy's parameter syntax, ``"raw T a, T c, int32 H"``."""
    params = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        words = part.split()
        raw = words[0] == "raw"
        words = words[1:] if raw else words
        if len(words) != 2 or words[0] not in _TYPES or not re.fullmatch(r"[A-Za-z_]\w*", words[1]):
            raise ValueError(f"kernel parameter {part!r}: expected '[raw] TYPE name' "
                             f"with TYPE one of {', '.join(_TYPES)}")
        if words[1] in ("n", "i") or words[1].startswith("_"):
            raise ValueError(f"kernel parameter {part!r}: 'n', 'i' and names starting with '_' "
                             "are reserved by CuPy")
        params.append(Param(words[1], words[0], raw))
    return tuple(params)


def _is_cupy(args) -> bool:
    """Are the kernel's arrays CuPy arrays? (An op never mixes devices: the first array decides.)"""
    for a in args:
        if backend.is_array(a):
            return backend.device_of(a).type == "cuda"
    return False


class _Kernel:
    """What both kinds share: parameters, the fallback, registration and the
    choice between the CuPy kernel and the fallback."""

    def __init__(self, name: str, in_params: str, out_params: str, fallback: Callable,
                 preamble: str, cpu_kernel: str | None):
        self.name = name
        self.cpu_kernel = cpu_kernel
        self.in_params, self.out_params = parse_params(in_params), parse_params(out_params)
        self.fallback = fallback
        self.preamble = preamble
        self._spec = (in_params, out_params)
        self._compiled = None
        self._broken = False

    def _register(self) -> None:
        old = REGISTRY.get(self.name)
        if old is not None and old._source() != self._source():   # the same again is fine (a REPL)
            raise ValueError(f"kernel {self.name!r} is defined twice, with different bodies")
        REGISTRY[self.name] = self

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self._spec[0]!r} -> {self._spec[1]!r})"

    def _check_arity(self, args) -> None:
        n_in, n_all = len(self.in_params), len(self.in_params) + len(self.out_params)
        if len(args) not in (n_in, n_all):
            raise TypeError(f"kernel {self.name}: takes {n_in} inputs (then, optionally, "
                            f"{n_all - n_in} outputs), got {len(args)} arguments")

    def _launch(self, args, **kwargs):
        """Run the CuPy kernel, or None if it failed to compile (warned once)."""
        if self._compiled is None:
            self._compiled = self._build(backend._cupy())
        try:
            return self._compiled(*args, **kwargs)
        except Exception as e:  # CuPy reports a bad body as CompileException at first launch
            if type(e).__name__ != "CompileException":
                raise
            warnings.warn(f"minigrad kernel {self.name} failed to compile; using its xp fallback "
                          f"from now on ({e})", RuntimeWarning, stacklevel=3)
            self._broken = True
            return None

    def __call__(self, *args: Any):
        self._check_arity(args)
        if _enabled[0] and not self._broken and _is_cupy(args):
            out = self._launch(args, **self._launch_kwargs())
            if out is not None:
                return out
        if self.cpu_kernel is not None:           # NumPy arrays: the compiled loop, if numba is here
            loop = cpu.kernel(self.cpu_kernel, *args)
            if loop is not None:
                out = loop(*args)
                if out is not NotImplemented:
                    return out
        return self.fallback(*args)

    def _launch_kwargs(self) -> dict:
        return {}


class Elementwise(_Kernel):
    """An elementwise CUDA kernel (``cupy.ElementwiseKernel``) with its fallback.

    Call it with the inputs, then optionally the outputs (raw outputs must be
    given; non-raw ones are allocated when left out). ``fallback`` takes the
    same arguments and returns the same arrays (writing into given outputs)."""

    def __init__(self, name: str, in_params: str, out_params: str, operation: str, *,
                 fallback: Callable, preamble: str = "", cpu_kernel: str | None = None):
        super().__init__(name, in_params, out_params, fallback, preamble, cpu_kernel)
        self.operation = operation
        self._register()

    def _source(self) -> tuple:
        return (self._spec, self.operation, self.preamble)

    def _build(self, cp):
        return cp.ElementwiseKernel(self._spec[0], self._spec[1], self.operation,
                                    f"minigrad_{self.name}", preamble=self.preamble)


class Reduction(_Kernel):
    """A reduction over the last axis (``cupy.ReductionKernel``, keepdims) with its
    fallback: ``map_expr`` of each element's inputs (broadcast together) is
    folded with ``reduce_expr`` (of ``a`` and ``b``) from ``identity``, and
    ``post_map_expr`` writes the outputs from the result ``a``."""

    def __init__(self, name: str, in_params: str, out_params: str, map_expr: str,
                 reduce_expr: str, post_map_expr: str, identity: str, *, fallback: Callable,
                 preamble: str = "", cpu_kernel: str | None = None):
        super().__init__(name, in_params, out_params, fallback, preamble, cpu_kernel)
        if any(p.raw for p in self.in_params + self.out_params):
            raise ValueError(f"reduction kernel {name}: raw parameters are not supported")
        self.map_expr, self.reduce_expr = map_expr, reduce_expr
        self.post_map_expr, self.identity = post_map_expr, identity
        self._register()

    def _source(self) -> tuple:
        return (self._spec, self.map_expr, self.reduce_expr, self.post_map_expr, self.identity,
                self.preamble)

    def _build(self, cp):
        return cp.ReductionKernel(self._spec[0], self._spec[1], self.map_expr, self.reduce_expr,
                                  self.post_map_expr, self.identity, f"minigrad_{self.name}",
                                  preamble=self.preamble)

    def _launch_kwargs(self) -> dict:
        return {"axis": -1, "keepdims": True}
