"""Data-parallel training on N ranks (minigrad.distributed): step time,
gradient-communication time, one flat buffer against buckets sent during
backward, and a scaling model checked against the measurement.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/distributed.py
    python benchmarks/distributed.py --ranks 1,2 --preset baby --plot out.png

The script starts ``mpiexec -n N`` itself for each N of ``--ranks`` (N ≤ the
cores, one BLAS thread per rank) and prints rank 0's JSON lines. Each run
trains the baby GPT (benchmarks/workloads.py's preset; batch per rank fixed:
weak scaling, as data-parallel training is used) and times:

- ``step``: forward, backward with the gradient all-reduce, clipping and AdamW,
  with ``bucket_cap_mb=None`` (one flat buffer sent after backward) and with
  small buckets (``--bucket-mb``) sent from the gradient hooks during backward;
- ``compute``: the same step with the all-reduce left out (``no_sync``);
- ``allreduce``: the gradient's bytes alone, and a sweep of sizes, from which
  the latency α and bandwidth B of this machine's MPI are fitted with the
  ring all-reduce's cost, t(S) = 2(N-1)·α + 2(N-1)/N · S/B.

The model: one step on N ranks costs the compute time plus the all-reduce of S
bytes of gradients, T(N) = T_c + t(S), without overlap; with communication
fully hidden behind backward, T(N) = T_c + max(0, t(S) - T_backward); with
gradient accumulation over K micro-batches, one all-reduce per K of them.
Efficiency is T_c / T(N) (weak scaling). Checked at N = 2: that run's own
compute time (its ``no_sync`` steps) plus the all-reduce predicted from this
machine's fitted (α, B), against its measured flat steps.
Then it predicts N up to 256 on named networks, whose (α, B) are typical
published figures (an assumption, printed with the table), with the compute
time and gradient size measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: (latency α in seconds, bandwidth B in bytes/s) per link: typical published figures, not
#: measured here. 10 GbE with TCP; 100 Gb/s InfiniBand (EDR) with RDMA; NVLink between the
#: GPUs of one node, through NCCL (its launch latency dominates α)
NETWORKS = {
    "10 GbE": (30e-6, 1.25e9),
    "100 Gb InfiniBand": (2e-6, 12.5e9),
    "NVLink (NCCL)": (10e-6, 150e9),
}
NS = (2, 4, 8, 16, 32, 64, 128, 256)


def ring_allreduce_s(n: int, nbytes: float, alpha: float, bandwidth: float) -> float:
    """Time of a ring all-reduce of ``nbytes`` on ``n`` ranks: 2(n-1) messages, each
    rank sending and receiving 2(n-1)/n of the data."""
    if n == 1:
        return 0.0
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * nbytes / bandwidth


def predict(n: int, compute_s: float, backward_s: float, nbytes: float, alpha: float,
            bandwidth: float, accumulate: int = 1, overlap: bool = False) -> dict:
    """The scaling model's step time and efficiency for one link."""
    comm = ring_allreduce_s(n, nbytes, alpha, bandwidth)
    exposed = max(0.0, comm - backward_s) if overlap else comm
    step = accumulate * compute_s + exposed
    return {"step_s": step, "comm_s": comm, "efficiency": accumulate * compute_s / step}


def fit_alpha_bandwidth(n: int, sizes: list[int], times: list[float]) -> tuple[float, float]:
    """Least squares of t = a + b·S, then α = a / (2(n-1)), B = 2(n-1)/n / b."""
    import numpy as np
    A = np.stack([np.ones(len(sizes)), np.asarray(sizes, float)], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, np.asarray(times), rcond=None)
    if b <= 0:
        raise SystemExit(f"distributed.py: the all-reduce times did not grow with the size ({times}); "
                         "the machine was too noisy for the fit: rerun it quieter, or with more repeats")
    return max(a, 0.0) / (2 * (n - 1)), 2 * (n - 1) / n / b


# --------------------------------------------------------------------------- one rank

