"""``python -m lmroad road``: the road of language models, measured as the literature measures it.

    python -m lmroad road [--quick | --budget quick|default|large] [--jobs N] [--out DIR]
                          [--corpus shakespeare | --data PATH] [--seed N] [--no-plots]

What it does, in two phases of independent runs (``runs.py``; ``pool.py``
runs them on ``--jobs`` worker processes, saves each as it finishes, and
skips the saved ones when the command is run again):

1. n-gram models of several orders, and a learning-rate sweep of every
   neural architecture at the smallest size (scored on tuning windows held
   apart from the validation windows that every reported loss uses);
2. with each architecture's best learning rate: every architecture at every
   size and seed, on the same token budget per size; the long-range tasks
   (recall, copying memory, adding problem) for RNN, LSTM and Transformer.

Then ``writeup.py`` turns the saved runs into ``OUT/report.md`` (with CSV and
PNG files), every verdict computed by the rule in ``stats.py``.

Budgets are tokens, derived from FLOPs, never seconds: the same command
gives the same losses, accuracies and bits per character on a busy machine
and an idle one, with 1 worker or 8 (only the timing columns differ).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from lmroad.data import CorpusError, build_tokenizer, load_corpus
from minigrad import distributed as dist

from . import writeup
from .common import fmt_seconds
from .flops import forward_flops_per_token
from .interpret import pick_line
from .pool import Interrupted, run_all
from .quality import ARCHS, build_model, width_for
from .report import Report
from .runs import Data, spec_id

__all__ = ["Budget", "QUICK", "DEFAULT", "LARGE", "BUDGETS", "main", "run_road", "plan"]

TASK_ARCHS = ("rnn", "lstm", "transformer")
# part of every run's spec: bump it when a change to the code changes results, so that
# runs saved by an older version are not mixed into a new report
VERSION = 1


@dataclass(frozen=True)
class Budget:
    """Every size and count the road uses. No field is a time."""

    name: str
    # the text models
    ngram_orders: tuple[int, ...]
    sizes: tuple[int, ...]            # target non-embedding parameters of each size
    flops: tuple[float, ...]          # training FLOP budget of each size (C = 3 · 2N · D gives D tokens)
    seeds: int                        # seeds per (architecture, size)
    sweep_lrs: tuple[float, ...]      # learning rates tried at the smallest size
    n_ctx: int                        # training window and evaluation context
    batch_size: int
    eval_windows: int                 # validation windows of n_ctx + 1 tokens, the same for every model
    tune_windows: int                 # tuning windows (learning-rate sweep only)
    curve_windows: int                # validation windows for the learning curves
    carried_lanes: int                # recurrent models, carried-state evaluation
    carried_windows: int
    grad_T: int
    grad_batch: int
    sample_chars: int
    train_chars: int | None           # use only this much training text (None: all)
    # the long-range tasks (one learning rate per architecture: the sweep's)
    recall_k: tuple[int, ...]
    copy_T: tuple[int, ...]
    adding_T: tuple[int, ...]
    task_steps: int
    task_batch: int
    task_seeds: int
    task_width: dict = field(default_factory=lambda: {"rnn": 64, "lstm": 32, "gru": 36, "transformer": 32})
    task_eval: int = 512
    recall_symbols: int = 8

    def tokens(self, i: int) -> int:
        """Training tokens of size i: D = C / (3 · 2 N), with 2N the forward FLOPs per
        token of a model of N non-embedding parameters (the attention term aside)."""
        return int(round(self.flops[i] / (6 * self.sizes[i])))


QUICK = Budget(name="quick", ngram_orders=(2, 3), sizes=(1_500, 6_000), flops=(2.7e8, 1.1e9), seeds=2,
               sweep_lrs=(3e-3, 1e-2), n_ctx=32, batch_size=8, eval_windows=64, tune_windows=16,
               curve_windows=8, carried_lanes=4, carried_windows=4, grad_T=16, grad_batch=4,
               sample_chars=30, train_chars=200_000, recall_k=(4,), copy_T=(5,), adding_T=(10,),
               task_steps=30, task_batch=16, task_seeds=1, task_eval=64,
               task_width={"rnn": 16, "lstm": 12, "gru": 12, "transformer": 16})

DEFAULT = Budget(name="default", ngram_orders=(2, 3, 4, 5), sizes=(6_000, 18_000, 54_000),
                 flops=(3.6e10, 2.16e11, 1.296e12), seeds=3, sweep_lrs=(3e-3, 1e-2, 3e-2),
                 n_ctx=256, batch_size=32, eval_windows=1024, tune_windows=256, curve_windows=64,
                 carried_lanes=32, carried_windows=24, grad_T=100, grad_batch=16, sample_chars=300,
                 train_chars=None, recall_k=(5, 20, 50), copy_T=(5, 10, 25), adding_T=(10, 25, 50),
                 task_steps=1000, task_batch=32, task_seeds=2)

LARGE = Budget(name="large", ngram_orders=(2, 3, 4, 5, 6), sizes=(20_000, 60_000, 180_000, 540_000),
               flops=(1.2e12, 7.2e12, 4.32e13, 2.592e14), seeds=5, sweep_lrs=(3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
               n_ctx=512, batch_size=32, eval_windows=4096, tune_windows=512, curve_windows=128,
               carried_lanes=64, carried_windows=32, grad_T=200, grad_batch=32, sample_chars=500,
               train_chars=None, recall_k=(10, 50, 100, 200, 400), copy_T=(100, 200, 300, 500),
               adding_T=(100, 200, 400, 750), task_steps=10_000, task_batch=64, task_seeds=3,
               task_width={"rnn": 128, "lstm": 64, "gru": 72, "transformer": 64}, task_eval=2048)

BUDGETS = {b.name: b for b in (QUICK, DEFAULT, LARGE)}


# --------------------------------------------------------------------------- the plan


def _cpu_kernels() -> str:
    """Which code the fused ops ran, for the report: numba's loops (the fast extra) or NumPy's
    (they round differently, so the last digits of the numbers depend on it)."""
    import importlib.metadata

    import minigrad.cpu
    if minigrad.cpu.is_available():
        return f"compiled loops (numba {importlib.metadata.version('numba')}, the fast extra)"
    return f"NumPy code ({minigrad.cpu.unavailable_reason()})"

def _lm_spec(budget: Budget, kind: str, arch: str, width: int, size_index: int, lr: float, seed: int,
             data_seed: int, vocab: int, **extra) -> dict:
    spec = dict(kind=kind, arch=arch, width=width, size_index=size_index,
                target_size=budget.sizes[size_index],
                tokens=budget.tokens(size_index), batch_size=budget.batch_size, n_ctx=budget.n_ctx, lr=lr,
                seed=seed, data_seed=data_seed, eval_windows=budget.eval_windows,
                tune_windows=budget.tune_windows, curve_windows=budget.curve_windows,
                carried_lanes=budget.carried_lanes, carried_windows=budget.carried_windows,
                grad_T=budget.grad_T, grad_batch=budget.grad_batch, sample_chars=budget.sample_chars,
                **extra)
    f = forward_flops_per_token(build_model(arch, vocab, width, budget.n_ctx), budget.n_ctx)
    spec["cost"] = spec["tokens"] * (3 * f + 3e5) + budget.eval_windows * budget.n_ctx * (f + 1e5)
    return spec


def widths(budget: Budget, vocab: int) -> dict[tuple[str, int], int]:
    """(architecture, size index) -> the width matching that size's parameter target."""
    return {(a, i): width_for(a, vocab, n, budget.n_ctx) for a in ARCHS for i, n in enumerate(budget.sizes)}


