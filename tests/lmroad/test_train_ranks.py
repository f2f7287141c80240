"""``lmroad train`` on several ranks (``mpiexec -n N python -m lmroad train``):
N ranks with ``--batch-size b`` train as one process with ``--batch-size N·b``,
rank 0 alone writes, evaluation counts every window once, and a checkpoint
resumes on another number of ranks. Each launch has a timeout, so that a hang
fails fast. (minigrad.distributed itself: tests/minigrad/test_distributed.py.)
And ``--grad-accum-steps K``, which shares the same global batch: K
micro-batches of b train as one batch of K·b.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmroad.checkpoint import read_checkpoint
from lmroad.ranks import Ranks
from lmroad.train import _DataPosition
from minigrad import distributed as dist

ROOT = Path(__file__).resolve().parents[2]
SIZES = {"transformer": ["--n-layer", "1", "--n-head", "2", "--n-embd", "16"],
         "lstm": ["--n-embd", "8", "--hidden-size", "16", "--num-layers", "2"]}


def _mpiexec() -> str:
    beside = Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else "mpiexec"


def lmroad_train(n: int, text_file, out, model: str, batch: int, *extra: str, timeout: float = 180,
                 ok: bool = True):
    """``lmroad train`` on n ranks (n = 1: a plain process, no launcher); with ``ok``, it must
    exit 0."""
    args = [sys.executable, "-m", "lmroad", "train", "--model", model, "--data", str(text_file),
            "--out", str(out), "--batch-size", str(batch), "--block-size", "16", "--max-iters", "6",
            "--eval-interval", "3", "--eval-iters", "0", "--lr", "3e-3", "--warmup-iters", "2",
            "--log-interval", "1", "--seed", "5", "--progress", "lines", *SIZES[model], *extra]
    if n > 1:
        pytest.importorskip("mpi4py", reason='needs mpi4py and mpich: pip install -e ".[distributed]"')
    cmd = args if n == 1 else [_mpiexec(), "-n", str(n), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    for var in dist.launcher_variables(env):                 # start as a fresh job
        env.pop(var)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{' '.join(cmd)}: no result after {timeout} s (a hang?)\n{e.stderr}")
    assert done.returncode == 0 or not ok, f"{' '.join(cmd)} exited {done.returncode}\n{done.stderr[-3000:]}"
    return done


def records(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a, b, rtol=2e-5):
    """Same metrics (each record once) and the same final weights, to float32 rounding."""
    ra, rb = records(a), records(b)
    assert [(r["step"], r["split"]) for r in ra] == [(r["step"], r["split"]) for r in rb]
    for x, y in zip(ra, rb):
        assert x.get("tokens") == y.get("tokens")
        np.testing.assert_allclose(x["loss"], y["loss"], rtol=rtol)
    wa, wb = read_checkpoint(a).weights, read_checkpoint(b).weights
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=rtol, atol=1e-6, err_msg=k)


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_two_ranks_train_as_one_process_with_twice_the_batch(text_file, tmp_path, model):
    """Also: evaluation over the whole (odd-sized) validation split counts the same tokens
    and gives the same loss, and rank 0 alone writes (every record once, one log line)."""
    done = lmroad_train(2, text_file, tmp_path / "two", model, 4)
    lmroad_train(1, text_file, tmp_path / "one", model, 8)
    assert_same_run(tmp_path / "two", tmp_path / "one")
    assert done.stderr.count("data parallel: 2 ranks x --batch-size 4 = a global batch of 8") == 1
    assert done.stderr.count("done: ") == 1
    if model == "transformer":          # every token of a split that ends in a partial window
        val = [r for r in records(tmp_path / "two") if r["split"] == "val"]
        assert val[0]["tokens"] % 16 != 0


def test_a_checkpoint_from_two_ranks_resumes_on_one_and_on_three(text_file, tmp_path):
    """The data position is global: 2 ranks x 4, resumed on 1 x 8, continues exactly as 2 x 4
    would; a Transformer's on 3 ranks (a global batch of 12) continues too. A recurrent model's
    lanes are cut from the global batch: on 3 x 4 it is refused, saying what would fit."""
    lmroad_train(2, text_file, tmp_path / "a", "lstm", 4, "--max-iters", "3")
    for d in ("b", "c", "d"):
        subprocess.run(["cp", "-r", str(tmp_path / "a"), str(tmp_path / d)], check=True)
    lmroad_train(2, text_file, tmp_path / "a", "lstm", 4, "--resume")         # straight on
    lmroad_train(1, text_file, tmp_path / "b", "lstm", 8, "--resume")
    assert_same_run(tmp_path / "a", tmp_path / "b")
    refused = lmroad_train(3, text_file, tmp_path / "d", "lstm", 4, "--resume", ok=False)
    assert refused.returncode != 0
    assert ("recurrent lanes were cut for a global batch of 8 (ranks x --grad-accum-steps x --batch-size), "
            "and this run has 3 x 1 x 4 = 12; resume with a product of 8") in refused.stderr
    lmroad_train(2, text_file, tmp_path / "c", "transformer", 4, "--max-iters", "3", "--overwrite")
    lmroad_train(3, text_file, tmp_path / "c", "transformer", 4, "--resume")
    assert read_checkpoint(tmp_path / "c").step == 6


def test_each_rank_takes_its_own_rows_of_the_global_batch(text_file):
    """Without a launcher: the shares of ranks 0..2 are disjoint rows that make up the batch
    one process with three times the batch draws, for random windows and for lanes."""
    from lmroad.train import TrainConfig
    ids = np.arange(3000) % 97
    for model in ("transformer", "lstm"):
        cfg = TrainConfig(model=model, batch_size=2, block_size=8, seed=3)
        whole = _DataPosition(ids, TrainConfig(model=model, batch_size=6, block_size=8, seed=3),
                              "cpu", model == "lstm", Ranks(0, 1))
        shares = [_DataPosition(ids, cfg, "cpu", model == "lstm", Ranks(r, 3)) for r in range(3)]
        for _ in range(3):
            (x, y), = whole.next_batch()
            parts = [s.next_batch()[0] for s in shares]
            np.testing.assert_array_equal(np.concatenate([p[0].numpy() for p in parts]), x.numpy())
            np.testing.assert_array_equal(np.concatenate([p[1].numpy() for p in parts]), y.numpy())


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_accumulated_micro_batches_train_as_one_batch(text_file, tmp_path, model):
    """--grad-accum-steps 2 --batch-size 4: the update, the logged losses and the final weights
    of --batch-size 8 (a recurrent model's micro-batches carry their own lanes' states)."""
    lmroad_train(1, text_file, tmp_path / "accum", model, 4, "--grad-accum-steps", "2")
    lmroad_train(1, text_file, tmp_path / "one", model, 8)
    assert_same_run(tmp_path / "accum", tmp_path / "one")


def test_ranks_and_accumulation_together(text_file, tmp_path):
    """2 ranks x 2 micro-batches x 2 rows, resumed half-way on 1 rank x 4 micro-batches x 2:
    as one process with batch 8 throughout."""
    lmroad_train(2, text_file, tmp_path / "a", "lstm", 2, "--grad-accum-steps", "2", "--max-iters", "3",
                 "--lr-decay-iters", "6")                # the straight run's schedule
    lmroad_train(1, text_file, tmp_path / "a", "lstm", 2, "--grad-accum-steps", "4", "--resume")
    lmroad_train(1, text_file, tmp_path / "one", "lstm", 8)
    assert_same_run(tmp_path / "a", tmp_path / "one")
