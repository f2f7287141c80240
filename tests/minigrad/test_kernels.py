"""Custom CUDA kernels (minigrad/cuda/kernels.py), checked three ways:

- everywhere: each kernel's CUDA C body, compiled for the CPU by
  ``minigrad.testing.kernel_emulator``, agrees with the kernel's ``xp`` fallback on
  generated inputs (float32 and float64);
- where nvcc is installed: every body compiles as CUDA for sm_90;
- on a GPU (marked cuda): the kernel CuPy launches agrees with the fallback.
"""

from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pytest
from hypothesis import find, given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import backend
from minigrad.cuda import kernels
from minigrad.testing import kernel_emulator

pytestmark = pytest.mark.skipif(kernel_emulator.compiler() is None,
                                reason="the kernel emulator needs a C++ compiler (g++ or clang++)")

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 2e-5, np.float64: 1e-12}


# --------------------------------------------------------------------------- input cases

def _rows(draw, rng, dtype, min_rows=0, min_cols=1, scale=2.0):
    r = draw(st.integers(min_rows, 5))
    c = draw(st.integers(min_cols, 7))
    return (rng.standard_normal((r, c)) * scale).astype(dtype)


def _masked_rows(draw, rng, dtype):
    """Rows of logits, some entries -inf, perhaps a whole row (a fully masked query)."""
    x = _rows(draw, rng, dtype, scale=4.0)
    if x.size and draw(st.booleans()):
        x[rng.random(x.shape) < 0.3] = -np.inf
    if x.shape[0] and draw(st.booleans()):
        x[0] = -np.inf
    return x


def _row_max(x):
    return x.max(axis=-1, keepdims=True) if x.shape[-1] else x.sum(axis=-1, keepdims=True)


def _col(rng, rows, dtype, scale=1.0, positive=False):
    c = rng.standard_normal((rows, 1)) * scale
    return (np.abs(c) + 0.1 if positive else c).astype(dtype)


