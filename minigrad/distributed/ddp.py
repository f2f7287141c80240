"""``DistributedDataParallel``: the same model on every rank, each rank on its
own share of the batch, gradients averaged so that every replica takes the
same step.

Why averaging is enough: the loss of a batch of N·b examples (a mean) is the
mean of the N losses of its b-example shares, so its gradient is the mean of
their gradients. Each rank computes one share's gradient; an all-reduce sums
them; dividing by N gives what one process would compute on the whole batch.
Every replica then applies the same update to the same weights and they stay
identical, with no weights ever sent after the start.

How, as PyTorch's DDP does it (and Horovod, ChainerMN):

- at construction, rank 0's parameters and buffers are broadcast, after a
  check that every rank holds the same parameter names, shapes and dtypes;
- the gradients travel in flat buffers ("buckets") of about ``bucket_cap_mb``
  each, one dtype per bucket, filled in the reverse of the module's parameter
  order (roughly the order backward produces them). A hook on each parameter
  notes when its gradient is final; when a bucket is complete it is sent
  (``Iallreduce``) while backward goes on with the layers below: communication
  overlaps computation. Buckets start in index order on every rank, since MPI
  needs the same order of collective calls everywhere. When the last one has
  started, all are awaited, divided by N and copied back into ``.grad``.
  ``bucket_cap_mb=None``: one bucket per dtype, sent when backward has made
  every gradient (no overlap; the simplest to read);
- a parameter the forward pass did not use sends zeros (found by walking the
  graph from the outputs, as PyTorch's ``find_unused_parameters``); if no rank
  gave it a gradient, its ``.grad`` stays None, as it would in one process;
- ``no_sync()``: backward only accumulates into ``.grad`` locally (gradient
  accumulation); the next backward outside it averages the accumulated sums.

Gradient clipping, weight decay and the optimizer then see averaged gradients.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from .. import backend, nn
from ..autograd import _toposort, is_grad_enabled
from ..tensor import Tensor
from . import world

__all__ = ["DistributedDataParallel", "broadcast_optimizer_state", "parameter_fingerprint"]


def parameter_fingerprint(module: nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of every parameter and buffer, in the module's order."""
    items = [("param " + n, p) for n, p in module.named_parameters()]
    items += [("buffer " + n, b) for n, b in module.named_buffers()]
    return [(n, tuple(t.shape), str(t.dtype)) for n, t in items]


def _check_same_everywhere(module: nn.Module) -> None:
    """Raise, on every rank, if any rank's parameters differ from rank 0's."""
    mine = parameter_fingerprint(module)
    everyone = world.all_gather_object(mine)
    problems = []
    ref = dict((n, (s, d)) for n, s, d in everyone[0])
    for r, theirs in enumerate(everyone[1:], start=1):
        got = dict((n, (s, d)) for n, s, d in theirs)
        for name in sorted(set(ref) | set(got)):
            a, b = ref.get(name), got.get(name)
            if a is None:
                problems.append(f"rank {r} has {name} {b[0]} {b[1]}, rank 0 has none")
            elif b is None:
                problems.append(f"rank {r} lacks {name} {a[0]} {a[1]} of rank 0")
            elif a != b:
                problems.append(f"{name} is {a[0]} {a[1]} on rank 0 but {b[0]} {b[1]} on rank {r}")
        if not problems and [n for n, _, _ in theirs] != [n for n, _, _ in everyone[0]]:
            problems.append(f"rank {r} registers the same parameters in another order")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(f"DistributedDataParallel: the model differs between ranks (this is rank "
                         f"{world.rank()}): {shown}. Build the same model on every rank.")


class _Bucket:
    """Parameters whose gradients travel together in one flat array."""

    def __init__(self, params: list, dev, dtype):
        self.params = params
        self.offsets = np.cumsum([0] + [p.size for p in params]).tolist()   # each one's slice
        self.dev, self.dtype = dev, np.dtype(dtype)
        self.flat = None                    # the array on the wire, made at launch
        self.request = None                 # an MPI request while in flight
        self.pending = 0                    # gradients still to come in this backward

    def nbytes(self) -> int:
        return self.offsets[-1] * self.dtype.itemsize


