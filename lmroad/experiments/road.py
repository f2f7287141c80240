"""``python -m lmroad road``: measure the seed document's claims, write a report.

    python -m lmroad road [--quick] [--device cpu|cuda] [--out DIR] [--corpus shakespeare | --data PATH]
                          [--seed N]

Five sections, each in its own module of this folder:

    1. quality.py        n-gram, RNN, LSTM, GRU, Transformer at matched parameters and time:
                         parameters, tokens/s, validation bits per character, a sample
    2. gradient_flow.py  ‖∂L_T/∂h_t‖ against T − t for the RNN and the LSTM (GRU too),
                         at initialisation and after training (FAQ 1)
    3. long_range.py     accuracy on "recall the token k steps back" against k (FAQ 2, 3)
    4. interpret.py      attention maps per head, LSTM gate activations over a line
    5. writeup.py        the "how to choose" table (FAQ 4) from 1-3, and the report

``--quick`` is a smoke run (tiny models, seconds per model) that checks the
whole pipeline; its numbers mean little. The default budget is the real
measurement; it prints its expected duration first.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np

import minigrad as mg
from lmroad.data import CorpusError, build_tokenizer, load_corpus
from minigrad.errors import DeviceError

from . import writeup
from .common import Progress, fmt_seconds
from .gradient_flow import GradientFlowResult, decay_summary, gradient_norms
from .interpret import InterpretResult, attention_maps, lstm_gates, pick_line
from .long_range import run_long_range
from .quality import build_neural, matched_size, run_quality
from .report import Report

__all__ = ["Budget", "QUICK", "DEFAULT", "main", "run_road"]


@dataclass(frozen=True)
class Budget:
    """Every size and duration the road uses. Times are wall-clock seconds."""

    name: str
    # 1. quality
    ngram_orders: tuple[int, ...]
    param_budget: int            # parameters of each neural model (matched by size search)
    seconds_per_model: float     # training time of each neural model
    batch_size: int
    block_size: int
    eval_tokens: int             # validation tokens every model is scored on
    sample_chars: int
    max_train_chars: int | None  # use only this much training text (None: all)
    # 2. gradient flow
    grad_T: int
    grad_batch: int
    # 3. long range
    distances: tuple[int, ...]
    lr_param_budget: int
    lr_steps: int
    lr_batch: int
    lr_symbols: int
    lr_eval: int
    # the rest
    lr_rnn: float = 3e-3
    lr_transformer: float = 1e-3

    def estimate_seconds(self, n_ngram_tokens: int) -> float:
        """A rough forecast (2 CPU cores), printed before the run starts."""
        # coefficients measured on a 2-core x86 machine (seconds per unit of work)
        ngram = sum(0.3 + 0.15 * n for n in self.ngram_orders) * n_ngram_tokens / 1e6
        quality = 4 * (self.seconds_per_model + 1 + self.eval_tokens / 10_000 + self.sample_chars / 200)
        long_range = self.lr_steps * sum(k + 1 for k in self.distances) * self.lr_batch * 4e-5
        return ngram + quality + long_range + 10


QUICK = Budget(name="quick", ngram_orders=(2, 3, 4), param_budget=15_000, seconds_per_model=3.0,
               batch_size=16, block_size=32, eval_tokens=2_000, sample_chars=60,
               max_train_chars=300_000, grad_T=24, grad_batch=4, distances=(5, 20, 60),
               lr_param_budget=3_000, lr_steps=25, lr_batch=16, lr_symbols=4, lr_eval=128)

DEFAULT = Budget(name="default", ngram_orders=(2, 3, 4, 5), param_budget=200_000,
                 seconds_per_model=300.0, batch_size=32, block_size=64, eval_tokens=100_000,
                 sample_chars=300, max_train_chars=None, grad_T=100, grad_batch=16,
                 distances=(5, 10, 20, 50, 100, 200), lr_param_budget=20_000, lr_steps=500,
                 lr_batch=32, lr_symbols=8, lr_eval=512)


def _long_range_factory(budget: Budget):
    """Small models of about ``lr_param_budget`` parameters for the recall task."""
    small = dict(n_layer=2, n_head=2, n_embd_rnn=16)

    def make(kind: str, vocab_size: int, max_len: int):
        size = matched_size(kind, vocab_size, budget.lr_param_budget, max_len, **small)
        return build_neural(kind, vocab_size, size, max_len, **small)
    return make


def run_road(budget: Budget, corpus_name: str, data_path: str | None, out_dir: str, device: str,
             seed: int, progress: Progress | None = None, plots: bool = True) -> str:
    """Run every section and write the report; returns the path of report.md."""
    progress = progress or Progress()
    t_start = time.perf_counter()
    mg.manual_seed(seed)

    # ---- data
    corpus = load_corpus(data_path if data_path else corpus_name)
    tok = build_tokenizer("char", corpus)
    train_text = corpus.train if budget.max_train_chars is None else corpus.train[:budget.max_train_chars]
    train_ids, val_ids = tok.encode(train_text), tok.encode(corpus.val)
    forecast = budget.estimate_seconds(len(train_ids))
    progress.say(f"road ({budget.name}): corpus {corpus.name!r}, {len(train_ids):,} training and "
                 f"{len(val_ids):,} validation characters, vocabulary {tok.vocab_size}, device {device}")
    progress.say(f"expected duration: about {fmt_seconds(forecast)} on 2 CPU cores; report -> {out_dir}")

    # ---- 1. quality and cost
    prompt = pick_line(corpus.val, 3, 12)
    progress.say("1/4 quality and cost")
    quality = run_quality(train_ids, val_ids, tok, ngram_orders=budget.ngram_orders,
                          param_budget=budget.param_budget, seconds_per_model=budget.seconds_per_model,
                          batch_size=budget.batch_size, block_size=budget.block_size,
                          eval_tokens=min(budget.eval_tokens, len(val_ids) - 1),
                          sample_chars=budget.sample_chars, prompt=prompt, lr_rnn=budget.lr_rnn,
                          lr_transformer=budget.lr_transformer, device=device, seed=seed,
                          progress=progress)

    # ---- 2. gradient flow: the same architectures, freshly initialised and trained
    progress.say("2/4 gradient flow")
    T = min(budget.grad_T, len(val_ids) - 2)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(val_ids) - T - 1, size=budget.grad_batch)
    win = np.stack([val_ids[s:s + T + 1] for s in starts])
    idx, tgt = mg.tensor(win[:, :-1], device=device), mg.tensor(win[:, 1:], device=device)
    curves, grad_rows = {}, []
    for kind in ("rnn", "lstm", "gru"):
        mg.manual_seed(seed)             # the same initial weights the trained model started from
        fresh = build_neural(kind, tok.vocab_size, quality.sizes[kind], budget.block_size).to(device)
        for stage, model in (("init", fresh), ("trained", quality.models[kind])):
            norms = gradient_norms(model, idx, tgt)
            curves[(kind, stage)] = norms
            grad_rows.append(dict(model=kind, stage=stage, **decay_summary(norms)))
            progress.say(f"gradient flow  {kind:<5} {stage:<8} factor per step "
                         f"{grad_rows[-1]['factor_per_step'] or float('nan'):.3f}")
    grads = GradientFlowResult(curves, grad_rows, T)

    # ---- 3. long-range dependency
    progress.say("3/4 long-range dependency (recall the token k steps back)")
    long_range = run_long_range(_long_range_factory(budget), ["rnn", "lstm", "transformer"],
                                list(budget.distances), budget.lr_steps, budget.lr_batch,
                                budget.lr_symbols, budget.lr_eval, lr=budget.lr_rnn, seed=seed,
                                device=device, progress=progress)

    # ---- 4. interpretability
    progress.say("4/4 attention maps and LSTM gates")
    line = pick_line(corpus.val, 24, min(48, budget.block_size))
    line_ids = tok.encode(line)
    interp = InterpretResult(line, attention_maps(quality.models["transformer"], line_ids, device),
                             lstm_gates(quality.models["lstm"], line_ids, device))

    # ---- the report
    setup = dict(budget=dataclasses.asdict(budget), corpus=corpus.name, device=device, seed=seed,
                 train_chars=len(train_ids), val_chars=len(val_ids), vocab=tok.vocab_size,
                 data=data_path, seconds=time.perf_counter() - t_start, python=platform.python_version(),
                 numpy=np.__version__, machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
                 blas_threads=os.environ.get("OPENBLAS_NUM_THREADS", "default"),
                 forecast=forecast)
    rep = Report(out_dir, plots=plots)
    path = writeup.write_report(rep, setup, quality, grads, long_range, interp, tok)
    progress.say(f"done in {fmt_seconds(time.perf_counter() - t_start)} "
                 f"(forecast {fmt_seconds(forecast)}); report: {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lmroad road", description=(
        "Train every model of the road on the same text and budget, measure the seed document's "
        "claims, and write a report (Markdown, CSV, PNG)."))
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run of every section")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--out", default=os.path.join("out", "road"), help="report folder (default out/road)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--corpus", default="shakespeare", help="a corpus name (default shakespeare)")
    src.add_argument("--data", default=None, help="a UTF-8 text file instead (last 10%% is validation)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    args = p.parse_args(argv)
    try:
        device = str(mg.device(args.device))
    except (ValueError, DeviceError) as e:
        p.error(str(e))                                   # exits with status 2
    if args.data is not None and not os.path.isfile(args.data):
        p.error(f"--data {args.data}: no such file")
    if os.environ.get("OPENBLAS_NUM_THREADS") is None and (os.cpu_count() or 1) <= 4:
        print("hint: on a small or shared machine, OPENBLAS_NUM_THREADS=1 can make the small matrix "
              "products of these models several times faster", file=sys.stderr)
    try:
        run_road(QUICK if args.quick else DEFAULT, args.corpus, args.data, args.out, device, args.seed,
                 plots=not args.no_plots)
    except CorpusError as e:
        if os.environ.get("LMROAD_DEBUG"):
            raise
        print(f"lmroad road: error: {e}", file=sys.stderr)
        return 1
    return 0
