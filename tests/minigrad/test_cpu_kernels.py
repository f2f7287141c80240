"""The CPU fast path (minigrad/cpu/kernels.py, numba) against the ops' NumPy code.

Each fused op is run twice on the same generated inputs, with the compiled loops
on and off (``minigrad.cpu.use_cpu_kernels``), in float32 and float64, on
contiguous, strided (transposed, sliced) and empty inputs, and the values and
gradients must agree to rounding. The loops' own exp, tanh and erfc are
measured against the exact values in units in the last place.

The project's test command installs numba (the ``fast`` extra): CI runs these.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.cpu
from minigrad import functional as F
from minigrad import nn, optim

pytest.importorskip("numba", reason='the CPU fast path needs numba (pip install -e ".[fast]")')

from minigrad.cpu import kernels  # noqa: E402  (after the numba check)

DTYPES = [np.float32, np.float64]
#: fast loop against NumPy: float32 results differ by a few ulp of the operands
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def _run(fn, *arrays, fast: bool):
    """fn on fresh leaf tensors of ``arrays`` with the fast path on or off: the outputs'
    values, and the gradients of a fixed random projection of them."""
    with minigrad.cpu.use_cpu_kernels(fast):
        ts = [mg.tensor(a, requires_grad=True) if a.dtype.kind == "f" else mg.tensor(a) for a in arrays]
        out = fn(*ts)
        rng = np.random.default_rng(0)
        w = mg.tensor(rng.standard_normal(out.shape).astype(out.dtype))
        (out * w).sum().backward()
        return [out.numpy()] + [t.grad.numpy() for t in ts if t.requires_grad and t.grad is not None]


def _agree(fn, *arrays):
    fast, slow = _run(fn, *arrays, fast=True), _run(fn, *arrays, fast=False)
    assert len(fast) == len(slow)
    dtype = next(a.dtype.type for a in arrays if a.dtype.kind == "f")
    for a, b in zip(fast, slow):
        assert a.shape == b.shape and a.dtype == b.dtype
        scale = max(1.0, float(np.abs(b[np.isfinite(b)]).max(initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale)


@st.composite
def arrays(draw, min_dims=1, max_dims=3, min_side=0, scale=3.0, layouts=True):
    """Generated float arrays, perhaps transposed or a strided slice of a larger one."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = tuple(draw(st.lists(st.integers(min_side, 6), min_size=min_dims, max_size=max_dims)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layout = draw(st.sampled_from(["c", "transposed", "sliced"])) if layouts else "c"
    if layout == "transposed":
        a = (rng.standard_normal(shape[::-1]) * scale).astype(dtype).T
    elif layout == "sliced":
        big = (rng.standard_normal(tuple(2 * s for s in shape)) * scale).astype(dtype)
        a = big[tuple(slice(None, None, 2) for _ in shape)]
    else:
        a = (rng.standard_normal(shape) * scale).astype(dtype)
    return a


def test_the_fast_path_is_on_here():
    """What the other tests compare would be NumPy against NumPy otherwise."""
    assert minigrad.cpu.is_available(), minigrad.cpu.unavailable_reason()
    assert minigrad.cpu.kernel("gelu_tanh", np.zeros(3, np.float32)) is not None
    assert minigrad.cpu.kernel("gelu_tanh", np.zeros(3, np.int64)) is None     # no float array
    assert minigrad.cpu.kernel("gelu_tanh", np.zeros(3, np.float16)) is None
    assert minigrad.cpu.kernel("gelu_tanh", np.zeros(3, np.float32), np.zeros(3)) is None   # mixed
    with minigrad.cpu.use_cpu_kernels(False):
        assert minigrad.cpu.kernel("gelu_tanh", np.zeros(3, np.float32)) is None
    for bad in ("gelu_tanhh", "_gelu_tanh"):          # a misspelt cpu_kernel= says so by name
        with pytest.raises(ValueError, match=f"minigrad.cpu.kernel: no CPU loop named '{bad}'"):
            minigrad.cpu.kernel(bad, np.zeros(3, np.float32))


