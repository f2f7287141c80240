"""Recompute saved runs of a road and compare them with what was saved.

    python -m lmroad.experiments.recheck OUT RUN_ID [RUN_ID ...] [--busy] [--budget NAME]
                                         [--corpus NAME | --data PATH] [--seed N]

Each run (a file name in ``OUT/runs`` without ``.json``) is executed again in a
fresh worker process, exactly as the road runs it, and every value the run
writes, timings aside, is compared with the saved one. ``--busy`` keeps a
CPU-burning process running beside it, to show that load changes only the
timings. Budget, corpus and seed must be those of the road that wrote OUT.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

from .pool import load_run, run_all
from .road import BUDGETS, best_lrs, load_data, phase_one, plan
from .runs import is_timing, spec_id

__all__ = ["main", "differences"]

_BURN = "import time\nt = time.time()\nwhile time.time() - t < 3600: pass\n"


def differences(saved, new, path: str = "") -> list[str]:
    """Where ``new`` differs from ``saved``, over the keys ``new`` has (timings aside)."""
    if isinstance(new, dict) and isinstance(saved, dict):
        out = []
        for k in new:
            if is_timing(k):
                continue
            out += ([f"{path}/{k}: missing"] if k not in saved
                    else differences(saved[k], new[k], f"{path}/{k}"))
        return out
    if isinstance(new, list) and isinstance(saved, list):
        if len(new) != len(saved):
            return [f"{path}: length {len(saved)} -> {len(new)}"]
        return [d for i, (a, b) in enumerate(zip(saved, new)) for d in differences(a, b, f"{path}[{i}]")]
    return [] if saved == new else [f"{path}: {saved!r} -> {new!r}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lmroad.experiments.recheck",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the road's output folder")
    p.add_argument("runs", nargs="+", metavar="RUN_ID", help="run ids (file names in OUT/runs, no .json)")
    p.add_argument("--busy", action="store_true", help="recompute beside a CPU-burning process")
    p.add_argument("--budget", choices=sorted(BUDGETS), default="default")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--corpus", default="shakespeare")
    src.add_argument("--data", default=None)
    p.add_argument("--seed", type=int, default=1337)
    args = p.parse_args(argv)
    budget = BUDGETS[args.budget]
    data = load_data(args.corpus, args.data, budget)
    def load_saved(specs):
        found = {spec_id(s): load_run(args.out, s) for s in specs}
        if any(r is None for r in found.values()):
            p.error(f"{args.out} holds no finished learning-rate sweep for --budget {budget.name} "
                    f"--seed {args.seed}")
        return found

    first, sweep = phase_one(budget, args.seed, data.vocab_size, load_saved)
    specs = {spec_id(s): s for s in first + plan(budget, args.seed, data.vocab_size, best_lrs(sweep))}
    unknown = [r for r in args.runs if r not in specs or load_run(args.out, specs[r]) is None]
    if unknown:
        p.error(f"not saved runs of this road in {args.out}: {', '.join(unknown)}")
    burner = subprocess.Popen([sys.executable, "-c", _BURN]) if args.busy else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fresh = run_all([specs[r] for r in args.runs], data, tmp, jobs=1, quiet=True)
    finally:
        if burner is not None:
            burner.kill()
    bad = 0
    for r in args.runs:
        saved, new = load_run(args.out, specs[r]), fresh[r]
        diff = differences(saved, new)
        bad += bool(diff)
        where = ", beside a busy core" if burner else ""
        print(f"{r}: " + ("identical" if not diff else f"{len(diff)} values differ, first: {diff[0]}")
              + f" ({new['run_s']:.0f}s now, {saved['run_s']:.0f}s saved{where})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
