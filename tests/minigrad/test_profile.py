"""minigrad.profile.count_flops: the FLOPs of matrix products, forward and backward."""

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import autograd, profile


def _randn(*shape, requires_grad=False, device="cpu"):
    return mg.randn(*shape, dtype="float64", requires_grad=requires_grad, device=device)


@pytest.mark.parametrize("a_shape, b_shape, flops", [
    ((3, 4), (4, 5), 2 * 3 * 4 * 5),               # (m, k) @ (k, n): 2mkn
    ((2, 3, 4), (2, 4, 5), 2 * 2 * 3 * 4 * 5),     # batched
    ((7, 1, 3, 4), (2, 4, 5), 2 * 7 * 2 * 3 * 4 * 5),  # broadcast batch dims multiply
    ((2, 3, 4), (4, 5), 2 * 2 * 3 * 4 * 5),        # a shared right operand
    ((4,), (4, 5), 2 * 4 * 5),                     # a row vector
    ((3, 4), (4,), 2 * 3 * 4),                     # a column vector
    ((4,), (4,), 2 * 4),                           # a dot product
    ((2, 3, 4), (4,), 2 * 2 * 3 * 4),
    ((0, 4), (4, 5), 0),                           # empty: nothing computed
])
def test_a_product_counts_2mkn(device, a_shape, b_shape, flops):
    assert profile.matmul_flops(a_shape, b_shape) == flops
    assert profile.matmul_shape(a_shape, b_shape) == (np.ones(a_shape) @ np.ones(b_shape)).shape
    a, b = _randn(*a_shape, device=device), _randn(*b_shape, device=device)
    with mg.profile.count_flops() as fc:
        a @ b
    assert (fc.forward, fc.backward, fc.total, fc.products) == (flops, 0, flops, 1)


def test_matmul_flops_takes_arrays_or_shapes():
    a, b = _randn(3, 4), _randn(4, 5)
    assert profile.matmul_flops(a.data, b.data) == profile.matmul_flops(a, b) == 120


@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (4, 5)), ((2, 3, 4), (2, 4, 5)),
                                              ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)),
                                              ((4,), (4,)), ((2, 1, 3, 4), (5, 4, 2))])
def test_backward_with_both_operands_is_twice_the_forward(a_shape, b_shape):
    a = _randn(*a_shape, requires_grad=True)
    b = _randn(*b_shape, requires_grad=True)
    with mg.profile.count_flops() as fc:
        y = (a @ b).sum()
        forward = fc.forward
        y.backward()
    assert forward == profile.matmul_flops(a_shape, b_shape)
    assert fc.forward == forward                     # nothing of the backward counted as forward
    assert fc.backward == 2 * forward                # dA = G Bᵀ and dB = Aᵀ G
    assert fc.products == 3


@pytest.mark.parametrize("which", ["a", "b"])
def test_backward_with_one_operand_is_one_forward(which):
    a = _randn(3, 4, requires_grad=which == "a")
    b = _randn(4, 5, requires_grad=which == "b")
    with mg.profile.count_flops() as fc:
        (a @ b).sum().backward()
    assert fc.forward == 120 and fc.backward == 120 and fc.products == 2


def test_nothing_is_counted_outside_the_context():
    a, b = _randn(3, 4, requires_grad=True), _randn(4, 5, requires_grad=True)
    y = (a @ b).sum()                                # before: not counted
    with mg.profile.count_flops() as fc:
        pass
    y.backward()                                     # after: not counted
    a @ b
    assert (fc.forward, fc.backward, fc.products) == (0, 0, 0)
    assert profile.active == []


def test_nested_counters_both_count():
    a, b = _randn(3, 4), _randn(4, 5)
    with mg.profile.count_flops() as outer:
        a @ b
        with mg.profile.count_flops() as inner:
            a @ b
            a @ b
        a @ b
    assert inner.forward == 2 * 120 and inner.products == 2
    assert outer.forward == 4 * 120 and outer.products == 4
    assert profile.active == []


def test_counters_closed_out_of_order():
    a, b = _randn(3, 4), _randn(4, 5)
    first, second = mg.profile.count_flops(), mg.profile.count_flops()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    a @ b
    second.__exit__(None, None, None)
    assert (first.forward, second.forward) == (0, 120)
    assert profile.active == []


def test_no_grad_products_count_as_forward():
    a, b = _randn(3, 4, requires_grad=True), _randn(4, 5)
    with mg.profile.count_flops() as fc, mg.no_grad():
        a @ b
    assert (fc.forward, fc.backward) == (120, 0)


