"""What tests/minigrad/test_distributed.py runs on every rank, under
``mpiexec -n N python tests/minigrad/mpi_cases.py CASE``.

Each case checks its claims on every rank and prints ``rank R ok CASE`` at the
end; an assertion error ends the whole job (the abort hook of
``minigrad.distributed.init``), which the test sees as a failed run.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

import minigrad as mg
from minigrad import distributed as dist
from minigrad import nn, optim


def _same_on_every_rank(arrays, what: str) -> None:
    """Every rank's arrays equal rank 0's, bit for bit."""
    mine = [np.ascontiguousarray(a).tobytes() for a in arrays]
    first = dist.broadcast_object(mine, 0)
    bad = [i for i, (a, b) in enumerate(zip(mine, first)) if a != b]
    assert not bad, f"rank {dist.rank()}: {what} differ from rank 0's at {bad}"


# --------------------------------------------------------------------------- collectives

def case_collectives() -> None:
    r, n = dist.rank(), dist.world_size()
    for device in os.environ.get("MPI_CASES_DEVICES", "cpu,fake").split(","):
        for dtype in (mg.float32, mg.float64):
            t = mg.tensor(np.arange(6.0).reshape(2, 3) * (r + 1), dtype=dtype, device=device)
            dist.all_reduce(t)
            want = np.arange(6.0).reshape(2, 3) * n * (n + 1) / 2
            np.testing.assert_allclose(t.numpy(), want)
            dist.all_reduce(t, op="mean")
            np.testing.assert_allclose(t.numpy(), want)
        ints = mg.tensor(np.full(4, r + 1, dtype=np.int64), device=device)
        assert dist.all_reduce(ints).numpy().tolist() == [n * (n + 1) // 2] * 4
        try:                             # refused before anything is summed: ints unchanged
            dist.all_reduce(ints, op="mean")
        except TypeError:
            assert ints.numpy().tolist() == [n * (n + 1) // 2] * 4
        else:
            raise AssertionError("all_reduce(op='mean') of an int tensor did not raise")
        b = mg.tensor(np.full((3,), float(r)), device=device)
        dist.broadcast(b, src=n - 1)
        assert b.numpy().tolist() == [float(n - 1)] * 3
        # a transposed (non-contiguous) tensor: reduced through a contiguous copy, written back
        base = mg.tensor(np.arange(6.0).reshape(2, 3) + r, device=device)
        view = base.T
        dist.all_reduce(view)
        np.testing.assert_allclose(base.numpy(), n * np.arange(6.0).reshape(2, 3) + n * (n - 1) / 2)
    assert dist.all_gather_object(r * 10) == [k * 10 for k in range(n)]
    for bad, err in ((lambda: dist.all_reduce(mg.tensor([1.0]), op="max"), ValueError),
                     (lambda: dist.broadcast(mg.tensor([1.0]), src=n), ValueError),
                     (lambda: dist.all_reduce(np.ones(3)), TypeError),
                     (lambda: dist.all_reduce(mg.tensor([True])), TypeError)):
        try:
            bad()
        except err:
            pass
        else:
            raise AssertionError(f"no {err.__name__}")
    dist.barrier()


def case_nccl() -> None:
    """One rank, a CUDA tensor through NCCL itself (with one rank the public calls return at
    once): benchmarks/gpu_check.sh runs it on a GPU."""
    from minigrad.distributed import world
    t = mg.arange(6, dtype=mg.float32, device="cuda")
    world._nccl_collective(t.data, world._get(), "reduce", 0)
    world._nccl_collective(t.data, world._get(), "bcast", 0)
    assert t.numpy().tolist() == list(range(6)), t.numpy()


# --------------------------------------------------------------------------- DDP = one big batch

def _models(kind: str, dropout: float = 0.0):
    from lmroad.models import LSTMLM, TransformerLM
    if kind == "gpt":
        return TransformerLM(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=6, dropout=dropout)
    return LSTMLM(vocab_size=11, n_embd=6, hidden_size=8, num_layers=2, dropout=dropout)


def _global_batch(step: int, rows: int, T: int = 6):
    rng = np.random.default_rng(100 + step)
    idx = rng.integers(0, 11, (rows, T))
    return idx, rng.integers(0, 11, (rows, T))


def case_equivalence() -> None:
    """N ranks × batch b, for 5 steps, equal one process × batch N·b (float64, 1e-10),
    parameters compared after every step; both bucket layouts; clipping after averaging."""
    r, n, b = dist.rank(), dist.world_size(), 2
    dev = os.environ.get("MPI_CASES_MODEL_DEVICE", "cpu")       # gpu_check.sh: cuda
    for kind in ("gpt", "lstm"):
        for cap in (None, 0.0005):              # one bucket per dtype; many small buckets
            mg.manual_seed(0)
            ref = _models(kind).to(dtype=mg.float64).to(dev)
            mg.manual_seed(1 + r)               # other weights on every rank: DDP broadcasts rank 0's
            mine = _models(kind).to(dtype=mg.float64).to(dev)
            if r == 0:
                mine.load_state_dict(ref.state_dict())
            ddp = dist.DistributedDataParallel(mine, bucket_cap_mb=cap)
            if cap is not None:
                assert len(ddp.bucket_sizes) > 1, ddp.bucket_sizes
            opt_ref = optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.1)
            opt = optim.AdamW(mine.parameters(), lr=1e-2, weight_decay=0.1)
            runs = ((ref, ref, opt_ref, slice(None)), (ddp, mine, opt, slice(r * b, (r + 1) * b)))
            for step in range(5):
                idx, tgt = _global_batch(step, n * b)
                for call, model, o, rows in runs:
                    o.zero_grad()
                    _, loss = call(mg.tensor(idx[rows], device=dev), mg.tensor(tgt[rows], device=dev))
                    loss.backward()
                    optim.clip_grad_norm_(model.parameters(), 0.5)   # clipping sees the mean
                    o.step()
                for (name, p), q in zip(ref.named_parameters(), mine.parameters()):
                    np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-10, atol=1e-12,
                                               err_msg=f"{kind} cap={cap} step {step} {name}")


def case_no_sync() -> None:
    """Two micro-batches, the first under no_sync(): the same step as one batch of both."""
    r, n, b = dist.rank(), dist.world_size(), 2
    mg.manual_seed(0)
    ref = _models("gpt").to(dtype=mg.float64)
    mine = _models("gpt").to(dtype=mg.float64)
    mine.load_state_dict(ref.state_dict())
    ddp = dist.DistributedDataParallel(mine)
    opt_ref, opt = optim.SGD(ref.parameters(), lr=0.1), optim.SGD(mine.parameters(), lr=0.1)
    for step in range(3):
        idx, tgt = _global_batch(step, 2 * n * b)
        opt_ref.zero_grad()
        _, loss = ref(mg.tensor(idx), mg.tensor(tgt))
        loss.backward()
        opt_ref.step()
        opt.zero_grad()
        for micro in range(2):                  # micro-batch k of rank r: rows of its own
            lo = micro * n * b + r * b
            rows = slice(lo, lo + b)
            ctx = ddp.no_sync() if micro == 0 else _nothing()
            with ctx:
                _, loss = ddp(mg.tensor(idx[rows]), mg.tensor(tgt[rows]))
                (loss * 0.5).backward()         # the mean over the two micro-batches
        opt.step()
        for p, q in zip(ref.parameters(), mine.parameters()):
            np.testing.assert_allclose(q.numpy(), p.numpy(), rtol=1e-10, atol=1e-12)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def case_dropout() -> None:
    """Dropout on, other masks on every rank (other seeds): the replicas stay identical."""
    r = dist.rank()
    for kind in ("gpt", "lstm"):
        mg.manual_seed(0)
        model = _models(kind, dropout=0.3).to(dtype=mg.float64)
        ddp = dist.DistributedDataParallel(model)
        opt = optim.Adam(model.parameters(), lr=1e-2)
        mg.manual_seed(1000 + r)
        for step in range(3):
            idx, tgt = _global_batch(step, 2)   # the same rows everywhere: only the masks differ
            opt.zero_grad()
            _, loss = ddp(mg.tensor(idx), mg.tensor(tgt))
            loss.backward()
            grads = [p.grad.numpy() for p in model.parameters()]
            opt.step()
        _same_on_every_rank(grads, f"{kind}: averaged gradients")
        _same_on_every_rank([p.numpy() for p in model.parameters()], f"{kind}: parameters")
        gathered = dist.all_gather_object(loss.item())
        assert len(set(gathered)) == dist.world_size(), f"the ranks' dropout masks agree: {gathered}"


def case_unused() -> None:
    """A parameter no forward uses keeps grad None on every rank, as in one process; one
    that some rank's forward skips gets that rank's zeros in the mean."""
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Parameter(mg.ones(3, dtype=mg.float64))
            self.b = nn.Parameter(mg.ones(3, dtype=mg.float64))
            self.never = nn.Parameter(mg.ones(2, dtype=mg.float64))

        def forward(self, x, use_b: bool):
            return (self.a * x).sum() + ((self.b * x).sum() if use_b else 0.0)
    r, n = dist.rank(), dist.world_size()
    model = Two()
    ddp = dist.DistributedDataParallel(model)
    ddp(mg.tensor(np.full(3, r + 1.0)), use_b=(r == 0)).backward()
    assert model.never.grad is None
    np.testing.assert_allclose(model.a.grad.numpy(), np.full(3, (n + 1) / 2))
    np.testing.assert_allclose(model.b.grad.numpy(), np.full(3, 1.0 / n))
    # one parameter per bucket, and zero_grad after the forward (as lmroad does): the bucket of
    # b, which ranks 1.. do not use, must send zeros, not the last step's mean still in b.grad
    ddp2 = dist.DistributedDataParallel(Two(), bucket_cap_mb=1e-9)
    for _ in range(2):
        out = ddp2(mg.tensor(np.full(3, r + 1.0)), use_b=(r == 0))
        for p in ddp2.module.parameters():
            p.grad = None
        out.backward()
        np.testing.assert_allclose(ddp2.module.b.grad.numpy(), np.full(3, 1.0 / n))
    # a backward that misses a used parameter: the next forward says so (instead of the
    # ranks drifting apart silently)
    out = ddp(mg.tensor(np.ones(3)), use_b=True)
    (model.a * 1.0).sum().backward()
    try:
        ddp(mg.tensor(np.ones(3)), use_b=True)
    except RuntimeError as e:
        assert "did not give every parameter" in str(e), e
    else:
        raise AssertionError("no error after an incomplete backward")
    del out


def case_optimizer_state() -> None:
    """After a resume, rank 0's optimizer state reaches every rank."""
    r = dist.rank()
    mg.manual_seed(0)
    model = _models("gpt").to(dtype=mg.float64)
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    if r == 0:                                  # only rank 0 has taken steps
        for step in range(2):
            idx, tgt = _global_batch(step, 2)
            opt.zero_grad()
            model(mg.tensor(idx), mg.tensor(tgt))[1].backward()
            opt.step()
    dist.DistributedDataParallel(model)         # parameters from rank 0
    dist.broadcast_optimizer_state(opt)
    state = opt.state_dict()["state"]
    assert len(state) == len(list(model.parameters()))
    _same_on_every_rank([a for i in sorted(state) for k, a in sorted(state[i].items())
                         if isinstance(a, np.ndarray)], "optimizer state")
    assert {state[i]["step"] for i in state} == {2}


# --------------------------------------------------------------------------- errors

def case_mismatch() -> None:
    """A model that differs on one rank: every rank raises, naming the rank and the parameter."""
    r = dist.rank()
    from lmroad.models import LSTMLM
    model = LSTMLM(vocab_size=11, n_embd=6, hidden_size=8 if r != 1 else 9)
    try:
        dist.DistributedDataParallel(model)
    except ValueError as e:
        msg = str(e)
        assert "on rank 0 but" in msg and "on rank 1" in msg and "core.cells.0.weight_hh" in msg, msg
        print(f"rank {r} raised: {msg}", flush=True)
    else:
        raise AssertionError("no error for a model that differs between ranks")
    dist.barrier()


def case_raise() -> None:
    """Rank 1 raises while the others wait in a collective: the job must end, not hang."""
    if dist.rank() == 1:
        time.sleep(0.2)
        raise RuntimeError("rank 1 fails on purpose")
    dist.barrier()                               # would wait forever without the abort
    raise AssertionError("the barrier returned although rank 1 never reached it")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    case = sys.argv[1]
    dist.init()
    CASES[case]()
    print(f"rank {dist.rank()} ok {case}", flush=True)