def test_every_cuda_kernel_names_an_existing_cpu_loop():
    from minigrad.cuda.kernels import REGISTRY
    named = {k.name: k.cpu_kernel for k in REGISTRY.values() if k.cpu_kernel is not None}
    assert len(named) >= 12                   # GELU ×4, LSTM ×4, GRU ×2, cross-entropy, Adam
    for name, loop in named.items():
        assert callable(getattr(kernels, loop, None)) and not loop.startswith("_"), (name, loop)


# --------------------------------------------------------------------------- exp, tanh, erfc

def _ulps(got, exact, dtype):
    """|got - exact| in units in the last place of the exact value (at least the smallest
    normal's ulp, so that values near 0 are measured absolutely there)."""
    tiny = np.finfo(dtype).tiny
    ulp = np.spacing(np.maximum(np.abs(exact), tiny).astype(dtype)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / ulp


@pytest.mark.parametrize("name, lo, hi, exact", [
    ("exp", -87.0, 88.5, np.exp),
    ("tanh", -12.0, 12.0, np.tanh),
])
def test_float32_exp_and_tanh_are_within_5_ulp(name, lo, hi, exact):
    x = np.linspace(lo, hi, 200_001, dtype=np.float32)
    got = kernels.map_math(name, x)
    assert got.dtype == np.float32
    assert _ulps(got, exact(x.astype(np.float64)), np.float32).max() <= 5


def test_float32_erfc_is_within_1e_5_relative():
    """erfc(z) = t e^(-z² + P(t)): float32's rounding of z² (ulp(81) = 8e-6 at z = 9) sets
    the error for large z; below z = 2 (where GELU's Φ is not yet 0 or 1) it is 1e-6."""
    x = np.linspace(-4.0, 9.0, 200_001, dtype=np.float32)
    exact = np.vectorize(math.erfc)(x.astype(np.float64))
    rel = np.abs(kernels.map_math("erfc", x) - exact) / exact
    assert rel.max() <= 1e-5
    assert rel[x < 2].max() <= 1e-6


@pytest.mark.parametrize("dtype", DTYPES)
def test_math_at_the_edges(dtype):
    x = np.array([np.nan, -np.inf, np.inf, -1000.0, 1000.0, 0.0, -0.0], dtype)
    exp, tanh, erfc = (kernels.map_math(n, x) for n in ("exp", "tanh", "erfc"))
    np.testing.assert_array_equal(exp, np.array([np.nan, 0, np.inf, 0, np.inf, 1, 1], dtype))
    np.testing.assert_array_equal(tanh, np.array([np.nan, -1, 1, -1, 1, 0, 0], dtype))
    np.testing.assert_array_equal(erfc, np.array([np.nan, 2, 0, 2, 0, 1, 1], dtype))


# --------------------------------------------------------------------------- the ops, on and off

@settings(deadline=None)
@given(x=arrays(), approximate=st.sampled_from(["tanh", "none"]))
def test_gelu(x, approximate):
    _agree(lambda t: F.gelu(t, approximate=approximate), x)


@settings(deadline=None)
@given(x=arrays(min_side=1), axis=st.integers(-1, 0))
def test_softmax_and_log_softmax(x, axis):
    _agree(lambda t: F.softmax(t, axis=axis), x)
    _agree(lambda t: F.log_softmax(t, axis=axis), x)


@settings(deadline=None)
@given(x=arrays(min_dims=2, max_dims=2, min_side=1, scale=4.0), data=st.data())
def test_softmax_with_masked_entries_and_rows(x, data):
    x = np.array(x)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x[rng.random(x.shape) < 0.3] = -np.inf
    if data.draw(st.booleans()):
        x[0] = -np.inf                        # a fully masked row: zeros, zero gradient
    _agree(lambda t: F.softmax(t, axis=-1), x)


@settings(deadline=None)
@given(q=arrays(min_dims=4, max_dims=4, min_side=1, layouts=False), causal=st.booleans(),
       mask_kind=st.sampled_from(["none", "2d", "per-batch"]), data=st.data())
def test_attention(q, causal, mask_kind, data):
    """Scale, mask and softmax in one pass, on every kind of mask (a per-batch mask takes
    the NumPy path inside the op); a fully masked query row gives zeros."""
    b, h, L, e = q.shape
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    S = data.draw(st.integers(1, 5))
    k = rng.standard_normal((b, h, S, e)).astype(q.dtype)
    v = rng.standard_normal((b, h, S, e)).astype(q.dtype)
    mask = None
    if mask_kind == "2d":
        mask = rng.random((L, S)) < 0.7
        mask[0] = False
    elif mask_kind == "per-batch":
        mask = rng.random((b, 1, L, S)) < 0.7
    is_causal = causal and mask is None and L == S
    _agree(lambda q_, k_, v_: F.scaled_dot_product_attention(
        q_, k_, v_, attn_mask=None if mask is None else mg.tensor(mask), is_causal=is_causal), q, k, v)


@settings(deadline=None)
@given(x=arrays(min_dims=2, max_dims=2, min_side=1), smoothing=st.sampled_from([0.0, 0.1]),
       reduction=st.sampled_from(["mean", "sum", "none"]), data=st.data())
def test_cross_entropy(x, smoothing, reduction, data):
    n, c = x.shape
    t = np.array(data.draw(st.lists(st.integers(-1, c - 1), min_size=n, max_size=n)), np.int64)
    _agree(lambda t_x, t_t: F.cross_entropy(t_x, t_t, ignore_index=-1, label_smoothing=smoothing,
                                            reduction=reduction), x, t)


@settings(deadline=None)
@given(x=arrays(min_dims=1, max_dims=3), affine=st.sampled_from(["none", "weight", "both"]),
       large_mean=st.booleans())
def test_layer_norm(x, affine, large_mean):
    n = x.shape[-1]
    x = x + (1e3 if large_mean else 0.0)      # the shift keeps float32's digits in both paths
    rng = np.random.default_rng(1)
    w = (rng.standard_normal(n) + 1).astype(x.dtype)
    b = rng.standard_normal(n).astype(x.dtype)
    if affine == "none":
        _agree(lambda t: F.layer_norm(t, n), x)
    elif affine == "weight":
        _agree(lambda t, w_: F.layer_norm(t, n, weight=w_), x, w)
    else:
        _agree(lambda t, w_, b_: F.layer_norm(t, n, weight=w_, bias=b_), x, w, b)


@st.composite
def recurrent_case(draw):
    dtype = draw(st.sampled_from(DTYPES))
    B, H, T = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 4))
    return dtype, B, H, T, np.random.default_rng(draw(st.integers(0, 2**16)))


