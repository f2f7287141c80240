"""Tensors themselves: factories, attributes, conversions, repr, and the dtype
rules (float32 by default and it stays float32; Python scalars take the
tensor's dtype; integer division gives the default float)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad.testing import arrays, shapes

# --------------------------------------------------------------------------- factories


@pytest.mark.parametrize("factory", [mg.zeros, mg.ones, mg.empty, mg.randn, mg.rand])
def test_shape_factories_take_varargs_or_a_tuple(factory, device):
    for args, shape in [((2, 3), (2, 3)), (((2, 3),), (2, 3)), (([4],), (4,)), ((), ()), ((0, 2), (0, 2))]:
        t = factory(*args, device=device)
        assert t.shape == shape and t.dtype == mg.float32 and t.device == device
        assert t.is_leaf and not t.requires_grad and t.grad is None


def test_factory_values_and_dtypes(device):
    assert mg.zeros(2, device=device).tolist() == [0.0, 0.0]
    assert mg.ones(2, dtype="float64", device=device).dtype == mg.float64
    assert mg.full((2,), 1.5, device=device).tolist() == [1.5, 1.5]
    assert mg.full((2,), 1.5).dtype == mg.float32
    assert mg.full(2, 7).dtype == mg.int64 and mg.full(2, True).dtype == mg.bool_
    assert mg.eye(2, 3, device=device).tolist() == [[1, 0, 0], [0, 1, 0]]
    assert mg.arange(3, device=device).tolist() == [0, 1, 2] and mg.arange(3).dtype == mg.int64
    assert mg.arange(0, 1, 0.25).tolist() == [0.0, 0.25, 0.5, 0.75]
    assert mg.arange(3.0).dtype == mg.float32
    r = mg.randint(2, 5, (50,), device=device)
    assert r.dtype == mg.int64 and 2 <= r.numpy().min() and r.numpy().max() < 5
    u = mg.rand(100, device=device).numpy()
    assert ((0 <= u) & (u < 1)).all()


def test_like_factories_keep_shape_dtype_and_device(device):
    x = mg.tensor([[1, 2, 3]], device=device)
    for t in (mg.zeros_like(x), mg.ones_like(x), mg.full_like(x, 4)):
        assert (t.shape, t.dtype, t.device) == ((1, 3), mg.int64, x.device)
    assert mg.full_like(x, 4).tolist() == [[4, 4, 4]]
    assert mg.zeros_like(x, dtype="float64").dtype == mg.float64


def test_factories_can_make_leaves_that_require_grad():
    for t in (mg.zeros(2, requires_grad=True), mg.randn(2, requires_grad=True),
              mg.arange(2.0, requires_grad=True), mg.tensor([1.0], requires_grad=True),
              mg.Tensor([1.0], requires_grad=True)):
        assert t.requires_grad and t.is_leaf


def test_tensor_copies_its_data():
    a = np.array([1.0, 2.0])
    t = mg.tensor(a)
    a[0] = 99.0
    assert t.tolist() == [1.0, 2.0]
    u = mg.tensor(t)
    u.data[0] = -1.0
    assert t.tolist() == [1.0, 2.0]


# --------------------------------------------------------------------------- attributes and conversions

def test_attributes(device):
    t = mg.zeros(2, 3, 4, device=device)
    assert (t.shape, t.ndim, t.size, t.numel(), len(t)) == ((2, 3, 4), 3, 24, 24, 2)
    assert t.T.shape == (4, 3, 2) and t.mT.shape == (2, 4, 3)
    s = mg.tensor(2.5, device=device)
    assert (s.shape, s.ndim, s.size) == ((), 0, 1)
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d tensor"):
        len(s)


def test_scalar_conversions(device):
    assert mg.tensor(2.5, device=device).item() == 2.5
    assert float(mg.tensor([2.5], device=device)) == 2.5
    assert int(mg.tensor(3, device=device)) == 3
    assert bool(mg.tensor([True], device=device)) is True
    assert isinstance(mg.tensor(3, device=device).item(), int)


def test_numpy_and_tolist(device):
    t = mg.tensor([[1.0, 2.0]], device=device)
    assert isinstance(t.numpy(), np.ndarray) and t.tolist() == [[1.0, 2.0]]
    if device == "cpu":   # on the CPU .numpy() shares memory, as in PyTorch
        t.numpy()[0, 0] = 5.0
        assert t.tolist() == [[5.0, 2.0]]


def test_detach_shares_data_and_cuts_the_graph():
    x = mg.ones(2, requires_grad=True)
    y = x * 2.0
    d = y.detach()
    assert d.data is y.data and not d.requires_grad and d.is_leaf and d.grad_fn is None
    assert y.grad_fn is not None and not y.is_leaf


def test_grad_is_accumulated_and_zero_grad_clears_it():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    assert x.grad.tolist() == [6.0, 6.0] and not x.grad.requires_grad
    x.zero_grad()
    assert x.grad is None


def test_retain_grad_keeps_an_intermediate_gradient():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    y.retain_grad()
    (y * y).sum().backward()
    assert y.grad.tolist() == [4.0, 8.0] and x.grad.tolist() == [8.0, 16.0]


def test_dtype_casts():
    x = mg.tensor([1.5, -2.5])
    assert x.double().dtype == mg.float64 and x.float() is x
    assert x.long().tolist() == [1, -2] and x.long().dtype == mg.int64
    assert x.bool().tolist() == [True, True]
    assert x.astype("float16").dtype == mg.float16


# --------------------------------------------------------------------------- repr

@pytest.mark.parametrize("make, text", [
    (lambda: mg.tensor([1.0, 2.0]), "tensor([1., 2.])"),
    (lambda: mg.tensor(1.5), "tensor(1.5)"),
    (lambda: mg.tensor([1, 2]), "tensor([1, 2])"),
    (lambda: mg.tensor([1], dtype="int32"), "tensor([1], dtype=int32)"),
    (lambda: mg.tensor([0.5], dtype="float64"), "tensor([0.5], dtype=float64)"),
    (lambda: mg.tensor([1.0], requires_grad=True), "tensor([1.], requires_grad=True)"),
    (lambda: mg.tensor([1.0], requires_grad=True) * 2.0, "tensor([2.], grad_fn=<mul>)"),
    (lambda: mg.ones(2, device="fake"), "tensor([1., 1.], device='fake')"),
])
def test_repr(make, text):
    assert repr(make()) == text


def test_repr_summarises_large_tensors():
    text = repr(mg.arange(1000.0))
    assert "..." in text and len(text) < 120


# --------------------------------------------------------------------------- dtype rules

def test_python_data_dtypes():
    assert mg.tensor([1.0, 2]).dtype == mg.float32
    assert mg.tensor(1.0).dtype == mg.float32
    assert mg.tensor([1, 2]).dtype == mg.int64
    assert mg.tensor([True]).dtype == mg.bool_
    assert mg.tensor(np.array([1.0])).dtype == mg.float64   # arrays keep their dtype
    assert mg.tensor(np.array([1.0]), dtype="float32").dtype == mg.float32


def test_set_default_dtype_changes_python_floats_and_factories():
    try:
        mg.set_default_dtype("float64")
        assert mg.get_default_dtype() == mg.float64
        assert mg.tensor([1.0]).dtype == mg.float64 and mg.zeros(2).dtype == mg.float64
        assert (mg.tensor([1]) / mg.tensor([2])).dtype == mg.float64
    finally:
        mg.set_default_dtype("float32")
    assert mg.tensor([1.0]).dtype == mg.float32


_SCALAR_OPS = {
    "add": lambda x, s: x + s, "radd": lambda x, s: s + x, "sub": lambda x, s: x - s,
    "rsub": lambda x, s: s - x, "mul": lambda x, s: x * s, "rmul": lambda x, s: s * x,
    "truediv": lambda x, s: x / s, "rtruediv": lambda x, s: s / x,
    "pow": lambda x, s: x ** s, "maximum": lambda x, s: mg.maximum(x, s),
    "minimum": lambda x, s: mg.minimum(x, s), "where": lambda x, s: mg.where(x > 0, x, s),
    "masked_fill": lambda x, s: mg.functional.masked_fill(x, x > 0, s),
}
_scalars = st.one_of(st.floats(-1e3, 1e3), st.integers(-1000, 1000), st.booleans(),
                     st.floats(-1e3, 1e3).map(np.float64), st.integers(-9, 9).map(np.int64))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("op", sorted(_SCALAR_OPS))
@pytest.mark.parametrize("dtype", ["float16", "float32"])
@given(scalar=_scalars, shape=shapes())
def test_python_and_numpy_scalars_never_promote_a_float_tensor(op, dtype, scalar, shape):
    x = mg.ones(shape, dtype=dtype)
    assert _SCALAR_OPS[op](x, scalar).dtype == np.dtype(dtype)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv", "maximum", "minimum", "where"])
def test_integer_tensor_meeting_a_float_takes_the_float_dtype(op):
    i = mg.tensor([1, 2])
    assert _SCALAR_OPS[op](i, 0.5).dtype == mg.float32            # default float, as in PyTorch
    assert _SCALAR_OPS[op](mg.ones(2), i).dtype == mg.float32      # not NumPy's float64
    assert _SCALAR_OPS[op](mg.ones(2, dtype="float64"), i).dtype == mg.float64


def test_integer_arithmetic_stays_integer_and_division_gives_default_float():
    i = mg.tensor([3, 4])
    assert (i + 1).dtype == mg.int64 and (i * 2).dtype == mg.int64
    assert (mg.tensor([1], dtype="int32") + 1).dtype == mg.int32
    assert (i / mg.tensor([2, 2])).dtype == mg.float32
    assert (i / 2).dtype == mg.float32 and (i / 2).tolist() == [1.5, 2.0]
    assert (6 / i).dtype == mg.float32
    assert i.mean().dtype == mg.float32 and i.mean().item() == 3.5
    assert mg.tensor([True, True, False]).sum().dtype == mg.int64


def test_mixed_float_tensors_follow_numpy_promotion():
    assert (mg.ones(2) + mg.ones(2, dtype="float64")).dtype == mg.float64
    assert (mg.ones(2, dtype="float16") * mg.ones(2)).dtype == mg.float32


@pytest.mark.parametrize("name", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparisons_give_bool(name):
    assert getattr(mg, name)(mg.ones(2), 0.5).dtype == mg.bool_


@given(a=shapes().flatmap(arrays))
def test_float32_functions_of_float32_stay_float32(a):
    x = mg.tensor(a, dtype="float32", requires_grad=True)
    y = (x.exp() * 0.5 + x.tanh() ** 2 - 1.0 / (x * x + 1)).sum() / 3
    assert y.dtype == mg.float32
    y.backward()
    assert x.grad.dtype == mg.float32


def test_gradient_keeps_the_leaf_dtype_through_casts():
    x = mg.tensor([1.0, 2.0], dtype="float64", requires_grad=True)
    (x.astype("float32") * 2.0).sum().backward()
    assert x.grad.dtype == mg.float64 and x.grad.tolist() == [2.0, 2.0]


def test_zero_dim_results_hold_arrays(device):
    x = mg.tensor([1.0, 2.0], device=device, requires_grad=True)
    for y in (x.sum(), x[0], x.max(), x @ x, mg.tensor(1.0, device=device) * 2.0):
        assert y.shape == () and isinstance(y.data, y.xp.ndarray)


# --------------------------------------------------------------------------- indexing

def test_repeated_integer_indices_accumulate_their_gradients(device):
    x = mg.tensor([10.0, 20.0, 30.0], device=device, requires_grad=True)
    x[[0, 2, 0, 0, -1]].backward(mg.tensor([1.0, 2.0, 3.0, 4.0, 5.0], device=device))
    assert x.grad.tolist() == [8.0, 0.0, 7.0]
    w = mg.zeros(4, 2, device=device, requires_grad=True)
    mg.functional.embedding(mg.tensor([[1, 1], [3, 1]], device=device), w).sum().backward()
    assert w.grad.tolist() == [[0, 0], [3, 3], [0, 0], [1, 1]]


def test_boolean_mask_selects_and_routes_gradients_back(device):
    x = mg.tensor([[1.0, -2.0], [-3.0, 4.0]], device=device, requires_grad=True)
    y = x[x > 0]
    assert y.tolist() == [1.0, 4.0]
    y.backward(mg.tensor([5.0, 6.0], device=device))
    assert x.grad.tolist() == [[5.0, 0.0], [0.0, 6.0]]


def test_basic_indexing_returns_views_of_the_right_shape(device):
    x = mg.arange(24.0, device=device).reshape(2, 3, 4)
    assert x[1].shape == (3, 4) and x[:, -1].shape == (2, 4) and x[..., ::2].shape == (2, 3, 2)
    assert x[None, 0, :, 1:3].shape == (1, 3, 2) and x[1, 2, 3].item() == 23.0