def test_the_backward_mark_is_restored_after_an_error():
    x = _randn(3, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(mg.GraphError):
        y.backward()                                 # the graph was freed
    assert autograd._mode.backward_pass is False


def test_fused_linear():
    x = _randn(2, 5, 3, requires_grad=True)          # (..., in)
    w = _randn(4, 3, requires_grad=True)             # (out, in)
    b = _randn(4, requires_grad=True)
    with mg.profile.count_flops() as fc:
        F.linear(x, w, b).sum().backward()
    fwd = 2 * 10 * 3 * 4
    assert (fc.forward, fc.backward, fc.products) == (fwd, 2 * fwd, 3)
    x.requires_grad = False                          # a model's first layer on raw data: no dx
    with mg.profile.count_flops() as fc:
        F.linear(x, w, b).sum().backward()
    assert (fc.forward, fc.backward) == (fwd, fwd)


@pytest.mark.parametrize("causal", [False, True])
def test_fused_attention_is_dense(causal):
    B, nh, L, S, E = 2, 3, 5, 5, 4
    q, k, v = (_randn(B, nh, n, E, requires_grad=True) for n in (L, S, S))
    with mg.profile.count_flops() as fc:
        F.scaled_dot_product_attention(q, k, v, is_causal=causal).sum().backward()
    fwd = 2 * (2 * B * nh * L * S * E)               # Q Kᵀ and P V, every score, masked or not
    assert (fc.forward, fc.backward) == (fwd, 2 * fwd)
    assert fc.products == 2 + 4


def test_composite_attention_counts_the_same():
    B, L, E = 2, 5, 4
    q, k, v = (_randn(B, L, E, requires_grad=True) for _ in range(3))
    with mg.profile.count_flops() as fused:
        F.scaled_dot_product_attention(q, k, v, is_causal=True).sum().backward()
    with mg.profile.count_flops() as composite:  # return_weights: the composite path, MatMul nodes
        out, _ = F.scaled_dot_product_attention(q, k, v, is_causal=True, return_weights=True)
        out.sum().backward()
    assert (composite.forward, composite.backward) == (fused.forward, fused.backward)


def test_lstm_sequence():
    T, B, H = 6, 2, 3
    gx = _randn(T, B, 4 * H, requires_grad=True)
    h0, c0 = _randn(B, H), _randn(B, H)
    w_hh = _randn(4 * H, H, requires_grad=True)
    with mg.profile.count_flops() as fc:
        hs, _ = F.lstm_sequence(gx, h0, c0, w_hh)
        hs.sum().backward()
    fwd = T * 2 * B * H * 4 * H                      # h_{t-1} W_hhᵀ per step
    assert fc.forward == fwd and fc.forward_products == T
    assert fc.backward == 2 * fwd                    # dh_{t-1} = da_t W_hh per step, and dW_hh once
    assert fc.backward_products == T + 1


@pytest.mark.parametrize("kind, gates", [("gru", 3), ("rnn", 1)])
def test_gru_and_rnn_sequences(kind, gates):
    T, B, H = 6, 2, 3
    gx = _randn(T, B, gates * H, requires_grad=True)
    h0 = _randn(B, H)
    w_hh = _randn(gates * H, H, requires_grad=True)
    fn = F.gru_sequence if kind == "gru" else F.rnn_sequence
    with mg.profile.count_flops() as fc:
        hs, _ = fn(gx, h0, w_hh)
        hs.sum().backward()
    fwd = T * 2 * B * H * gates * H                  # h_{t-1} W_hhᵀ per step
    assert fc.forward == fwd and fc.forward_products == T
    assert fc.backward == 2 * fwd and fc.backward_products == T + 1


def test_higher_order_products_count_as_backward():
    x = _randn(3, 4, requires_grad=True)
    w = _randn(5, 4, requires_grad=True)
    with mg.profile.count_flops() as fc:
        y = F.linear(x, w).tanh().sum()
        (gx,) = mg.grad(y, x, create_graph=True)     # the fused Linear's composite path, recorded
        forward = fc.forward
        gx.sum().backward()                          # and differentiated again
    assert forward == fc.forward == 2 * 3 * 4 * 5
    assert fc.backward > 0


def test_an_embedding_gradient_is_not_a_product():
    # on the host a small table's scatter-add is done as a one-hot product (backend);
    # it is an addition, not one of the model's products
    w = _randn(10, 4, requires_grad=True)
    idx = mg.tensor([[1, 2, 2], [0, 9, 1]])
    with mg.profile.count_flops() as fc:
        F.embedding(idx, w).sum().backward()
    assert (fc.forward, fc.backward, fc.products) == (0, 0, 0)


def test_repr_names_the_counts():
    with mg.profile.count_flops() as fc:
        _randn(3, 4) @ _randn(4, 5)
    assert "forward=120" in repr(fc) and "products=1" in repr(fc)
