"""The ops of issue 10 (section 5) beyond what the registry checks: errors that name the op
and what is valid, ties and NaN in sorting, PyTorch's and NumPy's conventions where they
are specific (floor division signs, clamped logs, weighted means, gather's rules), and
the ops whose results are integers or bools.

The registry (op_registry.py) checks gradients, second derivatives, forwards against
NumPy, float32 and strided inputs for every one of them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad.creation import linspace


def _t(values, device="cpu", dtype="float64", requires_grad=False):
    return mg.tensor(values, dtype=dtype, device=device, requires_grad=requires_grad)


def _grad(fn, x: mg.Tensor, g=None) -> np.ndarray:
    out = fn(x)
    out.backward(mg.ones(out.shape, dtype=out.dtype, device=out.device) if g is None else g)
    return x.grad.numpy()


# --------------------------------------------------------------------------- a fix: (N, C, d1, d2)

def test_cross_entropy_keeps_positions_apart_with_two_spatial_dims():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 2, 4))                            # (N, C, d1, d2), d1 != d2
    t = rng.integers(0, 3, (2, 2, 4))
    lsm = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    expected = -np.take_along_axis(lsm, t[:, None], axis=1)[:, 0]    # (N, d1, d2)
    got = F.cross_entropy(_t(x), mg.tensor(t), reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(_t(x), mg.tensor(t)).item(), expected.mean(), rtol=1e-12)


# --------------------------------------------------------------------------- integer and bool results

@pytest.mark.parametrize("name,call", [
    ("isnan", lambda x: mg.isnan(x)),
    ("isinf", lambda x: mg.isinf(x)),
    ("argsort", lambda x: mg.argsort(x, axis=1)),
    ("one_hot", lambda x: mg.one_hot(mg.argsort(x, axis=1, descending=True), 3)),
    ("topk indices", lambda x: mg.topk(x, 2)[1]),
])
def test_integer_and_bool_results_record_no_graph(name, call, device):
    x = _t([[0.5, -2.0, 1.5], [3.0, 0.0, -0.25]], device, requires_grad=True)
    out = call(x)
    assert not out.requires_grad and out.grad_fn is None and out.device == x.device
    assert out.dtype.kind in "biu"


def test_isnan_and_isinf_find_the_special_values(device):
    x = _t([1.0, math.nan, math.inf, -math.inf, 0.0], device)
    assert mg.isnan(x).tolist() == [False, True, False, False, False]
    assert x.isinf().tolist() == [False, False, True, True, False]
    assert (mg.isfinite(x) == ~(mg.isnan(x) | mg.isinf(x))).all().item()


# --------------------------------------------------------------------------- sorting: ties, NaN, errors

def test_sort_is_stable_and_its_gradient_follows_the_permutation_at_ties(device):
    x = _t([1.0, 2.0, 1.0, 2.0], device, requires_grad=True)
    g = _t([10.0, 20.0, 30.0, 40.0], device)
    assert mg.argsort(x).tolist() == [0, 2, 1, 3]
    assert mg.argsort(x, descending=True).tolist() == [1, 3, 0, 2]   # equal ones keep their order
    np.testing.assert_array_equal(_grad(mg.sort, x, g), [10.0, 30.0, 20.0, 40.0])
    x.grad = None
    np.testing.assert_array_equal(_grad(lambda x: mg.sort(x, descending=True), x, g),
                                  [30.0, 10.0, 40.0, 20.0])


def test_topk_breaks_ties_toward_the_lower_index_and_routes_the_gradient_there(device):
    x = _t([[3.0, 1.0, 3.0, 2.0]], device, requires_grad=True)
    values, indices = mg.topk(x, 2)
    assert indices.tolist() == [[0, 2]] and indices.dtype == mg.int64
    assert values.tolist() == [[3.0, 3.0]]
    np.testing.assert_array_equal(_grad(lambda x: mg.topk(x, 1)[0], x), [[1.0, 0.0, 0.0, 0.0]])
    assert mg.topk(x, 2, largest=False)[1].tolist() == [[1, 3]]
    v, i = mg.topk(x, 0)
    assert v.shape == i.shape == (1, 0)


def test_nan_sorts_as_the_largest_value_as_in_pytorch(device):
    x = _t([1.0, math.nan, 0.0], device)
    np.testing.assert_array_equal(mg.sort(x).numpy(), [0.0, 1.0, math.nan])
    np.testing.assert_array_equal(mg.sort(x, descending=True).numpy(), [math.nan, 1.0, 0.0])
    assert mg.topk(x, 1)[1].tolist() == [1]


def test_sort_follows_numpy_on_axes():
    x = _t(np.arange(12.0)[::-1].reshape(3, 4))
    np.testing.assert_array_equal(mg.sort(x, axis=0).numpy(), np.sort(x.numpy(), axis=0))
    np.testing.assert_array_equal(mg.sort(x, axis=None).numpy(), np.arange(12.0))
    assert mg.sort(_t(5.0), axis=None).shape == (1,)
    assert x.float().sort().dtype == mg.float32


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda x: mg.sort(x, axis=2), ValueError, r"sort: axis 2 is out of range for a tensor with 2 dims"),
    (lambda x: mg.argsort(x, axis=-3), ValueError, r"argsort: axis -3 is out of range"),
    (lambda x: mg.sort(x[0, 0], axis=1), ValueError,
     r"sort: axis 1 is out of range for a tensor with 1 dims"),
    (lambda x: mg.sort(x, axis=(0, 1)), TypeError, r"sort: axis must be one int"),
    (lambda x: mg.topk(x, 4), ValueError, r"topk: k=4 is out of range for axis 1 of size 3 .*valid: 0 to 3"),
    (lambda x: mg.topk(x, -1), ValueError, r"topk: k=-1 is out of range"),
    (lambda x: mg.topk(x, 1.5), TypeError, r"topk: k must be an int, got 1.5"),
    (lambda x: mg.topk(x, 1, axis=5), ValueError, r"topk: axis 5 is out of range"),
])
def test_sorting_errors_name_the_op_and_what_is_valid(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(_t(np.zeros((2, 3))))


# --------------------------------------------------------------------------- gathers

def test_gather_follows_torch_gather():
    t = _t([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    out = mg.gather(t, 1, mg.tensor([[0, 0], [1, 0]]))               # the example in torch's docs
    assert out.tolist() == [[1.0, 1.0], [4.0, 3.0]]
    assert t.gather(0, mg.tensor([[1], [0]])).tolist() == [[3.0], [1.0]]   # index smaller than input
    out.backward(mg.ones(2, 2, dtype="float64"))
    np.testing.assert_array_equal(t.grad.numpy(), [[2.0, 0.0], [1.0, 1.0]])   # repeats add up


def test_take_along_axis_counts_negative_indices_from_the_end_and_broadcasts(device):
    x = _t(np.arange(6.0).reshape(2, 3), device)
    idx = mg.tensor([[-1, 0]], device=device)                       # (1, 2): broadcasts over rows
    expected = np.take_along_axis(x.numpy(), idx.numpy(), axis=1)
    np.testing.assert_array_equal(mg.take_along_axis(x, idx, 1).numpy(), expected)
    flat = mg.take_along_axis(x, mg.tensor([5, -6], device=device), None)
    np.testing.assert_array_equal(flat.numpy(), [5.0, 0.0])


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda x: mg.take_along_axis(x, mg.tensor([[0.0]]), 1), TypeError,
     r"take_along_axis: indices must be an integer tensor, got float"),
    (lambda x: mg.take_along_axis(x, mg.tensor([0, 1]), 1), ValueError,
     r"take_along_axis: indices of shape \(2,\) and x of shape \(2, 3\) must have the same number of dims"),
    (lambda x: mg.take_along_axis(x, mg.tensor([[3]]), 1), IndexError,
     r"take_along_axis: index 3 is out of range for axis 1 of size 3 .*valid: -3 to 2"),
    (lambda x: mg.take_along_axis(x, mg.tensor([[0], [0], [0]]), 1), ValueError,
     r"take_along_axis: shapes .* cannot be broadcast"),
    (lambda x: mg.take_along_axis(x, mg.tensor([[0]]), None), ValueError,
     r"take_along_axis: with axis=None .* indices must be 1-D"),
    (lambda x: mg.gather(x, 1, mg.tensor([[0.5]])), TypeError,
     r"gather: indices must be an integer tensor, got float"),
    (lambda x: mg.gather(x, 1, mg.tensor([[-1]])), IndexError,
     r"gather: index -1 is out of range for dim 1 of size 3 .*valid: 0 to 2"),
    (lambda x: mg.gather(x, 1, mg.tensor([[0], [0], [0]])), ValueError,
     r"gather: index of shape \(3, 1\) is larger than input of shape \(2, 3\) at dim 0"),
    (lambda x: mg.gather(x, 0, mg.tensor([0])), ValueError,
     r"gather: index of shape \(1,\) and input of shape \(2, 3\) must have the same number of dims"),
    (lambda x: mg.gather(x, 2, mg.tensor([[0]])), ValueError, r"gather: axis 2 is out of range"),
])
def test_gather_errors_name_the_op_and_what_is_valid(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(_t(np.zeros((2, 3))))


def test_one_hot_follows_pytorch(device):
    idx = mg.tensor([[0, 2], [1, 1]], device=device)
    out = mg.one_hot(idx)                                            # num_classes from the data: 3
    assert out.dtype == mg.int64 and out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out.numpy(), np.eye(3, dtype=np.int64)[idx.numpy()])
    assert mg.one_hot(idx, 5).shape == (2, 2, 5)
    assert mg.one_hot(mg.tensor([], dtype="int64"), 2).shape == (0, 2)


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: mg.one_hot(mg.tensor([0, 3]), 3), IndexError,
     r"one_hot: index 3 is out of range for 3 classes \(valid: 0 to 2\)"),
    (lambda: mg.one_hot(mg.tensor([-1, 0]), 3), IndexError, r"one_hot: index -1 is out of range"),
    (lambda: mg.one_hot(mg.tensor([0.0, 1.0])), TypeError, r"one_hot: indices must be an integer tensor"),
    (lambda: mg.one_hot(mg.tensor([0]), -2), ValueError, r"one_hot: num_classes must be -1 .* or >= 0"),
    (lambda: mg.one_hot(mg.tensor([], dtype="int64")), ValueError, r"one_hot: cannot infer num_classes"),
])
def test_one_hot_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# --------------------------------------------------------------------------- einsum

def test_einsum_gradients_of_a_trace_and_a_diagonal_live_on_the_diagonal(device):
    a = _t(np.arange(9.0).reshape(3, 3), device, requires_grad=True)
    np.testing.assert_array_equal(_grad(lambda a: mg.einsum("ii->", a), a), np.eye(3))
    a.grad = None
    g = _t([1.0, 2.0, 3.0], device)
    np.testing.assert_array_equal(_grad(lambda a: mg.einsum("ii->i", a), a, g), np.diag([1.0, 2.0, 3.0]))


def test_einsum_follows_numpy_on_implicit_outputs_and_ellipsis():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    for spec in ("Ba,aC", "bA,Ac", "ij,jk", "ji", "...j,j"):
        ops = (a, b) if "," in spec else (a,)
        if spec == "...j,j":
            ops = (a, a[0])
        np.testing.assert_allclose(mg.einsum(spec, *[_t(o) for o in ops]).numpy(), np.einsum(spec, *ops))
    x32 = mg.einsum("ij,jk->ik", _t(a, dtype="float32"), mg.tensor(np.ones((3, 4), dtype=np.int64)))
    assert x32.dtype == mg.float32                      # an int operand joins the float one
    assert mg.einsum("ij,jk->ik", [_t(a), _t(b)]).shape == (2, 4)   # a list, as torch.einsum takes


@pytest.mark.parametrize("spec,shapes,pattern", [
    ("ij,jk->ik", [(2, 3)], r"einsum: 'ij,jk->ik' names 2 operand\(s\), got 1"),
    ("ij,jk->ik", [(2, 3), (4, 5)], r"einsum: subscript 'j' has size 3 in one operand and 4 in operand 1"),
    ("ij->ik", [(2, 3)], r"einsum: output subscript 'k' in 'ij->ik' is not in any input"),
    ("ij->ii", [(2, 2)], r"einsum: output subscript 'i' appears twice"),
    ("ijk->i", [(2, 3)], r"einsum: operand 0 has shape \(2, 3\) \(2 dims\) but its subscripts 'ijk' name 3"),
    ("i%->i", [(2, 3)], r"einsum: invalid character '%'"),
    ("ij->j->i", [(2, 3)], r"einsum: a misplaced"),
    ("...ij->ij", [(4, 2, 3)], r"einsum: the operands .* have dims under '...' that the output does not"),
    ("ii->i", [(2, 3)], r"einsum: operand 0 repeats subscript 'i' over dims of sizes 2 and 3"),
    ("i.j->i", [(2, 3)], r"einsum: .* has a stray '.'"),
])
def test_einsum_errors_name_the_problem(spec, shapes, pattern):
    with pytest.raises(ValueError, match=pattern):
        mg.einsum(spec, *[mg.zeros(*s) for s in shapes])


def test_einsum_type_errors():
    with pytest.raises(TypeError, match="einsum: operand 1 is a ndarray, expected a Tensor"):
        mg.einsum("i,i->", mg.zeros(2), np.zeros(2))
    with pytest.raises(TypeError, match="einsum: subscripts must be a string"):
        mg.einsum(mg.zeros(2), [0])


# --------------------------------------------------------------------------- scans, layout

def test_prod_gradient_is_the_product_of_the_others_even_at_zeros():
    x = _t([2.0, 0.0, 3.0], requires_grad=True)
    np.testing.assert_array_equal(_grad(mg.prod, x), [0.0, 6.0, 0.0])
    y = _t([0.0, 5.0, 0.0], requires_grad=True)
    np.testing.assert_array_equal(_grad(mg.prod, y), [0.0, 0.0, 0.0])


def test_prod_fast_first_order_path_equals_the_differentiable_one():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4, 2))
    a[0, 1, 0] = 0.0
    for axis in (None, 1, (0, 2)):
        x = _t(a, requires_grad=True)
        (fast,) = mg.grad(mg.prod(x, axis=axis).sum(), x)
        (slow,) = mg.grad(mg.prod(x, axis=axis).sum(), x, create_graph=True)
        np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-12, atol=1e-12)


def test_cumsum_flattens_without_an_axis_as_numpy():
    x = _t(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(mg.cumsum(x).numpy(), np.cumsum(x.numpy()))
    assert x.cumsum(-1).tolist() == [[0.0, 1.0, 3.0], [3.0, 7.0, 12.0]]
    assert mg.cumsum(mg.tensor([True, True, False])).tolist() == [1, 2, 2]


def test_tril_of_a_bool_tensor_is_a_causal_mask(device):
    mask = mg.tril(mg.ones(3, 3, dtype="bool", device=device))
    np.testing.assert_array_equal(mask.numpy(), np.tril(np.ones((3, 3), dtype=bool)))
    assert mask.dtype == mg.bool_ and mask.device == mg.Device(device)
    np.testing.assert_array_equal(mg.triu(mg.ones(2, 3), k=1).numpy(), np.triu(np.ones((2, 3)), 1))


def test_repeat_is_numpys_and_tile_is_pytorchs_tensor_repeat():
    x = _t([[1.0, 2.0], [3.0, 4.0]])
    assert x.repeat_interleave(2, axis=0).tolist() == [[1.0, 2.0], [1.0, 2.0], [3.0, 4.0], [3.0, 4.0]]
    assert mg.repeat(x, [1, 2], axis=1).tolist() == [[1.0, 2.0, 2.0], [3.0, 4.0, 4.0]]
    assert mg.repeat(x, 2).tolist() == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    assert x.tile((2, 1)).tolist() == [[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [3.0, 4.0]]
    assert mg.tile(x, 2).shape == (2, 4) and mg.tile(x, (2, 1, 1)).shape == (2, 2, 2)


def test_flatten_and_roll():
    x = _t(np.arange(24.0).reshape(2, 3, 4))
    assert mg.flatten(x).shape == (24,) and x.flatten(1).shape == (2, 12)
    assert mg.flatten(x, 0, 1).shape == (6, 4) and mg.flatten(_t(1.0)).shape == (1,)
    for shift, axis in ((1, None), (-2, 1), ((1, 2), (0, 2)), ((1, 1), (2, 2))):
        np.testing.assert_array_equal(mg.roll(x, shift, axis).numpy(), np.roll(x.numpy(), shift, axis))


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda x: mg.tril(x[0]), ValueError, r"tril: needs a tensor of at least 2 dims .* got shape \(3,\)"),
    (lambda x: mg.triu(x, k=0.5), TypeError, r"triu: k must be an int"),
    (lambda x: mg.flatten(x, 1, 0), ValueError, r"flatten: start_dim 1 comes after end_dim 0"),
    (lambda x: mg.flatten(x, 3), ValueError, r"flatten: axis 3 is out of range"),
    (lambda x: mg.repeat(x, -1, axis=0), ValueError, r"repeat: repeats must be >= 0"),
    (lambda x: mg.repeat(x, [1, 2, 3], axis=0), ValueError,
     r"repeat: 3 repeats for axis 0 of size 2 .* give one per element, or a single int"),
    (lambda x: mg.repeat(x, 1.5), TypeError, r"repeat: repeats must be an int or a sequence of ints"),
    (lambda x: mg.tile(x, (2, -1)), ValueError, r"tile: reps must be >= 0"),
    (lambda x: mg.roll(x, (1, 2), axis=0), ValueError, r"roll: 2 shifts for 1 axes"),
    (lambda x: mg.roll(x, 1, axis=2), ValueError, r"roll: axis 2 is out of range"),
    (lambda x: mg.cumsum(x, axis=2), ValueError, r"cumsum: axis 2 is out of range"),
    (lambda x: mg.prod(x, axis=(0, 0)), ValueError, r"prod: repeated axis"),
])
def test_layout_and_scan_errors_name_the_op(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(_t(np.zeros((2, 3))))


# --------------------------------------------------------------------------- pointwise

def test_floor_division_and_mod_take_pythons_signs_as_numpy_and_pytorch(device):
    a = mg.tensor([7, -7, 7, -7], device=device)
    b = mg.tensor([2, 2, -2, -2], device=device)
    assert (a // b).tolist() == [3, -4, -4, 3] and (a // b).dtype == mg.int64
    assert (a % b).tolist() == [1, 1, -1, -1]
    assert (7 // b).tolist() == [3, 3, -4, -4] and (7 % b).tolist() == [1, 1, -1, -1]
    x = _t([7.5, -7.5], device, dtype="float32")
    assert (x // 2).tolist() == [3.0, -4.0] and (x % 2).tolist() == [1.5, 0.5]
    assert (x // 2).dtype == mg.float32 and (x % 2.0).dtype == mg.float32


def test_mod_gradient_is_one_and_minus_floor_of_the_quotient():
    a = _t([7.5, -7.5, 1.25], requires_grad=True)
    b = _t([2.0, 2.0, -0.5], requires_grad=True)
    (a % b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(b.grad.numpy(), [-3.0, 4.0, 3.0])


@pytest.mark.parametrize("fn", [mg.floor, mg.ceil, mg.round, lambda x: x // 0.7])
def test_step_functions_have_a_zero_gradient_not_none(fn, device):
    x = _t([0.3, -1.7, 2.5], device, requires_grad=True)
    fn(x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros(3))


def test_rounding_follows_numpy():
    x = _t([0.5, 1.5, 2.5, -0.5, -1.25])
    np.testing.assert_array_equal(mg.round(x).numpy(), np.round(x.numpy()))      # halves to even
    np.testing.assert_array_equal(x.round(1).numpy(), np.round(x.numpy(), 1))
    ints = mg.tensor([15, 25, -3])
    assert mg.floor(ints) is ints and mg.ceil(ints).dtype == mg.int64
    assert mg.round(ints, -1).tolist() == [20, 20, 0]
    np.testing.assert_array_equal(mg.log2(_t([1.0, 8.0])).numpy(), [0.0, 3.0])
    np.testing.assert_array_equal(mg.exp2(_t([3.0, -1.0])).numpy(), [8.0, 0.5])


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: mg.tensor([1, 2]) // mg.tensor([1, 0]), ZeroDivisionError, r"floordiv: integer division by"),
    (lambda: mg.tensor([1, 2]) % 0, ZeroDivisionError, r"mod: integer division by zero"),
    (lambda: mg.tensor([True]) // mg.tensor([True]), TypeError, r"floordiv: needs numeric tensors, got bool"),
    (lambda: mg.floor(mg.tensor([True])), TypeError, r"floor: needs a numeric tensor, got bool"),
    (lambda: mg.round(mg.ones(2), 0.5), TypeError, r"round: decimals must be an int"),
    (lambda: mg.sin(mg.tensor([1, 2])), TypeError, r"sin: needs a floating-point tensor, got int64"),
    (lambda: mg.ones(2) // mg.ones(3), ValueError, r"floordiv: shapes \(2,\) and \(3,\) cannot be broadcast"),
])
def test_pointwise_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# --------------------------------------------------------------------------- linspace

def test_linspace_follows_numpy(device):
    t = linspace(0, 1, 5, device=device)
    assert mg.linspace is linspace
    assert t.dtype == mg.get_default_dtype() and t.device == mg.Device(device)
    np.testing.assert_array_equal(t.numpy(), np.linspace(0, 1, 5, dtype=t.dtype))
    np.testing.assert_array_equal(linspace(-1.0, 1.0, 4, endpoint=False, dtype="float64").numpy(),
                                  np.linspace(-1.0, 1.0, 4, endpoint=False))
    assert linspace(0, 1, 0).shape == (0,)


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: linspace(0, 1, -1), ValueError, r"linspace: num must be >= 0, got -1"),
    (lambda: linspace(0, 1, 2.5), TypeError, r"linspace: num must be an int"),
    (lambda: linspace(0, math.inf, 3), ValueError, r"linspace: stop must be finite"),
    (lambda: linspace("a", 1), TypeError, r"linspace: start must be a number"),
])
def test_linspace_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# --------------------------------------------------------------------------- activations

def test_softplus_is_linear_past_the_threshold_as_pytorch():
    x = _t([-30.0, 0.0, 5.0, 30.0], requires_grad=True)
    y = F.softplus(x, beta=2.0, threshold=20.0)
    assert y.numpy()[3] == 30.0                              # 2·30 > 20: x itself
    np.testing.assert_allclose(y.numpy()[:3], np.logaddexp(0, 2 * x.numpy()[:3]) / 2, rtol=1e-14)
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1 / (1 + np.exp(60.0)), 0.5, 1 / (1 + np.exp(-10.0)), 1.0],
                               rtol=1e-14, atol=1e-15)


def test_activation_gradients_at_zero_and_far_out_follow_pytorch():
    x = _t([0.0, -1000.0, 1000.0], requires_grad=True)
    np.testing.assert_array_equal(_grad(lambda x: F.leaky_relu(x, 0.2), x), [0.2, 0.2, 1.0])
    x.grad = None
    np.testing.assert_allclose(_grad(lambda x: F.elu(x, alpha=1.5), x), [1.5, 0.0, 1.0])  # no overflow
    assert F.elu(x).tolist() == [0.0, -1.0, 1000.0]
    np.testing.assert_allclose(F.silu(_t([0.0, 2.0])).numpy(), [0.0, 2.0 / (1 + np.exp(-2.0))])
    assert mg.gradgradcheck(lambda x: F.elu(x), (_t([-1.0, 50.0, 800.0], requires_grad=True),))


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: F.softplus(mg.ones(2), beta=0.0), ValueError, r"softplus: beta must be > 0"),
    (lambda: F.softplus(mg.ones(2), threshold="x"), TypeError, r"softplus: threshold must be a number"),
    (lambda: F.elu(mg.ones(2), alpha=None), TypeError, r"elu: alpha must be a finite number"),
    (lambda: F.leaky_relu(mg.tensor([1, 2])), TypeError, r"leaky_relu: needs a floating-point tensor"),
    (lambda: F.silu(mg.tensor([1, 2])), TypeError, r"silu: needs a floating-point tensor"),
])
def test_activation_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# --------------------------------------------------------------------------- losses

def test_binary_cross_entropy_clamps_its_logs_at_minus_100_as_pytorch():
    x = _t([0.0, 1.0, 0.5])
    t = _t([1.0, 0.0, 1.0])
    np.testing.assert_allclose(F.binary_cross_entropy(x, t, reduction="none").numpy(),
                               [100.0, 100.0, math.log(2.0)])
    x32 = _t([0.0, 1.0], dtype="float32", requires_grad=True)
    loss = F.binary_cross_entropy(x32, _t([1.0, 0.0], dtype="float32"))
    assert loss.dtype == mg.float32 and loss.item() == pytest.approx(100.0)
    loss.backward()
    assert np.isfinite(x32.grad.numpy()).all()


def test_binary_cross_entropy_with_logits_is_stable_and_weighs_positives():
    x = _t([-1000.0, 1000.0, 0.5, -2.0], requires_grad=True)
    t = _t([1.0, 0.0, 1.0, 0.0])
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(loss.numpy(), np.maximum(x.numpy(), 0) - x.numpy() * t.numpy()
                               + np.log1p(np.exp(-np.abs(x.numpy()))), rtol=1e-14)
    loss.sum().backward()
    sigmoid = 0.5 * (1 + np.tanh(x.numpy() / 2))
    np.testing.assert_allclose(x.grad.numpy(), sigmoid - t.numpy(), atol=1e-15)   # σ(x) - t
    pw = _t([3.0])
    weighted = F.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="none").numpy()
    plain = loss.numpy()
    np.testing.assert_allclose(weighted, np.where(t.numpy() == 1, 3.0 * plain, plain), rtol=1e-12)
    # the same as binary_cross_entropy of the probabilities, where those are not clamped
    p = F.sigmoid(x[2:])
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits(x[2:], t[2:]).item(),
                               F.binary_cross_entropy(p, t[2:]).item(), rtol=1e-12)


def test_cross_entropy_with_probability_targets_equals_class_indices_when_one_hot(device):
    assert F.one_hot is mg.one_hot                                   # PyTorch's place for it
    rng = np.random.default_rng(2)
    x = _t(rng.standard_normal((4, 3, 2)), device)                  # (N, C, d)
    t = mg.tensor(rng.integers(0, 3, (4, 2)), device=device)
    probs = mg.one_hot(t, 3).astype("float64").permute(0, 2, 1)      # (N, C, d)
    for kw in ({}, {"label_smoothing": 0.2}, {"reduction": "sum"}, {"reduction": "none"}):
        np.testing.assert_allclose(F.cross_entropy(x, probs, **kw).numpy(),
                                   F.cross_entropy(x, t, **kw).numpy(), rtol=1e-12)


def test_nll_loss_weighted_mean_divides_by_the_weights_of_the_counted_targets():
    logp = _t(np.log([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]))
    t = mg.tensor([1, 0, -100])
    w = _t([2.0, 3.0])
    expected = (3.0 * -math.log(0.8) + 2.0 * -math.log(0.6)) / (3.0 + 2.0)     # w[1] and w[0]
    assert F.nll_loss(logp, t, weight=w).item() == pytest.approx(expected, rel=1e-12)
    assert F.nll_loss(logp, t, weight=w, reduction="sum").item() == pytest.approx(expected * 5.0)
    np.testing.assert_allclose(F.nll_loss(logp, t, weight=w, reduction="none").numpy(),
                               [3.0 * -math.log(0.8), 2.0 * -math.log(0.6), 0.0])
    assert F.nll_loss(logp[0], mg.tensor(1)).item() == pytest.approx(-math.log(0.8))   # (C,) and ()


def test_nll_loss_keeps_positions_apart_with_two_spatial_dims():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 2, 4))                            # (N, C, d1, d2)
    t = rng.integers(0, 3, (2, 2, 4))
    expected = -np.take_along_axis(x, t[:, None], axis=1)[:, 0]
    np.testing.assert_array_equal(F.nll_loss(_t(x), mg.tensor(t), reduction="none").numpy(), expected)
    np.testing.assert_allclose(F.nll_loss(_t(x), mg.tensor(t)).item(), expected.mean(), rtol=1e-12)


_LOSSES = {
    "cross_entropy": lambda r: F.cross_entropy(mg.zeros(2, 3), mg.tensor([0, 1]), reduction=r),
    "cross_entropy[probabilities]": lambda r: F.cross_entropy(mg.zeros(2, 3), mg.zeros(2, 3), reduction=r),
    "nll_loss": lambda r: F.nll_loss(mg.zeros(2, 3), mg.tensor([0, 1]), reduction=r),
    "mse_loss": lambda r: F.mse_loss(mg.zeros(2), mg.zeros(2), reduction=r),
    "binary_cross_entropy": lambda r: F.binary_cross_entropy(mg.zeros(2), mg.zeros(2), reduction=r),
    "binary_cross_entropy_with_logits":
        lambda r: F.binary_cross_entropy_with_logits(mg.zeros(2), mg.zeros(2), reduction=r),
}


@pytest.mark.parametrize("name", sorted(_LOSSES))
def test_every_loss_checks_reduction_and_lists_the_valid_values(name):
    op = name.split("[")[0]
    with pytest.raises(ValueError, match=rf"^{op}: reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        _LOSSES[name]("avg")


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: F.binary_cross_entropy(_t([0.5, 1.5]), _t([0.0, 1.0])), ValueError,
     r"binary_cross_entropy: input must hold probabilities in \[0, 1\], got values from 0.5 to 1.5"),
    (lambda: F.binary_cross_entropy(_t([0.5]), _t([0.0, 1.0])), ValueError,
     r"binary_cross_entropy: target of shape \(2,\) for input of shape \(1,\)"),
    (lambda: F.binary_cross_entropy_with_logits(mg.zeros(2, 3), mg.zeros(2, 3), weight=mg.ones(2)),
     ValueError, r"binary_cross_entropy_with_logits: shapes \(2, 3\) and \(2,\) cannot be broadcast"),
    (lambda: F.binary_cross_entropy_with_logits(mg.zeros(3), mg.zeros(3), pos_weight=mg.ones(2, 3)),
     ValueError, r"binary_cross_entropy_with_logits: pos_weight of shape \(2, 3\) must broadcast"),
    (lambda: F.cross_entropy(mg.zeros(2, 3), mg.zeros(2, 4)), ValueError,
     r"cross_entropy: input of shape \(2, 3\) .* needs target of shape \(2,\), got \(2, 4\); give class "
     r"indices .* or probabilities \(a float tensor\) of the input's shape \(2, 3\)"),
    (lambda: F.cross_entropy(mg.zeros(2, 3), mg.zeros(2)), TypeError,
     r"cross_entropy: target must be an integer tensor of class indices, got float32 \(probabilities: "),
    (lambda: F.nll_loss(mg.zeros(2, 3), mg.tensor([0, 1]), weight=mg.ones(2)), ValueError,
     r"nll_loss: weight has shape \(2,\), expected \(3,\)"),
    (lambda: F.nll_loss(mg.zeros(2, 3), mg.tensor([0, 1]), weight=mg.tensor([1, 1, 1])), TypeError,
     r"nll_loss: weight must be a float tensor"),
    (lambda: F.nll_loss(mg.zeros(2, 3, 4), mg.tensor([0, 1])), ValueError,
     r"nll_loss: expected input \(N, C\) and target \(N,\), or .* got \(2, 3, 4\) and \(2,\)"),
])
def test_loss_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_tensor_repeat_is_pytorchs_and_minigrad_repeat_is_numpys():
    x = mg.tensor([[1.0, 2.0]])
    assert x.repeat(2, 1).tolist() == [[1.0, 2.0], [1.0, 2.0]]          # torch: a tile
    assert x.repeat((1, 2)).tolist() == [[1.0, 2.0, 1.0, 2.0]]
    assert mg.repeat(x, 2, axis=1).tolist() == [[1.0, 1.0, 2.0, 2.0]]     # numpy: element-wise
    assert x.repeat_interleave(2, axis=1).tolist() == [[1.0, 1.0, 2.0, 2.0]]
    with pytest.raises(ValueError, match="repeat: Tensor.repeat .* at least 2 .*repeat_interleave"):
        x.repeat(2)

