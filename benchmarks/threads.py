"""How many BLAS threads? Training steps with 1 and with 2, idle and beside a busy process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/threads.py
    python benchmarks/threads.py --repeats 9 --busy numpy      # the neighbour multiplies matrices
    python benchmarks/threads.py --smoke                       # tiny, for the tests

The question behind lmroad's default (``lmroad.threads``): is a second BLAS
thread worth having for the models of this project, and what does it cost
when the machine is not ours alone? For each workload (``small``: the baby
GPT of benchmarks/gpt.py, 4 layers × 128, block 64, batch 12; ``medium``: a
Transformer 4 layers × 256, block 128, batch 16) it times minigrad training
steps (forward, backward, clip, AdamW) under two conditions:

    idle   nothing else started by this script (the machine may still be shared:
           the load average is recorded before and after)
    busy   beside one CPU-burning process (a Python loop, or with --busy numpy a
           single-threaded float32 matrix-product loop), started here, bounded in
           time, killed at the end

and within a condition alternates 1 and 2 threads (``lmroad.threads.set_threads``,
switched at run time through threadpoolctl) repetition by repetition, so both
see the same noise. ``--what`` says what gets them: BLAS and minigrad's
compiled CPU loops together (``both``, the default, as lmroad's ``--threads``),
BLAS alone, or the loops alone beside one BLAS thread (``loops``). One JSON
line per (workload, condition, threads) on stdout,
then a table on stderr: the median ms per step [min, max] and the ratio
median(2 threads) / median(1 thread) (below 1: the second thread helps).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import common

WORKLOADS = {          # name -> (n_layer, n_head, n_embd, block_size, batch_size)
    "small": (4, 4, 128, 64, 12),
    "medium": (4, 4, 256, 128, 16),
    "smoke": (1, 2, 16, 8, 2),
}

_BURNERS = {
    "python": "import time\nend = time.time() + {s}\nwhile time.time() < end:\n    pass\n",
    "numpy": ("import time, numpy as np\na = np.ones((256, 256), np.float32)\n"
              "end = time.time() + {s}\nwhile time.time() < end:\n    a @ a\n"),
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default="small,medium", help="comma-separated: small, medium")
    ap.add_argument("--threads", default="1,2", help="thread counts to alternate (default 1,2)")
    ap.add_argument("--conditions", default="idle,busy", help="idle, busy or both (default both)")
    ap.add_argument("--busy", choices=tuple(_BURNERS), default="python",
                    help="what the neighbour process runs (default a Python loop)")
    ap.add_argument("--repeats", type=int, default=7, help="timed steps per thread count (default 7)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per thread count first")
    ap.add_argument("--max-seconds", type=float, default=300,
                    help="per workload and condition: stop repeating after this long (default 300; "
                         "a collapsing configuration can take a minute a step)")
    ap.add_argument("--what", choices=("both", "blas", "loops"), default="both",
                    help="what gets the threads: BLAS and minigrad's compiled CPU loops (both, as "
                         "lmroad's --threads does), BLAS alone, or the loops alone with 1 BLAS thread")
    ap.add_argument("--smoke", action="store_true", help="a tiny model, one repeat (for the tests)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.workloads, args.repeats, args.warmup = "smoke", 1, 1
    args.workloads = args.workloads.split(",")
    args.conditions = args.conditions.split(",")
    args.threads = [int(t) for t in args.threads.split(",")]
    for w in args.workloads:
        if w not in WORKLOADS:
            ap.error(f"--workloads: unknown workload {w!r} (choose from {', '.join(WORKLOADS)})")
    for c in args.conditions:
        if c not in ("idle", "busy"):
            ap.error(f"--conditions: unknown condition {c!r} (idle or busy)")
    return args


def start_burner(kind: str, seconds: float) -> subprocess.Popen:
    """A CPU-burning neighbour (one core), which stops by itself after ``seconds``."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", _BURNERS[kind].format(s=seconds)], env=env)
    time.sleep(1.0)                                   # let it start (and NumPy load) and spin
    return proc


