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

Threads: ``set_threads(n)`` limits NumPy's BLAS (through threadpoolctl, at
run time, with lmroad's one rule: ``lmroad.threads``) and PyTorch
(``torch.set_num_threads``) to the same count; ``torch_or_none`` keeps the two
in step when PyTorch is imported afterwards. Every script defaults to 1
thread (benchmarks/threads.py measures why).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable


def set_threads(n: int) -> int:
    """The same thread count for NumPy's BLAS (and every BLAS/OpenMP library loaded) and, once
    imported, PyTorch; at any time (``lmroad.threads.set_threads``, through threadpoolctl).
    Returns ``n``; ValueError unless it is a positive integer."""
    from lmroad.threads import set_threads as limit_blas
    limit_blas(n)                     # also minigrad's compiled CPU loops (minigrad.cpu)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


def parse_threads(text: str) -> int:
    """``--threads``'s type: a positive integer (an argparse error otherwise)."""
    from lmroad.threads import parse_threads as parse
    return parse(text)


def add_common_args(parser: argparse.ArgumentParser, repeats: int = 7, warmup: int = 2) -> None:
    """The flags every side-by-side script shares."""
    parser.add_argument("--threads", type=parse_threads, default=1, metavar="N",
                        help="BLAS/OpenMP threads for both frameworks (default 1; see benchmarks/threads.py)")
    parser.add_argument("--repeats", type=int, default=repeats,
                        help=f"timed repetitions per framework, alternating (default {repeats})")
    parser.add_argument("--warmup", type=int, default=warmup,
                        help=f"untimed calls per framework first (default {warmup})")
    parser.add_argument("--no-torch", action="store_true", help="time minigrad alone")
    parser.add_argument("--device", default="cpu",
                        help="cpu or cuda: minigrad on CuPy, PyTorch on CUDA (each timed "
                             "iteration ends by reading the loss, which waits for the GPU)")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny settings, one repeat, minigrad only (for the tests)")
    parser.add_argument("--no-cpu-kernels", action="store_true",
                        help="minigrad without its compiled CPU loops (minigrad.cpu, numba): the "
                             "ops' NumPy code, to measure what the fast extra gives")


def torch_or_none(threads: int):
    try:
        import torch
    except ImportError:
        print("# PyTorch is not installed: timing minigrad alone (pip install torch for the comparison)",
              file=sys.stderr)
        return None
    set_threads(threads)          # torch's threads, and the BLAS/OpenMP libraries it loaded
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


def _product_gflops(product: Callable[[], object], n: int, repeats: int) -> float:
    """The rate of an n×n×n matrix product (one untimed call first; the best of ``repeats``)."""
    product()
    return 2 * n ** 3 / min(_timed(product) for _ in range(repeats)) / 1e9


def matmul_peak_gflops(threads: int, n: int = 1024, repeats: int = 5) -> float:
    """The machine's float32 matrix-product rate through NumPy's BLAS (GFLOP/s)."""
    import numpy as np
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.copy()
    return _product_gflops(lambda: a @ b, n, repeats)


def torch_matmul_peak_gflops(torch, n: int = 1024, repeats: int = 5) -> float:
    """The same measurement through PyTorch's BLAS (GFLOP/s)."""
    a = torch.randn(n, n, generator=torch.Generator().manual_seed(0))
    b = a.clone()
    return _product_gflops(lambda: a @ b, n, repeats)


def gpu_matmul_peak_gflops(torch=None, n: int = 4096, repeats: int = 10) -> dict[str, float]:
    """The GPU's float32 matrix-product rate through CuPy (cuBLAS) and, if given, PyTorch
    CUDA (GFLOP/s), each waiting for the GPU before the clock stops."""
    import cupy as cp
    a = cp.random.default_rng(0).standard_normal((n, n), dtype=cp.float32)
    b = a.copy()

    def cupy_product():
        a @ b
        cp.cuda.get_current_stream().synchronize()
    peak = {"cupy": _product_gflops(cupy_product, n, repeats)}
    if torch is not None:
        ta = torch.randn(n, n, device="cuda")
        tb = ta.clone()

        def torch_product():
            ta @ tb
            torch.cuda.synchronize()
        peak["torch"] = _product_gflops(torch_product, n, repeats)
    return peak


