"""Shared harness for the side-by-side benchmarks.

Each workload script builds the same model in minigrad and (when installed)
PyTorch, with the same dtype (float32) and thread count, then times them in
ONE process, alternating repetitions so both see the same machine noise, and
prints one JSON line per framework plus the ratio minigrad / PyTorch (median
of repeats, with min and max).

Run benchmarks with OpenBLAS's kernel choice left to OpenBLAS: this machine
sets OPENBLAS_CORETYPE (a workaround for old OpenBLAS builds) which slows a
current NumPy, e.g.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/gpt.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from typing import Callable


def set_threads(n: int) -> None:
    """Same thread count for NumPy's BLAS and PyTorch (call before importing numpy)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def torch_or_none(threads: int):
    try:
        import torch
    except ImportError:
        print("# PyTorch is not installed: timing minigrad alone (pip install torch for the comparison)",
              file=sys.stderr)
        return None
    torch.set_num_threads(threads)
    return torch


def alternate(fns: dict[str, Callable[[], None]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` times, interleaved."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            out[k].append(time.perf_counter() - t0)
    return out


def summary(xs: list[float], scale: float = 1e3) -> dict:
    return {"median": statistics.median(xs) * scale, "min": min(xs) * scale, "max": max(xs) * scale}


def matmul_peak_gflops(threads: int, n: int = 1024, repeats: int = 5) -> float:
    """The machine's float32 matrix-product rate through NumPy's BLAS (GFLOP/s)."""
    import numpy as np
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy()
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def report(bench: str, config: dict, times: dict[str, list[float]], extra: dict | None = None) -> dict:
    """Print one JSON line per framework and one with the ratios; return the ratios."""
    extra = extra or {}
    env = {"python": platform.python_version(), "machine": platform.machine(),
           "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}
    for name, xs in times.items():
        line = {"bench": bench, "framework": name, "ms": summary(xs), "config": config, "env": env}
        line.update(extra.get(name, {}))
        print(json.dumps(line))
    ratios = {}
    if "minigrad" in times:
        for name, xs in times.items():
            if name != "minigrad":
                ratios[f"minigrad/{name}"] = statistics.median(times["minigrad"]) / statistics.median(xs)
    print(json.dumps({"bench": bench, "ratio": ratios}))
    return ratios
