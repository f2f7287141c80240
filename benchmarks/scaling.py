"""How a GPT training iteration's cost grows with sequence length and width,
minigrad and PyTorch side by side.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/scaling.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/scaling.py --blocks 32,64 --widths ""

Starting from the baby GPT (4 layers, 4 heads, width 128, block 64, batch 12,
see gpt.py), it varies one size at a time:

    block (sequence length) 32, 64, 128, 256   at width 128
    width (n_embd)          64, 128, 256, 384  at block 64

The weight products grow like B·T·C² and attention like B·T²·C
(``workloads.gpt_matmul_flops``), so doubling the block at most doubles
the work plus the T² term, and doubling the width quadruples the weight
products. The achieved GFLOP/s column shows where each framework's fixed
per-op costs stop mattering.

Each point prints one JSON line per framework and one with the ratio (as
gpt.py); a table for people goes to stderr at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys

import common


def _sizes(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=_sizes, default=[32, 64, 128, 256],
                    help="sequence lengths at the base width, comma-separated (empty: none)")
    ap.add_argument("--widths", type=_sizes, default=[64, 128, 256, 384],
                    help="widths at the base block size, comma-separated (empty: none)")
    common.add_common_args(ap, repeats=5, warmup=1)
    args = ap.parse_args(argv)
    if args.smoke:
        args.blocks, args.widths, args.repeats, args.warmup, args.no_torch = [4, 8], [8, 16], 1, 0, True
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    common.set_threads(args.threads)
    import workloads  # imports NumPy: after set_threads

    torch = None if args.no_torch else common.torch_or_none(args.threads)
    base = workloads.GPT_PRESETS["smoke" if args.smoke else "baby"]
    points = [("block", v, dataclasses.replace(base, block_size=v)) for v in args.blocks] + \
             [("width", v, dataclasses.replace(base, n_embd=v)) for v in args.widths]
    rows = []
    for axis, value, cfg in points:
        fns = {"minigrad": workloads.minigrad_gpt(cfg)}
        if torch is not None:
            fns["torch"] = workloads.torch_gpt(torch, cfg)
        for f in fns.values():
            f()                                             # an untimed call
        times = common.alternate(fns, args.repeats, max(args.warmup - 1, 0))
        flops = workloads.gpt_matmul_flops(cfg)
        extra = {}
        for name, xs in times.items():
            sec = statistics.median(xs)
            extra[name] = {"tokens_per_s": flops["tokens_per_iter"] / sec,
                           "gflops": flops["per_iter"] / sec / 1e9}
        config = {"axis": axis, "value": value, **cfg.as_dict(), "dtype": "float32",
                  "threads": args.threads, "matmul_flops_per_iter": flops["per_iter"]}
        ratios = common.report("gpt-scaling", config, times, extra)
        rows.append((axis, value, flops["per_iter"], {k: statistics.median(v) for k, v in times.items()},
                     extra, ratios.get("minigrad/torch")))
        del fns                                              # free this size's models before the next

    lines = [f"gpt-scaling: {base.n_layer} layers, {base.n_head} heads, batch {base.batch_size}; "
             f"{args.threads} thread(s), median of {args.repeats}",
             f"{'axis':<6}{'value':>6}{'GFLOP/iter':>11}{'minigrad ms':>13}{'torch ms':>10}"
             f"{'ratio':>7}{'mg GFLOP/s':>12}{'torch GFLOP/s':>15}"]
    for axis, value, fl, med, extra, ratio in rows:
        t = med.get("torch")
        torch_ms = "" if t is None else f"{t * 1e3:.1f}"
        torch_gflops = "" if t is None else f"{extra['torch']['gflops']:.1f}"
        ratio_txt = "" if ratio is None else f"{ratio:.2f}"
        lines.append(f"{axis:<6}{value:>6}{fl / 1e9:>11.2f}{med['minigrad'] * 1e3:>13.1f}"
                     f"{torch_ms:>10}{ratio_txt:>7}{extra['minigrad']['gflops']:>12.1f}{torch_gflops:>15}")
    print("\n".join(lines) + "\n", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
