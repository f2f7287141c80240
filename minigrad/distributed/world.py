"""The processes of a data-parallel job and the collective calls between them.

One process per rank, started by ``mpiexec -n N python ...``. Tensors travel
by buffer, never by pickle: host (NumPy) arrays through MPI's ``Allreduce`` and
``Bcast`` (mpi4py's upper-case calls, which read the array's memory directly),
CUDA arrays through NCCL (CuPy's ``NcclCommunicator``, its id handed round over
MPI; one rank per GPU, as NCCL requires), and arrays of the fake test device
staged through host memory. ``MINIGRAD_GPU_COLLECTIVES=mpi`` stages CUDA arrays
through the host too: slower, but it lets several ranks share one GPU, which
NCCL refuses. Small Python objects (a model's fingerprint, a
checkpoint's data position) may use the pickle-based ``allgather``.

Started without ``mpiexec``, a script is a world of one: ``world_size()`` is 1,
``rank()`` 0, and every collective returns at once without importing mpi4py,
so the same script runs alone.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import numpy as np

from .. import backend
from ..tensor import Tensor

__all__ = ["init", "is_initialized", "rank", "world_size", "barrier", "all_reduce", "broadcast",
           "all_gather_object", "broadcast_object", "launched_by_mpi", "launcher_variables", "abort"]

#: what MPI launchers put in the environment of every process they start (MPICH's Hydra and
#: Intel MPI: PMI_*, HYDRA_*; Open MPI: OMPI_*; PMIx launchers; MPICH's local rank counts)
_LAUNCHER_PREFIXES = ("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPI_LOCALNRANKS", "MPI_LOCALRANKID")
#: the ones that say "this process is a rank" (any one of them)
_LAUNCHER_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
_OPS = ("sum", "mean")


class _World:
    """What ``init`` set up: the MPI communicator (None in a world of one), and the NCCL
    communicator, made on the first collective on a CUDA tensor."""

    def __init__(self, comm, rank: int, size: int):
        self.comm, self.rank, self.size = comm, rank, size
        self.nccl = None
        self.gpu = os.environ.get("MINIGRAD_GPU_COLLECTIVES", "nccl")
        if self.gpu not in ("nccl", "mpi"):
            raise ValueError(f"MINIGRAD_GPU_COLLECTIVES must be 'nccl' (one rank per GPU) or 'mpi' "
                             f"(through host memory), got {self.gpu!r}")


_world: list[_World | None] = [None]


def launched_by_mpi() -> bool:
    """Was this process started by an MPI launcher (``mpiexec``, ``srun``)?"""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def launcher_variables(environ=None) -> list[str]:
    """The names in ``environ`` (default ``os.environ``) that an MPI launcher set. Remove
    them from a child process's environment to start it as a plain process, not a rank."""
    environ = os.environ if environ is None else environ
    return [k for k in environ if k.startswith(_LAUNCHER_PREFIXES)]


def init(abort_on_exception: bool = True) -> None:
    """Join the job's world (called by every other function here, so optional).

    Under ``mpiexec``, initialises MPI through mpi4py; otherwise a world of one,
    without importing mpi4py. With more than one rank and ``abort_on_exception``,
    an exception that nobody catches on any rank prints its traceback with the
    rank and then ends the whole job (``MPI_Abort``), instead of leaving the other
    ranks waiting in a collective call forever. Calling it again does nothing."""
    if _world[0] is not None:
        return
    if not launched_by_mpi():
        _world[0] = _World(None, 0, 1)
        return
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(
            "minigrad.distributed: this process was started by an MPI launcher, but mpi4py is "
            "not installed; pip install -e \".[distributed]\" (mpi4py and mpich)") from e
    comm = MPI.COMM_WORLD
    _world[0] = _World(comm, comm.Get_rank(), comm.Get_size())
    if abort_on_exception and comm.Get_size() > 1:
        _install_abort_hook(comm)


def _install_abort_hook(comm) -> None:
    previous = sys.excepthook

    def hook(kind, value, tb):
        sys.stderr.write(f"minigrad.distributed: rank {comm.Get_rank()} of {comm.Get_size()} "
                         "raised; ending the job (MPI_Abort)\n")
        sys.stderr.write("".join(traceback.format_exception(kind, value, tb)))
        sys.stderr.flush()
        comm.Abort(1)
        previous(kind, value, tb)                       # not reached: Abort does not return

    sys.excepthook = hook


def is_initialized() -> bool:
    return _world[0] is not None


def _get() -> _World:
    if _world[0] is None:
        init()
    return _world[0]


def rank() -> int:
    """This process's rank, 0 to world_size() - 1 (0 in a world of one)."""
    return _get().rank


def world_size() -> int:
    """How many processes the job has (1 without mpiexec)."""
    return _get().size


def barrier() -> None:
    """Wait until every rank has reached this call."""
    w = _get()
    if w.size > 1:
        w.comm.Barrier()


def abort(code: int = 1) -> None:
    """End every rank of the job now (``MPI_Abort``); in a world of one, exit."""
    w = _get()
    if w.comm is not None and w.size > 1:
        w.comm.Abort(code)
    raise SystemExit(code)


# --------------------------------------------------------------------------- tensors

