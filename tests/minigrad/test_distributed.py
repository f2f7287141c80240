"""minigrad.distributed under a real MPI launcher: ``mpiexec -n 2`` and ``-n 3``
(3, so that a bug that only even world sizes hide shows), each run with a
timeout so that a hang fails fast. The cases themselves are in mpi_cases.py;
each rank checks its own claims there. Also the world of one, in this process.

Needs the ``distributed`` extra (mpi4py and the mpich wheel, which brings
``mpiexec``); the project's test command installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import minigrad as mg
from minigrad import distributed as dist

pytest.importorskip("mpi4py", reason='needs mpi4py and mpich: pip install -e ".[distributed]"')

CASES = Path(__file__).with_name("mpi_cases.py")
ROOT = Path(__file__).resolve().parents[2]


def _mpiexec() -> str:
    beside = Path(sys.executable).with_name("mpiexec")     # the mpich wheel's, in the venv
    found = str(beside) if beside.exists() else shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpi4py is installed but no mpiexec was found: pip install mpich")
    return found


def run_ranks(n: int, case: str, timeout: float = 120.0, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           **extra_env}
    for var in dist.launcher_variables(env):                 # start as a fresh job
        env.pop(var)
    try:
        return subprocess.run([_mpiexec(), "-n", str(n), sys.executable, str(CASES), case],
                              capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"mpiexec -n {n} {case}: no result after {timeout} s (a hang?)\n"
                    f"{e.stdout}\n{e.stderr}")


def assert_every_rank_ok(n: int, case: str, out: subprocess.CompletedProcess) -> None:
    assert out.returncode == 0, f"mpiexec -n {n} {case} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
    for r in range(n):
        assert f"rank {r} ok {case}" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("case", ["collectives", "equivalence", "no_sync", "dropout", "unused",
                                  "optimizer_state"])
def test_on_n_ranks(case, n):
    assert_every_rank_ok(n, case, run_ranks(n, case))


def test_the_models_on_the_fake_device_through_host_memory():
    """What benchmarks/gpu_check.sh runs with cuda (two ranks sharing one GPU, staged through the
    host: MINIGRAD_GPU_COLLECTIVES=mpi), here on the fake device."""
    out = run_ranks(2, "equivalence", MPI_CASES_MODEL_DEVICE="fake", MINIGRAD_GPU_COLLECTIVES="mpi")
    assert_every_rank_ok(2, "equivalence", out)


def test_a_bad_gpu_collectives_setting_is_refused_by_name():
    out = run_ranks(2, "collectives", MINIGRAD_GPU_COLLECTIVES="gloo")
    assert out.returncode != 0
    assert "MINIGRAD_GPU_COLLECTIVES must be 'nccl' (one rank per GPU) or 'mpi'" in out.stderr


def test_a_model_that_differs_on_one_rank_raises_on_every_rank():
    out = run_ranks(2, "mismatch")
    assert_every_rank_ok(2, "mismatch", out)
    for r in range(2):
        assert f"rank {r} raised: DistributedDataParallel: the model differs between ranks" in out.stdout


def test_an_exception_on_one_rank_ends_the_job_instead_of_hanging():
    start = time.monotonic()
    out = run_ranks(3, "raise", timeout=60)
    assert out.returncode != 0
    assert time.monotonic() - start < 30
    assert "rank 1 of 3 raised; ending the job" in out.stderr and "rank 1 fails on purpose" in out.stderr


def test_without_mpiexec_it_is_a_world_of_one():
    """Here, in pytest's process (no launcher): every call is a no-op that returns at once."""
    assert not dist.launched_by_mpi()
    assert (dist.rank(), dist.world_size()) == (0, 1)
    t = mg.tensor(np.arange(3.0))
    assert dist.all_reduce(t, op="mean") is t and t.numpy().tolist() == [0.0, 1.0, 2.0]
    assert dist.broadcast(t).numpy().tolist() == [0.0, 1.0, 2.0]
    dist.barrier()
    assert dist.all_gather_object("x") == ["x"]
    model = mg.nn.Module()
    model.w = mg.nn.Parameter(mg.ones(2))
    ddp = dist.DistributedDataParallel(model)
    assert ddp.module is model and ddp.world_size == 1
    with pytest.raises(ValueError, match="op must be 'sum' or 'mean', got 'max'"):
        dist.all_reduce(t, op="max")
    with pytest.raises(TypeError, match="op='mean' needs a float tensor, got int64"):
        dist.all_reduce(mg.tensor([1, 2]), op="mean")
    assert dist.launcher_variables({"PMI_RANK": "1", "HOME": "/", "OMPI_X": "y"}) == ["PMI_RANK", "OMPI_X"]
    with pytest.raises(ValueError, match="bucket_cap_mb must be a positive number"):
        dist.DistributedDataParallel(model, bucket_cap_mb=0)
