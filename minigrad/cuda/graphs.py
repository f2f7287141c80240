"""CUDA graphs: record a whole training step once, replay it with one launch.

A small model's training step is hundreds of GPU kernels of a few
microseconds each; Python and CuPy spend longer launching them than the GPU
spends running them. CUDA can record the launches of one step into a graph
and replay the lot with a single call (PyTorch: ``torch.cuda.graphs``).

    def train_step(x, y):                       # x, y: cuda tensors
        opt.zero_grad()
        loss = model(x, y)[1]
        loss.backward()
        clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss

    opt = AdamW(params, lr=1e-3, capturable=True)
    step = graphed_step(train_step, opt)
    for x, y in batches:
        loss = step(x, y)                       # copy x, y in; replay; the loss tensor
        ...float(loss)...                       # reading it waits for the GPU

What a captured step must keep to, as in PyTorch:

- the same shapes, dtypes and device at every call: the inputs are copied
  into the tensors the graph was recorded with;
- no host synchronisation inside (capture runs under
  ``device_checks(False)``; read the loss outside);
- no random numbers (dropout 0): the generator's state is on the host, so
  a replay would repeat the mask; drawing one during capture is an error;
- an optimizer built with ``capturable=True``: its step count and learning
  rate live on the device, so replays advance the bias correction and
  follow ``group["lr"]`` (copied to the device before each replay);
- Python side effects inside the step happen once, while recording.

The first call runs ``warmup`` ordinary steps on its batch (they compile the
kernels and create the optimizer's state; they are real training steps, as
in PyTorch's recipe), records the graph, then replays it for that batch.

Memory: everything the step allocates while recording comes from a memory
pool private to the graph and kept as long as the graph, so replays write
where the recording did and no other array can be given that memory.

CUDA only. Unverified here: written without a GPU (see the closing notes
of issue 5); ``benchmarks/gpu_check.sh`` runs the cuda-marked tests and a
graphed GPT step on the first GPU it meets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import backend
from ..errors import DeviceError
from ..tensor import Tensor

__all__ = ["CUDAGraph", "graphed_step", "GraphedStep"]


def _check_cuda(tensors, where: str) -> Any:
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"{where}: input {i} is a {type(t).__name__}; a graphed step takes "
                            "Tensors (copied into the recorded ones at each call)")
    devs = {t.device for t in tensors}
    if len(devs) != 1 or next(iter(devs)).type != "cuda":
        raise DeviceError(f"{where}: CUDA graphs need every input on one cuda device, got "
                          f"{sorted(str(d) for d in devs) or 'no tensors'}; run the step "
                          "eagerly on other devices")
    return next(iter(devs))


class CUDAGraph:
    """One recorded sequence of GPU work: ``capture(fn, *args)`` records
    ``fn(*args)`` (nothing runs) and returns its outputs, whose arrays each
    ``replay()`` fills anew."""

    def __init__(self):
        self._graph = None
        self._pool = None
        self._stream = None

    def capture(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._graph is not None:
            raise RuntimeError("CUDAGraph.capture: this graph is already recorded; make a new one")
        cp = backend._cupy()
        self._pool = cp.cuda.MemoryPool()            # private: see the module docstring
        self._stream = cp.cuda.Stream(non_blocking=True)
        self._stream.wait_event(cp.cuda.get_current_stream().record())   # after pending work
        with self._stream, cp.cuda.using_allocator(self._pool.malloc), backend.device_checks(False):
            self._stream.begin_capture()
            try:
                out = fn(*args)
            except BaseException:
                try:                                 # end the broken capture; report fn's error
                    self._stream.end_capture()
                except Exception:
                    pass
                raise
            self._graph = self._stream.end_capture()
        return out

    def replay(self) -> None:
        if self._graph is None:
            raise RuntimeError("CUDAGraph.replay: nothing recorded yet; call capture() first")
        self._graph.launch(stream=self._stream)

    @property
    def stream(self):
        return self._stream


class GraphedStep:
    """``graphed_step(fn, optimizer)``: see the module docstring."""

    def __init__(self, fn: Callable[..., Tensor | tuple], optimizer=None, warmup: int = 2):
        if optimizer is not None and not getattr(optimizer, "capturable", False):
            raise ValueError(f"graphed_step: {type(optimizer).__name__} must be built with "
                             "capturable=True (its step count and learning rate must live on "
                             "the device for replays to advance them)")
        if warmup < 1:
            raise ValueError(f"graphed_step: warmup must be >= 1 (kernels compile and the "
                             f"optimizer state is created eagerly), got {warmup}")
        self.fn, self.optimizer, self.warmup = fn, optimizer, int(warmup)
        self.graph: CUDAGraph | None = None
        self._static: list[Tensor] = []
        self._out = None

    def _copy_in(self, inputs) -> None:
        for s, x in zip(self._static, inputs):
            if x.shape != s.shape or x.dtype != s.dtype or x.device != s.device:
                raise ValueError(f"graphed_step: input {x.shape} {x.dtype} on {x.device}, but the "
                                 f"graph was recorded with {s.shape} {s.dtype} on {s.device}")
            s.data[...] = x.data

    def __call__(self, *inputs: Tensor):
        if self.graph is None:
            dev = _check_cuda(inputs, "graphed_step")
            cp = backend._cupy()
            with cp.cuda.Device(dev.index):
                self._static = [Tensor._make(x.data.copy(), x.device) for x in inputs]
                with backend.device_checks(False):
                    for _ in range(self.warmup):
                        self.fn(*self._static)
                self.graph = CUDAGraph()
                self._out = self.graph.capture(self.fn, *self._static)
        if len(inputs) != len(self._static):
            raise TypeError(f"graphed_step: recorded with {len(self._static)} inputs, "
                            f"called with {len(inputs)}")
        cp = backend._cupy()
        stream = self.graph.stream
        stream.wait_event(cp.cuda.get_current_stream().record())    # the inputs are ready
        with stream:                                   # ordered before the replay on its stream
            self._copy_in(inputs)
            if self.optimizer is not None:
                self.optimizer.write_lr_to_device()
        self.graph.replay()
        cp.cuda.get_current_stream().wait_event(stream.record())     # later work sees the step
        return self._out


def graphed_step(fn: Callable[..., Tensor | tuple], optimizer=None, warmup: int = 2) -> GraphedStep:
    """Wrap a training step ``fn(*tensors) -> outputs`` so that it is recorded
    once as a CUDA graph and replayed at every call (see the module docstring)."""
    return GraphedStep(fn, optimizer, warmup)