def _proc_status_mb(key: str) -> float | None:
    """A memory figure of this process from /proc/self/status (MiB), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024          # kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (MiB): VmHWM, else ru_maxrss."""
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2 ** 20   # kB on Linux, bytes on macOS


def current_rss_mb() -> float | None:
    """This process's resident memory now (MiB), from /proc (None elsewhere)."""
    return _proc_status_mb("VmRSS")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> list[dict] | None:
    """Which BLAS libraries are loaded, their kernel (OpenBLAS "architecture") and
    thread counts, from threadpoolctl when it is installed (None otherwise)."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads")
    return [{k: d.get(k) for k in keep} for d in threadpoolctl.threadpool_info()]


def environment() -> dict:
    """Machine and versions, for the JSON lines (reads modules already imported)."""
    env = {"python": platform.python_version(), "machine": platform.machine(), "cpu": cpu_model(),
           "cpus": os.cpu_count(), "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
           "threads_env": os.environ.get("OMP_NUM_THREADS")}
    for mod in ("numpy", "torch", "numba"):
        if mod in sys.modules:
            env[mod] = sys.modules[mod].__version__
    if "minigrad.cpu" in sys.modules:
        cpu = sys.modules["minigrad.cpu"]
        env["minigrad_cpu_kernels"] = cpu.unavailable_reason()
        env["minigrad_cpu_threads"] = cpu.get_num_threads()
    blas = blas_info()
    if blas is not None:
        env["blas"] = blas
    return env


def print_summary(title: str, times: dict[str, list[float]],
                  columns: dict[str, dict[str, str]] | None = None) -> None:
    """A table for people on stderr (stdout holds only the JSON lines): ms per call
    (median [min, max]) per framework, extra ``columns[framework][heading]``
    cells, and the ratios minigrad / other."""
    columns = columns or {}
    headings = list(dict.fromkeys(h for cells in columns.values() for h in cells))
    out = [title, f"{'framework':<13} {'ms median [min, max]':<28}" + "".join(f"{h:>14}" for h in headings)]
    for name, xs in times.items():
        s = summary(xs)
        cell = f"{s['median']:.1f} [{s['min']:.1f}, {s['max']:.1f}]"
        out.append(f"{name:<13} {cell:<28}" + "".join(f"{columns.get(name, {}).get(h, ''):>14}"
                                                      for h in headings))
    for name, xs in times.items():
        if name != "minigrad" and "minigrad" in times:
            r = statistics.median(times["minigrad"]) / statistics.median(xs)
            p = summary([m / o for m, o in zip(times["minigrad"], xs)], 1)
            out.append(f"minigrad/{name}: {r:.2f}  (per repetition: median {p['median']:.2f}, "
                       f"min {p['min']:.2f}, max {p['max']:.2f})")
    print("\n".join(out) + "\n", file=sys.stderr, flush=True)


def profile_top(fn: Callable[[], object], calls: int = 3, top: int = 25) -> str:
    """cProfile of ``calls`` calls of ``fn``: the ``top`` entries by own time."""
    import cProfile
    import io
    import pstats
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def profile(bench: str, steps: dict, calls: int = 3) -> None:
    """Where the time goes: forward / backward / update (clip, optimizer step,
    zero_grad) per framework, median of ``calls`` alternating iterations, as a
    JSON line and a table on stderr; then cProfile of minigrad's iteration.
    ``steps`` maps framework names to ``workloads.TrainStep`` objects."""
    steps = {k: s for k, s in steps.items() if hasattr(s, "timed_phases")}   # not the matmul floor
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in steps}
    for _ in range(calls):
        for name, step in steps.items():
            runs[name].append(step.timed_phases())
    phases = {name: {ph: statistics.median(r[ph] for r in rs) * 1e3 for ph in rs[0]}
              for name, rs in runs.items()}
    print(json.dumps({"bench": bench, "phases_ms": phases, "calls": calls}), flush=True)
    lines = [f"{bench}: ms per phase (median of {calls})",
             f"{'framework':<13}{'forward':>10}{'backward':>10}{'update':>10}"]
    for name, ph in phases.items():
        lines.append(f"{name:<13}" + "".join(f"{ph[k]:>10.1f}" for k in ("forward", "backward", "update")))
    print("\n".join(lines) + "\n", file=sys.stderr)
    if "minigrad" in steps:
        print(f"cProfile of {calls} minigrad iterations (cProfile's own overhead inflates small "
              "Python functions):\n" + profile_top(steps["minigrad"], calls), file=sys.stderr, flush=True)


def matmul_floor(step: Callable[[], object], seed: int = 0) -> Callable[[], None]:
    """The matrix-product floor of a minigrad workload: ``step`` run once while
    ``minigrad.profile`` records every product (shapes, memory layouts, dtype, in
    order), then a function that runs those products alone in NumPy, back to back, on
    arrays of the same shapes and layouts made here (a transposed operand stays a
    transposed view; products of the same shapes share their operands, so the floor
    holds one array per distinct operand, not a whole iteration's: if anything, warmer in
    cache than an engine's own arrays). No engine computing the same products through
    NumPy's BLAS can take less time than this; minigrad's time over it is what
    everything else costs."""
    import numpy as np

    import minigrad

    with minigrad.profile.count_flops(record=True) as fc:
        step()
    rng = np.random.default_rng(seed)
    made: dict[tuple, object] = {}     # one operand per (shape, layout, dtype), shared by its products

    def operand(shape, layout, dtype):
        key = (shape, layout, dtype)
        if key not in made:
            made[key] = new_operand(shape, layout, dtype)
        return made[key]

    def new_operand(shape, layout, dtype):
        if layout == "T" and len(shape) >= 2:
            base = rng.standard_normal(shape[:-2] + (shape[-1], shape[-2])).astype(dtype)
            return base.swapaxes(-1, -2)
        if layout == "S":
            return rng.standard_normal(tuple(2 * d for d in shape)).astype(dtype)[
                tuple(slice(None, None, 2) for _ in shape)]
        return rng.standard_normal(shape).astype(dtype)

    products = [(operand(sa, la, dt), operand(sb, lb, dt), times)
                for sa, sb, la, lb, dt, times in fc.records]   # minigrad.profile.Product fields

    def floor() -> None:
        for a, b, times in products:
            for _ in range(times):
                a @ b

    return floor


def _timed(f) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def report(bench: str, config: dict, times: dict[str, list[float]], extra: dict | None = None) -> dict:
    """Print one JSON line per framework and one with the ratios; return the ratios.

    ``ratio`` is median(minigrad) / median(other): above 1, minigrad is slower.
    ``ratio_paired`` is the median, min and max of the per-repetition ratios
    (repetition i of minigrad over repetition i of the other, which ran right
    after it), a rough spread for a noisy machine."""
    extra = extra or {}
    env = environment()
    for name, xs in times.items():
        line = {"bench": bench, "framework": name, "ms": summary(xs), "repeats": len(xs),
                "config": config, "env": env}
        line.update(extra.get(name, {}))
        print(json.dumps(line), flush=True)
    ratios, paired = {}, {}
    if "minigrad" in times:
        for name, xs in times.items():
            if name != "minigrad":
                ratios[f"minigrad/{name}"] = statistics.median(times["minigrad"]) / statistics.median(xs)
                paired[f"minigrad/{name}"] = summary([m / o for m, o in zip(times["minigrad"], xs)], 1)
    print(json.dumps({"bench": bench, "ratio": ratios, "ratio_paired": paired, "config": config}),
          flush=True)
    return ratios
