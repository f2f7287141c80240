"""Generic property tests: every entry of the op registry, on every device.

For each op: its analytic gradient matches finite differences (float64),
and so does its second derivative where it has one; its forward matches the
plain-NumPy reference; float32 in gives float32 out (and float32 gradients);
strided inputs give the same results as contiguous ones; empty inputs work
where the op is defined on them. A meta-test keeps the registry complete.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from op_registry import REGISTRY, Case, OpInfo

import minigrad as mg
import minigrad.functional as F
from minigrad.testing import gradcheck_tolerance, strided_tensor, tolerance

ops = pytest.mark.parametrize("op", REGISTRY, ids=lambda e: e.name)
devices = pytest.mark.parametrize("device", ["cpu", "fake"])


# --------------------------------------------------------------------------- helpers

def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _tensors(case: Case, device: str, dtype=np.float64) -> list[mg.Tensor]:
    """Float arrays -> leaves that require grad (in ``dtype``); others -> plain tensors."""
    return [mg.tensor(a, dtype=dtype, device=device, requires_grad=True) if a.dtype.kind == "f"
            else mg.tensor(a, device=device) for a in case.args]


def _call(op: OpInfo, case: Case, tensors) -> tuple[mg.Tensor, ...]:
    return _as_tuple(op.fn(*tensors, **case.kwargs))


def _on_device(t: mg.Tensor, device: str) -> None:
    """The tensor lives on ``device`` and its data is that backend's array type."""
    assert t.device == mg.Device(device)
    assert isinstance(t.data, t.xp.ndarray), f"{device} tensor holds a {type(t.data).__name__}"


def _backward(outs, seed: int = 0) -> None:
    """Backpropagate a random upstream gradient through every float output."""
    rng = np.random.default_rng(seed)
    outs = [o for o in outs if o.requires_grad]
    if outs:
        mg.backward(outs, [mg.tensor(rng.standard_normal(o.shape), dtype=o.dtype, device=o.device)
                           for o in outs])


def _gradcheck_settings(op: OpInfo) -> dict:
    return gradcheck_tolerance(np.float32 if op.via_float32 else np.float64)


def _fn(op: OpInfo, case: Case):
    return lambda *xs: op.fn(*xs, **case.kwargs)


def _compare_with_ref(op: OpInfo, case: Case, outs, device: str) -> None:
    refs = _as_tuple(op.ref(*case.args, **case.kwargs))
    assert len(outs) == len(refs), f"{op.name}: {len(outs)} outputs, reference has {len(refs)}"
    for o, r in zip(outs, refs):
        r = np.asarray(r)
        assert o.shape == r.shape, f"{op.name}: shape {o.shape}, reference {r.shape}"
        _on_device(o, device)
        np.testing.assert_allclose(o.numpy(), r, **tolerance(o.dtype))


# --------------------------------------------------------------------------- properties

@ops
@devices
@given(data=st.data())
def test_gradient_matches_finite_differences(op, device, data):
    case = data.draw(op.cases(1), label="case")
    assert mg.gradcheck(_fn(op, case), _tensors(case, device), **_gradcheck_settings(op))


@pytest.mark.parametrize("op", [e for e in REGISTRY if e.gradgrad], ids=lambda e: e.name)
@devices
@given(data=st.data())
def test_second_derivative_matches_finite_differences(op, device, data):
    case = data.draw(op.cases(1), label="case")
    assert mg.gradgradcheck(_fn(op, case), _tensors(case, device), **_gradcheck_settings(op))


@ops
@devices
@given(data=st.data())
def test_forward_matches_numpy_reference(op, device, data):
    case = data.draw(op.cases(1), label="case")
    _compare_with_ref(op, case, _call(op, case, _tensors(case, device)), device)


@ops
@devices
@given(data=st.data())
def test_float32_inputs_give_float32_outputs_and_gradients(op, device, data):
    case = data.draw(op.cases(1), label="case")
    ts = _tensors(case, device, dtype=np.float32)
    outs = _call(op, case, ts)
    for o in outs:
        assert o.dtype == mg.float32, f"{op.name}: float32 inputs gave a {o.dtype} output"
    _compare_with_ref(op, case, outs, device)
    _backward(outs)
    for t in ts:
        if t.requires_grad and t.grad is not None:
            assert t.grad.dtype == mg.float32 and t.grad.shape == t.shape
            _on_device(t.grad, device)


@ops
@devices
@given(data=st.data())
def test_strided_inputs_give_the_same_values_and_gradients(op, device, data):
    case = data.draw(op.cases(1), label="case")
    dense = _tensors(case, device)
    strided = [strided_tensor(a, device, requires_grad=True) if a.dtype.kind == "f" else t
               for a, t in zip(case.args, dense)]
    if device == "cpu":
        assert all(not t.data.flags.c_contiguous for t in strided if t.requires_grad and t.size > 1)
    outs_d, outs_s = _call(op, case, dense), _call(op, case, strided)
    for d, s in zip(outs_d, outs_s):
        np.testing.assert_allclose(s.numpy(), d.numpy(), **tolerance(d.dtype))
    _backward(outs_d)
    _backward(outs_s)
    for d, s in zip(dense, strided):
        if d.requires_grad:
            assert (d.grad is None) == (s.grad is None)
            if d.grad is not None:
                np.testing.assert_allclose(s.grad.numpy(), d.grad.numpy(), **tolerance(d.dtype))


