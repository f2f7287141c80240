"""minigrad.functional: the numerically careful building blocks, stated as
properties (softmax sums to one, layer norm is shift- and scale-invariant,
causal attention never looks ahead, ...), plus a user-defined op written the
way the docs say to write one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from op_registry import _ref_cross_entropy

import minigrad as mg
import minigrad.functional as F
from minigrad.testing import arrays, broadcastable_shapes, distinct_arrays, shapes, tolerance

_devices = st.sampled_from(["cpu", "fake"])


def _random_like(t: mg.Tensor, seed: int = 0) -> mg.Tensor:
    rng = np.random.default_rng(seed)
    return mg.tensor(rng.standard_normal(t.shape), dtype=t.dtype, device=t.device)


# --------------------------------------------------------------------------- softmax

@given(a=shapes(min_dims=1).flatmap(lambda s: arrays(s, -50.0, 50.0)), data=st.data(),
       dtype=st.sampled_from(["float32", "float64"]), device=_devices)
def test_softmax_rows_are_probabilities(a, data, dtype, device):
    axis = data.draw(st.integers(-a.ndim, a.ndim - 1))
    s = F.softmax(mg.tensor(a * 100.0, dtype=dtype, device=device), axis=axis).numpy()  # up to ±5000
    assert (s >= 0).all() and (s <= 1).all()
    np.testing.assert_allclose(s.sum(axis=axis), 1.0, **tolerance(dtype))


@given(a=shapes(min_dims=1).flatmap(arrays), shift=st.floats(-1e3, 1e3))
def test_softmax_is_shift_invariant_and_log_softmax_is_its_log(a, shift):
    x = mg.tensor(a, dtype="float64")
    s = F.softmax(x).numpy()
    np.testing.assert_allclose(F.softmax(x + shift).numpy(), s, **tolerance(np.float64))
    np.testing.assert_allclose(F.log_softmax(x).numpy(), np.log(s), **tolerance(np.float64))


def test_log_softmax_of_large_logits_is_finite():
    x = mg.tensor([[1e4, 0.0, -1e4]])
    out = F.log_softmax(x).numpy()
    assert np.isfinite(out).all() and out[0, 0] == 0.0


@pytest.mark.parametrize("fn", [F.softmax, F.log_softmax])
def test_fully_masked_row_gives_zero_probabilities_and_finite_gradients(fn, device):
    x = mg.tensor([[-math.inf, -math.inf, -math.inf], [0.0, 1.0, -math.inf]], dtype="float64",
                  device=device, requires_grad=True)
    y = F.softmax(x, axis=-1)
    assert y.numpy()[0].tolist() == [0.0, 0.0, 0.0]
    np.testing.assert_allclose(y.numpy()[1].sum(), 1.0)
    assert y.numpy()[1, 2] == 0.0
    out = fn(x, axis=-1) if fn is F.softmax else F.softmax(x, axis=-1)
    out.backward(_random_like(out))
    assert np.isfinite(x.grad.numpy()).all()
    assert (x.grad.numpy()[0] == 0).all()


# --------------------------------------------------------------------------- cross-entropy

@st.composite
def _ce_inputs(draw):
    n, c, d = draw(st.integers(1, 4)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    layout = draw(st.sampled_from([(n, c), (c,), (n, c, d)]))
    tshape = {2: (n,), 1: (), 3: (n, d)}[len(layout)]
    ignore_index = draw(st.sampled_from([-100, 0, 2]))
    target = draw(hnp.arrays(np.int64, tshape, elements=st.sampled_from(list(range(c)) + [ignore_index])))
    return draw(arrays(layout, -5.0, 5.0)), target, ignore_index


@given(inputs=_ce_inputs(), reduction=st.sampled_from(["mean", "sum", "none"]),
       label_smoothing=st.sampled_from([0.0, 0.05, 0.3, 1.0]), device=_devices)
def test_cross_entropy_matches_numpy_reference(inputs, reduction, label_smoothing, device):
    x, target, ignore_index = inputs
    if reduction == "mean":
        assume((target != ignore_index).any())
    kw = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
    out = F.cross_entropy(mg.tensor(x, device=device), mg.tensor(target, device=device), **kw)
    expected = _ref_cross_entropy(x, target, **kw)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, **tolerance(np.float64))


def test_cross_entropy_of_uniform_logits_is_log_classes():
    loss = F.cross_entropy(mg.zeros(3, 7), mg.tensor([0, 3, 6]))
    assert loss.item() == pytest.approx(math.log(7), rel=1e-6)


def test_cross_entropy_nc_d_layout_equals_flattened_rows():
    x = mg.randn(2, 4, 3, dtype="float64")
    t = mg.randint(0, 4, (2, 3))
    flat = x.swapaxes(1, 2).reshape(6, 4)
    np.testing.assert_allclose(F.cross_entropy(x, t).item(), F.cross_entropy(flat, t.reshape(6)).item())
    per = F.cross_entropy(x, t, reduction="none")
    assert per.shape == (2, 3)


def test_cross_entropy_ignored_rows_get_no_gradient_and_do_not_count_in_the_mean():
    x = mg.randn(4, 3, dtype="float64", requires_grad=True)
    t = mg.tensor([1, -100, 2, -100])
    loss = F.cross_entropy(x, t)
    kept = F.cross_entropy(x[mg.tensor([0, 2])], mg.tensor([1, 2]))
    assert loss.item() == pytest.approx(kept.item())
    loss.backward()
    g = x.grad.numpy()
    assert (g[[1, 3]] == 0).all() and (g[[0, 2]] != 0).any()
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-12)   # softmax - onehot sums to 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_cross_entropy_mean_over_no_targets_is_nan_as_in_pytorch():
    assert math.isnan(F.cross_entropy(mg.zeros(2, 3), mg.tensor([-100, -100])).item())


def test_nll_loss_of_log_softmax_equals_cross_entropy():
    x = mg.randn(5, 4, dtype="float64")
    t = mg.tensor([0, 3, 1, -100, 2])
    for reduction in ("mean", "sum", "none"):
        np.testing.assert_allclose(F.nll_loss(F.log_softmax(x, axis=1), t, reduction=reduction).numpy(),
                                   F.cross_entropy(x, t, reduction=reduction).numpy(), rtol=1e-12)


# --------------------------------------------------------------------------- layer norm

@st.composite
def _rows(draw, min_side=2):
    shape = draw(shapes(min_dims=1, max_dims=3, min_side=1))
    assume(shape[-1] >= min_side)
    return draw(distinct_arrays(shape))


@given(x=_rows(), shift=st.floats(-100.0, 100.0), device=_devices)
def test_layer_norm_is_shift_invariant(x, shift, device):
    d = x.shape[-1]
    a = F.layer_norm(mg.tensor(x, device=device), d, eps=0.0).numpy()
    b = F.layer_norm(mg.tensor(x + shift, device=device), d, eps=0.0).numpy()
    np.testing.assert_allclose(b, a, **tolerance(np.float64))


@given(x=_rows(), scale=st.floats(1e-3, 1e3), device=_devices)
def test_layer_norm_is_scale_invariant(x, scale, device):
    d = x.shape[-1]
    a = F.layer_norm(mg.tensor(x, device=device), d, eps=0.0).numpy()
    b = F.layer_norm(mg.tensor(x * scale, device=device), d, eps=0.0).numpy()
    np.testing.assert_allclose(b, a, **tolerance(np.float64))


@given(x=_rows(), device=_devices)
def test_layer_norm_rows_have_zero_mean_and_unit_variance(x, device):
    y = F.layer_norm(mg.tensor(x, device=device), x.shape[-1], eps=0.0).numpy()
    np.testing.assert_allclose(y.mean(axis=-1), 0.0, **tolerance(np.float64))
    np.testing.assert_allclose(y.var(axis=-1), 1.0, **tolerance(np.float64))


def test_layer_norm_of_a_constant_row_is_finite_with_finite_gradients(device):
    x = mg.tensor([[3.0, 3.0, 3.0, 3.0], [1.0, 2.0, 3.0, 4.0]], device=device, requires_grad=True)
    w = mg.tensor([1.0, 2.0, 3.0, 4.0], device=device, requires_grad=True)
    b = mg.tensor([0.5, 0.5, 0.5, 0.5], device=device, requires_grad=True)
    y = F.layer_norm(x, 4, weight=w, bias=b)
    assert y.numpy()[0].tolist() == [0.5, 0.5, 0.5, 0.5]     # x̂ = 0, so y = bias
    y.backward(_random_like(y))
    for t in (x, w, b):
        assert np.isfinite(t.grad.numpy()).all()


@given(spread=st.sampled_from([1e-2, 3e-2]), mean=st.sampled_from([1e4, -1e4, 3e3]),
       n=st.integers(2, 16), seed=st.integers(0, 2**16), device=_devices)
def test_layer_norm_float32_rows_with_large_mean_and_small_spread_match_float64(
        spread, mean, n, seed, device):
    rng = np.random.default_rng(seed)
    x32 = (mean + spread * rng.standard_normal((3, n))).astype(np.float32)
    assume((x32.max(axis=1) > x32.min(axis=1)).all())   # no constant row after rounding
    out = {}
    for dtype in ("float32", "float64"):
        x = mg.tensor(x32, dtype=dtype, device=device, requires_grad=True)
        y = F.layer_norm(x, n)
        y.backward(mg.tensor(np.linspace(-1, 1, 3 * n).reshape(3, n), dtype=dtype, device=device))
        out[dtype] = y.numpy(), x.grad.numpy()
    # y is O(1); its gradient is O(1/σ), so compare the gradient relative to its size
    np.testing.assert_allclose(out["float32"][0], out["float64"][0], **tolerance(np.float32))
    g32, g64 = out["float32"][1], out["float64"][1]
    assert np.abs(g32 - g64).max() <= tolerance(np.float32)["rtol"] * np.abs(g64).max()


# --------------------------------------------------------------------------- dropout

def test_dropout_is_the_identity_in_eval_mode_and_for_p_zero():
    x = mg.randn(4, 5, requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x


def test_dropout_with_p_one_zeroes_everything():
    x = mg.randn(4, 5, requires_grad=True)
    y = F.dropout(x, 1.0)
    assert (y.numpy() == 0).all()
    y.sum().backward()
    assert (x.grad.numpy() == 0).all()


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_keeps_the_expected_value(p, device):
    n = 20_000
    y = F.dropout(mg.ones(n, dtype="float64", device=device), p).numpy()
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1.0 / (1.0 - p))          # survivors scaled by 1/(1-p)
    sigma = math.sqrt(p * (1 - p) / n)                              # binomial std of the kept fraction
    assert abs(kept.mean() - (1 - p)) < 5 * sigma
    assert abs(y.mean() - 1.0) < 5 * sigma / (1 - p)


def test_dropout_is_reproducible_with_a_seed_and_identical_on_cpu_and_fake():
    masks = []
    for device in ("cpu", "cpu", "fake"):
        mg.manual_seed(11)
        masks.append(F.dropout(mg.ones(8, 8, device=device), 0.5).numpy())
    np.testing.assert_array_equal(masks[0], masks[1])
    np.testing.assert_array_equal(masks[0], masks[2])
    assert not np.array_equal(F.dropout(mg.ones(8, 8), 0.5).numpy(), masks[0])   # next draw differs


def test_dropout_gradient_uses_the_forward_mask(device):
    x = mg.randn(6, 7, device=device, requires_grad=True)
    y = F.dropout(x, 0.3)
    v = _random_like(y)
    y.backward(v)
    mask = (y.numpy() / x.numpy())   # 0 or 1/(1-p) per element
    np.testing.assert_allclose(x.grad.numpy(), v.numpy() * mask, rtol=1e-6)


# --------------------------------------------------------------------------- attention

@st.composite
def _qkv(draw):
    batch = draw(shapes(max_dims=2, max_side=2))
    T, E = draw(st.integers(2, 5)), draw(st.integers(1, 3))
    q, k, v = (draw(arrays(batch + (T, E))) for _ in range(3))
    return q, k, v, draw(st.integers(0, T - 2))


@given(qkv=_qkv(), noise=st.floats(-5.0, 5.0).filter(lambda z: abs(z) > 0.1), device=_devices)
def test_causal_attention_never_looks_ahead(qkv, noise, device):
    q, k, v, t = qkv
    k2, v2 = k.copy(), v.copy()
    k2[..., t + 1:, :] += noise
    v2[..., t + 1:, :] -= noise

    def run(k_, v_):
        tq, tk, tv = (mg.tensor(a, device=device, requires_grad=True) for a in (q, k_, v_))
        out = F.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
        return out, tk, tv

    a, _, _ = run(k, v)
    b, tk, tv = run(k2, v2)
    # outputs at or before t are bit-for-bit unchanged by keys/values after t
    np.testing.assert_array_equal(a.numpy()[..., :t + 1, :], b.numpy()[..., :t + 1, :])
    # and those outputs send no gradient to keys/values after t
    b[..., :t + 1, :].sum().backward()
    assert (tk.grad.numpy()[..., t + 1:, :] == 0).all()
    assert (tv.grad.numpy()[..., t + 1:, :] == 0).all()


def test_causal_flag_equals_a_lower_triangular_bool_mask_and_a_minus_inf_float_mask():
    q, k, v = (mg.randn(2, 4, 3, dtype="float64") for _ in range(3))
    tril = mg.tensor(np.tril(np.ones((4, 4), dtype=bool)))
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True).numpy()
    by_bool = F.scaled_dot_product_attention(q, k, v, attn_mask=tril).numpy()
    by_float = F.scaled_dot_product_attention(
        q, k, v, attn_mask=mg.where(tril, 0.0, -math.inf).astype("float64")).numpy()
    np.testing.assert_allclose(by_bool, causal, rtol=1e-12)
    np.testing.assert_allclose(by_float, causal, rtol=1e-12)


def test_attention_query_with_nothing_to_attend_to_gets_zeros_and_finite_gradients(device):
    q, k, v = (mg.randn(3, 2, dtype="float64", device=device, requires_grad=True) for _ in range(3))
    mask = mg.tensor([[True, False, True], [False, False, False], [True, True, True]], device=device)
    out, weights = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
    assert (out.numpy()[1] == 0).all() and (weights.numpy()[1] == 0).all()
    np.testing.assert_allclose(weights.numpy()[[0, 2]].sum(axis=-1), 1.0)
    out.backward(_random_like(out))
    for t in (q, k, v):
        assert np.isfinite(t.grad.numpy()).all()
    assert (q.grad.numpy()[1] == 0).all()


def test_attention_weights_are_probabilities():
    q, k, v = mg.randn(5, 4), mg.randn(6, 4), mg.randn(6, 2)
    out, w = F.scaled_dot_product_attention(q, k, v, return_weights=True)
    assert out.shape == (5, 2) and w.shape == (5, 6)
    np.testing.assert_allclose(w.numpy().sum(axis=-1), 1.0, **tolerance(np.float32))


# --------------------------------------------------------------------------- masked_fill, mse, linear

@given(shapes_=broadcastable_shapes(), value=st.sampled_from([0.0, -1.5, -math.inf]),
       data=st.data(), device=_devices)
def test_masked_fill_puts_the_value_where_the_mask_is_true(shapes_, value, data, device):
    sx, sm = shapes_
    sx = np.broadcast_shapes(sx, sm)
    x = data.draw(arrays(sx))
    m = data.draw(hnp.arrays(bool, sm))
    tx = mg.tensor(x, device=device, requires_grad=True)
    y = F.masked_fill(tx, mg.tensor(m, device=device), value)
    np.testing.assert_array_equal(y.numpy(), np.where(m, value, x))
    y.backward(mg.ones(sx, dtype="float64", device=device))
    np.testing.assert_array_equal(tx.grad.numpy(), np.where(np.broadcast_to(m, sx), 0.0, 1.0))


@given(a=shapes().flatmap(lambda s: st.tuples(arrays(s), arrays(s))), device=_devices)
def test_mse_loss_is_the_mean_squared_error_with_gradient_2_diff_over_n(a, device):
    x_, t_ = a
    x = mg.tensor(x_, device=device, requires_grad=True)
    t = mg.tensor(t_, device=device, requires_grad=True)
    loss = F.mse_loss(x, t)
    np.testing.assert_allclose(loss.item(), ((x_ - t_) ** 2).mean(), **tolerance(np.float64))
    np.testing.assert_allclose(F.mse_loss(x, t, reduction="sum").item(), ((x_ - t_) ** 2).sum(),
                               **tolerance(np.float64))
    np.testing.assert_allclose(F.mse_loss(x, t, reduction="none").numpy(), (x_ - t_) ** 2)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * (x_ - t_) / x_.size, **tolerance(np.float64))
    np.testing.assert_allclose(t.grad.numpy(), -x.grad.numpy())


def test_mse_loss_accepts_a_plain_target():
    assert F.mse_loss(mg.tensor([1.0, 3.0]), [0.0, 1.0]).item() == pytest.approx(2.5)


def test_functional_activations_are_the_top_level_ops():
    for name in ("relu", "gelu", "sigmoid", "tanh"):
        assert getattr(F, name) is getattr(mg, name)


# --------------------------------------------------------------------------- a user-defined op

class SoftClip(mg.Function):
    """y = c · tanh(x / c): a smooth clip to (-c, c).  dy/dx = 1 - tanh²(x / c).

    ``forward`` works on raw arrays (through ``xp``, so it runs on any device);
    ``backward`` uses Tensor ops on ``self.output``, so it is differentiable again."""

    def forward(self, x):
        xp = mg.backend.xp_of(x)
        return x.dtype.type(self.c) * xp.tanh(x / x.dtype.type(self.c))

    def backward(self, g):
        t = self.output * (1.0 / self.c)
        return g * (1.0 - t * t)


class ScaledAdd(mg.Function):
    """y = a · s + b, with a and b broadcast together: backward returns the
    gradients at the broadcast shape and the engine reduces them."""

    def forward(self, a, b):
        return a * a.dtype.type(self.s) + b

    def backward(self, g):
        return g * self.s, g


@given(a=shapes().flatmap(lambda s: arrays(s, -4.0, 4.0)), c=st.sampled_from([0.5, 2.0]),
       device=_devices)
def test_user_defined_function_passes_gradcheck(a, c, device):
    x = mg.tensor(a, dtype="float64", device=device, requires_grad=True)
    y = SoftClip.apply(x, c=c)
    assert y.grad_fn is not None and y.grad_fn.name() == "softclip"
    np.testing.assert_allclose(y.numpy(), c * np.tanh(a / c), **tolerance(np.float64))
    assert mg.gradcheck(lambda t: SoftClip.apply(t, c=c), x)
    assert mg.gradgradcheck(lambda t: SoftClip.apply(t, c=c), x)


@given(pair=broadcastable_shapes(), data=st.data(), device=_devices)
def test_user_defined_function_gets_broadcast_gradients_reduced_by_the_engine(pair, data, device):
    sa, sb = pair
    a = mg.tensor(data.draw(arrays(sa)), device=device, requires_grad=True)
    b = mg.tensor(data.draw(arrays(sb)), device=device, requires_grad=True)
    assert mg.gradcheck(lambda x, y: ScaledAdd.apply(x, y, s=-1.5), (a, b))


def test_fused_sequences_name_every_shape_when_they_do_not_fit():
    gx, h0, w = mg.zeros(5, 2, 9), mg.zeros(2, 3), mg.zeros(9, 3)
    with pytest.raises(ValueError, match=r"gru_sequence: gx \(5, 2, 9\), h0 \(2, 4\), weight_hh "
                                         r"\(9, 3\) do not fit; need \(T, \.\.\., 3H\), \(\.\.\., H\), "
                                         r"\(3H, H\) and \(3H,\)"):
        F.gru_sequence(gx, mg.zeros(2, 4), w)
    with pytest.raises(ValueError, match=r"rnn_sequence: gx \(5, 2, 9\), h0 \(2, 3\), weight_hh "
                                         r"\(9, 3\), bias_hh \(3,\) do not fit; need \(T, \.\.\., H\)"):
        F.rnn_sequence(gx, h0, w, mg.zeros(3))
    with pytest.raises(ValueError, match=r"lstm_sequence: gx \(5, 2, 9\), h0 \(2, 3\), c0 \(2, 4\)"):
        F.lstm_sequence(gx, h0, mg.zeros(2, 4), w)
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        F.rnn_sequence(mg.zeros(5, 2, 3), h0, w[:3], nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="gru_sequence"):
        F.gru_sequence(mg.zeros(5, 2, 9, dtype=mg.int64), h0, w)