class DistributedDataParallel(nn.Module):
    """Wrap ``module`` (the same on every rank) for data-parallel training.

    Call it as the module (``loss = ddp(x, y)``); after ``loss.backward()`` every
    parameter's ``.grad`` holds the mean over the ranks. ``ddp.module`` is the
    wrapped model (save its ``state_dict``, call its other methods there)."""

    def __init__(self, module: nn.Module, bucket_cap_mb: float | None = 25.0):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"DistributedDataParallel: expected an nn.Module, got {type(module).__name__}")
        if bucket_cap_mb is not None and (isinstance(bucket_cap_mb, bool) or not (
                isinstance(bucket_cap_mb, (int, float)) and bucket_cap_mb > 0)):
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be a positive number of "
                             f"megabytes or None (one bucket per dtype), got {bucket_cap_mb!r}")
        self.module = module
        self.bucket_cap_mb = bucket_cap_mb
        world.init()
        self.world_size = world.world_size()
        _check_same_everywhere(module)
        for t in list(module.parameters()) + list(module.buffers()):
            world.broadcast_array(t.data, src=0)    # every replica starts from rank 0's weights
        params = [p for p in module.parameters() if p.requires_grad]
        self._params = params
        self._buckets = self._make_buckets(params, bucket_cap_mb)
        self._bucket_of = {id(p): b for b in self._buckets for p in b.params}
        self._sync = True
        self._active = False                        # a backward is being averaged
        self._next = 0                              # the next bucket to launch
        self._removers = [p.register_post_accumulate_grad_hook(self._grad_ready) for p in params]

    # ------------------------------------------------------------------ buckets
    @staticmethod
    def _make_buckets(params, cap_mb) -> list[_Bucket]:
        cap = math.inf if cap_mb is None else cap_mb * 2**20
        open_: dict = {}                # (device, dtype) -> [params of the open bucket, their bytes]
        buckets = []
        for p in reversed(params):
            group = open_.setdefault((str(p.device), p.dtype.name), [[], 0])
            group[0].append(p)
            group[1] += p.size * p.dtype.itemsize
            if group[1] >= cap:
                buckets.append(_Bucket(group[0], p.device, p.dtype))
                group[:] = [[], 0]
        buckets += [_Bucket(g, g[0].device, g[0].dtype) for g, _ in open_.values() if g]
        return buckets

    @property
    def bucket_sizes(self) -> list[int]:
        """Bytes per bucket, in launch order."""
        return [b.nbytes() for b in self._buckets]

    # ------------------------------------------------------------------ forward
    def forward(self, *args, **kwargs):
        if self._active:
            missing = [b for b in self._buckets if b.pending]
            raise RuntimeError(
                "DistributedDataParallel: the previous backward did not give every parameter the "
                f"forward pass used a gradient ({sum(b.pending for b in missing)} missing), so the "
                "ranks' gradients were not averaged; call backward on a loss that uses all of the "
                "forward's outputs, or run that forward under no_grad()")
        out = self.module(*args, **kwargs)
        if self._sync and self.world_size > 1 and is_grad_enabled():
            self._prepare(out)
        return out

    def _prepare(self, out) -> None:
        used = _parameters_reached(out)
        if not any(id(p) in used for p in self._params):
            return                                  # nothing to differentiate (an eval pass)
        for b in self._buckets:
            b.pending = sum(1 for p in b.params if id(p) in used)
        # nothing starts yet, not even a bucket of unused parameters: their .grad may still be
        # the last step's until zero_grad(), which often comes after the forward
        self._active, self._next = True, 0

    @contextlib.contextmanager
    def no_sync(self):
        """Backward inside only accumulates ``.grad`` on each rank; the first backward
        after it averages the accumulated gradients (gradient accumulation)."""
        old, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = old

    # ------------------------------------------------------------------ during backward
    def _grad_ready(self, p: Tensor) -> None:
        if not self._active:
            return
        self._bucket_of[id(p)].pending -= 1
        self._launch_ready()

    def _launch_ready(self) -> None:
        """Start every complete bucket whose predecessors have started (the same order on
        every rank); after the last, wait for all and write the means into ``.grad``."""
        while self._next < len(self._buckets) and self._buckets[self._next].pending == 0:
            self._launch(self._buckets[self._next])
            self._next += 1
        if self._next == len(self._buckets):
            self._finish()

    def _launch(self, b: _Bucket) -> None:
        xp = backend.xp_for(b.dev)
        flat = xp.zeros(b.offsets[-1], dtype=b.dtype)
        for p, lo, hi in zip(b.params, b.offsets, b.offsets[1:]):
            if p.grad is not None:
                flat[lo:hi] = p.grad.data.reshape(-1)
        b.flat = flat
        if b.dev.type == "cpu":
            b.request = world.start_reduce(flat, world._get())    # overlaps the rest of backward
        else:
            world.reduce_array(flat)                # NCCL queues it on the stream; fake: staged

    def _finish(self) -> None:
        self._active = False
        had = np.array([p.grad is not None for p in self._params], dtype=np.int32)
        world.reduce_array(had)                     # did any rank give it a gradient?
        has = dict(zip((id(p) for p in self._params), had.tolist()))
        for b in self._buckets:
            if b.request is not None:
                b.request.Wait()
                b.request = None
            b.flat *= b.dtype.type(1.0 / self.world_size)
            for p, lo, hi in zip(b.params, b.offsets, b.offsets[1:]):
                if has[id(p)]:          # a view: the flat array is this step's, made at launch
                    p.grad = Tensor._make(b.flat[lo:hi].reshape(p.shape), p._device)
            b.flat = None

    def extra_repr(self) -> str:
        return (f"world_size={self.world_size}, buckets={len(self._buckets)}, "
                f"bucket_cap_mb={self.bucket_cap_mb}")


