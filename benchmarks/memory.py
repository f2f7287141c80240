"""Peak resident memory of a short training run, minigrad against PyTorch.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/memory.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/memory.py --workloads gpt-baby,lstm

Each (workload, framework) pair runs in a fresh process (this script again,
with ``--worker``), so one framework's memory never counts against the other.
The worker imports its framework, notes its resident memory (the baseline:
the interpreter, NumPy, and minigrad+lmroad or PyTorch), builds the model,
optimizer and batch of ``workloads.py``, runs ``--steps`` training iterations
(forward, backward, clipping, AdamW) and reads its peak resident memory
(``VmHWM`` from /proc/self/status, else ``ru_maxrss``).

Workloads: ``gpt-baby``, ``gpt-medium`` (gpt.py's presets), ``lstm``, ``rnn``
(lstm.py's settings; PyTorch both stepping cells, "torch", and fused,
"torch_fused").

Prints, per workload, one JSON line per framework (peak MiB, baseline MiB,
and their difference: what training itself added) and one line with the
ratios minigrad / PyTorch, of the peaks and of the increases. Importing
PyTorch alone costs a few hundred MiB, so the peak ratio says what a user's
process costs, the increase ratio what the engines allocate for the same
training. A table goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time

import common

WORKLOADS = ("gpt-baby", "gpt-medium", "lstm", "rnn")
SMOKE_WORKLOADS = ("gpt-smoke", "lstm-smoke")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"comma-separated, from {', '.join(WORKLOADS)} (default: all)")
    ap.add_argument("--steps", type=int, default=3, help="training iterations per run (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads (default 1)")
    ap.add_argument("--no-torch", action="store_true", help="measure minigrad alone")
    ap.add_argument("--smoke", action="store_true", help="tiny models, one step, minigrad only (tests)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per worker process")
    # the worker side (this script runs itself)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--framework", default="minigrad", help=argparse.SUPPRESS)
    ap.add_argument("--workload", default="gpt-baby", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smoke and not args.worker:
        args.workloads, args.steps, args.no_torch = ",".join(SMOKE_WORKLOADS), 1, True
    return args


# --------------------------------------------------------------------------- the worker

def _build(workloads, workload: str, framework: str, torch):
    """The TrainStep of ``workload`` in ``framework`` ("minigrad", "torch", "torch_fused")."""
    name, _, size = workload.partition("-")
    if name == "gpt":
        cfg = workloads.GPT_PRESETS[size]
        return workloads.minigrad_gpt(cfg) if framework == "minigrad" else workloads.torch_gpt(torch, cfg)
    cfg = workloads.RNNBenchConfig(name, **workloads.RNN_PRESETS[size or "default"])
    if framework == "minigrad":
        return workloads.minigrad_rnn(cfg)
    return workloads.torch_rnn(torch, cfg, fused=framework == "torch_fused")


def worker(args: argparse.Namespace) -> None:
    common.set_threads(args.threads)
    import workloads  # imports NumPy: after set_threads
    torch = None
    if args.framework == "minigrad":
        import lmroad.models  # noqa: F401  (the framework, counted in the baseline)
    else:
        torch = common.torch_or_none(args.threads)
    baseline = common.current_rss_mb()
    t0 = time.perf_counter()
    step = _build(workloads, args.workload, args.framework, torch)
    built = common.current_rss_mb()
    for _ in range(args.steps):
        loss = step()
    peak = common.peak_rss_mb()
    print(json.dumps({"framework": args.framework, "workload": args.workload, "steps": args.steps,
                      "peak_rss_mb": peak, "baseline_rss_mb": baseline, "after_build_rss_mb": built,
                      "increase_mb": None if baseline is None else peak - baseline,
                      "seconds": time.perf_counter() - t0, "last_loss": loss}), flush=True)


# --------------------------------------------------------------------------- the parent

def run_worker(args: argparse.Namespace, workload: str, framework: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--framework", framework, "--workload", workload,
           "--steps", str(args.steps), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"memory worker {framework} {workload} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    names = [w for w in args.workloads.split(",") if w]
    known = WORKLOADS + SMOKE_WORKLOADS
    for w in names:
        if w not in known:
            raise SystemExit(f"memory.py: unknown workload {w!r}; valid: {', '.join(WORKLOADS)}")
    with_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    if not args.no_torch and not with_torch:
        print("# PyTorch is not installed: measuring minigrad alone", file=sys.stderr)
    env = common.environment()
    table = []
    for w in names:
        frameworks = ["minigrad"]
        if with_torch:
            frameworks += ["torch", "torch_fused"] if w.split("-")[0] in ("lstm", "rnn") else ["torch"]
        results = {fw: run_worker(args, w, fw) for fw in frameworks}
        for r in results.values():
            print(json.dumps({"bench": f"memory-{w}", **r, "threads": args.threads, "env": env}), flush=True)
        mg = results["minigrad"]
        ratio = {f"minigrad/{fw}": mg["peak_rss_mb"] / r["peak_rss_mb"]
                 for fw, r in results.items() if fw != "minigrad"}
        ratio_increase = {f"minigrad/{fw}": mg["increase_mb"] / r["increase_mb"]
                          for fw, r in results.items()
                          if fw != "minigrad" and mg["increase_mb"] is not None and r["increase_mb"]}
        print(json.dumps({"bench": f"memory-{w}", "ratio": ratio, "ratio_increase": ratio_increase,
                          "steps": args.steps}), flush=True)
        for fw, r in results.items():
            table.append((w, fw, r, ratio.get(f"minigrad/{fw}"), ratio_increase.get(f"minigrad/{fw}")))

    lines = [f"memory: peak resident MiB over {args.steps} training step(s), a process per run",
             f"{'workload':<12}{'framework':<13}{'peak':>9}{'baseline':>10}{'increase':>10}"
             f"{'mg/x peak':>11}{'mg/x incr':>11}"]
    for w, fw, r, rp, ri in table:
        inc = "" if r["increase_mb"] is None else f"{r['increase_mb']:.0f}"
        base = "" if r["baseline_rss_mb"] is None else f"{r['baseline_rss_mb']:.0f}"
        lines.append(f"{w:<12}{fw:<13}{r['peak_rss_mb']:>9.0f}{base:>10}{inc:>10}"
                     f"{'' if rp is None else f'{rp:.2f}':>11}{'' if ri is None else f'{ri:.2f}':>11}")
    print("\n".join(lines) + "\n", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