def _check_tensor(what: str, tensor) -> Any:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what}: expected a minigrad Tensor, got {type(tensor).__name__}")
    if tensor.dtype.kind not in "fiu":
        raise TypeError(f"{what}: tensors of dtype {tensor.dtype} cannot be reduced; "
                        "valid: float16/32/64 and integer dtypes")
    return tensor.data


def all_reduce(tensor: Tensor, op: str = "sum") -> Tensor:
    """Replace ``tensor``'s values, on every rank, with their sum (or mean) over the
    ranks, in place. Returns the tensor. Every rank must call it, in the same order,
    with tensors of the same shape and dtype."""
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be 'sum' or 'mean', got {op!r}")
    data = _check_tensor("all_reduce", tensor)
    if op == "mean" and tensor.dtype.kind != "f":      # before anything is summed in place
        raise TypeError(f"all_reduce: op='mean' needs a float tensor, got {tensor.dtype}; "
                        "use op='sum' for integers")
    w = _get()
    if w.size == 1:
        return tensor
    reduce_array(data, w)
    if op == "mean":
        data *= data.dtype.type(1.0 / w.size)
    tensor._bump_version()
    return tensor


def broadcast(tensor: Tensor, src: int = 0) -> Tensor:
    """Replace ``tensor``'s values on every rank with rank ``src``'s, in place."""
    data = _check_tensor("broadcast", tensor)
    w = _get()
    if isinstance(src, bool) or not isinstance(src, int) or not 0 <= src < w.size:
        raise ValueError(f"broadcast: src must be a rank from 0 to {w.size - 1}, got {src!r}")
    if w.size == 1:
        return tensor
    broadcast_array(data, w, src)
    tensor._bump_version()
    return tensor


def all_gather_object(obj: Any) -> list:
    """Every rank's ``obj`` (a small picklable object), in rank order, on every rank."""
    w = _get()
    return [obj] if w.size == 1 else w.comm.allgather(obj)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (a small picklable object) on every rank."""
    w = _get()
    return obj if w.size == 1 else w.comm.bcast(obj, root=src)


# --------------------------------------------------------------------------- arrays

def reduce_array(a, w: _World | None = None) -> None:
    """Sum the array ``a`` over the ranks, in place: NumPy by MPI, CuPy by NCCL, the fake
    device through a host copy. Non-contiguous arrays go through a contiguous copy."""
    w = w or _get()
    if w.size == 1:
        return
    _collective(a, w, "reduce", 0)


def broadcast_array(a, w: _World | None = None, src: int = 0) -> None:
    w = w or _get()
    if w.size == 1:
        return
    _collective(a, w, "bcast", src)


def _collective(a, w: _World, kind: str, src: int) -> None:
    dev = backend.device_of(a)
    if dev.type == "cuda" and w.gpu == "nccl":
        _nccl_collective(a, w, kind, src)
        return
    if dev.type == "cpu":
        buf = a if a.flags.c_contiguous else np.ascontiguousarray(a)
    else:                           # fake, or cuda without NCCL: through host memory
        buf = backend.to_host(a)
    _mpi_collective(buf, w, kind, src)
    if buf is not a:
        a[...] = buf if dev.type == "cpu" else backend.xp_of(a).asarray(buf)


def _mpi_collective(buf: np.ndarray, w: _World, kind: str, src: int) -> None:
    from mpi4py import MPI
    if kind == "reduce":
        w.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
    else:
        w.comm.Bcast(buf, root=src)


def start_reduce(buf: np.ndarray, w: _World):
    """Begin summing a contiguous host array over the ranks (``Iallreduce``); returns the
    request, whose ``Wait()`` finishes it. For gradient buckets sent during backward."""
    from mpi4py import MPI
    return w.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.SUM)


# --------------------------------------------------------------------------- NCCL (CUDA arrays)

#: NumPy dtype name -> the name of NCCL's type constant in cupy.cuda.nccl
_NCCL_TYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
               "int32": "NCCL_INT32", "int64": "NCCL_INT64", "uint8": "NCCL_UINT8"}


def _nccl(w: _World):
    """The NCCL communicator of the job's GPUs, one per rank, made on first use: rank 0
    creates NCCL's unique id and MPI hands it to the others (NCCL's own bootstrap)."""
    if w.nccl is None:
        nccl = backend._nccl()
        uid = nccl.get_unique_id() if w.rank == 0 else None
        uid = w.comm.bcast(uid, root=0)
        w.nccl = nccl.NcclCommunicator(w.size, uid, w.rank)
    return w.nccl


def _nccl_collective(a, w: _World, kind: str, src: int) -> None:
    cp, nccl = backend._cupy(), backend._nccl()
    comm = _nccl(w)
    buf = a if a.flags.c_contiguous else cp.ascontiguousarray(a)
    if buf.dtype.name not in _NCCL_TYPES:
        raise TypeError(f"minigrad.distributed: NCCL takes cuda arrays of dtype "
                        f"{', '.join(_NCCL_TYPES)}, not {buf.dtype}")
    code = getattr(nccl, _NCCL_TYPES[buf.dtype.name])
    stream = cp.cuda.get_current_stream().ptr
    if kind == "reduce":
        comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, code, nccl.NCCL_SUM, stream)
    else:
        comm.bcast(buf.data.ptr, buf.size, code, src, stream)
    if buf is not a:
        a[...] = buf