def plan(budget: Budget, seed: int, vocab: int, lrs: dict[str, float] | None = None,
         extend: dict[str, float] | None = None) -> list[dict]:
    """Phase 1 (``lrs`` None): n-grams and the learning-rate sweep; with ``extend``
    ({arch: lr}) only those extra sweep trials. Phase 2 (``lrs`` given): the grid and the tasks."""
    w = widths(budget, vocab)
    common = dict(data_seed=seed, vocab=vocab)
    if extend:
        specs = [_lm_spec(budget, "sweep", a, w[(a, 0)], 0, lr, seed, **common) for a, lr in extend.items()]
    else:
        specs = _plan(budget, seed, vocab, lrs, w, common)
    for s in specs:
        s["version"] = VERSION
    return specs


def _plan(budget, seed, vocab, lrs, w, common) -> list[dict]:
    if lrs is None:
        specs = [dict(kind="ngram", n=n, seed=seed, data_seed=seed, n_ctx=budget.n_ctx,
                      eval_windows=budget.eval_windows, sample_chars=budget.sample_chars, cost=3e9 * n)
                 for n in budget.ngram_orders]
        specs += [_lm_spec(budget, "sweep", a, w[(a, 0)], 0, lr, seed, **common)
                  for a in ARCHS for lr in budget.sweep_lrs]
        return specs
    largest = len(budget.sizes) - 1
    specs = [_lm_spec(budget, "lm", a, w[(a, i)], i, lrs[a], seed + s, interpret=(i == largest and s == 0),
                      **common)
             for a in ARCHS for i in range(len(budget.sizes)) for s in range(budget.seeds)]
    for a in TASK_ARCHS:
        tw = budget.task_width[a]
        for s in range(budget.task_seeds):
            base = dict(arch=a, width=tw, lr=lrs[a], seed=seed + s, steps=budget.task_steps,
                        batch_size=budget.task_batch, n_eval=budget.task_eval)
            per_token = budget.task_steps * budget.task_batch * 3e5     # a scheduling estimate only
            specs += [dict(kind="recall", k=k, n_symbols=budget.recall_symbols, **base,
                           cost=per_token * (k + 1)) for k in budget.recall_k]
            specs += [dict(kind="copy", T=T, **base, cost=per_token * (T + 20)) for T in budget.copy_T]
            specs += [dict(kind="adding", T=T, **base, cost=per_token * T) for T in budget.adding_T]
    return specs


