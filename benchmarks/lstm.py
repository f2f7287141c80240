"""A char-LSTM (or char-GRU, char-RNN) training iteration, minigrad against PyTorch, side by side.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/lstm.py              # LSTM
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/lstm.py --cell gru   # GRU
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/lstm.py --cell rnn   # tanh RNN

The model: embedding (65 characters -> 256), 2 layers of cells with hidden
size 256 stepped one time step at a time over a sequence of 64, a Linear to
the vocabulary; batch 32, float32. minigrad runs lmroad's ``LSTMLM``/``RNNLM``
(``RNNLM(cell=...)``); PyTorch runs the same model stepping ``nn.LSTMCell``/
``nn.GRUCell``/``nn.RNNCell`` in a Python loop ("torch", the like-for-like
comparison) and, for reference, one fused ``nn.LSTM``/``nn.GRU``/``nn.RNN`` over the whole sequence
("torch_fused": what PyTorch users would write; its C++ loop shows how much of
the stepped cost is Python and per-op overhead). One iteration is forward,
backward, gradient clipping and an AdamW step (see workloads.py).

Prints one JSON line per framework (ms per iteration: median, min, max;
tokens/s; achieved GFLOP/s from ``workloads.rnn_matmul_flops``:
6·(L·2·G·H² + H·V) per token, G = 4 gates for the LSTM, 3 for the GRU, 1 for the RNN), then
one with the ratios minigrad / each PyTorch variant; a table goes to stderr.
"""

from __future__ import annotations

import argparse

import common


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm")
    ap.add_argument("--no-fused", action="store_true", help="skip PyTorch's fused nn.LSTM/nn.RNN")
    common.add_common_args(ap, repeats=7, warmup=2)
    ap.add_argument("--profile", action="store_true",
                    help="after timing: forward/backward/update times per framework (a JSON "
                         "line), and cProfile of 3 minigrad iterations (stderr)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.repeats, args.warmup, args.no_torch = 1, 0, True
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    common.set_threads(args.threads)
    if args.no_cpu_kernels:
        import minigrad.cpu
        minigrad.cpu.use_cpu_kernels(False)
    import workloads  # imports NumPy: after set_threads

    torch = None if args.no_torch else common.torch_or_none(args.threads)
    cfg = workloads.RNNBenchConfig(args.cell, **workloads.RNN_PRESETS["smoke" if args.smoke else "default"])
    fns = {"minigrad": workloads.minigrad_rnn(cfg, device=args.device)}
    if torch is not None:
        fns["torch"] = workloads.torch_rnn(torch, cfg, device=args.device)
        if not args.no_fused:
            fns["torch_fused"] = workloads.torch_rnn(torch, cfg, fused=True, device=args.device)
    if args.device == "cpu":                                # the iteration's own products, NumPy alone
        fns["numpy_matmul_floor"] = common.matmul_floor(fns["minigrad"])
    first_loss = {name: f() for name, f in fns.items()}     # an untimed call
    first_loss.pop("numpy_matmul_floor", None)
    times = common.alternate(fns, args.repeats, max(args.warmup - 1, 0))

    flops = workloads.rnn_matmul_flops(cfg)
    extra, columns = {}, {}
    for name, xs in times.items():
        if name == "numpy_matmul_floor":
            continue
        sec = common.summary(xs, 1)["median"]
        extra[name] = {"tokens_per_s": flops["tokens_per_iter"] / sec,
                       "gflops": flops["per_iter"] / sec / 1e9, "first_loss": first_loss[name]}
        columns[name] = {"tokens/s": f"{extra[name]['tokens_per_s']:,.0f}",
                         "GFLOP/s": f"{extra[name]['gflops']:.1f}"}
    config = {**cfg.as_dict(), "n_embd": cfg.hidden_size, "dropout": 0.0, "dtype": "float32",
              "threads": args.threads, "device": args.device, "matmul_flops_per_iter": flops["per_iter"]}
    bench = args.cell
    common.report(bench, config, times, extra)
    common.print_summary(
        f"{args.cell}: {cfg.num_layers} layers, hidden {cfg.hidden_size}, sequence {cfg.seq_len}, "
        f"batch {cfg.batch_size}, stepped cells; {args.threads} thread(s), {args.repeats} repeats",
        times, columns)
    if args.profile:
        common.profile(f"{bench}-profile", fns)


if __name__ == "__main__":
    main()