def stop_burner(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def blas_threads() -> list[int]:
    """What threadpoolctl reads back from the loaded BLAS libraries now."""
    from threadpoolctl import threadpool_info
    return [d["num_threads"] for d in threadpool_info() if d.get("user_api") == "blas"]


def apply_threads(n: int, what: str = "both") -> None:
    """``n`` threads for BLAS and/or minigrad's compiled CPU loops (the other gets 1)."""
    import minigrad.cpu
    common.set_threads(1 if what == "loops" else n)        # BLAS (and, through lmroad, the loops)
    loops = 1 if what == "blas" else n
    minigrad.cpu.set_num_threads(min(loops, minigrad.cpu.max_num_threads()))
    want = 1 if what == "loops" else n
    if any(seen != want for seen in blas_threads()):
        raise SystemExit(f"threads.py: asked for {want} BLAS threads, threadpoolctl reads {blas_threads()}")


def time_steps(step, threads: list[int], repeats: int, warmup: int,
               max_seconds: float = float("inf"), what: str = "both") -> dict[int, list[float]]:
    """Seconds per training step with each thread count, alternating count by count;
    fewer than ``repeats`` rounds when the rounds so far took over ``max_seconds``."""
    start = time.perf_counter()
    for n in threads:
        apply_threads(n, what)
        for _ in range(warmup):
            step()
    out: dict[int, list[float]] = {n: [] for n in threads}
    for _ in range(repeats):
        if out[threads[0]] and time.perf_counter() - start > max_seconds:
            break
        for n in threads:
            apply_threads(n, what)
            t0 = time.perf_counter()
            step()
            out[n].append(time.perf_counter() - t0)
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    common.set_threads(1)
    import workloads  # imports NumPy (and minigrad, lmroad in the builders)
    env = common.environment()
    rows = []
    for name in args.workloads:
        L, H, C, T, B = WORKLOADS[name]
        cfg = workloads.GPTConfig(n_layer=L, n_head=H, n_embd=C, block_size=T, batch_size=B)
        step = workloads.minigrad_gpt(cfg)
        step()                                        # builds everything once
        for condition in args.conditions:
            burner = None
            load0 = loadavg()
            if condition == "busy":
                common.set_threads(args.threads[0])
                t0 = time.perf_counter()
                step()
                one = time.perf_counter() - t0        # bounds the neighbour's life if this process dies
                budget = args.max_seconds + 60 + 20 * one * (args.warmup + 1) * len(args.threads)
                burner = start_burner(args.busy, budget)
            try:
                times = time_steps(step, args.threads, args.repeats, args.warmup, args.max_seconds,
                                   args.what)
            finally:
                if burner is not None:
                    stop_burner(burner)
            load1 = loadavg()
            for n, xs in times.items():
                row = {"bench": "threads", "workload": name, "condition": condition,
                       "busy": args.busy if condition == "busy" else None, "threads": n,
                       "threads_for": args.what,
                       "ms": common.summary(xs), "repeats": len(xs),
                       "config": {**cfg.as_dict(), "dtype": "float32"},
                       "loadavg": [load0, load1], "env": env}
                rows.append(row)
                print(json.dumps(row), flush=True)
    apply_threads(1)
    print_table(rows, args, env)


def print_table(rows: list[dict], args: argparse.Namespace, env: dict) -> None:
    """The table on stderr, and one JSON line of the ratios on stdout."""
    first, last = args.threads[0], args.threads[-1]
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('architecture')})"
                     for b in env.get("blas") or [] if b.get("user_api") == "blas")
    lines = [f"ms per training step, median [min, max] (repeats); {os.cpu_count()} CPUs; "
             f"BLAS {blas or '?'}; load: the 1-minute load average before -> after",
             f"{'workload':<9}{'condition':<16}" + "".join(f"{n} thread(s)".rjust(26) for n in args.threads)
             + f"{'ratio':>8}{'load':>13}"]
    ratios = {}
    for name in args.workloads:
        for condition in args.conditions:
            got = {r["threads"]: r for r in rows if r["workload"] == name and r["condition"] == condition}
            label = condition if condition == "idle" else f"busy ({args.busy})"
            cells = ""
            for n in args.threads:
                m = got[n]["ms"]
                cells += f"{m['median']:.0f} [{m['min']:.0f}, {m['max']:.0f}] ({got[n]['repeats']})".rjust(26)
            ratio = ratios[f"{name}/{condition}"] = got[last]["ms"]["median"] / got[first]["ms"]["median"]
            l0, l1 = got[first]["loadavg"]
            load = f"{l0:.1f}->{l1:.1f}" if l0 is not None and l1 is not None else "?"
            lines.append(f"{name:<9}{label:<16}{cells}{ratio:>8.2f}{load:>13}")
    print("\n".join(lines) + f"\n(ratio: median with {last} threads / with {first})\n",
          file=sys.stderr, flush=True)
    print(json.dumps({"bench": "threads-ratio", "ratio": ratios, "threads": [first, last]}), flush=True)


if __name__ == "__main__":
    main()