LR_LADDER = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
MAX_EXTENSIONS = 2         # steps a sweep may take beyond its grid


def best_lrs(results: dict[str, dict]) -> dict[str, float]:
    """Each architecture's learning rate with the lowest tuning loss (the same procedure for all;
    a diverged trial, NaN, never wins)."""
    out = {}
    for a in ARCHS:
        trials = [r for r in results.values() if r["kind"] == "sweep" and r["arch"] == a]
        if trials:
            out[a] = min(trials, key=lambda r: (r["tune_loss"] if np.isfinite(r["tune_loss"]) else math.inf,
                                                r["lr"]))["lr"]
    return out


def sweep_extensions(budget: Budget, results: dict[str, dict]) -> dict[str, float]:
    """Architectures whose best learning rate is at an end of what was tried, with the
    next value of ``LR_LADDER`` beyond that end (at most ``MAX_EXTENSIONS`` beyond the grid)."""
    out = {}
    for a, best in best_lrs(results).items():
        tried = sorted(r["lr"] for r in results.values() if r["kind"] == "sweep" and r["arch"] == a)
        i = LR_LADDER.index(best)
        lo, hi = LR_LADDER.index(min(budget.sweep_lrs)), LR_LADDER.index(max(budget.sweep_lrs))
        if best == tried[-1] and i + 1 < len(LR_LADDER) and i + 1 <= hi + MAX_EXTENSIONS:
            out[a] = LR_LADDER[i + 1]
        elif best == tried[0] and i > 0 and i - 1 >= lo - MAX_EXTENSIONS:
            out[a] = LR_LADDER[i - 1]
    return out


def phase_one(budget: Budget, seed: int, vocab: int, get, say=lambda m: None) -> tuple[list[dict], dict]:
    """The n-grams and the learning-rate sweep, one step past the grid's edge where the best
    is there; ``get(specs) -> {id: result}`` runs them (or loads them). Returns (specs, results)."""
    specs = plan(budget, seed, vocab)
    results = dict(get(specs))
    while more := sweep_extensions(budget, results):
        say("learning-rate sweep: best at the edge of the grid for " + ", ".join(more) + "; trying "
            + ", ".join(f"{a} {lr:g}" for a, lr in more.items()))
        extra = plan(budget, seed, vocab, extend=more)
        specs += extra
        results.update(get(extra))
    return specs, results


# --------------------------------------------------------------------------- the command

class RoadError(ValueError):
    """The road cannot run as asked (e.g. a text too short for the budget); the message says why."""


def check_data(data: Data, budget: Budget) -> None:
    """RoadError unless the text holds every window the budget reads: training lanes of
    ``batch_size`` × (n_ctx + 1), tuning and validation windows of n_ctx + 1, and two
    consecutive windows per carried-state lane."""
    n = budget.n_ctx
    need = {"training": (len(data.train), budget.batch_size * (n + 1)),
            "tuning (the first tenth of the validation split)": (len(data.tune), n + 2),
            "validation": (len(data.val), max(n + 2, budget.carried_lanes * (2 * n + 1)))}
    short = [f"{part}: {have:,} tokens, needs {want:,}" for part, (have, want) in need.items() if have < want]
    if short:
        raise RoadError(f"the text is too short for --budget {budget.name} (context {n}, batch "
                        f"{budget.batch_size}): " + "; ".join(short) + "; use a longer text or --quick")