def _ln_stats(x):
    shift = x[:, :1]
    mu = (x - shift).mean(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(((x - shift - mu) ** 2).mean(axis=-1, keepdims=True) + 1e-5)
    return shift, mu, rstd.astype(x.dtype)


def _lstm_shapes(draw):
    return draw(st.integers(0, 4)), draw(st.integers(1, 5))


def _gelu(draw, rng, dt):
    return (_rows(draw, rng, dt, scale=3.0),)


def _gelu_backward(draw, rng, dt):
    x = _rows(draw, rng, dt, scale=3.0)
    return x, rng.standard_normal(x.shape).astype(dt)


def _lstm_forward(draw, rng, dt):
    B, H = _lstm_shapes(draw)
    a = (rng.standard_normal((B, 4 * H)) * 3).astype(dt)
    c = rng.standard_normal((B, H)).astype(dt)
    return a, c, H, np.empty((B, 2 * H), dt), np.empty((B, 4 * H), dt)


def _lstm_backward(draw, rng, dt):
    B, H = _lstm_shapes(draw)
    act = rng.random((B, 4 * H)).astype(dt)
    act[:, 2 * H:3 * H] = act[:, 2 * H:3 * H] * 2 - 1          # g's slot is a tanh
    hc = rng.standard_normal((B, 2 * H)).astype(dt)
    return (act, hc, rng.standard_normal((B, 2 * H)).astype(dt), rng.standard_normal((B, H)).astype(dt),
            H, np.empty((B, 4 * H), dt), np.empty((B, H), dt))


def _lstm_seq_forward(draw, rng, dt):
    B, H = _lstm_shapes(draw)
    gx, hw = ((rng.standard_normal((B, 4 * H)) * 2).astype(dt) for _ in range(2))
    return (gx, hw, rng.standard_normal(4 * H).astype(dt), rng.standard_normal((B, H)).astype(dt), H,
            np.empty((B, 2 * H), dt), np.empty((B, 4 * H), dt))


def _lstm_seq_backward(draw, rng, dt):
    act, hc, grad_out, c, H, da, dc = _lstm_backward(draw, rng, dt)
    B = c.shape[0]
    dh_next, dc_next = (rng.standard_normal((B, H)).astype(dt) for _ in range(2))
    return act, hc, grad_out, dh_next, dc_next, c, H, da, dc


def _gru_forward(draw, rng, dt):
    B, H = _lstm_shapes(draw)
    gx, gh = ((rng.standard_normal((B, 3 * H)) * 2).astype(dt) for _ in range(2))
    h = rng.standard_normal((B, H)).astype(dt)
    return gx, gh, h, H, np.empty((B, H), dt), np.empty((B, 4 * H), dt)


def _gru_backward(draw, rng, dt):
    B, H = _lstm_shapes(draw)
    saved = rng.random((B, 4 * H)).astype(dt)
    saved[:, 2 * H:] = saved[:, 2 * H:] * 2 - 1                 # n (a tanh) and h_n
    h, g = (rng.standard_normal((B, H)).astype(dt) for _ in range(2))
    return (saved, h, g, H, np.empty((B, 3 * H), dt), np.empty((B, 3 * H), dt),
            np.empty((B, H), dt))


def _rnn_forward(draw, rng, dt):
    x = _rows(draw, rng, dt, scale=2.0)
    return x, rng.standard_normal(x.shape).astype(dt), int(draw(st.booleans())), np.empty_like(x)


def _rnn_backward(draw, rng, dt):
    g = _rows(draw, rng, dt)
    h = np.tanh(rng.standard_normal(g.shape)).astype(dt)
    relu = int(draw(st.booleans()))
    if relu:
        h = np.maximum(h, 0)                                   # a relu's output: zeros included
    return g, rng.standard_normal(g.shape).astype(dt), h, relu, np.empty_like(g)


def _adam_step(draw, rng, dt):
    x = _rows(draw, rng, dt)
    decoupled = draw(st.booleans())
    lr, wd, t = 1e-3, 0.1, draw(st.integers(1, 1000))
    if draw(st.booleans()):       # capturable: lr and t as 0-d arrays, as on the device
        lr, t = np.array(lr, dtype=dt), np.array(t, dtype=dt)
    m = (rng.standard_normal(x.shape) * 0.1).astype(dt)
    v = (rng.random(x.shape) * 0.01).astype(dt)
    return (rng.standard_normal(x.shape).astype(dt), lr, t, wd if decoupled else 0.0,
            0.0 if decoupled else wd, 0.9, 0.999, 1e-8, x, m, v)


def _sum_exp(draw, rng, dt):
    x = _masked_rows(draw, rng, dt)
    return x, _row_max(x)


def _softmax_normalize(draw, rng, dt):
    x, m = _sum_exp(draw, rng, dt)
    return x, m, kernels.REGISTRY["sum_exp"].fallback(x, m)


def _row_dot(draw, rng, dt):
    g = _rows(draw, rng, dt)
    return g, rng.random(g.shape).astype(dt)


def _softmax_backward(draw, rng, dt):
    g, y = _row_dot(draw, rng, dt)
    return g, y, _col(rng, g.shape[0], dt), draw(st.sampled_from([1.0, 0.125]))


def _cross_entropy_backward(draw, rng, dt):
    x = _rows(draw, rng, dt, scale=4.0)
    n, c = x.shape
    m = _row_max(x)
    s = kernels.REGISTRY["sum_exp"].fallback(x, m)
    t = rng.integers(0, c, size=(n, 1)).astype(np.int64)
    eps = draw(st.sampled_from([0.0, 0.1]))
    return x, m, s, t, _col(rng, n, dt), eps / c, 1 - eps + eps / c, c


def _ln_mean(draw, rng, dt):
    x = _rows(draw, rng, dt) + dt(draw(st.sampled_from([0.0, 100.0])))
    return x, x[:, :1], 1.0 / x.shape[1]


def _ln_var(draw, rng, dt):
    x = _rows(draw, rng, dt)
    shift, mu, _ = _ln_stats(x)
    return x, shift, mu, 1.0 / x.shape[1]


def _rsqrt_eps(draw, rng, dt):
    return np.abs(_rows(draw, rng, dt)), draw(st.sampled_from([1e-5, 0.0]))


def _ln_normalize(draw, rng, dt):
    x = _rows(draw, rng, dt)
    shift, mu, rstd = _ln_stats(x)
    if draw(st.booleans()):
        return x, shift, mu, rstd, 1.0, 0.0          # no affine: scalars
    n = x.shape[1]
    return x, shift, mu, rstd, rng.standard_normal(n).astype(dt), rng.standard_normal(n).astype(dt)


def _ln_grad_mean(draw, rng, dt):
    g = _rows(draw, rng, dt)
    return g, rng.standard_normal(g.shape[1]).astype(dt), 1.0 / g.shape[1]


def _ln_grad_xhat_mean(draw, rng, dt):
    x = _rows(draw, rng, dt)
    shift, mu, rstd = _ln_stats(x)
    g = rng.standard_normal(x.shape).astype(dt)
    return g, rng.standard_normal(x.shape[1]).astype(dt), x, shift, mu, rstd, 1.0 / x.shape[1]


def _ln_backward(draw, rng, dt):
    g, w, x, shift, mu, rstd, _ = _ln_grad_xhat_mean(draw, rng, dt)
    return g, w, x, shift, mu, rstd, _col(rng, x.shape[0], dt), _col(rng, x.shape[0], dt)


def _ln_grad_xhat(draw, rng, dt):
    g, _, x, shift, mu, rstd, _ = _ln_grad_xhat_mean(draw, rng, dt)
    return g, x, shift, mu, rstd


CASES = {
    "gelu_tanh": _gelu, "gelu_exact": _gelu,
    "gelu_tanh_backward": _gelu_backward, "gelu_exact_backward": _gelu_backward,
    "lstm_forward": _lstm_forward, "lstm_backward": _lstm_backward,
    "lstm_seq_forward": _lstm_seq_forward, "lstm_seq_backward": _lstm_seq_backward,
    "gru_forward": _gru_forward, "gru_backward": _gru_backward,
    "rnn_forward": _rnn_forward, "rnn_backward": _rnn_backward,
    "adam_step": _adam_step,
    "sum_exp": _sum_exp, "softmax_normalize": _softmax_normalize, "row_dot": _row_dot,
    "softmax_backward": _softmax_backward, "cross_entropy_backward": _cross_entropy_backward,
    "layer_norm_mean": _ln_mean, "layer_norm_var": _ln_var,
    "rsqrt_eps": _rsqrt_eps, "layer_norm_normalize": _ln_normalize,
    "layer_norm_grad_mean": _ln_grad_mean, "layer_norm_grad_xhat_mean": _ln_grad_xhat_mean,
    "layer_norm_backward": _ln_backward, "layer_norm_grad_xhat": _ln_grad_xhat,
}


def _drawn_case(name, dtype, data):
    """The kernel and a generated argument tuple for it (NumPy arrays and scalars)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    return kernels.REGISTRY[name], CASES[name](data.draw, rng, dtype)


def _fresh(args):
    """Copies of the array arguments, so in-place outputs start equal for both runs."""
    return tuple(a.copy() if isinstance(a, np.ndarray) else a for a in args)


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _assert_agree(name, got, want, dtype):
    assert len(_as_tuple(got)) == len(_as_tuple(want)), f"kernel {name}: output counts differ"
    for k, (a, b) in enumerate(zip(_as_tuple(got), _as_tuple(want))):
        assert a.shape == b.shape and a.dtype == b.dtype, (name, k, a.shape, b.shape, a.dtype, b.dtype)
        finite = b[np.isfinite(b)]
        scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
        np.testing.assert_allclose(a, b, rtol=TOL[dtype], atol=TOL[dtype] * scale,
                                   err_msg=f"kernel {name}, output {k}")


# --------------------------------------------------------------------------- tests

def test_every_kernel_has_a_case():
    ours = {n for n, k in kernels.REGISTRY.items() if k.fallback.__module__.startswith("minigrad.")}
    assert ours - set(CASES) == set(), "give each new kernel of minigrad an entry in CASES"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_emulated_kernel_agrees_with_its_fallback(name, dtype, data):
    kernel, args = _drawn_case(name, dtype, data)
    want = kernel.fallback(*_fresh(args))
    with np.errstate(all="ignore"):
        got = kernel_emulator.run(kernel, *_fresh(args))
    _assert_agree(name, got, want, dtype)


def test_the_emulator_catches_a_wrong_body():
    """The check has teeth: a kernel whose body differs from its fallback fails it."""
    wrong = kernels.Elementwise("test_wrong_sigmoid", "T x", "T y", "y = T(1) / (T(1) + exp(x));",
                                fallback=lambda x: 1 / (1 + np.exp(-x)))
    try:
        x = np.linspace(-2, 2, 9)
        with pytest.raises(AssertionError):
            _assert_agree("test_wrong_sigmoid", kernel_emulator.run(wrong, x), wrong.fallback(x),
                          np.float64)
    finally:
        del kernels.REGISTRY["test_wrong_sigmoid"]


def test_emulator_refuses_a_type_it_cannot_run():
    with pytest.raises(TypeError, match="float32 and float64 only"):
        kernel_emulator.run(kernels.REGISTRY["gelu_tanh"], np.ones(3, np.float16))


def test_emulator_reports_a_body_that_does_not_compile():
    bad = kernels.Elementwise("test_bad_body", "T x", "T y", "y = undefined_function(x);",
                              fallback=lambda x: x)
    try:
        with pytest.raises(RuntimeError, match="does not compile"):
            kernel_emulator.run(bad, np.ones(3))
    finally:
        del kernels.REGISTRY["test_bad_body"]


@pytest.mark.parametrize("spec, match", [
    ("float16 x", "TYPE one of"), ("T", "expected"), ("T n", "reserved"), ("raw T _x", "reserved"),
])
def test_bad_parameter_lists_are_refused_by_name(spec, match):
    with pytest.raises(ValueError, match=match):
        kernels.parse_params(spec)


def test_a_kernel_name_is_defined_once():
    with pytest.raises(ValueError, match="defined twice, with different bodies"):
        kernels.Elementwise("gelu_tanh", "T x", "T y", "y = x;", fallback=lambda x: x)
    old = kernels.REGISTRY["gelu_tanh"]             # the same definition again is accepted
    kernels.Elementwise("gelu_tanh", "T x", "T y", old.operation, fallback=old.fallback)
    kernels.REGISTRY["gelu_tanh"] = old


def test_wrong_argument_count_names_the_kernel():
    with pytest.raises(TypeError, match="kernel gelu_tanh: takes 1 inputs"):
        kernels.REGISTRY["gelu_tanh"](np.ones(2), np.ones(2), np.ones(2))


def test_kernels_run_only_on_cuda_arrays():
    """cpu and fake arrays never launch, whatever the switch says: fake arrays take the
    fallback, cpu arrays too once the compiled CPU loops (minigrad.cpu) are off."""
    import minigrad.cpu
    x = np.linspace(-3, 3, 7)
    gelu = kernels.REGISTRY["gelu_tanh"]
    assert not kernels._is_cupy((x,))
    assert not kernels._is_cupy((backend.to_device(x, backend.FAKE),))
    assert not kernels.will_launch(x) and not kernels.will_launch(backend.to_device(x, backend.FAKE))
    with minigrad.cpu.use_cpu_kernels(False):
        np.testing.assert_array_equal(gelu(x), gelu.fallback(x))
    fake = gelu(backend.to_device(x, backend.FAKE))
    np.testing.assert_array_equal(backend.to_host(fake), gelu.fallback(x))


def test_use_kernels_switches_and_restores():
    assert kernels.kernels_enabled()
    with mg.use_kernels(False):
        assert not kernels.kernels_enabled()
        with mg.use_kernels(True):
            assert kernels.kernels_enabled()
        assert not kernels.kernels_enabled()
    assert kernels.kernels_enabled()


def test_a_kernel_that_fails_to_compile_warns_once_and_falls_back(monkeypatch):
    class CompileException(Exception):    # CuPy's name for an NVRTC error
        pass

    def refuse(*args, **kwargs):
        raise CompileException("error: identifier 'oops' is undefined")

    k = kernels.Elementwise("test_fails_to_compile", "T x", "T y", "y = oops;",
                            fallback=lambda x: x * 2)
    try:
        monkeypatch.setattr(kernels, "_is_cupy", lambda args: True)
        monkeypatch.setattr(k, "_build", lambda cp: refuse)
        monkeypatch.setattr(backend, "_cupy", lambda: None)
        with pytest.warns(RuntimeWarning, match="test_fails_to_compile failed to compile"):
            np.testing.assert_array_equal(k(np.ones(3)), np.full(3, 2.0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")          # no second warning
            np.testing.assert_array_equal(k(np.ones(2)), np.full(2, 2.0))
    finally:
        del kernels.REGISTRY["test_fails_to_compile"]


def test_a_launch_error_is_not_mistaken_for_a_compile_error(monkeypatch):
    def fail(*args, **kwargs):
        raise MemoryError("out of device memory")

    k = kernels.Elementwise("test_launch_error", "T x", "T y", "y = x;", fallback=lambda x: x)
    try:
        monkeypatch.setattr(kernels, "_is_cupy", lambda args: True)
        monkeypatch.setattr(k, "_build", lambda cp: fail)
        monkeypatch.setattr(backend, "_cupy", lambda: None)
        with pytest.raises(MemoryError):
            k(np.ones(3))
    finally:
        del kernels.REGISTRY["test_launch_error"]


def _example(name, dtype):
    """A fixed, small argument tuple for a kernel: each CASES draw takes its simplest value."""
    def draw(strategy, label=None):
        return find(strategy, lambda _: True)
    return CASES[name](draw, np.random.default_rng(0), dtype)


def _scalars(name, args):
    k = kernels.REGISTRY[name]
    return [p for p, a in zip(k.in_params + k.out_params, args) if not isinstance(a, np.ndarray)]


_NVCC = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (the CUDA compiler) is not installed")


def _nvcc(tmp_path, source: str, *flags: str) -> None:
    src = tmp_path / "kernels.cu"
    src.write_text(source)
    done = subprocess.run(["nvcc", "-arch=sm_90", *flags, "-c", "-o", str(tmp_path / "k.o"), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


@_NVCC
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_every_kernel_body_compiles_with_nvcc(tmp_path, dtype):
    """The bodies wrapped as the emulator wraps them, as __global__ functions."""
    ours = sorted(CASES)
    scalars = {n: _scalars(n, _example(n, dtype)) for n in ours}
    _nvcc(tmp_path, kernel_emulator.cuda_source([kernels.REGISTRY[n] for n in ours],
                                                "float" if dtype == np.float32 else "double",
                                                scalars))


@_NVCC
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_cupys_own_source_for_every_kernel_compiles_with_nvcc(tmp_path, dtype):
    """The exact source CuPy generates for each kernel (its code generators, run
    without a GPU), with CuPy's headers: what NVRTC would compile on a GPU; and
    CuPy's type resolution accepts the argument dtypes the ops pass."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install cupy-cuda13x)")
    import cupy._core._kernel as K
    import cupy._core._reduction as R
    from cupy._core import _carray, _scalar, core

    def array(ndim, contiguous=True):
        return K._ArgInfo(1, cupy.ndarray, dtype, ndim, contiguous, True)

    def scalar(t):
        return K._ArgInfo(3, _scalar.CScalar, t, 0, True, True)

    def indexer(ndim):
        return K._ArgInfo(2, _carray.Indexer, None, ndim, True, True)

    parts = [f"#include <{h}>" for h in core._cupy_header_list]
    for name in sorted(CASES):
        k = kernels.REGISTRY[name]
        args = _example(name, dtype)
        in_p, out_p = K._get_param_info(k._spec[0], True), K._get_param_info(k._spec[1], False)
        # CuPy's type resolution for these arguments: a wrong dtype (int32 given for an
        # int64 parameter, say) is a TypeError there
        types = tuple(a.dtype.type if isinstance(a, np.ndarray) else None for a in args)
        K._decide_params_type(in_p, out_p, types[:len(in_p)], types[len(in_p):])
        infos = []
        for p, a in zip(in_p + out_p, args + (None,) * len(out_p)):
            t = dtype if p.dtype is None else p.dtype
            if a is not None and not isinstance(a, np.ndarray):
                infos.append(scalar(t))
            elif p.raw:
                infos.append(K._ArgInfo(1, cupy.ndarray, t, 2, True, True))
            else:               # non-raw arrays: broadcast, not contiguous (the general case)
                infos.append(K._ArgInfo(1, cupy.ndarray, t, 2, False, True))
        type_map = K._TypeMap((("T", dtype),))
        if isinstance(k, kernels.Elementwise):
            params = in_p + out_p + K._get_param_info("CIndexer _ind", False)
            code = K._get_elementwise_kernel_code(tuple(infos) + (indexer(2),), type_map, params,
                                                  k.operation, f"minigrad_{name}", k.preamble)
        else:
            params = (in_p + out_p + K._get_param_info("CIndexer _in_ind, CIndexer _out_ind", False)
                      + K._get_param_info("int32 _block_stride", True))
            infos[len(in_p):] = [array(2) for _ in out_p]
            code = R._ReductionKernel_get_cached_function_code(
                len(in_p), len(out_p), params, tuple(infos) + (indexer(2), indexer(2), scalar(np.int32)),
                K._TypeMap((("T", dtype), ("IndexT", np.int32))), f"minigrad_{name}", 512, "T",
                k.identity, k.map_expr, k.reduce_expr, k.post_map_expr, k.preamble, ())
        parts.append(f"namespace kernel_{name} {{\n{code}\n}}")
    _nvcc(tmp_path, "\n".join(parts), "-std=c++17", "-ftz=true", f"-I{core._get_header_dir_path()}")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", sorted(CASES))
@given(data=st.data())
def test_cuda_kernel_agrees_with_its_fallback(name, dtype, data):
    import cupy as cp
    kernel, args = _drawn_case(name, dtype, data)

    def on_gpu():
        return tuple(cp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)

    got = kernel(*on_gpu())
    with mg.use_kernels(False):
        want = kernel(*on_gpu())
    assert not kernel._broken, f"kernel {name} failed to compile on this GPU"
    _assert_agree(name, tuple(cp.asnumpy(a) for a in _as_tuple(got)),
                  tuple(cp.asnumpy(a) for a in _as_tuple(want)), dtype)


# --------------------------------------------------------------------------- the GPU path, emulated

@pytest.fixture
def emulated_gpu(monkeypatch):
    """Make every kernel take its GPU path on NumPy arrays, each launch running the
    kernel's CUDA C body through the emulator: the op code that strings kernels
    together on a GPU (softmax rows, LayerNorm, the LSTM sequence, ...) then runs
    on the CPU, kernel bodies included."""
    launches = []

    def launch(self, args, **kwargs):
        launches.append(self.name)
        with np.errstate(all="ignore"):
            return kernel_emulator.run(self, *args)

    import minigrad.cpu
    monkeypatch.setattr(kernels, "_is_cupy", lambda args: True)
    monkeypatch.setattr(kernels._Kernel, "_launch", launch)
    cpu_loops = minigrad.cpu.use_cpu_kernels(False)     # CuPy arrays never take them
    yield launches
    cpu_loops.restore()


def _train_two_steps(model_fn, capturable=False, dtype=mg.float64):
    mg.manual_seed(0)
    model = model_fn().to(dtype)
    opt = model.configure_optimizers(lr=1e-2, capturable=capturable)
    rng = np.random.default_rng(0)
    x, y = (mg.tensor(rng.integers(0, 11, (2, 6))) for _ in range(2))
    losses = []
    for _ in range(2):
        loss = model(x, y)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses, [p.numpy() for p in model.parameters()]


MODELS = {
    "transformer": lambda: __import__("lmroad.models", fromlist=["TransformerLM"]).TransformerLM(
        vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=6, dropout=0.0),
    "transformer-exact-gelu": lambda: __import__("lmroad.models", fromlist=["TransformerLM"]).TransformerLM(
        vocab_size=11, n_layer=1, n_head=2, n_embd=8, block_size=6, dropout=0.0, activation="gelu"),
    "lstm": lambda: __import__("lmroad.models", fromlist=["LSTMLM"]).LSTMLM(
        vocab_size=11, n_embd=8, hidden_size=8, num_layers=2, dropout=0.0),
    "gru": lambda: __import__("lmroad.models", fromlist=["GRULM"]).GRULM(
        vocab_size=11, n_embd=8, hidden_size=8, num_layers=2, dropout=0.0),
    "lstm-stepped": lambda: _stepped(__import__("lmroad.models", fromlist=["LSTMLM"]).LSTMLM(
        vocab_size=11, n_embd=8, hidden_size=8, num_layers=1, dropout=0.0)),
    "rnn": lambda: __import__("lmroad.models", fromlist=["RNNLM"]).RNNLM(
        vocab_size=11, n_embd=8, hidden_size=8, num_layers=2, dropout=0.0),
}
CASES_GPU_PATH = [(n, False) for n in sorted(MODELS)] + [("transformer", True)]


def _stepped(model):
    """The model stepping its cells (F.lstm_cell per step) instead of the fused sequence."""
    for m in model.modules():
        if hasattr(m, "fused_sequence"):
            m.fused_sequence = False
    return model


@pytest.mark.parametrize("name,capturable", CASES_GPU_PATH)
def test_training_on_the_emulated_gpu_path_equals_the_cpu_path(name, capturable, request):
    """Two AdamW steps of each model: the CPU path, then the GPU path with every
    kernel body emulated. Same losses and parameters (float64)."""
    want_losses, want_params = _train_two_steps(MODELS[name], capturable)
    launches = request.getfixturevalue("emulated_gpu")
    got_losses, got_params = _train_two_steps(MODELS[name], capturable)
    assert launches, "no kernel took its GPU path"
    assert "adam_step" in launches
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-10)
    for got, want in zip(got_params, want_params):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_every_kernel_launches_on_some_emulated_gpu_path(emulated_gpu):
    """The cases above reach every kernel of minigrad (a new one needs a model that uses it)."""
    for name, capturable in CASES_GPU_PATH:
        _train_two_steps(MODELS[name], capturable)
    ours = {n for n, k in kernels.REGISTRY.items() if k.fallback.__module__.startswith("minigrad.")}
    assert ours - set(emulated_gpu) == set()
