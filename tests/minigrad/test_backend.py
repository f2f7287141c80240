"""Backends and devices: the strict fake device behaves like CuPy (no implicit
host conversion, no mixing with host arrays, explicit syncs counted), seeds
give the same numbers everywhere, ``cuda.is_available()`` never raises,
devices parse strictly, and ``.to()`` moves data and gradients both ways."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import backend
from minigrad.testing import arrays, shapes


def _syncs(fn) -> int:
    backend.reset_sync_count()
    fn()
    return backend.sync_count()


# --------------------------------------------------------------------------- the fake device is strict

def test_fake_tensor_refuses_implicit_conversion_to_numpy():
    t = mg.ones(3, device="fake")
    with pytest.raises(TypeError, match="cannot convert a fake tensor to a NumPy array implicitly"):
        np.asarray(t)
    with pytest.raises(TypeError, match="implicit conversion to a NumPy array is not allowed"):
        np.asarray(t.data)


def test_fake_array_refuses_numpy_functions_and_iteration():
    a = mg.ones(3, device="fake").data
    with pytest.raises(TypeError, match="numpy.sum called on a device array"):
        np.sum(a)
    with pytest.raises(TypeError, match="numpy.concatenate called on a device array"):
        np.concatenate([a, a])
    with pytest.raises(TypeError, match="iterating a device array"):
        list(a)


def test_fake_array_refuses_mixing_with_host_arrays():
    a = mg.ones(3, device="fake").data
    host = np.ones(3)
    with pytest.raises(TypeError, match="host numpy.ndarray was mixed with device arrays"):
        a + host
    with pytest.raises(TypeError, match="host numpy.ndarray was mixed"):
        np.add(host, a)
    with pytest.raises(TypeError, match="host numpy.ndarray was mixed"):
        backend.xp_for(mg.Device("fake")).maximum(a, host)


def test_fake_device_allows_explicit_transfers_and_scalars():
    xp = backend.xp_for(mg.Device("fake"))
    a = xp.asarray(np.arange(3.0))          # host -> device is explicit, so allowed
    b = a * np.float32(2.0) + 1.0           # scalars are fine, as on CuPy
    assert isinstance(b, backend.FakeArray)
    assert backend.to_host(b).tolist() == [1.0, 3.0, 5.0]
    assert isinstance(b.sum(), backend.FakeArray)   # reductions stay on the device (0-d), like CuPy


def test_fake_device_counts_explicit_syncs():
    t = mg.tensor([1.0, 2.0], device="fake")
    assert _syncs(lambda: t.numpy()) == 1
    assert _syncs(lambda: t.sum().item()) == 1
    assert _syncs(lambda: float(t.sum())) == 1
    assert _syncs(lambda: t.tolist()) == 1
    assert _syncs(lambda: t.to("cpu")) == 1
    assert _syncs(lambda: t.data.get()) == 1


def test_training_step_makes_no_host_syncs():
    x = mg.randn(4, 3, device="fake")
    w = mg.randn(3, 5, device="fake", requires_grad=True)
    b = mg.zeros(5, device="fake", requires_grad=True)

    def step():
        h = F.layer_norm(F.gelu(x @ w + b), 5)
        att = F.scaled_dot_product_attention(h[None], h[None], h[None], is_causal=True)
        loss = (F.dropout(att, 0.1).logsumexp(axis=-1) + h.max(axis=1).sum() + h.var()).mean()
        loss.backward()

    assert _syncs(step) == 0
    assert w.grad is not None and isinstance(w.grad.data, backend.FakeArray)


def test_index_validation_syncs_once():
    """Checking integer targets/indices for range needs one look at the device
    data (``bool(bad.any())``): exactly one sync, not one per element."""
    x = mg.randn(4, 3, device="fake", requires_grad=True)
    t = mg.tensor([0, 1, 2, 0], device="fake")
    assert _syncs(lambda: F.cross_entropy(x, t).backward()) == 1
    assert _syncs(lambda: F.embedding(t, x).sum().backward()) == 1


@given(shapes(min_dims=1).flatmap(arrays))
def test_fake_and_cpu_compute_the_same(a):
    outs = {}
    for device in ("cpu", "fake"):
        x = mg.tensor(a, device=device, requires_grad=True)
        y = (F.softmax(x * 2.0, axis=-1) * x.tanh()).sum()
        y.backward()
        outs[device] = (y.item(), x.grad.numpy())
    assert outs["cpu"][0] == outs["fake"][0]
    np.testing.assert_array_equal(outs["cpu"][1], outs["fake"][1])


# --------------------------------------------------------------------------- seeds

def test_manual_seed_gives_identical_numbers_on_cpu_and_fake():
    draws = {}
    for device in ("cpu", "fake"):
        mg.manual_seed(42)
        x = mg.ones(6, 4, device=device)
        draws[device] = [mg.randn(3, 4, device=device).numpy(), mg.rand(5, device=device).numpy(),
                         mg.randint(0, 10, (7,), device=device).numpy(),
                         F.dropout(x, p=0.5).numpy()]
    for c, f in zip(draws["cpu"], draws["fake"]):
        np.testing.assert_array_equal(c, f)


def test_manual_seed_repeats_and_different_seeds_differ():
    mg.manual_seed(3)
    a = mg.randn(8).numpy()
    mg.manual_seed(3)
    b = mg.randn(8).numpy()
    mg.manual_seed(4)
    c = mg.randn(8).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_rng_state_round_trips():
    mg.manual_seed(0)
    mg.randn(3)
    state = backend.get_rng_state()
    a = mg.randn(5).numpy()
    backend.set_rng_state(state)
    np.testing.assert_array_equal(mg.randn(5).numpy(), a)


def test_randn_keeps_the_requested_float_dtype_per_device():
    for device in ("cpu", "fake"):
        assert mg.randn(2, device=device).dtype == mg.float32
        assert mg.randn(2, dtype="float64", device=device).dtype == mg.float64


# --------------------------------------------------------------------------- cuda probe

def test_cuda_is_available_returns_a_bool():
    assert isinstance(mg.cuda.is_available(), bool)
    assert isinstance(mg.cuda.device_count(), int)
    assert isinstance(mg.cuda.unavailable_reason(), str)


def test_cuda_probe_never_raises_when_cupy_is_broken(monkeypatch):
    from minigrad import cuda
    backend.cuda_probe.cache_clear()
    monkeypatch.setitem(sys.modules, "cupy", None)   # makes `import cupy` raise ImportError
    try:
        assert cuda.is_available() is False
        assert cuda.device_count() == 0
        assert "CuPy is not importable" in cuda.unavailable_reason()
    finally:
        backend.cuda_probe.cache_clear()


# --------------------------------------------------------------------------- devices

@pytest.mark.parametrize("spec, kind, index, text", [
    ("cpu", "cpu", None, "cpu"), ("fake", "fake", None, "fake"), ("cuda", "cuda", 0, "cuda:0"),
    ("cuda:0", "cuda", 0, "cuda:0"), ("cuda:3", "cuda", 3, "cuda:3"),
])
def test_device_parsing(spec, kind, index, text):
    d = mg.Device(spec)
    assert (d.type, d.index, str(d)) == (kind, index, text)
    assert repr(d) == f"device('{text}')"
    assert d == spec and d == mg.Device(d) and hash(d) == hash(mg.Device(text))


def test_devices_compare_by_type_and_index():
    assert mg.Device("cuda") == mg.Device("cuda:0") != mg.Device("cuda:1")
    assert mg.Device("cpu") != mg.Device("fake")
    assert mg.Device("cpu") != 3
    assert len({mg.Device("cpu"), mg.Device("cpu"), mg.Device("fake")}) == 2


@pytest.mark.parametrize("spec, error, pattern", [
    ("tpu", ValueError, "unknown device 'tpu'"), ("cpu:0", ValueError, "bad device index"),
    ("cuda:x", ValueError, "bad device index"), ("cuda:-1", ValueError, "bad device index"),
    ("fake:1", ValueError, "bad device index"), (0, TypeError, "expected a string"),
])
def test_bad_device_specs(spec, error, pattern):
    with pytest.raises(error, match=pattern):
        mg.Device(spec)


def test_device_function_validates():
    assert mg.device("fake") == mg.Device("fake")
    assert mg.device() == mg.Device("cpu")
    if not mg.cuda.is_available():
        with pytest.raises(mg.DeviceError, match="CUDA is not available"):
            mg.device("cuda")


def test_missing_cuda_names_the_right_install_command(monkeypatch):
    """The hint names this project's install (an editable install of minigrad-lmroad with its
    cuda extra, or CuPy itself), never ``minigrad[cuda]``: that is another project on PyPI."""
    monkeypatch.setattr(backend, "cuda_probe", lambda: (False, "no CUDA device found", 0))
    backend.device.cache_clear()
    try:
        with pytest.raises(mg.DeviceError) as info:
            mg.device("cuda")
    finally:
        backend.device.cache_clear()
    message = str(info.value)
    assert "CUDA is not available (no CUDA device found)" in message
    assert 'pip install -e ".[cuda]"' in message and "minigrad-lmroad" in message
    assert "cupy-cuda12x" in message and "minigrad[cuda]" not in message


def test_tensor_device_and_backend_array_type(device):
    t = mg.zeros(2, device=device)
    assert t.device == device
    assert isinstance(t.data, t.xp.ndarray)
    assert isinstance(mg.tensor(2.0, device=device).data, t.xp.ndarray)   # 0-d too


# --------------------------------------------------------------------------- .to()

@pytest.mark.parametrize("src, dst", [("cpu", "fake"), ("fake", "cpu"), ("fake", "fake")])
def test_to_round_trips_values_and_gradients(src, dst):
    x = mg.tensor([[1.0, -2.0], [0.5, 3.0]], device=src, requires_grad=True)
    y = x.to(dst)
    assert y.device == dst
    back = (y * y).to(src)
    v = mg.tensor([[1.0, 2.0], [3.0, 4.0]], device=src)
    back.backward(v)
    assert x.grad.device == src and isinstance(x.grad.data, x.xp.ndarray)
    np.testing.assert_array_equal(x.grad.numpy(), 2.0 * x.numpy() * v.numpy())


def test_to_the_same_device_and_dtype_is_the_same_tensor():
    x = mg.ones(2, requires_grad=True)
    assert x.to("cpu") is x and x.to(dtype="float32") is x and x.cpu() is x


def test_to_with_dtype_and_device_carries_the_gradient_back_in_the_original_dtype():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x.to("fake", dtype="float64")
    assert y.device == "fake" and y.dtype == mg.float64
    (y * 3.0).sum().backward()
    assert x.grad.dtype == mg.float32 and x.grad.device == "cpu"
    assert x.grad.tolist() == [3.0, 3.0]


def test_to_without_grad_records_nothing():
    x = mg.ones(2, requires_grad=True)
    with mg.no_grad():
        y = x.to("fake")
    assert not y.requires_grad and y.is_leaf


@given(st.sampled_from(["cpu", "fake"]), st.sampled_from(["cpu", "fake"]),
       shapes().flatmap(arrays))
def test_to_preserves_values_exactly(src, dst, a):
    x = mg.tensor(a, device=src)
    np.testing.assert_array_equal(x.to(dst).numpy(), x.numpy())
