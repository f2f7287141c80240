"""Per-op overhead and matmul efficiency of minigrad against raw NumPy.

    python benchmarks/ops.py            # prints one JSON line per measurement, then a table

Per-op overhead: microseconds per call on tiny (4x4) float32 arrays, for the
forward alone and for forward+backward, next to the raw NumPy call; the
difference is minigrad's bookkeeping (Tensor objects, graph nodes, checks).
Matmul efficiency: minigrad forward time / NumPy time on the same shapes
(1.0 = no overhead). Repetitions alternate between the two and the median
is reported with min and max. Recurrent cell steps: one step of lmroad's
RNNCell, GRUCell and LSTMCell, forward and backward, at a tiny and a
benchmark size (their elementwise halves are fused nodes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import minigrad as mg
import minigrad.functional as F


def _time(fn, reps: int, inner: int) -> list[float]:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - t0) / inner)
    return out


def _alternate(fns: dict, reps: int, inner: int) -> dict[str, list[float]]:
    """Time each callable ``reps`` times, alternating between them."""
    res: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            res[k] += _time(f, 1, inner)
    return res


def _summary(xs: list[float], scale: float = 1e6) -> dict:
    return {"median": statistics.median(xs) * scale, "min": min(xs) * scale, "max": max(xs) * scale}


def op_overhead(reps: int, inner: int) -> list[dict]:
    rng = np.random.default_rng(0)
    a_np = rng.standard_normal((4, 4)).astype(np.float32)
    b_np = rng.standard_normal((4, 4)).astype(np.float32)
    a = mg.tensor(a_np, requires_grad=True)
    b = mg.tensor(b_np, requires_grad=True)
    cases = {
        "add": (lambda: a + b, lambda: a_np + b_np),
        "mul": (lambda: a * b, lambda: a_np * b_np),
        "exp": (lambda: a.exp(), lambda: np.exp(a_np)),
        "tanh": (lambda: a.tanh(), lambda: np.tanh(a_np)),
        "matmul": (lambda: a @ b, lambda: a_np @ b_np),
        "sum": (lambda: a.sum(), lambda: a_np.sum()),
        "reshape": (lambda: a.reshape(16), lambda: a_np.reshape(16)),
        "getitem": (lambda: a[1:3], lambda: a_np[1:3]),
        "softmax": (lambda: F.softmax(a, -1), lambda: np.exp(a_np) / np.exp(a_np).sum(-1, keepdims=True)),
    }
    rows = []
    for name, (mg_fn, np_fn) in cases.items():
        def fwd_bwd(mg_fn=mg_fn):
            y = mg_fn()
            y.backward(mg.Tensor._make(np.ones(y.shape, np.float32), y.device))
        t = _alternate({"numpy": np_fn, "minigrad_fwd": mg_fn, "minigrad_fwd_bwd": fwd_bwd}, reps, inner)
        row = {"bench": "op_overhead", "op": name, "unit": "us/call"}
        row.update({k: _summary(v) for k, v in t.items()})
        row["backward_over_forward"] = (row["minigrad_fwd_bwd"]["median"] - row["minigrad_fwd"]["median"]) \
            / row["minigrad_fwd"]["median"]
        rows.append(row)
    return rows


def matmul_efficiency(reps: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for shape_a, shape_b in [((64, 64), (64, 64)), ((256, 256), (256, 256)), ((768, 128), (128, 512)),
                             ((12, 4, 64, 32), (12, 4, 32, 64)), ((1024, 1024), (1024, 1024))]:
        an = rng.standard_normal(shape_a).astype(np.float32)
        bn = rng.standard_normal(shape_b).astype(np.float32)
        a, b = mg.tensor(an), mg.tensor(bn)
        inner = max(1, int(2e7 / (an.size * bn.shape[-1])))
        t = _alternate({"numpy": lambda an=an, bn=bn: an @ bn, "minigrad": lambda a=a, b=b: a @ b},
                       reps, inner)
        ratio = statistics.median(t["minigrad"]) / statistics.median(t["numpy"])
        rows.append({"bench": "matmul", "shapes": [shape_a, shape_b], "numpy_us": _summary(t["numpy"]),
                     "minigrad_us": _summary(t["minigrad"]), "ratio_minigrad_over_numpy": ratio})
    return rows


def embedding_backward(reps: int) -> list[dict]:
    """The embedding gradient (row scatter-add): minigrad's path vs np.add.at."""
    rng = np.random.default_rng(0)
    rows = []
    for v, n, c in [(65, 768, 128), (65, 16384, 384), (50257, 8192, 768)]:
        idx = rng.integers(0, v, n)
        g = rng.standard_normal((n, c)).astype(np.float32)

        def add_at(v=v, c=c, idx=idx, g=g):
            out = np.zeros((v, c), np.float32)
            np.add.at(out, idx, g)

        def minigrad_path(v=v, c=c, idx=idx, g=g):
            out = np.zeros((v, c), np.float32)
            mg.backend.index_add(out, (idx,), g)

        t = _alternate({"np.add.at": add_at, "minigrad": minigrad_path}, reps, 1)
        rows.append({"bench": "embedding_backward", "V,N,C": [v, n, c],
                     "np_add_at_ms": _summary(t["np.add.at"], 1e3),
                     "minigrad_ms": _summary(t["minigrad"], 1e3),
                     "speedup": statistics.median(t["np.add.at"]) / statistics.median(t["minigrad"])})
    return rows