@pytest.mark.parametrize("op", [e for e in REGISTRY if e.edges], ids=lambda e: e.name)
@devices
def test_gradients_at_edge_points_are_pytorchs(op, device):
    for case, expected, why in op.edges:
        ts = _tensors(case, device)
        outs = [o for o in _call(op, case, ts) if o.requires_grad]
        xs = [t for t in ts if t.requires_grad]
        got = mg.grad(outs, xs, [mg.ones_like(o) for o in outs], allow_unused=True)
        for i, (g, e) in enumerate(zip(got, expected)):
            g = np.zeros(e.shape) if g is None else g.numpy()
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12, equal_nan=True,
                                       err_msg=f"{op.name} at {case.args}: input {i} ({why})")


@pytest.mark.parametrize("op", [e for e in REGISTRY if e.empty_ok], ids=lambda e: e.name)
@devices
@settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])   # about 1 draw in 4 is empty
@given(data=st.data())
def test_empty_inputs_work_where_defined(op, device, data):
    case = data.draw(op.cases(0), label="case")
    assume(any(a.size == 0 for a in case.args))
    _compare_with_ref(op, case, _call(op, case, _tensors(case, device)), device)
    assert mg.gradcheck(_fn(op, case), _tensors(case, device), **_gradcheck_settings(op))


@pytest.mark.cuda
@pytest.mark.parametrize("op", [e for e in REGISTRY if not e.random], ids=lambda e: e.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@given(data=st.data())
def test_cuda_matches_cpu(op, dtype, data):
    case = data.draw(op.cases(1), label="case")
    results = {}
    for device in ("cpu", "cuda"):
        ts = _tensors(case, device, dtype=dtype)
        outs = _call(op, case, ts)
        _backward(outs)
        results[device] = ([o.numpy() for o in outs],
                           [t.grad.numpy() for t in ts if t.requires_grad and t.grad is not None])
        for o in outs:
            _on_device(o, "cuda:0" if device == "cuda" else device)
    for c, g in zip(*(sum(results[d], []) for d in ("cpu", "cuda"))):
        np.testing.assert_allclose(g, c, **tolerance(dtype))


# --------------------------------------------------------------------------- the meta-test

# Exported names that are not differentiable ops, and so need no registry entry.
NOT_OPS = {
    "Tensor", "tensor", "Device", "device", "float16", "float32", "float64", "int32", "int64",
    "bool_", "get_default_dtype", "set_default_dtype", "zeros", "ones", "full", "empty", "arange",
    "linspace",
    "eye", "randn", "rand", "randint", "zeros_like", "ones_like", "full_like", "manual_seed",
    "device_checks", "use_kernels",
    "Function", "backward", "grad", "no_grad", "enable_grad", "set_grad_enabled",
    "is_grad_enabled", "detect_anomaly", "gradcheck", "gradgradcheck",
    "DeviceError", "GraphError", "AnomalyError", "GradcheckError",
    "__version__",
}

# Exported ops whose results are bool or integer (or, for sign, piecewise constant):
# they carry no gradient. Each is called here on a tensor that requires grad.
NON_DIFFERENTIABLE_OPS = {
    "sign": lambda x: mg.sign(x),
    "eq": lambda x: mg.eq(x, 0.5), "ne": lambda x: mg.ne(x, x), "lt": lambda x: mg.lt(x, 0.0),
    "le": lambda x: mg.le(0.0, x), "gt": lambda x: mg.gt(x, x * 2.0), "ge": lambda x: mg.ge(x, 1.0),
    "isfinite": lambda x: mg.isfinite(x),
    "logical_and": lambda x: mg.logical_and(x > 0.0, x < 1.0),
    "logical_or": lambda x: mg.logical_or(x > 0.0, x < -1.0),
    "logical_xor": lambda x: mg.logical_xor(x > 0.0, x < 1.0),
    "logical_not": lambda x: mg.logical_not(x > 0.0),
    "argmax": lambda x: mg.argmax(x, axis=0), "argmin": lambda x: mg.argmin(x),
    "any": lambda x: mg.any(x > 1.0), "all": lambda x: mg.all(x > -5.0, axis=0),
}


def _exported() -> set[str]:
    """Exported names, less submodules (``mg.nn``, ``mg.cuda``, ...)."""
    return {n for n in set(mg.__all__) | set(F.__all__)
            if not inspect.ismodule(getattr(mg, n, getattr(F, n, None)))}


def test_every_exported_differentiable_op_has_a_registry_entry():
    covered = {n for e in REGISTRY for n in e.exports}
    missing = sorted(_exported() - covered - NOT_OPS - set(NON_DIFFERENTIABLE_OPS))
    assert not missing, (f"exported ops without an entry in tests/minigrad/op_registry.py: {missing} "
                         "(or, if they are not differentiable ops, list them in this file)")


def test_registry_names_only_exported_ops():
    covered = {n for e in REGISTRY for n in e.exports}
    assert covered <= _exported(), f"registry entries cover unknown names: {covered - _exported()}"
    assert not covered & (NOT_OPS | set(NON_DIFFERENTIABLE_OPS))


def test_names_listed_as_not_ops_exist():
    for name in NOT_OPS | set(NON_DIFFERENTIABLE_OPS):
        assert name in _exported(), f"{name} is listed here but not exported"
        assert hasattr(mg, name) or hasattr(F, name)


@pytest.mark.parametrize("name", sorted(NON_DIFFERENTIABLE_OPS))
def test_non_differentiable_ops_record_no_graph(name, device):
    x = mg.tensor([[0.5, -2.0, 1.5], [3.0, 0.0, -0.25]], device=device, requires_grad=True)
    out = NON_DIFFERENTIABLE_OPS[name](x)
    assert not out.requires_grad and out.grad_fn is None
    assert out.device == x.device
    _on_device(out, device)