def _parameters_reached(out) -> set[int]:
    """ids of the leaf tensors that require grad and that the outputs' graph reaches (the
    outputs: tensors, or tuples, lists and dicts of them); the engine's own graph walk."""
    roots = []

    def add(o):
        if isinstance(o, Tensor):
            roots.append(o)
        elif isinstance(o, (tuple, list)):
            for v in o:
                add(v)
        elif isinstance(o, dict):
            for v in o.values():
                add(v)
    add(out)
    return {id(t) for t in _toposort(roots) if t._ctx is None and t.requires_grad}


def broadcast_optimizer_state(optimizer, src: int = 0) -> None:
    """Give every rank rank ``src``'s optimizer state (after a resume, so that the
    replicas' moment estimates agree): its layout as a small object, its arrays by
    buffer, then ``load_state_dict`` on every rank."""
    w = world._get()
    if w.size == 1:
        return
    state = optimizer.state_dict() if w.rank == src else None
    layout = None
    if w.rank == src:
        layout = {"param_groups": state["param_groups"],
                  "state": {i: {k: (("array", tuple(v.shape), str(v.dtype)) if backend.is_array(v)
                                    else ("value", v)) for k, v in entry.items()}
                            for i, entry in state["state"].items()}}
    layout = world.broadcast_object(layout, src)
    entries = {}
    for i, entry in layout["state"].items():
        entries[i] = {}
        for k, spec in entry.items():
            if spec[0] == "value":
                entries[i][k] = spec[1]
                continue
            a = backend.to_host(state["state"][i][k]) if w.rank == src \
                else np.empty(spec[1], dtype=spec[2])      # (state_dict's arrays are copies)
            world.broadcast_array(a, w, src)
            entries[i][k] = a
    optimizer.load_state_dict({"state": entries, "param_groups": layout["param_groups"]})
