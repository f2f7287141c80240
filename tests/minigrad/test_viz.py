"""minigrad.viz.to_dot: the graph as DOT text, and with ``grads=True`` the norm of the
gradient at every tensor, intermediate ones included, equal to what minigrad.grad gives."""

from __future__ import annotations

import re

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from lmroad.models import LSTMLM
from minigrad.errors import GraphError

BOX = re.compile(r'^  t(\d+) \[shape=box[^\]]*label="([^"]*)"\];$', re.M)
GRAD = re.compile(r"\|grad\| = ([-+0-9.e]+|nan|inf)")


def rand(*shape, seed=0, requires_grad=True):
    return mg.tensor(np.random.default_rng(seed).normal(size=shape), requires_grad=requires_grad)


def graph_tensors(root) -> dict[int, mg.Tensor]:
    """Every tensor of root's graph by id, found through the public grad_fn / inputs."""
    out, stack = {}, [root]
    while stack:
        t = stack.pop()
        if id(t) in out:
            continue
        out[id(t)] = t
        if t.grad_fn is not None:
            stack.extend(t.grad_fn.inputs)
    return out


def boxes(dot: str) -> dict[int, str]:
    return {int(i): label for i, label in BOX.findall(dot)}


def shown_norms(dot: str) -> dict[int, float]:
    return {i: float(m.group(1)) for i, label in boxes(dot).items() if (m := GRAD.search(label))}


def mlp():
    """x -> tanh(x W1 + b1) -> (W2 used twice: a W2 + tanh(a W2)) -> cross-entropy."""
    x = rand(4, 3, seed=1, requires_grad=False)
    w1, b1, w2 = rand(3, 5, seed=2), rand(5, seed=3), rand(5, 5, seed=4)
    a = (x @ w1 + b1).tanh()                                       # (4, 5)
    logits = a @ w2 + (a @ w2).tanh()
    loss = F.cross_entropy(logits, mg.tensor([0, 1, 4, 2]))
    return loss, {"w1": w1, "b1": b1, "w2": w2}


def lstm_lm():
    mg.manual_seed(0)
    model = LSTMLM(vocab_size=6, n_embd=4, hidden_size=4, num_layers=2, tie_weights=True)
    model.to(dtype="float64")
    rng = np.random.default_rng(0)
    _, loss = model(mg.tensor(rng.integers(0, 6, (2, 3))), mg.tensor(rng.integers(0, 6, (2, 3))))
    return loss, dict(model.named_parameters())


@pytest.mark.parametrize("make", [mlp, lstm_lm], ids=["mlp", "lstm"])
def test_every_tensor_that_requires_grad_shows_the_norm_of_its_gradient(make):
    loss, params = make()
    tensors = graph_tensors(loss)
    dot = mg.viz.to_dot(loss, params=params, grads=True)
    assert set(boxes(dot)) == set(tensors)                  # every tensor is drawn, once
    shown = shown_norms(dot)
    assert set(shown) == {i for i, t in tensors.items() if t.requires_grad}
    assert len(shown) > len(params)                         # intermediates, not only leaves
    for i, n in shown.items():
        (g,) = mg.grad(loss, tensors[i], retain_graph=True)  # d loss / d this tensor alone
        assert n == pytest.approx(float(np.linalg.norm(g.numpy())), rel=1e-3, abs=1e-12)
    for name, p in params.items():                          # names label the leaves
        assert boxes(dot)[id(p)].startswith(name)


def test_a_tensor_used_twice_shows_its_total_gradient():
    loss, params = mlp()
    w2 = params["w2"]
    (g,) = mg.grad(loss, w2, retain_graph=True)
    n = shown_norms(mg.viz.to_dot(loss, grads=True))[id(w2)]
    assert n == pytest.approx(float(np.linalg.norm(g.numpy())), rel=1e-3)


def test_grads_leave_dot_grad_and_the_graph_alone():
    loss, params = mlp()
    mg.viz.to_dot(loss, grads=True)
    assert all(p.grad is None for p in params.values())     # nothing accumulated
    loss.backward(retain_graph=True)                        # the graph is still there
    before = {k: p.grad.numpy().copy() for k, p in params.items()}
    dot = mg.viz.to_dot(loss, grads=True)                   # after backward, as a user would
    for k, p in params.items():
        assert np.array_equal(p.grad.numpy(), before[k])
        assert shown_norms(dot)[id(p)] == pytest.approx(float(np.linalg.norm(before[k])), rel=1e-3)


def test_by_default_only_tensors_with_a_grad_show_one():
    loss, params = mlp()
    assert not shown_norms(mg.viz.to_dot(loss))             # before backward: none
    loss.backward(retain_graph=True)
    assert set(shown_norms(mg.viz.to_dot(loss))) == {id(p) for p in params.values()}


def test_data_tensors_show_no_gradient():
    loss, _ = mlp()
    tensors = graph_tensors(loss)
    labels = boxes(mg.viz.to_dot(loss, grads=True))
    data = [i for i, t in tensors.items() if not t.requires_grad]
    assert data and all("grad" not in labels[i] for i in data)   # x and the targets


def test_a_freed_graph_is_an_error_not_a_partial_picture():
    loss, _ = mlp()
    loss.backward()
    with pytest.raises(GraphError, match="retain_graph=True"):
        mg.viz.to_dot(loss)


def test_grads_need_a_scalar_root_that_requires_grad():
    loss, params = mlp()
    with pytest.raises(ValueError, match=r"scalar.*\(5,\)"):
        mg.viz.to_dot(params["b1"] * 2, grads=True)
    with pytest.raises(GraphError, match="does not require grad"):
        mg.viz.to_dot(mg.tensor(1.0), grads=True)


def test_truncated_graphs_say_so_and_draw_no_dangling_edges():
    loss, _ = mlp()
    dot = mg.viz.to_dot(loss, grads=True, max_nodes=3)
    drawn = set(boxes(dot))
    assert len(drawn) == 3 and "graph truncated at 3 tensors" in dot
    assert {int(i) for i in re.findall(r"  t(\d+) -> f", dot)} <= drawn