@settings(deadline=None)
@given(case=recurrent_case())
def test_lstm_cell_and_gru_cell(case):
    dtype, B, H, _, rng = case
    gates = (rng.standard_normal((B, 4 * H)) * 2).astype(dtype)
    c = rng.standard_normal((B, H)).astype(dtype)
    _agree(lambda g_, c_: mg.concatenate(F.lstm_cell(g_, c_), axis=-1), gates, c)
    _agree(lambda g_, c_: mg.concatenate(F.lstm_cell(g_, c_), axis=-1), gates[:, ::-1], c.T.copy().T)
    gx, gh = ((rng.standard_normal((B, 3 * H)) * 2).astype(dtype) for _ in range(2))
    h = rng.standard_normal((B, H)).astype(dtype)
    _agree(F.gru_cell, gx, gh, h)
    if B > 1:                                 # a batch of 3-d states: the NumPy code inside
        _agree(F.gru_cell, gx.reshape(1, B, 3 * H), gh.reshape(1, B, 3 * H), h.reshape(1, B, H))


@settings(deadline=None)
@given(case=recurrent_case(), bias=st.booleans())
def test_lstm_sequence(case, bias):
    dtype, B, H, T, rng = case
    gx = (rng.standard_normal((T, B, 4 * H)) * 2).astype(dtype)
    h0, c0 = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    w = (rng.standard_normal((4 * H, H)) / np.sqrt(H)).astype(dtype)
    arrays = [gx, h0, c0, w] + ([rng.standard_normal(4 * H).astype(dtype)] if bias else [])

    def run(*ts):
        hs, (h, c) = F.lstm_sequence(*ts[:4], *ts[4:])
        return mg.concatenate([hs.reshape((-1,)), h.reshape((-1,)), c.reshape((-1,))])
    _agree(run, *arrays)


