"""The trainer's view of a data-parallel run (``mpiexec -n N python -m lmroad train``).

Every rank runs the same loop on the same model. What differs, and how:

- **the batch**: ``--batch-size`` is per rank, the global batch is N times it.
  Each step every rank draws the *global* batch from the same generator (the
  random windows, or the next window of N·B recurrent lanes) and keeps its own
  rows. So N ranks see exactly the batches one process with ``--batch-size
  N·B`` would, the shards are disjoint by construction, and the data position
  (the generator, the lanes' offset) is the same on every rank: a checkpoint
  does not depend on N (a recurrent model's lanes, and the hidden states they
  carry, are cut from the global batch: it resumes with the same N·B);
- **dropout**: each rank's masks come from a seed derived from (seed, step,
  rank) with ``numpy.random.SeedSequence``: different on every rank, the same
  on a rerun or a resume;
- **who writes**: rank 0 alone writes checkpoints, metrics, the progress bar
  and the report; the others wait at a barrier;
- **what is summed**: the gradients (``minigrad.distributed.DistributedDataParallel``),
  the training loss (logged as the mean over the ranks), and the validation
  sums and token counts (each rank scores a disjoint shard).

A world of one (no ``mpiexec``) takes none of these paths: the trainer runs as
it always has.
"""

from __future__ import annotations

import numpy as np

from minigrad import distributed as dist

__all__ = ["Ranks"]


class Ranks:
    """This process's rank and the job's size, and the few collective calls the trainer makes."""

    def __init__(self, rank: int | None = None, size: int | None = None):
        """This process's place in the job (``rank``, ``size``: a stand-in for tests that
        look at one rank's share without a launcher; its collective calls need the real job)."""
        self.rank = dist.rank() if rank is None else rank
        self.size = dist.world_size() if size is None else size

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes."""
        return self.rank == 0

    def rows(self, per_rank: int) -> slice:
        """This rank's rows of a global batch of ``size · per_rank`` rows."""
        return slice(self.rank * per_rank, (self.rank + 1) * per_rank)

    def every_nth_row(self, *batches):
        """Rows rank, rank + size, ... of each batch (all of it in a world of one): this
        rank's share of an evaluation batch."""
        return batches if self.size == 1 else tuple(b[self.rank::self.size] for b in batches)

    def sum(self, *values: float) -> list[float]:
        """The sums over the ranks of a few numbers (one all-reduce, by buffer)."""
        if self.size == 1:
            return list(values)
        buf = np.array(values, dtype=np.float64)
        dist.world.reduce_array(buf)
        return buf.tolist()

    def any(self, flag: bool) -> bool:
        """Is ``flag`` true on some rank? (Ctrl-C must stop every rank at the same step.)"""
        return bool(self.sum(float(flag))[0]) if self.size > 1 else flag

    def barrier(self) -> None:
        dist.barrier()

    def step_seed(self, seed: int, step: int) -> int:
        """The seed of this rank's dropout masks at ``step``."""
        return int(np.random.SeedSequence([seed, step, self.rank]).generate_state(1)[0])

    def gather_rows(self, a: np.ndarray, axis: int) -> np.ndarray:
        """Every rank's ``a`` (its rows along ``axis``) put together in rank order, on every
        rank: each fills its own part of a zero array, and an all-reduce sums them."""
        if self.size == 1:
            return a
        per = a.shape[axis]
        shape = list(a.shape)
        shape[axis] = per * self.size
        full = np.zeros(shape, dtype=a.dtype)
        index = [slice(None)] * a.ndim
        index[axis] = self.rows(per)
        full[tuple(index)] = a
        dist.world.reduce_array(full)
        return full

    def own_rows(self, a: np.ndarray, axis: int) -> np.ndarray:
        """This rank's part (rows along ``axis``) of a global array."""
        if self.size == 1:
            return a
        per = a.shape[axis] // self.size
        index = [slice(None)] * a.ndim
        index[axis] = self.rows(per)
        return np.ascontiguousarray(a[tuple(index)])