def worker(args) -> None:
    import common
    common.set_threads(1)
    import numpy as np
    import workloads

    import minigrad as mg
    from lmroad.models import TransformerLM
    from minigrad import distributed as dist
    from minigrad import optim

    dist.init()
    rank, n = dist.rank(), dist.world_size()
    c = workloads.GPT_PRESETS[args.preset]

    def new_model():
        mg.manual_seed(0)
        return TransformerLM(vocab_size=c.vocab_size, n_layer=c.n_layer, n_head=c.n_head,
                             n_embd=c.n_embd, block_size=c.block_size, dropout=0.0)
    rng = np.random.default_rng(1 + rank)                 # each rank its own batch
    x = mg.tensor(rng.integers(0, c.vocab_size, (c.batch_size, c.block_size)))
    y = mg.tensor(rng.integers(0, c.vocab_size, (c.batch_size, c.block_size)))
    nbytes = sum(p.size * p.dtype.itemsize for p in new_model().parameters())

    def stepper(ddp, sync: bool):
        model = ddp.module
        opt = optim.AdamW(model.parameters(), lr=1e-4)
        phases = {"forward": [], "backward": []}

        def step():
            t0 = time.perf_counter()
            opt.zero_grad()
            if sync:
                _, loss = ddp(x, y)
                t1 = time.perf_counter()
                loss.backward()
            else:
                with ddp.no_sync():
                    _, loss = ddp(x, y)
                    t1 = time.perf_counter()
                    loss.backward()
            t2 = time.perf_counter()
            optim.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            phases["forward"].append(t1 - t0)
            phases["backward"].append(t2 - t1)
        return step, phases

    def timed(fn, repeats: int) -> list[float]:
        """Each repetition's time on the slowest rank (a step ends when its last rank does)."""
        for _ in range(args.warmup):
            fn()
        out = []
        for _ in range(repeats):
            dist.barrier()                                # start together
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
        return [max(ts) for ts in zip(*dist.all_gather_object(out))]

    # the three ways, one step each in turn, so that they see the same machine noise
    modes = {name: dist.DistributedDataParallel(new_model(), bucket_cap_mb=cap)
             for name, cap in (("compute", None), ("flat", None), ("buckets", args.bucket_mb))}
    steps = {name: stepper(ddp, sync=name != "compute") for name, ddp in modes.items()}
    times = {name: [] for name in modes}
    for k in range(args.warmup + args.repeats):
        for name, (fn, _) in steps.items():
            dist.barrier()
            t = time.perf_counter()
            fn()
            if k >= args.warmup:
                times[name].append(time.perf_counter() - t)
    results = {}
    for name, ts in times.items():
        slowest = [max(r) for r in zip(*dist.all_gather_object(ts))]
        results[name] = {"median_s": float(np.median(slowest)), "min_s": float(min(slowest)),
                         "backward_s": float(np.median(steps[name][1]["backward"][args.warmup:])),
                         "buckets": len(modes[name].bucket_sizes)}
    flat = np.zeros(nbytes // 4, np.float32)
    grad = mg.tensor(flat)
    results["allreduce_grad_s"] = float(np.median(timed(lambda: dist.all_reduce(grad), args.repeats * 3)))
    sweep = {}
    if n > 1:
        for size in (4, 4096, 65536, 2**20, 2**22, 2**24):
            buf = mg.tensor(np.zeros(size // 4, np.float32))
            sweep[size] = float(np.median(timed(lambda buf=buf: dist.all_reduce(buf), 15)))
    if rank == 0:
        print(json.dumps({"bench": "distributed", "ranks": n, "preset": args.preset,
                          "batch_per_rank": c.batch_size, "grad_bytes": nbytes,
                          "bucket_mb": args.bucket_mb, **results,
                          "allreduce_sweep_s": sweep, "env": common.environment()}), flush=True)


# --------------------------------------------------------------------------- the launcher

def _mpiexec() -> str:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else "mpiexec"


def run_ranks(n: int, args) -> dict:
    cmd = [_mpiexec(), "-n", str(n), sys.executable, str(Path(__file__).resolve()), "--worker",
           "--preset", args.preset, "--repeats", str(args.repeats), "--warmup", str(args.warmup),
           "--bucket-mb", str(args.bucket_mb)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def model_rows(runs: dict[int, dict]) -> list[dict]:
    """The model's validation at the measured N > 1 and its predictions on the named links."""
    one = runs[1]
    compute, backward = one["compute"]["median_s"], one["compute"]["backward_s"]
    nbytes = one["grad_bytes"]
    rows = []
    for n, run in runs.items():
        if n == 1 or not run["allreduce_sweep_s"]:
            continue
        sizes = [int(s) for s in run["allreduce_sweep_s"]]
        alpha, bw = fit_alpha_bandwidth(n, sizes, list(run["allreduce_sweep_s"].values()))
        # the communication model checked on its own: this run's compute time (its no_sync
        # steps, timed in turn with the others) plus the predicted all-reduce, against its
        # measured flat steps (the compute time of separate launches differs by more than
        # the all-reduce takes here)
        pred = predict(n, run["compute"]["median_s"], backward, nbytes, alpha, bw)
        measured = run["flat"]["median_s"]
        rows.append({"bench": "distributed-model-check", "ranks": n, "alpha_s": alpha,
                     "bandwidth_Bps": bw, "predicted_step_s": pred["step_s"],
                     "measured_flat_step_s": measured,
                     "error": (pred["step_s"] - measured) / measured,
                     "predicted_allreduce_s": pred["comm_s"],
                     "measured_allreduce_s": run["allreduce_grad_s"]})
    for link, (alpha, bw) in NETWORKS.items():
        for accumulate in (1, 8):
            for overlap in (False, True):
                eff = {n: predict(n, compute, backward, nbytes, alpha, bw, accumulate,
                                  overlap)["efficiency"] for n in NS}
                rows.append({"bench": "distributed-model", "network": link, "alpha_s": alpha,
                             "bandwidth_Bps": bw, "accumulate": accumulate, "overlap": overlap,
                             "compute_s": compute, "grad_bytes": nbytes, "efficiency": eff})
    return rows


def plot(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        if r["bench"] != "distributed-model" or r["accumulate"] != 1:
            continue
        ns = sorted(int(n) for n in r["efficiency"])
        ax.plot(ns, [r["efficiency"][n] for n in ns], marker="o", ls="-" if r["overlap"] else "--",
                label=f"{r['network']}{', overlap' if r['overlap'] else ''}")
    ax.axhspan(0.88, 0.90, color="grey", alpha=0.3, label="Horovod / DDP published, 88-90%")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ranks N")
    ax.set_ylabel("efficiency T_c / T(N)")
    ax.set_ylim(0, 1.05)
    ax.set_title("baby GPT, batch per rank fixed: predicted data-parallel efficiency")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="1,2", help="comma-separated world sizes (default 1,2)")
    ap.add_argument("--preset", default="baby", choices=("baby", "medium", "smoke"))
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bucket-mb", type=float, default=0.5,
                    help="bucket size of the 'buckets' runs (default 0.5 MB: several buckets for the "
                         "baby GPT's 3.2 MB of gradients)")
    ap.add_argument("--plot", help="write the predicted efficiency curves to this PNG")
    ap.add_argument("--smoke", action="store_true", help="ranks 1,2, the tiny model, 2 repeats (tests)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.smoke:          # (buckets of 2 kB: several even for the tiny model)
        args.ranks, args.preset, args.repeats, args.warmup, args.bucket_mb = "1,2", "smoke", 2, 1, 0.002
    if args.worker:
        worker(args)
        return
    ranks = sorted({int(n) for n in args.ranks.split(",")} | {1})
    runs = {n: run_ranks(n, args) for n in ranks}
    for n in ranks:
        print(json.dumps(runs[n]))
    rows = model_rows(runs)
    for r in rows:
        print(json.dumps(r))
    _table(runs, rows)
    if args.plot:
        plot(rows, args.plot)


def _table(runs: dict[int, dict], rows: list[dict]) -> None:
    err = sys.stderr
    print("ranks  compute ms  flat step ms  buckets step ms  allreduce ms (grad)", file=err)
    for n, r in runs.items():
        print(f"{n:>5}  {r['compute']['median_s'] * 1e3:10.1f}  {r['flat']['median_s'] * 1e3:12.1f}  "
              f"{r['buckets']['median_s'] * 1e3:15.1f}  {r['allreduce_grad_s'] * 1e3:10.2f}", file=err)
    for r in rows:
        if r["bench"] == "distributed-model-check":
            print(f"model at N={r['ranks']}: alpha {r['alpha_s'] * 1e6:.1f} us, "
                  f"B {r['bandwidth_Bps'] / 1e9:.2f} GB/s; "
                  f"predicted step {r['predicted_step_s'] * 1e3:.1f} ms, measured "
                  f"{r['measured_flat_step_s'] * 1e3:.1f} ms ({r['error']:+.1%})", file=err)
    print("predicted efficiency (assumed links):", file=err)
    print("network              K  overlap  " + "  ".join(f"{n:>5}" for n in NS), file=err)
    for r in rows:
        if r["bench"] == "distributed-model":
            print(f"{r['network']:<20} {r['accumulate']:>2}  {str(r['overlap']):<7}  "
                  + "  ".join(f"{r['efficiency'][n]:5.2f}" for n in NS), file=err)


if __name__ == "__main__":
    main()