@settings(deadline=None)
@given(case=recurrent_case(), bias=st.booleans(), kind=st.sampled_from(["gru", "rnn-tanh", "rnn-relu"]))
def test_gru_and_rnn_sequences(case, bias, kind):
    dtype, B, H, T, rng = case
    G = 3 if kind == "gru" else 1
    gx = (rng.standard_normal((T, B, G * H)) * 2).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    w = (rng.standard_normal((G * H, H)) / np.sqrt(H)).astype(dtype)
    arrays = [gx, h0, w] + ([rng.standard_normal(G * H).astype(dtype)] if bias else [])

    def run(*ts):
        if kind == "gru":
            hs, h = F.gru_sequence(*ts)
        else:
            hs, h = F.rnn_sequence(*ts[:3], *ts[3:], nonlinearity=kind[4:])
        return mg.concatenate([hs.reshape((-1,)), h.reshape((-1,))])
    _agree(run, *arrays)
    _agree(run, gx[:, :, ::-1].copy()[:, :, ::-1], h0.T.copy().T, w, *arrays[3:])   # strided views


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", ["adam", "adamw", "adam-l2"])
def test_adam_steps_agree(dtype, opt):
    def train(fast):
        with minigrad.cpu.use_cpu_kernels(fast):
            rng = np.random.default_rng(2)
            params = [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in ((5, 3), (3,))]
            if opt == "adam":
                o = optim.Adam(params, lr=0.01)
            elif opt == "adamw":
                o = optim.AdamW(params, lr=0.01, weight_decay=0.1)
            else:
                o = optim.Adam(params, lr=0.01, weight_decay=0.1)
            x = mg.tensor(rng.standard_normal((4, 5)).astype(dtype))
            for _ in range(5):
                o.zero_grad()
                ((x @ params[0] + params[1]) ** 2).sum().backward()
                o.step()
            return [p.numpy().copy() for p in params]
    for a, b in zip(train(True), train(False)):
        np.testing.assert_allclose(a, b, **TOL[dtype])


# --------------------------------------------------------------------------- kernels on odd layouts

@pytest.mark.parametrize("dtype", DTYPES)
def test_kernels_on_empty_and_zero_dim_arrays(dtype):
    for shape in [(), (0,), (3, 0), (0, 4)]:
        x = np.ones(shape, dtype)
        assert kernels.gelu_tanh(x).shape == shape
        assert kernels.gelu_exact_backward(x, x).shape == shape
    assert kernels.softmax_rows(np.ones((0, 3), dtype)).shape == (0, 3)
    assert kernels.layer_norm_forward(np.ones((2, 0), dtype), None, None, 1e-5) is NotImplemented
    assert kernels.gelu_tanh_backward(np.ones(3, dtype), np.ones((2, 3), dtype)) is NotImplemented


@pytest.mark.parametrize("threads", [2])
def test_parallel_builds_give_the_serial_results(threads):
    """The loops compiled for several threads compute each element as the serial ones do
    (sums over rows inside one thread; LayerNorm's weight gradient summed over blocks)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((37, 19)).astype(np.float32)
    g = rng.standard_normal((37, 19)).astype(np.float32)
    mask = np.tril(np.ones((37, 19), bool))

    def results():
        stats = kernels.layer_norm_forward(x, None, None, 1e-5)[1:]
        return [kernels.gelu_tanh_backward(x, g), kernels.softmax_rows(x, mask, 0.5),
                *kernels.layer_norm_backward(g, x, *stats, None)]
    serial = results()
    minigrad.cpu.set_num_threads(threads)
    try:
        parallel = results()
    finally:
        minigrad.cpu.set_num_threads(1)
    for a, b in zip(parallel, serial):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_set_num_threads_refuses_bad_counts():
    for bad in (0, -1, 1.5, True, "2", minigrad.cpu.max_num_threads() + 1):
        with pytest.raises(ValueError, match="set_num_threads"):
            minigrad.cpu.set_num_threads(bad)