def load_data(corpus_name: str, data_path: str | None, budget: Budget) -> Data:
    corpus = load_corpus(data_path if data_path else corpus_name)
    tok = build_tokenizer("char", corpus)
    train = corpus.train if budget.train_chars is None else corpus.train[:budget.train_chars]
    val = tok.encode(corpus.val)
    n_tune = max(len(val) // 10, budget.n_ctx + 2)            # tuning windows come from here only
    data = Data(train=tok.encode(train), tune=val[:n_tune], val=val[n_tune:], tokenizer=tok,
                prompt=pick_line(corpus.val, 3, 12), line=pick_line(corpus.val, 24, min(48, budget.n_ctx)))
    check_data(data, budget)
    return data


def run_road(budget: Budget, corpus_name: str, data_path: str | None, out_dir: str, seed: int,
             jobs: int = 1, plots: bool = True, quiet: bool = False, command: str | None = None) -> str:
    """Run (or finish) the road and write the report; returns the path of report.md."""
    t0 = time.perf_counter()
    data = load_data(corpus_name, data_path, budget)
    say = (lambda m: None) if quiet or dist.rank() != 0 else (
        lambda m: print(m, file=sys.stderr, flush=True))
    say(f"road ({budget.name}): {len(data.train):,} training, {len(data.tune):,} tuning and "
        f"{len(data.val):,} validation tokens, vocabulary {data.vocab_size}; {jobs} worker(s), "
        f"1 BLAS thread each; report -> {out_dir}")
    say("phase 1 of 2: n-gram models and the learning-rate sweep")
    first, results = phase_one(budget, seed, data.vocab_size,
                               lambda specs: run_all(specs, data, out_dir, jobs=jobs, quiet=quiet), say)
    lrs = best_lrs(results)
    say("learning rates chosen: " + ", ".join(f"{a} {lr:g}" for a, lr in lrs.items()))
    say("phase 2 of 2: every architecture at every size and seed, and the long-range tasks")
    second = plan(budget, seed, data.vocab_size, lrs)
    results.update(run_all(second, data, out_dir, jobs=jobs, quiet=quiet))
    runs = [results[spec_id(s)] for s in first + second]
    setup = dict(budget=dataclasses.asdict(budget), corpus=data_path or corpus_name, seed=seed, jobs=jobs,
                 lrs=lrs, train_tokens=len(data.train), tune_tokens=len(data.tune), val_tokens=len(data.val),
                 vocab=data.vocab_size, prompt=data.prompt, line=data.line,
                 command=command or f"python -m lmroad road --budget {budget.name}",
                 wall_s=time.perf_counter() - t0, run_s=sum(r.get("run_s", 0.0) for r in runs),
                 python=platform.python_version(), numpy=np.__version__,
                 machine=f"{platform.machine()}, {os.cpu_count()} CPUs", cpu_kernels=_cpu_kernels())
    if dist.rank() != 0:                   # rank 0 writes the report (lmroad/experiments/pool.py)
        return os.path.join(out_dir, "report.md")
    path = writeup.write_report(Report(out_dir, plots=plots), setup, runs)
    say(f"done in {fmt_seconds(time.perf_counter() - t0)} (runs loaded from earlier runs of this command "
        f"took no time); report: {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lmroad road", description=(
        "Train n-gram, RNN, LSTM, GRU and Transformer language models at several sizes and seeds on "
        "the same token budgets, run the long-range tasks, and write a report (Markdown, CSV, PNG) "
        "whose verdicts are computed from this run. Budgets are tokens, not seconds: the same "
        "command gives the same numbers on any load."))
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="same as --budget quick: a smoke run of "
                      "every section (about a minute; its numbers mean little)")
    size.add_argument("--budget", choices=sorted(BUDGETS), default="default",
                      help="quick, default (what README runs: about 40 minutes on 2 cores) or large "
                           "(the published task grids; for many cores)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="worker processes, each with one BLAS thread (default: the number of cores); "
                        "the results do not depend on it")
    p.add_argument("--out", default=os.path.join("out", "road"),
                   help="report folder (default out/road); finished runs are kept in OUT/runs and "
                        "skipped when the same command runs again")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--corpus", default="shakespeare", help="a corpus name (default shakespeare)")
    src.add_argument("--data", default=None, help="a UTF-8 text file instead (last 10%% is validation)")
    p.add_argument("--seed", type=int, default=1337, help="the first seed (runs use seed, seed+1, ...)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="accepted as by every lmroad command, but the road's runs always use one BLAS "
                        "thread per worker process (so that their numbers never depend on it): use "
                        "--jobs for more cores")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.seed < 0:
        p.error(f"--seed must be >= 0 (NumPy seeds its generators from it), got {args.seed}")
    if args.data is not None and not os.path.isfile(args.data):
        p.error(f"--data {args.data}: no such file")
    budget = QUICK if args.quick else BUDGETS[args.budget]
    command = "python -m lmroad road" + ("" if budget is DEFAULT else f" --budget {budget.name}") \
        + (f" --data {args.data}" if args.data else "") \
        + (f" --seed {args.seed}" if args.seed != 1337 else "")
    try:
        run_road(budget, args.corpus, args.data, args.out, args.seed, jobs=args.jobs,
                 plots=not args.no_plots, command=command)
    except Interrupted as e:
        print(f"\nlmroad road: {e}", file=sys.stderr)
        return 130
    except (CorpusError, RoadError) as e:
        if os.environ.get("LMROAD_DEBUG"):
            raise
        print(f"lmroad road: error: {e}", file=sys.stderr)
        return 1
    return 0
