"""How many threads NumPy's BLAS (and OpenMP) may use: one rule for every entry point.

    from lmroad.threads import set_threads
    set_threads()        # the default rule: 1 thread
    set_threads(2)       # opt in to 2 BLAS threads

``python -m lmroad train|sample|eval|road``, the examples and the benchmarks
all take ``--threads N`` (``add_threads_argument``) and call ``set_threads``.

Why one thread by default. The models here multiply small matrices (a few
hundred wide). Measured on a 2-core machine (``benchmarks/threads.py``,
table in benchmarks/RESULTS.md): with the machine to itself, two BLAS
threads cut a training step by 13% (the baby GPT) to 31% (a 4 × 256
Transformer); as soon as another process wants a core, a multi-threaded
OpenBLAS spin-waits for its descheduled worker thread and the step gets 2
to 30 times slower (example 03 once took 443 s instead of 13.7 s). One
thread never collapses like that; ``--threads N`` is for a larger model on a
machine you have to yourself.

The same count goes to minigrad's compiled CPU loops (``minigrad.cpu``, the
``fast`` extra), capped at the cores. The limit is applied at run time
through threadpoolctl, to every BLAS and OpenMP library loaded in the
process (NumPy is imported first so that its BLAS is among them), and it
stays in force for the rest of the process. The
``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS``
environment variables are set to the same number too, for libraries loaded
later and for child processes, which read them when they start.
"""

from __future__ import annotations

import argparse
import os

__all__ = ["DEFAULT_THREADS", "default_threads", "set_threads", "get_threads", "add_threads_argument",
           "parse_threads"]

DEFAULT_THREADS = 1
_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_applied: int | None = None      # what set_threads applied last in this process
_limiter = None                  # threadpoolctl's limiter: kept, so the limit is never undone by accident


def default_threads() -> int:
    """The thread count used when none is asked for: ``DEFAULT_THREADS`` (1).

    Not the number of cores: beside any other busy process a multi-threaded BLAS
    spin-waits for descheduled threads and runs many times slower than one
    thread, while on an idle machine a second thread saves only a fraction of a
    step for models of this size (see the module docstring)."""
    return DEFAULT_THREADS


def _check(n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer (1, 2, ...), got {n!r}")
    return n


def set_threads(n: int | None = None) -> int:
    """Limit BLAS and OpenMP to ``n`` threads (None: ``default_threads()``), now, for the
    rest of the process; returns the number applied. ValueError unless ``n`` is a
    positive integer."""
    global _applied, _limiter
    n = default_threads() if n is None else _check(n)
    for var in _ENV_VARS:                 # for libraries loaded later and for child processes
        os.environ[var] = str(n)
    import numpy  # noqa: F401  (loads NumPy's BLAS, so that threadpoolctl finds it)
    from threadpoolctl import threadpool_limits
    _limiter = threadpool_limits(limits=n)
    import minigrad.cpu  # the compiled CPU loops follow the same count (at most the cores)
    minigrad.cpu.set_num_threads(min(n, minigrad.cpu.max_num_threads()))
    _applied = n
    return n


def get_threads() -> int | None:
    """The count ``set_threads`` applied last in this process, or None if it was never called
    (e.g. to pass on to worker processes, which call ``set_threads`` with it)."""
    return _applied


def parse_threads(text: str) -> int:
    """``--threads``'s argument type: a positive integer, else an argparse error naming it."""
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (1, 2, ...), got {n}")
    return n


THREADS_HELP = (f"BLAS/OpenMP threads (default {DEFAULT_THREADS}: beside any other busy process a "
                "multi-threaded BLAS spin-waits for descheduled threads, measured 2-30x slower on 2 "
                "cores, while on an idle machine 2 threads saved only 13-31%% per step; raise it for "
                "a larger model on a machine of your own)")


def add_threads_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup,
                         default: int | None = None) -> argparse.Action:
    """Add ``--threads N`` to ``parser`` (value None when absent, unless ``default``);
    pass the parsed value to ``set_threads``."""
    return parser.add_argument("--threads", type=parse_threads, default=default, metavar="N",
                               help=THREADS_HELP)