def cell_steps(reps: int, inner: int) -> list[dict]:
    """One recurrent cell step, forward + backward of the sum of h', in microseconds."""
    from lmroad.layers import GRUCell, LSTMCell, RNNCell
    rows = []
    for H, B in [(16, 4), (256, 32)]:
        fns = {}
        for cls in (RNNCell, GRUCell, LSTMCell):
            mg.manual_seed(0)
            cell, x, h = cls(H, H), mg.randn(B, H), mg.randn(B, H)
            state = (h, h) if cls is LSTMCell else h

            def step(cell=cell, x=x, state=state):
                out = cell(x, state)
                (out[0] if isinstance(out, tuple) else out).sum().backward()
            step()
            fns[cls.__name__] = step
        t = _alternate(fns, reps, max(1, inner // (10 if H > 16 else 1)))
        rows += [{"bench": "cell_step", "cell": k, "H": H, "B": B, "us": _summary(v)}
                 for k, v in t.items()]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--inner", type=int, default=300)
    args = ap.parse_args()
    rows = (op_overhead(args.reps, args.inner) + matmul_efficiency(args.reps)
            + embedding_backward(args.reps) + cell_steps(args.reps, args.inner))
    for r in rows:
        print(json.dumps(r))
    print("\nop          numpy us   fwd us   fwd+bwd us   (4x4 float32, median)")
    for r in rows:
        if r["bench"] == "op_overhead":
            print(f"{r['op']:<10} {r['numpy']['median']:9.2f} {r['minigrad_fwd']['median']:8.2f} "
                  f"{r['minigrad_fwd_bwd']['median']:12.2f}")
    print("\nmatmul shapes                         minigrad/numpy")
    for r in rows:
        if r["bench"] == "matmul":
            print(f"{str(r['shapes']):<38} {r['ratio_minigrad_over_numpy']:.3f}")
    print("\nembedding backward (V, N, C)     np.add.at ms  minigrad ms  speedup")
    for r in rows:
        if r["bench"] == "embedding_backward":
            print(f"{str(r['V,N,C']):<32} {r['np_add_at_ms']['median']:12.2f} "
                  f"{r['minigrad_ms']['median']:12.2f} "
                  f"{r['speedup']:8.2f}")

    print("\ncell step, forward + backward     us (median)")
    for r in rows:
        if r["bench"] == "cell_step":
            print(f"{r['cell']:<9} H={r['H']:<4} B={r['B']:<4}            {r['us']['median']:10.1f}")


if __name__ == "__main__":
    main()
