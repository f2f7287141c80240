"""CUDA graphs (minigrad/cuda/graphs.py) and the capturable optimizers they need.

The optimizer half runs everywhere: a capturable Adam/AdamW (step count and
learning rate on the device) must train exactly like the ordinary one,
schedule included, without a host synchronisation. The graph half needs a
GPU (marked cuda): a replayed step must give the losses of eager steps.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from minigrad import backend, optim
from minigrad.cuda.graphs import CUDAGraph, graphed_step


def _train(device, opt_cls, capturable, steps=12, **kw):
    mg.manual_seed(0)
    w = mg.randn(4, 3, requires_grad=True, device=device)
    b = mg.zeros(3, requires_grad=True, device=device)
    opt = opt_cls([{"params": [w]}, {"params": [b], "weight_decay": 0.0}], lr=0.05,
                  capturable=capturable, **kw)
    x = mg.tensor(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4), device=device)
    backend.reset_sync_count()
    for k in range(steps):
        opt.param_groups[0]["lr"] = 0.05 * (1 - k / steps)      # a schedule, set on the host
        opt.zero_grad()
        loss = ((x @ w + b).tanh() ** 2).sum()
        loss.backward()
        opt.step()
    syncs = backend.sync_count()
    return w.numpy(), b.numpy(), syncs, opt


@pytest.mark.parametrize("opt_cls,kw", [(optim.Adam, {"weight_decay": 0.1}),
                                        (optim.AdamW, {"weight_decay": 0.1})])
def test_capturable_adam_trains_like_adam(device, opt_cls, kw):
    w0, b0, _, _ = _train(device, opt_cls, False, **kw)
    w1, b1, syncs, opt = _train(device, opt_cls, True, **kw)
    np.testing.assert_allclose(w1, w0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b1, b0, rtol=1e-5, atol=1e-6)
    assert syncs == 0, "a capturable step must not read the device"
    assert all(backend.is_array(s["step"]) for s in opt.state.values())


def test_capturable_state_dict_round_trips_through_an_ordinary_one(device):
    _, _, _, opt = _train(device, optim.AdamW, True, steps=5)
    sd = opt.state_dict()
    assert all(entry["step"] == 5 for entry in sd["state"].values())     # saved as integers
    plain = optim.AdamW([{"params": g["params"]} for g in opt.param_groups], lr=0.05)
    plain.load_state_dict(sd)                      # an ordinary optimizer takes it
    assert all(s["step"] == 5 for s in plain.state.values())
    opt.load_state_dict(plain.state_dict())        # and back: steps on the device again
    assert all(backend.is_array(s["step"]) for s in opt.state.values())


def test_graphed_step_needs_a_capturable_optimizer():
    w = mg.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="capturable=True"):
        graphed_step(lambda x: x, optim.AdamW([w]))


def test_graphed_step_refuses_non_cuda_inputs_by_name():
    w = mg.zeros(2, requires_grad=True)
    step = graphed_step(lambda x: (x * w).sum(), optim.AdamW([w], capturable=True))
    with pytest.raises(mg.DeviceError, match=r"graphed_step: CUDA graphs need .*\['cpu'\]"):
        step(mg.ones(2))


def test_graphed_step_refuses_arrays_by_name():
    w = mg.zeros(2, requires_grad=True)
    step = graphed_step(lambda x: (x * w).sum(), optim.AdamW([w], capturable=True))
    with pytest.raises(TypeError, match="graphed_step: input 0 is a ndarray; a graphed step takes Tensors"):
        step(np.ones(2))


def test_graphed_step_refuses_zero_warmup():
    with pytest.raises(ValueError, match="warmup must be >= 1"):
        graphed_step(lambda x: x, None, warmup=0)


def test_replay_before_capture_is_an_error():
    with pytest.raises(RuntimeError, match="nothing recorded"):
        CUDAGraph().replay()


@pytest.mark.cuda
def test_a_graphed_training_step_matches_eager_steps():
    from lmroad.models import TransformerLM

    def run(graphed):
        mg.manual_seed(0)
        model = TransformerLM(vocab_size=11, n_layer=1, n_head=2, n_embd=16, block_size=8,
                              dropout=0.0).to("cuda")
        opt = model.configure_optimizers(lr=1e-2, capturable=True)
        rng = np.random.default_rng(0)
        batches = [(mg.tensor(rng.integers(0, 11, (2, 8)), device="cuda"),
                    mg.tensor(rng.integers(0, 11, (2, 8)), device="cuda")) for _ in range(6)]

        def step(x, y):
            loss = model(x, y)[1]
            loss.backward()
            optim.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
            return loss
        if graphed:
            step = graphed_step(step, opt, warmup=1)
            losses = [float(step(*batches[0]).item())]   # warmup on batch 0, then a replay on it
            losses += [float(step(x, y).item()) for x, y in batches[1:]]
            return losses
        with mg.device_checks(False):
            step(*batches[0])                              # the warmup step, eagerly
            return [float(step(x, y).item()) for x, y in batches]

    np.testing.assert_allclose(run(True), run(False), rtol=1e-4, atol=1e-5)


@pytest.mark.cuda
def test_dropout_inside_a_capture_is_refused():
    x = mg.ones(4, 4, device="cuda")
    graph = CUDAGraph()
    with pytest.raises(RuntimeError, match="repeat the same values at every replay"):
        graph.capture(lambda t: mg.functional.dropout(t, 0.5, True), x)


class _FakeCuda:
    """Just enough of CuPy's stream/graph API to drive GraphedStep on the CPU. A
    "replay" here re-runs the recorded function on the recorded input tensors, so
    this checks the orchestration (warmup, one capture, inputs copied in before each
    replay, the learning rate written to the device), not what real replay skips."""

    def __init__(self):
        self.captures, self.launches, self.capturing = 0, 0, False
        fake = self

        class Stream:
            def __init__(self, non_blocking=False):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def wait_event(self, event):
                pass

            def record(self):
                return None

            def begin_capture(self):
                fake.capturing = True
                fake.captures += 1
                fake.recorded = []

            def end_capture(self):
                fake.capturing = False
                return Graph(list(fake.recorded))

        class Graph:
            def __init__(self, calls):
                self.calls = calls

            def launch(self, stream=None):
                fake.launches += 1
                for fn, args, out in self.calls:      # a replay writes where the capture did
                    out.data[...] = fn(*args).data

        class Device:
            def __init__(self, index):
                pass

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        class MemoryPool:
            def malloc(self, n):
                raise AssertionError("not used on the CPU")

        import contextlib
        self.cuda = type("cuda", (), dict(
            Stream=Stream, MemoryPool=MemoryPool, Device=Device,
            get_current_stream=staticmethod(lambda: Stream()),
            using_allocator=staticmethod(lambda alloc: contextlib.nullcontext())))


def test_graphed_step_orchestration_on_an_emulated_graph(monkeypatch):
    import minigrad.cuda.graphs as graphs
    fake = _FakeCuda()
    monkeypatch.setattr(backend, "_cupy", lambda: fake)
    monkeypatch.setattr(graphs, "_check_cuda", lambda tensors, where: backend.Device("cpu"))
    original_capture = graphs.CUDAGraph.capture

    def recording_capture(self, fn, *args):         # remember what the capture ran
        def record(*a):
            out = fn(*a)                             # (the emulation runs it while recording)
            fake.recorded.append((fn, a, out))
            return out
        return original_capture(self, record, *args)
    monkeypatch.setattr(graphs.CUDAGraph, "capture", recording_capture)

    def build():
        mg.manual_seed(0)
        w = mg.randn(3, 2, requires_grad=True)
        opt = optim.AdamW([w], lr=0.1, capturable=True)

        def step(x):
            opt.zero_grad()
            loss = ((x @ w).tanh() ** 2).sum()
            loss.backward()
            opt.step()
            return loss
        return w, opt, step

    batches = [mg.tensor(np.full((4, 3), v, dtype=np.float32)) for v in (0.5, -1.0, 2.0)]
    w, opt, step = build()
    graphed = graphed_step(step, opt, warmup=2)
    got = [float(graphed(batches[0]).item())]
    opt.param_groups[0]["lr"] = 0.01                   # a schedule: read before each replay
    got += [float(graphed(b).item()) for b in batches[1:]]
    assert fake.captures == 1 and fake.launches == 3
    with pytest.raises(ValueError, match=r"graphed_step: input \(2, 3\) float32 on cpu, but the "
                                         r"graph was recorded with \(4, 3\)"):
        graphed(mg.zeros(2, 3))

    w2, opt2, step2 = build()                          # eagerly: warmup x2, capture run, steps
    step2(batches[0])
    step2(batches[0])
    step2(batches[0])                                  # what the emulated capture ran
    want = [float(step2(batches[0]).item())]
    opt2.param_groups[0]["lr"] = 0.01
    want += [float(step2(b).item()) for b in batches[1:]]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_allclose(w.numpy(), w2.numpy(), rtol=1e-6)
