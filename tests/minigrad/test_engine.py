"""The engine: graph traversal, accumulation, freeing, higher order, hooks."""

import pytest

import minigrad as mg


def test_reused_tensor_accumulates_gradient():
    x = mg.tensor([1.0, -2.0], requires_grad=True)
    y = (x * x + x * 3.0).sum()   # dy/dx = 2x + 3
    y.backward()
    assert x.grad.tolist() == [5.0, -1.0]


def test_deep_chain_has_no_recursion_limit():
    x = mg.tensor(2.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.backward()
    assert x.grad.item() == 1.0


def test_second_backward_without_retain_graph_is_a_clear_error():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp()).sum()
    y.backward()
    with pytest.raises(mg.GraphError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_second_backward_and_accumulates():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert x.grad.tolist() == [4.0, 8.0]


def test_non_scalar_backward_needs_gradient():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(mg.GraphError, match="scalar"):
        (x * 2.0).backward()


def test_hessian_vector_product():
    x = mg.tensor([1.0, 2.0, 3.0], dtype="float64", requires_grad=True)
    v = mg.tensor([0.5, -1.0, 2.0], dtype="float64")
    (g,) = mg.grad((x ** 3).sum(), x, create_graph=True)   # 3x²
    (hv,) = mg.grad((g * v).sum(), x)                       # 6x ⊙ v
    assert hv.tolist() == pytest.approx([3.0, -12.0, 36.0])


def test_int_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating"):
        mg.tensor([1, 2], requires_grad=True)


def test_no_grad_records_nothing_and_works_as_decorator():
    x = mg.tensor([1.0], requires_grad=True)
    with mg.no_grad():
        assert not (x * 2.0).requires_grad

    @mg.no_grad()
    def f(t):
        return t * 2.0

    assert not f(x).requires_grad
    assert (x * 2.0).requires_grad


def test_hook_can_replace_gradient():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    y.register_hook(lambda g: g * 0.0 + 1.0)
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_detect_anomaly_names_op_and_user_line():
    x = mg.tensor([-1.0, 1.0], requires_grad=True)
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError, match=r"(?s)sqrt.*test_engine\.py"):
        x.sqrt()


def test_scalar_keeps_float32():
    x = mg.ones(3)
    assert (x * 0.5 + 1).dtype == mg.float32
    assert (2.0 / x).dtype == mg.float32
