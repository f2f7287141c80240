"""Running the road's runs: in parallel, saved as they finish, resumable.

    results = run_all(specs, data, out_dir, jobs=2)

* Every run is independent (``runs.execute``), so ``jobs`` worker processes
  take them from a queue, largest first. Each worker is a fresh process whose
  BLAS *starts* with one thread (``OPENBLAS_NUM_THREADS=1`` and friends in its
  environment, then threadpoolctl): runs neither fight over the cores nor
  depend on how many run at once. Even ``jobs=1`` runs in a worker: an
  OpenBLAS that started with two threads and was then limited to one was
  measured to round differently (a relative 1e-9 at first, amplified by
  training) from one that started with one, so the parent's own setting must
  not leak into the numbers.
* A finished run is written to ``OUT/runs/<id>.json`` at once (to a
  temporary file, then renamed: a crash never leaves half a file). Running
  the same command again loads every run whose file holds the same spec
  and runs only the rest; a changed spec (another budget, seed or corpus)
  runs again.
* Ctrl-C stops the workers; what had finished is kept (``Interrupted``).
* A progress line shows runs done, the runs in flight and the ETA (from the
  estimated cost of the runs left, at the speed measured so far).
* Under ``mpiexec -n N`` the runs left are dealt out to the ranks (rank r takes
  every N-th, largest first), each rank runs its share with its own ``jobs``
  workers, and every rank then receives all results (small dicts, as Python
  objects); rank 0 alone writes them. A run's numbers do not depend on where it
  ran (a fresh worker with one BLAS thread), so the report is the one a single
  process writes.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import sys
import time

from lmroad.threads import set_threads
from minigrad import distributed as dist

from .common import fmt_seconds
from .runs import Data, execute, spec_hash, spec_id

__all__ = ["run_all", "Interrupted", "load_run"]


class Interrupted(Exception):
    """The user pressed Ctrl-C; ``done`` runs of ``total`` are saved."""

    def __init__(self, done: int, total: int, out_dir: str):
        super().__init__(f"stopped: {done} of {total} runs are saved in {out_dir}; "
                         "run the same command again to finish the rest")
        self.done, self.total = done, total


_DATA: Data | None = None


def _init_worker(data: Data) -> None:
    global _DATA
    _DATA = data
    set_threads(1)


def _work(spec: dict) -> dict:
    return execute(spec, _DATA)


def _path(out_dir: str, spec: dict) -> str:
    return os.path.join(out_dir, "runs", spec_id(spec) + ".json")


def load_run(out_dir: str, spec: dict) -> dict | None:
    """The saved result of ``spec``, or None if it is missing, unreadable or of another spec."""
    try:
        with open(_path(out_dir, spec), encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, ValueError):
        return None
    return saved.get("result") if saved.get("spec_hash") == spec_hash(spec) else None


def _save(out_dir: str, spec: dict, result: dict) -> None:
    path = _path(out_dir, spec)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"spec_hash": spec_hash(spec), "result": result}, f)
    os.replace(tmp, path)


class _Bar:
    """``runs 12/58 · running a, b · ETA 4m10s`` (rewritten in place on a terminal)."""

    def __init__(self, total: int, cost_left: float, stream=None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.total, self.done, self.quiet = total, 0, quiet
        self.cost_left, self.cost_done = cost_left, 0.0
        self.t0 = time.perf_counter()

    def eta(self) -> str:
        if self.cost_done <= 0:
            return "?"
        return fmt_seconds((time.perf_counter() - self.t0) * self.cost_left / self.cost_done)

    def show(self, running: list[str], finished: str | None = None) -> None:
        if self.quiet:
            return
        flight = ", ".join(running)
        line = (f"runs {self.done}/{self.total} · {fmt_seconds(time.perf_counter() - self.t0)} · "
                f"ETA {self.eta()}" + (f" · running {flight}" if flight else ""))
        if self.tty:
            print("\r\033[K" + line, end="", file=self.stream, flush=True)
        elif finished is not None:
            print(f"{line} · finished {finished}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and not self.quiet:
            print(file=self.stream, flush=True)


def run_all(specs: list[dict], data: Data, out_dir: str, jobs: int = 1, quiet: bool = False,
            stream=None, in_process: bool = False) -> dict[str, dict]:
    """Every spec's result, keyed by ``spec_id``: loaded when saved, computed otherwise.

    ``in_process=True`` runs them here, one after the other (for tests of the
    bookkeeping and for a debugger; its numbers follow this process's BLAS setup)."""
    rank, size = dist.rank(), dist.world_size()
    if rank == 0:
        os.makedirs(os.path.join(out_dir, "runs"), exist_ok=True)
    dist.barrier()
    ids = [spec_id(s) for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError("road: two runs of the plan have the same id")
    results, todo = {}, []
    for s in specs:
        saved = load_run(out_dir, s)
        if saved is not None:
            results[spec_id(s)] = saved
        else:
            todo.append(s)
    todo.sort(key=lambda s: -s.get("cost", 1.0))          # largest first: better packing
    everyone = todo
    todo = todo[rank::size]                               # this rank's share (all, alone)
    bar = _Bar(len(specs), sum(s.get("cost", 1.0) for s in todo), stream, quiet or rank != 0)
    bar.done = len(results)
    if not everyone:
        return results

    def finish(spec, result):
        if rank == 0:
            _save(out_dir, spec, result)
        results[spec_id(spec)] = result
        bar.done += 1
        bar.cost_done += spec.get("cost", 1.0)
        bar.cost_left -= spec.get("cost", 1.0)

    try:
        if in_process:
            set_threads(1)
            for s in todo:
                bar.show([spec_id(s)])
                finish(s, execute(s, data))
                bar.show([], spec_id(s))
        else:
            _parallel(todo, data, max(1, jobs), finish, bar)
    except KeyboardInterrupt:
        bar.close()
        raise Interrupted(len(results), len(specs), out_dir) from None
    bar.close()
    if size > 1:                          # every rank gets every result; rank 0 saves the others'
        spec_of = {spec_id(s): s for s in everyone}
        mine = [(spec_id(s), results[spec_id(s)]) for s in todo]
        for r, theirs in enumerate(dist.all_gather_object(mine)):
            if r == rank:
                continue
            for sid, result in theirs:
                results[sid] = result
                if rank == 0:
                    _save(out_dir, spec_of[sid], result)
    return results


def _parallel(todo: list[dict], data: Data, jobs: int, finish, bar: _Bar) -> None:
    # the workers' BLAS starts with one thread (threadpoolctl then pins it)
    env = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    os.environ.update({k: "1" for k in env})
    # and they are plain processes, not ranks: the MPI launcher's variables stay out of them
    launcher = {k: os.environ.pop(k) for k in dist.launcher_variables()}
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                  initargs=(data,))
    try:
        pending = {pool.submit(_work, s): s for s in todo}
        while pending:
            done, _ = cf.wait(pending, timeout=1.0, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                spec = pending.pop(fut)
                finish(spec, fut.result())
                bar.show(_running(pending, jobs), spec_id(spec))
            if not done:
                bar.show(_running(pending, jobs))
    except BaseException:
        for proc in list(getattr(pool, "_processes", {}).values()):
            proc.terminate()                       # do not wait for runs in flight
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.environ.update(launcher)
    pool.shutdown(wait=True)



def _running(pending: dict, jobs: int) -> list[str]:
    # the executor marks a few queued runs "running" ahead of time: show one per worker
    return [spec_id(s) for f, s in pending.items() if f.running()][:jobs]
