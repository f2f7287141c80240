"""The engine: graph traversal, accumulation, freeing, higher order, hooks."""

import numpy as np
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


def test_post_accumulate_grad_hook_sees_the_accumulated_grad_once_per_backward():
    """What DistributedDataParallel needs: the hook runs after .grad holds this pass's sum
    (a tensor used three times: once), with the earlier passes' gradient included."""
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    remove = w.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.tolist()))
    (w * 2.0 + w * w + w).sum().backward()              # d/dw = 2 + 2w + 1
    assert seen == [[5.0, 7.0]]
    (w * 1.0).sum().backward()                          # accumulates: 5 + 1, 7 + 1
    assert seen == [[5.0, 7.0], [6.0, 8.0]]
    mg.grad((w * 1.0).sum(), [w])                       # no accumulation, no hook
    remove()
    (w * 1.0).sum().backward()
    assert len(seen) == 2
    with pytest.raises(mg.GraphError, match="only a leaf tensor that requires grad"):
        (w * 2.0).register_post_accumulate_grad_hook(print)
    with pytest.raises(mg.GraphError, match="only a leaf tensor that requires grad"):
        mg.tensor([1.0]).register_post_accumulate_grad_hook(print)


def test_detect_anomaly_names_op_and_user_line():
    x = mg.tensor([-1.0, 1.0], requires_grad=True)
    with mg.detect_anomaly(), pytest.raises(mg.AnomalyError, match=r"(?s)sqrt.*test_engine\.py"):
        x.sqrt()


def test_scalar_keeps_float32():
    x = mg.ones(3)
    assert (x * 0.5 + 1).dtype == mg.float32
    assert (2.0 / x).dtype == mg.float32


def test_a_fused_ops_differentiable_backward_counts_each_path_once():
    """Linear's create_graph backward differentiates its composite on its real inputs;
    the walk must stop there (autograd.vjp), or w, upstream of the second linear's input
    as well as its weight, gets the path through the first linear twice."""
    import minigrad.functional as F
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.standard_normal((3, 4)), dtype="float64")
    w = mg.tensor(rng.standard_normal((4, 4)), dtype="float64", requires_grad=True)
    b = mg.tensor(rng.standard_normal(4), dtype="float64", requires_grad=True)

    def loss():
        return F.linear(F.linear(x, w, b).tanh(), w, b).sum()
    fast = mg.grad(loss(), [w, b])
    graph = mg.grad(loss(), [w, b], create_graph=True)
    for f, g in zip(fast, graph):
        np.testing.assert_allclose(g.numpy(), f.numpy(), rtol=1e-12)


def test_vjp_takes_each_input_as_independent():
    from minigrad.autograd import vjp
    a = mg.tensor(2.0, dtype="float64", requires_grad=True)
    b = a * 3.0                                     # b depends on a
    y = a * b
    (ga_total,) = mg.grad(y, [a], retain_graph=True)
    ga, gb = vjp(y, [a, b], mg.tensor(1.0, dtype="float64"))
    assert ga_total.item() == 12.0                  # d(3a²)/da
    assert ga.item() == 6.0 and gb.item() == 2.0    # ∂(a b)/∂a = b, ∂/∂b = a


def test_gradgradcheck_refuses_a_backward_that_records_no_graph():
    """A backward returning detached gradients used to pass as "nothing second-order
    to check"; its nonzero gradient with create_graph=True must record a graph."""
    class Detached(mg.Function):
        def forward(self, x):
            return x * x

        def backward(self, g):
            return (g * 2.0 * self.inputs[0]).detach()

    x = mg.tensor([0.5, -1.5], dtype="float64", requires_grad=True)
    assert mg.gradcheck(lambda t: Detached.apply(t), (x,))
    with pytest.raises(mg.GradcheckError, match="input 0 .* nonzero but records no graph"):
        mg.gradgradcheck(lambda t: Detached.apply(t), (x,))
    assert mg.gradgradcheck(lambda t: t * 3.0, (x,))          # linear: a graph through v only
