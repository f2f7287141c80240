"""Run a custom CUDA kernel's body on the CPU, to check it without a GPU.

The body of an ``Elementwise`` or ``Reduction`` kernel (``minigrad.cuda.kernels``)
is C++ with CUDA's math functions, which the host C++ compiler also has. This
module wraps the body in a plain loop over the elements (one iteration per
GPU thread, with the same names: ``i``, the parameters, ``T``), compiles it
with ``c++`` into a shared library, and calls it on NumPy arrays. A wrong
formula, index or gate order in a kernel then fails a test on any machine,
against the kernel's own ``xp`` fallback.

What this does not check: CuPy's launch (grid, broadcasting of strided
inputs, type resolution) and GPU-only arithmetic (fused multiply-add,
``__expf``). The cuda-marked tests cover those on a GPU; ``cuda_source``
gives the same body as a ``__global__`` function for ``nvcc`` to compile.

    outputs = run(kernel, *arrays)      # same arguments as calling the kernel
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..cuda.kernels import Elementwise, Param, Reduction

__all__ = ["run", "compiler", "cuda_source", "c_source"]

_CTYPES = {"float32": "float", "float64": "double", "int32": "int", "int64": "long long",
           "bool": "bool"}
_DTYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32, "int64": np.int64,
           "bool": np.bool_}

_PRELUDE = """\
#include <cmath>
#include <cstddef>
#include <algorithm>
using namespace std;
#define __device__
#define __host__
#define __forceinline__ inline
"""


def compiler() -> str | None:
    """The host C++ compiler, or None."""
    return shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")


def _ctype(p: Param) -> str:
    return "T" if p.type == "T" else _CTYPES[p.type]


def _scalar_declarations(params: tuple[Param, ...], scalars: list[Param]) -> list[str]:
    """Scalars are the kernel function's own parameters in CuPy's code: visible
    everywhere in the body (in a reduction's post_map_expr too)."""
    return [f"const {_ctype(p)} {p.name} = ({_ctype(p)})_scalars[{scalars.index(p)}];"
            for p in params if p in scalars]


def _array_declarations(params: tuple[Param, ...], is_input: bool, index: str, first_slot: int,
                        scalars: list[Param]) -> list[str]:
    """C++ lines binding each array parameter's name, as CuPy's generated code does:
    a raw parameter is the whole array, any other the element at ``index``."""
    lines, slot = [], first_slot
    for p in params:
        if p in scalars:
            continue
        ct = _ctype(p)
        if p.raw:
            const = "const " if is_input else ""
            lines.append(f"{const}{ct}* {p.name} = ({const}{ct}*)_ptrs[{slot}];")
        elif is_input:
            lines.append(f"const {ct} {p.name} = (({ct}*)_ptrs[{slot}])[{index}];")
        else:
            lines.append(f"{ct} &{p.name} = (({ct}*)_ptrs[{slot}])[{index}];")
        slot += 1
    return lines


def c_source(kernel, t_ctype: str, scalars: list[Param]) -> str:
    """The kernel as a C function ``run(n, cols, ptrs, scalars)`` for the host compiler.

    Array parameters come in ``_ptrs`` in parameter order (scalars skipped);
    scalars come as doubles in ``_scalars``. Names are visible where CuPy's
    generated code makes them visible: scalars everywhere; an elementwise
    kernel's arrays in the loop body; a reduction's inputs in ``map_expr``
    only and its outputs in ``post_map_expr`` only."""
    n_arrays_in = sum(1 for p in kernel.in_params if p not in scalars)
    body = [_PRELUDE, f"typedef {t_ctype} T;", kernel.preamble,
            'extern "C" void run(ptrdiff_t _n, ptrdiff_t _cols, void** _ptrs, const double* _scalars) {',
            "  (void)_cols; (void)_scalars;"]
    body += ["  " + s for s in _scalar_declarations(kernel.in_params, scalars)]
    if isinstance(kernel, Elementwise):
        body.append("  for (ptrdiff_t i = 0; i < _n; ++i) {")
        body += ["    " + s for s in _array_declarations(kernel.in_params, True, "i", 0, scalars)]
        body += ["    " + s for s in _array_declarations(kernel.out_params, False, "i", n_arrays_in,
                                                          scalars)]
        body += ["    " + line.strip() for line in kernel.operation.strip().splitlines()]
        body.append("  }\n}")
    else:
        out_type = _ctype(kernel.out_params[0])
        body.append(f"  typedef {out_type} _type_reduce;")
        body.append("  for (ptrdiff_t _r = 0; _r < _n; ++_r) {")
        body.append(f"    _type_reduce a = _type_reduce({kernel.identity});")
        body.append("    for (ptrdiff_t _j = 0; _j < _cols; ++_j) {")
        body.append("      const ptrdiff_t _k = _r * _cols + _j;")
        body += ["      " + s for s in _array_declarations(kernel.in_params, True, "_k", 0, scalars)]
        body.append(f"      const _type_reduce b = _type_reduce({kernel.map_expr});")
        body.append(f"      a = ({kernel.reduce_expr});")
        body.append("    }")
        body += ["    " + s for s in _array_declarations(kernel.out_params, False, "_r", n_arrays_in,
                                                          scalars)]
        body.append(f"    {kernel.post_map_expr};")
        body.append("  }\n}")
    return "\n".join(body) + "\n"


_libs: dict[str, ctypes.CDLL] = {}


def _library(source: str) -> ctypes.CDLL:
    key = hashlib.sha256(source.encode()).hexdigest()[:20]
    if key in _libs:
        return _libs[key]
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("kernel_emulator: no C++ compiler found (set CXX, or install g++)")
    folder = os.path.join(tempfile.gettempdir(), f"minigrad-kernels-{os.getuid()}")
    os.makedirs(folder, exist_ok=True)
    lib = os.path.join(folder, f"{key}.so")
    if not os.path.exists(lib):
        src = os.path.join(folder, f"{key}.cpp")
        with open(src, "w") as f:
            f.write(source)
        tmp = f"{lib}.{os.getpid()}.tmp"
        done = subprocess.run([cxx, "-O1", "-shared", "-fPIC", "-o", tmp, src],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"kernel_emulator: the kernel body does not compile:\n{done.stderr}")
        os.replace(tmp, lib)
    _libs[key] = ctypes.CDLL(lib)
    return _libs[key]


def _float_type(kernel, args) -> np.dtype:
    for p, a in zip(kernel.in_params + kernel.out_params, args):
        if p.type == "T" and isinstance(a, np.ndarray):
            if a.dtype not in (np.float32, np.float64):
                raise TypeError(f"kernel_emulator: kernel {kernel.name} got T = {a.dtype}; the "
                                "emulator runs float32 and float64 only")
            return a.dtype
    raise TypeError(f"kernel {kernel.name}: no array argument fixes the type T")


def run(kernel, *args):
    """Call ``kernel`` on NumPy arrays through its compiled body; returns what
    calling the kernel returns (the output, or a tuple of outputs)."""
    kernel._check_arity(args)
    t = _float_type(kernel, args)
    params = kernel.in_params + kernel.out_params
    scalars = [p for p, a in zip(params, args) if not isinstance(a, np.ndarray)]
    dtype_of = {p.name: (t if p.type == "T" else np.dtype(_DTYPES[p.type])) for p in params}
    arrays = [(p, a) for p, a in zip(params, args) if isinstance(a, np.ndarray)]
    elementwise = [a for p, a in arrays if not p.raw]
    shape = np.broadcast_shapes(*(a.shape for a in elementwise)) if elementwise else ()
    ptrs, keep, outputs = [], [], []
    n_in = len(kernel.in_params)
    for k, p in enumerate(params):
        if k < len(args) and not isinstance(args[k], np.ndarray):
            continue                                   # a scalar
        if k < len(args):
            a = args[k]
            if a.dtype != dtype_of[p.name]:
                raise TypeError(f"kernel {kernel.name}: {p.name} is {a.dtype}, expected {dtype_of[p.name]}")
            if k >= n_in:                              # a given output: written in place
                if not (a.flags.c_contiguous and (p.raw or a.shape == shape
                                                  or isinstance(kernel, Reduction))):
                    raise ValueError(f"kernel {kernel.name}: output {p.name} must be C-contiguous "
                                     f"with shape {shape}")
                buf = a
                outputs.append(a)
            elif p.raw:
                buf = np.ascontiguousarray(a)
            else:
                buf = np.ascontiguousarray(np.broadcast_to(a, shape))
        else:                                          # an output to allocate
            if p.raw:
                raise TypeError(f"kernel {kernel.name}: raw output {p.name} must be given")
            out_shape = shape[:-1] + (1,) if isinstance(kernel, Reduction) else shape
            buf = np.empty(out_shape, dtype=dtype_of[p.name])
            outputs.append(buf)
        keep.append(buf)
        ptrs.append(buf.ctypes.data)
    if isinstance(kernel, Reduction):
        cols = shape[-1] if shape else 1
        n = int(np.prod(shape[:-1])) if shape else 1
    else:
        n, cols = int(np.prod(shape)), 0
    lib = _library(c_source(kernel, "float" if t == np.float32 else "double", scalars))
    c_ptrs = (ctypes.c_void_p * max(len(ptrs), 1))(*ptrs)
    values = [float(a) for a in args if not isinstance(a, np.ndarray)]
    c_scalars = (ctypes.c_double * max(len(values), 1))(*values)
    lib.run(ctypes.c_ssize_t(n), ctypes.c_ssize_t(cols), c_ptrs, c_scalars)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


def cuda_source(kernels, t_ctype: str, scalars: dict[str, list[Param]] | None = None) -> str:
    """Every kernel's body as a ``__global__`` function (one thread per element or
    row), for ``nvcc`` to compile: a check that the bodies are valid CUDA C.
    ``scalars`` names each kernel's scalar parameters (default: none)."""
    parts = ["#include <cstddef>", f"typedef {t_ctype} T;"]
    seen = set()
    for k in kernels:
        if k.preamble and k.preamble not in seen:
            seen.add(k.preamble)
            parts.append(k.preamble)
    for k in kernels:
        src = c_source(k, t_ctype, (scalars or {}).get(k.name, []))
        body = src.split('extern "C" void run', 1)[1]
        body = body.replace("for (ptrdiff_t i = 0; i < _n; ++i) {",
                            "for (ptrdiff_t i = blockIdx.x * (ptrdiff_t)blockDim.x + threadIdx.x; "
                            "i < _n; i += (ptrdiff_t)blockDim.x * gridDim.x) {")
        body = body.replace("for (ptrdiff_t _r = 0; _r < _n; ++_r) {",
                            "for (ptrdiff_t _r = blockIdx.x * (ptrdiff_t)blockDim.x + threadIdx.x; "
                            "_r < _n; _r += (ptrdiff_t)blockDim.x * gridDim.x) {")
        parts.append(f'extern "C" __global__ void minigrad_{k.name}{body}')
    return "\n".join(parts) + "\n"
