"""A GPT training iteration, minigrad against PyTorch, side by side.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/gpt.py                   # baby GPT
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/gpt.py --preset medium --repeats 3

Presets (vocabulary 65, dropout 0, float32, GELU with the tanh approximation
unless ``--activation gelu``):

    baby    nanoGPT's CPU settings: 4 layers, 4 heads, width 128, block 64, batch 12
    medium  nanoGPT's Shakespeare-char GPT: 6 layers, 6 heads, width 384, block 256, batch 64
            (about a trillion FLOPs per iteration: seconds to tens of seconds on a CPU core)

One iteration is forward, backward, gradient clipping and an AdamW step (see
workloads.py); PyTorch runs the same pre-LN GPT with a tied head and eager
attention (torch_reference.py), same initialisation, same batch, same thread
count, in this process, alternating repetitions with minigrad.

Prints one JSON line per framework (ms per iteration: median, min, max; tokens/s;
achieved GFLOP/s from the matmul FLOP count in ``workloads.gpt_matmul_flops``:
6·N + 12·L·T·C per token, N = 12·L·C² + V·C; and that rate as a fraction of
the machine's float32 matrix-product peak, measured here at startup through
NumPy's and PyTorch's BLAS, the larger of the two), then one JSON line with
the ratios minigrad / PyTorch and minigrad / its NumPy matrix-product floor
(``numpy_matmul_floor``: the iteration's own products, recorded by
``minigrad.profile`` and replayed in NumPy alone, back to back: see
``common.matmul_floor``). A table for people goes to stderr.
``--profile`` adds a cProfile of minigrad's iteration (top entries by own time).
"""

from __future__ import annotations

import argparse
import dataclasses

import common


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=("baby", "medium"), default="baby")
    ap.add_argument("--activation", choices=("gelu_tanh", "gelu"), default="gelu_tanh",
                    help="the MLP's GELU in both frameworks: GPT-2's tanh approximation (default, "
                         "as TransformerLM) or the exact one (erf, as nanoGPT)")
    common.add_common_args(ap, repeats=7, warmup=2)
    ap.add_argument("--cuda-graph", action="store_true",
                    help="minigrad's iteration recorded once as a CUDA graph and replayed "
                         "(minigrad.graphs; needs --device cuda)")
    ap.add_argument("--no-kernels", action="store_true",
                    help="minigrad without its custom CUDA kernels (the xp fallbacks), to "
                         "measure what the kernels give")
    ap.add_argument("--profile", action="store_true",
                    help="after timing: forward/backward/update times per framework (a JSON "
                         "line), and cProfile of 3 minigrad iterations (stderr); 1 for --preset medium")
    args = ap.parse_args(argv)
    if args.smoke:
        args.preset, args.repeats, args.warmup, args.no_torch = "smoke", 1, 0, True
    return args


def machine_peak_gflops(args, torch) -> dict[str, float]:
    """The best float32 matrix-product rate of n×n products (n = 512, 1024), per BLAS;
    on cuda, the GPU's (n = 4096) through CuPy and PyTorch."""
    if args.device.startswith("cuda"):
        return common.gpu_matmul_peak_gflops(torch)
    sizes = (128,) if args.smoke else (512, 1024)
    peak = {"numpy": max(common.matmul_peak_gflops(args.threads, n=n) for n in sizes)}
    if torch is not None:
        peak["torch"] = max(common.torch_matmul_peak_gflops(torch, n=n) for n in sizes)
    return peak


def main(argv=None) -> None:
    args = parse_args(argv)
    common.set_threads(args.threads)
    if args.no_cpu_kernels:
        import minigrad.cpu
        minigrad.cpu.use_cpu_kernels(False)
    import workloads  # imports NumPy: after set_threads

    torch = None if args.no_torch else common.torch_or_none(args.threads)
    cfg = dataclasses.replace(workloads.GPT_PRESETS[args.preset], activation=args.activation)
    peak = machine_peak_gflops(args, torch)
    machine_peak = max(peak.values())

    if args.cuda_graph and not args.device.startswith("cuda"):
        raise SystemExit("gpt.py: --cuda-graph needs --device cuda")
    if args.no_kernels:
        import minigrad
        minigrad.use_kernels(False)
    fns = {"minigrad": workloads.minigrad_gpt(cfg, device=args.device, cuda_graph=args.cuda_graph)}
    if torch is not None:
        fns["torch"] = workloads.torch_gpt(torch, cfg, device=args.device)
    if args.device == "cpu" and not args.cuda_graph:   # the iteration's own products, NumPy alone
        fns["numpy_matmul_floor"] = common.matmul_floor(fns["minigrad"])
    first_loss = {name: f() for name, f in fns.items()}     # an untimed call; the losses should agree
    first_loss.pop("numpy_matmul_floor", None)
    times = common.alternate(fns, args.repeats, max(args.warmup - 1, 0))

    flops = workloads.gpt_matmul_flops(cfg)
    extra, columns = {}, {}
    for name, xs in times.items():
        if name == "numpy_matmul_floor":
            continue
        sec = common.summary(xs, 1)["median"]
        gflops = flops["per_iter"] / sec / 1e9
        extra[name] = {"tokens_per_s": flops["tokens_per_iter"] / sec, "gflops": gflops,
                       "fraction_of_peak": gflops / machine_peak, "first_loss": first_loss[name]}
        columns[name] = {"tokens/s": f"{extra[name]['tokens_per_s']:,.0f}", "GFLOP/s": f"{gflops:.1f}",
                         "% of peak": f"{100 * gflops / machine_peak:.1f}"}
    config = {"preset": args.preset, **cfg.as_dict(), "dropout": 0.0, "dtype": "float32",
              "threads": args.threads, "device": args.device, "cuda_graph": args.cuda_graph,
              "custom_kernels": not args.no_kernels, "cpu_kernels": not args.no_cpu_kernels,
              "matmul_flops_per_iter": flops["per_iter"],
              "params": workloads.gpt_param_count(cfg)["total"], "peak_gflops": peak}
    bench = f"gpt-{args.preset}"
    common.report(bench, config, times, extra)
    common.print_summary(
        f"{bench}: {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, "
        f"block {cfg.block_size}, batch {cfg.batch_size}; {args.threads} thread(s), {args.repeats} "
        f"repeats; matmul peak {machine_peak:.1f} GFLOP/s "
        + ", ".join(f"({k} {v:.1f})" for k, v in peak.items()), times, columns)
    if args.profile:
        common.profile(f"{bench}-profile", fns, calls=1 if args.preset == "medium" else 3)


if __name__ == "__main__":
    main()
