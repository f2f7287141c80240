"""The fused ops on the CPU: NumPy code against minigrad's compiled loops (and numexpr).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/cpu_kernels.py
    python benchmarks/cpu_kernels.py --smoke                    # tiny, for the tests

What chose numba for ``minigrad/cpu/kernels.py`` (docs/kernels.md). For each
op, at the baby GPT's size and the medium GPT's (benchmarks/gpt.py), float32,
one thread, alternating repetitions, the best of the repeats in ms:

    numpy        the op's NumPy code (``minigrad.cpu.use_cpu_kernels(False)``)
    minigrad     the compiled loop that minigrad runs (numba; exp/tanh as arithmetic)
    numba-libm   GELU only: the same loop calling the C library's tanh (np.tanh in numba)
    numexpr      GELU only, where numexpr is installed: the formula as one expression
    copy         a copy of the input: the memory traffic floor of a one-pass op

One JSON line per (op, size), then a table on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import common

SIZES = {"baby": {"rows": 768, "mlp": 512, "heads": (12, 4, 64, 64), "width": 128},
         "medium": {"rows": 16384, "mlp": 1536, "heads": (64, 6, 256, 256), "width": 384},
         "smoke": {"rows": 8, "mlp": 16, "heads": (2, 2, 4, 4), "width": 8}}


def best_ms(fns: dict, repeats: int) -> dict[str, float]:
    for f in fns.values():
        f()                                                # compile, warm the caches
    out = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            out[k] = min(out[k], (time.perf_counter() - t0) * 1e3)
    return out


def cases(size: dict):
    import numpy as np

    import minigrad.cpu
    from minigrad.cpu import kernels
    from minigrad.ops import elementwise, softmax

    rng = np.random.default_rng(0)
    f32 = np.float32

    def numpy_path(fn):
        def run():
            with minigrad.cpu.use_cpu_kernels(False):
                return fn()
        return run

    x = (rng.standard_normal((size["rows"], size["mlp"])) * 2).astype(f32)
    g = rng.standard_normal(x.shape).astype(f32)
    gelu = {"numpy": numpy_path(lambda: elementwise._GELU_TANH(x)),
            "minigrad": lambda: kernels.gelu_tanh(x), "copy": x.copy}
    import numba

    @numba.njit(fastmath=True, error_model="numpy")
    def libm_gelu(a, out):
        for i in range(a.size):
            v = a[i]
            u = f32(0.7978845608028654) * (v + f32(0.044715) * v * v * v)
            out[i] = f32(0.5) * v * (f32(1) + np.tanh(u))
        return out
    flat, buf = x.reshape(-1), np.empty(x.size, f32)
    gelu["numba-libm"] = lambda: libm_gelu(flat, buf)
    try:
        import numexpr
        numexpr.set_num_threads(1)
        gelu["numexpr"] = lambda: numexpr.evaluate(
            "0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))", local_dict={"x": x})
    except ImportError:
        pass
    yield "gelu_tanh forward", x.shape, gelu
    yield "gelu_tanh backward", x.shape, {
        "numpy": numpy_path(lambda: elementwise._GELU_TANH_BACKWARD(x, g)),
        "minigrad": lambda: kernels.gelu_tanh_backward(x, g), "copy": x.copy}

    s = rng.standard_normal(size["heads"]).astype(f32)
    mask = np.tril(np.ones(size["heads"][-2:], bool))
    p = softmax._softmax_raw(s, allowed=mask, scale=0.125)
    yield "attention softmax (scale, causal mask)", s.shape, {
        "numpy": numpy_path(lambda: softmax._softmax_raw(s, allowed=mask, scale=0.125)),
        "minigrad": lambda: kernels.softmax_rows(s, mask, 0.125), "copy": s.copy}
    yield "attention softmax backward", s.shape, {
        "numpy": numpy_path(lambda: softmax._softmax_last_backward_raw(s, p, 0.125)),
        "minigrad": lambda: kernels.softmax_backward_rows(s, p, 0.125), "copy": s.copy}

    h = (rng.standard_normal((size["rows"], size["width"])) + 3).astype(f32)
    gh = rng.standard_normal(h.shape).astype(f32)
    w, b = np.ones(size["width"], f32), np.zeros(size["width"], f32)

    def layer_norm_both():                   # the op through minigrad: forward, then backward
        import minigrad as mg
        from minigrad import functional as F
        xt, wt, bt = (mg.tensor(a, requires_grad=True) for a in (h, w, b))
        F.layer_norm(xt, size["width"], weight=wt, bias=bt).backward(mg.tensor(gh))
    yield "layer_norm forward + backward", h.shape, {
        "numpy": numpy_path(layer_norm_both), "minigrad": layer_norm_both, "copy": h.copy}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="baby,medium", help="comma-separated: baby, medium")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--smoke", action="store_true", help="tiny arrays, one repeat (for the tests)")
    args = ap.parse_args(argv)
    sizes = ["smoke"] if args.smoke else args.sizes.split(",")
    repeats = 1 if args.smoke else args.repeats
    common.set_threads(1)
    env = common.environment()
    lines = ["ms, best of repeats (1 thread, float32)"]
    for size in sizes:
        for op, shape, fns in cases(SIZES[size]):
            ms = best_ms(fns, repeats)
            print(json.dumps({"bench": "cpu-kernels", "op": op, "size": size, "shape": list(shape),
                              "ms": ms, "numpy/minigrad": ms["numpy"] / ms["minigrad"], "env": env}),
                  flush=True)
            cells = "  ".join(f"{k} {v:.3f}" for k, v in ms.items())
            lines.append(f"{size:<7} {op:<40} {cells}  (numpy/minigrad {ms['numpy'] / ms['minigrad']:.1f})")
    print("\n".join(lines), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
