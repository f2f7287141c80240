"""Data-parallel training over processes and machines.

Start the same script on N processes (``mpiexec -n N python train.py``; with a
host file, across machines). Each process, a *rank*, holds the whole model and
trains it on its own share of every batch; after each backward pass the ranks
average their gradients (an all-reduce), so every replica takes the same step
as one process would on the whole batch::

    from minigrad import distributed as dist
    model = dist.DistributedDataParallel(model)      # rank 0's weights everywhere
    loss = model(x_shard, y_shard)[1]
    loss.backward()                                  # .grad: the mean over the ranks
    optimizer.step()

The engines are MPI (mpi4py) for host arrays and NCCL (through CuPy) for CUDA
arrays, bootstrapped over MPI: one rank per GPU. Without ``mpiexec`` the world
is one process and every call returns at once, so the same script runs alone.

- ``world.py``: the ranks and the collective calls (``all_reduce``, ``broadcast``, ...);
- ``ddp.py``: ``DistributedDataParallel`` (gradient buckets sent during backward) and
  ``broadcast_optimizer_state``.
"""

from .ddp import DistributedDataParallel, broadcast_optimizer_state, parameter_fingerprint
from .world import (
    abort,
    all_gather_object,
    all_reduce,
    barrier,
    broadcast,
    broadcast_object,
    init,
    is_initialized,
    launched_by_mpi,
    launcher_variables,
    rank,
    world_size,
)

__all__ = ["init", "is_initialized", "launched_by_mpi", "launcher_variables", "rank", "world_size",
           "barrier", "abort",
           "all_reduce", "broadcast", "all_gather_object", "broadcast_object",
           "DistributedDataParallel", "broadcast_optimizer_state", "parameter_fingerprint"]
