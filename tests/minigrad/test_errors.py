"""Mistakes a user can make raise a clear error of the documented type, raised
by minigrad at the boundary (naming the op, what was given and what was
expected), never a NumPy traceback from deep inside an op and never a silent
wrong answer (a negative index wrapping around, a NaN passing unnoticed).

Error types: ValueError for shapes and values, TypeError for dtypes and
argument types, IndexError for indices, DeviceError for devices, GraphError
for misuse of the graph, AnomalyError under detect_anomaly.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad.testing import shapes


def _shapes_re(*shapes) -> str:
    return ".*".join(re.escape(str(s)) for s in shapes)


# --------------------------------------------------------------------------- shapes

def test_matmul_shape_mismatch_names_op_and_both_shapes():
    a, b = mg.zeros(2, 3), mg.zeros(4, 5)
    with pytest.raises(ValueError, match=re.escape("matmul: shapes (2, 3) and (4, 5) do not align "
                                                   "(3 != 4)")):
        a @ b


@pytest.mark.parametrize("sa, sb", [((3,), (4,)), ((2, 3), (2,)), ((5,), (5, 2, 3))])
def test_matmul_inner_dims_mismatch_names_both_shapes(sa, sb):
    with pytest.raises(ValueError, match="matmul: shapes " + _shapes_re(sa, sb)):
        mg.matmul(mg.zeros(*sa), mg.zeros(*sb))


def test_matmul_batch_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match="matmul: batch dimensions of " + _shapes_re((2, 2, 3), (3, 3, 4))):
        mg.zeros(2, 2, 3) @ mg.zeros(3, 3, 4)


def test_matmul_of_a_scalar_says_to_use_mul():
    with pytest.raises(ValueError, match=r"matmul: .*at least 1-D.*use \*"):
        mg.matmul(mg.tensor(2.0), mg.zeros(2))


@pytest.mark.parametrize("name, fn", [
    ("add", lambda a, b: a + b), ("sub", lambda a, b: a - b), ("mul", lambda a, b: a * b),
    ("truediv", lambda a, b: a / b), ("pow", lambda a, b: a ** b),
    ("maximum", mg.maximum), ("minimum", mg.minimum),
    ("where", lambda a, b: mg.where(a > 0, a, b)), ("eq", lambda a, b: a == b),
    ("mse_loss", F.mse_loss),
])
def test_broadcast_mismatch_names_op_and_both_shapes(name, fn):
    a, b = mg.zeros(2, 3), mg.zeros(4)
    with pytest.raises(ValueError, match=f"{name}: .*" + _shapes_re((2, 3), (4,))):
        fn(a, b)


def _broadcasts(sa, sb) -> bool:
    try:
        np.broadcast_shapes(sa, sb)
        return True
    except ValueError:
        return False


@given(sa=shapes(min_dims=1, max_side=4), sb=shapes(min_dims=1, max_side=4),
       op=st.sampled_from(["add", "sub", "mul", "truediv", "maximum", "minimum", "pow"]))
def test_any_non_broadcastable_pair_is_a_value_error_naming_op_and_shapes(sa, sb, op):
    assume(not _broadcasts(sa, sb))
    with pytest.raises(ValueError, match=f"{op}: shapes " + _shapes_re(sa, sb)):
        getattr(mg, op)(mg.ones(sa), mg.ones(sb))


@given(sa=shapes(min_dims=1, max_side=4), sb=shapes(min_dims=1, max_side=4))
def test_any_misaligned_matmul_is_a_value_error_naming_both_shapes(sa, sb):
    k_b = sb[0] if len(sb) == 1 else sb[-2]
    assume(sa[-1] != k_b or not _broadcasts(sa[:-2], sb[:-2]))
    with pytest.raises(ValueError, match=r"matmul: (shapes|batch dimensions of) " + _shapes_re(sa, sb)):
        mg.ones(sa) @ mg.ones(sb)


def test_broadcast_to_an_incompatible_shape():
    with pytest.raises(ValueError, match=r"broadcast_to: .*\(2, 3\).*\(3,\)"):
        mg.zeros(2, 3).broadcast_to(3)


@pytest.mark.parametrize("shape, pattern", [
    ((4, 2), r"reshape: cannot reshape \(2, 3\) \(6 elements\) to \(4, 2\) \(8 elements\)"),
    ((-1, 4), r"reshape: cannot reshape \(2, 3\) \(6 elements\) to \(-1, 4\)"),
    ((-1, -1), r"reshape: invalid shape \(-1, -1\)"),
    ((-2, -3), r"reshape: invalid shape \(-2, -3\)"),
])
def test_bad_reshape_names_both_shapes(shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        mg.zeros(2, 3).reshape(shape)


def test_reshape_to_non_integers_is_a_type_error():
    with pytest.raises(TypeError, match="reshape: shape must be ints"):
        mg.zeros(2, 3).reshape("six")


@pytest.mark.parametrize("call, pattern", [
    (lambda: mg.cat([mg.zeros(2, 3), mg.zeros(3, 2)]), r"concatenate: shapes .* differ outside axis 0"),
    (lambda: mg.stack([mg.zeros(2, 3), mg.zeros(3, 2)]), r"stack: all tensors must have the same shape"),
    (lambda: mg.cat([]), r"concatenate: needs at least one tensor"),
    (lambda: mg.cat([mg.tensor(1.0)]), r"concatenate: zero-dimensional .* use stack"),
    (lambda: mg.zeros(5).split(2), r"split: axis 0 of size 5 cannot be split into 2 equal parts"),
    (lambda: mg.pad(mg.zeros(5), -1), r"pad: negative pad_width"),
    (lambda: mg.pad(mg.zeros(5), ((1, 1), (1, 1))), r"pad: pad_width .* does not fit a tensor with 1 dims"),
    (lambda: mg.zeros(2, 3).squeeze(axis=0), r"squeeze: axis 0 of shape \(2, 3\) has size 2, not 1"),
    (lambda: mg.zeros(2, 3).transpose(0, 0), r"transpose: axes \(0, 0\) are not a permutation"),
    (lambda: F.linear(mg.zeros(2, 3), mg.zeros(4, 5)),
     r"linear: input with 3 features .* weight of shape \(4, 5\)"),
    (lambda: F.layer_norm(mg.zeros(2, 3), 4),
     r"layer_norm: input of shape \(2, 3\) does not end in normalized_shape \(4,\)"),
    (lambda: F.layer_norm(mg.zeros(2, 3), 3, weight=mg.ones(4)),
     r"layer_norm: weight has shape \(4,\), expected \(3,\)"),
    (lambda: F.scaled_dot_product_attention(mg.zeros(2, 3), mg.zeros(2, 4), mg.zeros(2, 3)),
     r"scaled_dot_product_attention: query \(2, 3\), key \(2, 4\)"),
    (lambda: F.cross_entropy(mg.zeros(2, 3), mg.tensor([0, 1, 2])),
     r"cross_entropy: input of shape \(2, 3\) .* needs target of shape \(2,\), got \(3,\)"),
    (lambda: F.nll_loss(mg.zeros(2, 3), mg.tensor([0])),
     r"nll_loss: expected input \(N, C\) and target \(N,\)"),
    (lambda: F.masked_fill(mg.zeros(2), mg.tensor([True, False, True]), 0.0), r"masked_fill: shapes"),
])
def test_shape_errors_name_the_op(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


# --------------------------------------------------------------------------- axes

@pytest.mark.parametrize("name, call", [
    ("sum", lambda x: x.sum(axis=2)), ("mean", lambda x: x.mean(axis=-3)),
    ("max", lambda x: x.max(axis=2)), ("min", lambda x: x.min(axis=(0, 5))),
    ("var", lambda x: x.var(axis=2)), ("std", lambda x: x.std(axis=2)),
    ("logsumexp", lambda x: x.logsumexp(axis=3)), ("softmax", lambda x: F.softmax(x, axis=2)),
    ("log_softmax", lambda x: F.log_softmax(x, axis=-3)), ("flip", lambda x: x.flip(axis=2)),
    ("squeeze", lambda x: x.squeeze(axis=5)), ("swapaxes", lambda x: x.swapaxes(0, 2)),
    ("concatenate", lambda x: mg.cat([x, x], axis=2)), ("split", lambda x: x.split(2, axis=2)),
    ("argmax", lambda x: x.argmax(axis=2)), ("stack", lambda x: mg.stack([x, x], axis=3)),
    ("unsqueeze", lambda x: x.unsqueeze(3)),
])
def test_axis_out_of_range_names_op_and_axis(name, call):
    with pytest.raises(ValueError, match=rf"{name}: axis -?\d+ is out of range"):
        call(mg.zeros(2, 3))


def test_repeated_axis_is_an_error():
    with pytest.raises(ValueError, match=r"max: repeated axis in \(0, 0\)"):
        mg.zeros(2, 3).max(axis=(0, 0))


@pytest.mark.parametrize("axis", [1.0, "0", [0.5]])
def test_non_integer_axis_is_a_type_error(axis):
    with pytest.raises(TypeError, match="sum: axis must be an int or a tuple of ints"):
        mg.zeros(2, 3).sum(axis=axis)


@pytest.mark.parametrize("call, pattern", [
    (lambda: mg.zeros(0).max(), r"max: cannot reduce an empty tensor of shape \(0,\)"),
    (lambda: mg.zeros(0, 2).min(axis=0), r"min: cannot reduce an empty tensor"),
    (lambda: mg.zeros(0).argmax(), r"argmax: cannot reduce an empty tensor"),
    (lambda: mg.zeros(1).var(ddof=1), r"var: 1 elements with ddof=1 leave no degrees of freedom"),
])
def test_reducing_nothing_is_a_clear_error(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_the_mean_of_nothing_is_nan_as_in_pytorch(device):
    x = mg.zeros(0, 3, device=device, requires_grad=True)
    m = x.mean(axis=0)
    assert m.shape == (3,) and np.isnan(m.numpy()).all()
    assert np.isnan(mg.zeros(0, device=device).mean().numpy())
    assert x.mean(axis=1).shape == (0,)             # averaging 3 things, zero times: no NaN
    m.sum().backward()
    assert x.grad.shape == (0, 3)


# --------------------------------------------------------------------------- devices

_TWO_DEVICE_CALLS = {
    "add": lambda c, f: c + f,
    "mul": lambda c, f: f * c,
    "matmul": lambda c, f: c.reshape(1, 3) @ f.reshape(3, 1),
    "where": lambda c, f: mg.where(c > 0, c, f),
    "concatenate": lambda c, f: mg.cat([c, f]),
    "stack": lambda c, f: mg.stack([f, c]),
    "maximum": lambda c, f: mg.maximum(c, f),
    "mse_loss": lambda c, f: F.mse_loss(c, f),
    "linear": lambda c, f: F.linear(c.reshape(1, 3), f.reshape(1, 3)),
    "layer_norm": lambda c, f: F.layer_norm(c, 3, weight=f),
    "embedding": lambda c, f: F.embedding(mg.tensor([0, 2]), f.reshape(3, 1)),
    "cross_entropy": lambda c, f: F.cross_entropy(f.reshape(1, 3), mg.tensor([1])),
    "nll_loss": lambda c, f: F.nll_loss(f.reshape(1, 3), mg.tensor([1])),
    "getitem": lambda c, f: f[mg.tensor([0, 1])],
    "scaled_dot_product_attention": lambda c, f: F.scaled_dot_product_attention(
        c.reshape(1, 3), f.reshape(1, 3), c.reshape(1, 3)),
}


@pytest.mark.parametrize("name", sorted(_TWO_DEVICE_CALLS))
def test_device_mismatch_names_both_devices(name):
    cpu = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    fake = mg.tensor([1.0, 2.0, 3.0], device="fake", requires_grad=True)
    with pytest.raises(mg.DeviceError) as info:
        _TWO_DEVICE_CALLS[name](cpu, fake)
    msg = str(info.value)
    assert "cpu" in msg and "fake" in msg, msg
    assert msg.split(":")[0] in (name, "matmul", "where"), msg   # the op (or the op it became)


def test_host_array_meeting_a_device_tensor_is_a_device_error():
    with pytest.raises(mg.DeviceError, match="add: an array on cpu met a tensor on fake"):
        mg.ones(2, device="fake") + np.ones(2)


def test_backward_with_a_gradient_on_another_device():
    y = mg.ones(2, requires_grad=True) * 2.0
    with pytest.raises(mg.DeviceError, match="backward: gradient on fake but the output on cpu"):
        y.backward(mg.ones(2, device="fake"))


def test_unknown_device_and_missing_cuda_are_clear():
    with pytest.raises(ValueError, match="device: unknown device 'tpu'"):
        mg.zeros(2).to("tpu")
    with pytest.raises(TypeError, match="device: expected a string"):
        mg.tensor([1.0], device=3)
    if not mg.cuda.is_available():
        with pytest.raises(mg.DeviceError, match="CUDA is not available"):
            mg.zeros(2, device="cuda")


# --------------------------------------------------------------------------- dtypes

@pytest.mark.parametrize("make", [
    lambda: mg.tensor([1, 2], requires_grad=True),
    lambda: mg.tensor([True], requires_grad=True),
    lambda: mg.tensor([1, 2]).requires_grad_(),
    lambda: mg.zeros(2, dtype="int64", requires_grad=True),
    lambda: mg.arange(3, requires_grad=True),
    lambda: mg.randint(0, 5, (2,)).requires_grad_(),
])
def test_integer_and_bool_tensors_cannot_require_grad(make):
    with pytest.raises(TypeError, match="only floating-point tensors can require grad; this one is"):
        make()


@pytest.mark.parametrize("call, pattern", [
    (lambda: mg.tensor([1, 2]).exp(), r"exp: needs a floating-point tensor, got int64"),
    (lambda: F.softmax(mg.tensor([1, 2])), r"softmax: needs a floating-point tensor"),
    (lambda: mg.tensor([1.0], dtype="complex64"), r"tensor: unsupported dtype complex64"),
    (lambda: mg.tensor([1.0], dtype="floaty"), r"tensor: 'floaty' is not a dtype"),
    (lambda: mg.tensor([[1.0], [1.0, 2.0]]), r"tensor: data must be numbers.*ragged"),
    (lambda: mg.zeros(2) + "a", r"add: unsupported operand type str"),
    (lambda: mg.where(mg.tensor([1, 0]), mg.zeros(2), 1.0), r"where: condition must be a bool tensor"),
    (lambda: F.masked_fill(mg.zeros(2), mg.tensor([1, 0]), 0.0), r"masked_fill: mask must be a bool tensor"),
    (lambda: F.embedding(mg.tensor([0.0]), mg.zeros(3, 2)), r"embedding: indices must be an integer tensor"),
    (lambda: F.cross_entropy(mg.zeros(2, 3), mg.tensor([0.0, 1.0])),
     r"cross_entropy: target must be an integer tensor of class indices"),
    (lambda: mg.set_default_dtype("int32"), r"set_default_dtype: only floating dtypes"),
    (lambda: mg.manual_seed(1.5), r"manual_seed: seed must be an int"),
    (lambda: mg.zeros(2)[0.5], r"getitem: unsupported index 0.5"),
])
def test_type_errors_name_the_op(call, pattern):
    with pytest.raises((TypeError, IndexError), match=pattern):
        call()


# --------------------------------------------------------------------------- indices

@pytest.mark.parametrize("index, pattern", [
    (3, r"index 3 is out of range for axis 0 with size 3"),
    (-4, r"index -4 is out of range for axis 0 with size 3"),
    ((slice(None), 2), r"index 2 is out of range for axis 1 with size 2"),
    ([0, 5], r"index 5 is out of range for axis 0 with size 3 \(valid: -3 to 2\)"),
    ([0, -4], r"index -4 is out of range for axis 0 with size 3"),
    (np.array([[1], [3]]), r"index 3 is out of range"),
    ((0, 0, 0), r"too many indices \(3\) for a tensor of shape \(3, 2\)"),
    (np.array([True, False]), r"boolean mask of shape \(2,\) does not match dims \(3,\)"),
])
def test_getitem_out_of_range_is_an_index_error(index, pattern, device):
    x = mg.zeros(3, 2, device=device)
    with pytest.raises(IndexError, match="getitem: " + pattern):
        x[index]


def test_getitem_with_an_out_of_range_index_tensor(device):
    x = mg.zeros(3, device=device, requires_grad=True)
    with pytest.raises(IndexError, match="getitem: index 3 is out of range"):
        x[mg.tensor([0, 3], device=device)]


@pytest.mark.parametrize("bad", [-1, 4, 100])
def test_embedding_index_out_of_range_never_wraps(bad, device):
    w = mg.zeros(4, 2, device=device, requires_grad=True)
    with pytest.raises(IndexError, match=f"embedding: index {bad} is out of range for 4 embeddings"):
        F.embedding(mg.tensor([[0, bad]], device=device), w)


@pytest.mark.parametrize("bad", [-1, 3, -100])
def test_cross_entropy_target_out_of_range_never_wraps(bad, device):
    logits = mg.zeros(2, 3, device=device, requires_grad=True)
    target = mg.tensor([0, bad], device=device)
    with pytest.raises(IndexError, match=f"cross_entropy: target {bad} is out of range for 3 classes"):
        F.cross_entropy(logits, target, ignore_index=-5)
    with pytest.raises(IndexError, match=f"nll_loss: target {bad} is out of range for 3 classes"):
        F.nll_loss(logits, target, ignore_index=-5)


def test_cross_entropy_target_out_of_range_in_nc_d_layout(device):
    with pytest.raises(IndexError, match="cross_entropy: target 7 is out of range"):
        F.cross_entropy(mg.zeros(2, 3, 4, device=device), mg.tensor([[0, 1, 2, 7], [0, 0, 0, 0]],
                                                                     device=device))


# --------------------------------------------------------------------------- the graph

def test_backward_twice_without_retain_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(mg.GraphError, match="already freed.*retain_graph=True"):
        y.backward()


def test_non_scalar_backward_asks_for_a_gradient():
    y = mg.ones(2, 3, requires_grad=True) * 2.0
    with pytest.raises(mg.GraphError, match=r"only for scalar outputs; got shape \(2, 3\)"):
        y.backward()


def test_backward_of_a_tensor_without_graph():
    with pytest.raises(mg.GraphError, match="does not require grad and has no graph"):
        mg.zeros(2).sum().backward()


def test_backward_with_a_gradient_of_the_wrong_shape():
    y = mg.ones(2, requires_grad=True) * 2.0
    with pytest.raises(ValueError,
                       match=r"backward: gradient has shape \(3,\) but the output has shape \(2,\)"):
        y.backward(mg.zeros(3))


def test_grad_of_an_unused_input():
    x, z = mg.ones(2, requires_grad=True), mg.ones(2, requires_grad=True)
    with pytest.raises(mg.GraphError, match="input 1 .* was not used.*allow_unused=True"):
        mg.grad((x * 2.0).sum(), [x, z])


def test_in_place_assignment_into_a_tensor_that_requires_grad():
    with pytest.raises(mg.GraphError, match="setitem: in-place change of a leaf tensor that requires "
                                            "grad .*no_grad"):
        mg.zeros(2, requires_grad=True)[0] = 1.0


def test_turning_off_requires_grad_on_a_non_leaf():
    y = mg.zeros(2, requires_grad=True) * 2.0
    with pytest.raises(mg.GraphError, match="only be turned off on leaf tensors; use .detach()"):
        y.requires_grad = False


# --------------------------------------------------------------------------- NaN under detect_anomaly

@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_catches_nan_in_forward_naming_op_and_line(device):
    x = mg.tensor([-1.0, 2.0], device=device, requires_grad=True)
    with mg.detect_anomaly(), pytest.raises(
            mg.AnomalyError, match=r"(?s)log: forward produced NaN or inf \(shape \(2,\)\).*test_errors\.py"):
        x.log()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_detect_anomaly_catches_inf_in_backward_naming_the_op_whose_backward_made_it(device):
    x = mg.tensor([0.0, 4.0], device=device, requires_grad=True)
    with mg.detect_anomaly():
        y = x.sqrt().sum()            # sqrt(0) is fine; its derivative 1/(2 sqrt 0) is not
        with pytest.raises(mg.AnomalyError,
                           match=r"(?s)sqrt: backward produced NaN or inf .* shape \(2,\).*test_errors\.py"):
            y.backward()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_without_detect_anomaly_nan_passes_silently():
    x = mg.tensor([-1.0], requires_grad=True)
    assert np.isnan(x.log().item())


# --------------------------------------------------------------------------- values

@pytest.mark.parametrize("call, pattern", [
    (lambda: mg.zeros(2).clip(1.0, 0.0), r"clip: min \(1.0\) is greater than max \(0.0\)"),
    (lambda: mg.zeros(2).clip(), r"clip: give at least one of min and max"),
    (lambda: F.gelu(mg.zeros(2), approximate="fast"), r"gelu: approximate must be 'none' or 'tanh'"),
    (lambda: F.dropout(mg.zeros(2), p=1.5), r"dropout: p must be in \[0, 1\], got 1.5"),
    (lambda: F.cross_entropy(mg.zeros(2, 3), mg.tensor([0, 1]), reduction="avg"),
     r"cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'avg'"),
    (lambda: F.cross_entropy(mg.zeros(2, 3), mg.tensor([0, 1]), label_smoothing=1.5),
     r"cross_entropy: label_smoothing must be in \[0, 1\]"),
    (lambda: F.mse_loss(mg.zeros(2), mg.zeros(2), reduction="x"), r"mse_loss: reduction must be"),
    (lambda: F.layer_norm(mg.zeros(2, 3), 3, eps=-1.0), r"layer_norm: eps must be a finite number >= 0"),
    (lambda: mg.zeros(2).item(), r"item: only one-element tensors .* shape \(2,\)"),
    (lambda: bool(mg.zeros(2)), r"truth value of a tensor with shape \(2,\) is ambiguous"),
    (lambda: mg.zeros(-1), r"zeros: negative dimension"),
    (lambda: mg.randint(5, 5, 2), r"randint: need low < high"),
    (lambda: mg.arange(0, 5, 0), r"arange: step must not be zero"),
])
def test_bad_values_name_the_op(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


def test_masked_fill_mask_may_not_enlarge_the_input():
    import minigrad as mg
    import minigrad.functional as F
    with pytest.raises(ValueError, match=r"masked_fill: mask of shape \(2, 3\).*\(3,\)"):
        F.masked_fill(mg.zeros(3), mg.ones(2, 3, dtype="bool"), 1.0)


def test_matmul_of_float_and_int_follows_the_promotion_rule():
    import minigrad as mg
    assert (mg.zeros(2, 2) @ mg.zeros(2, 2, dtype="int64")).dtype == mg.float32
    assert (mg.zeros(2, 2) @ mg.zeros(2, 2, dtype="float64")).dtype == mg.float64
