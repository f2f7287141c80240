"""Whole language models against finite differences, end to end.

Each layer is gradchecked on its own by the layer test kit; this checks what
they do together: the loss of a whole model (embedding, the recurrent core or
the Transformer blocks, the head, the cross-entropy with an ignored target)
differentiated with respect to every parameter at once, and for the recurrent
models with respect to the initial state as well, by ``minigrad.gradcheck`` in
fast mode (one random direction per tensor). The parameters become arguments
of the checked function through ``bound_parameters``, as in the layer kit.

Each model kind and each of its code paths is a case: the plain RNN (and with
tied weights), the LSTM's fused whole-sequence node and its step-by-step
cells, the GRU, the Transformer's fused attention node (dropout 0) and, with
dropout masks pinned by the seed, its composite attention. The n-gram model
has no gradient. Parameters are redrawn N(0, 0.5²) rather than left at the
models' small initialisations, so that every gradient stands far above the
tolerances; the negative controls break one op's backward by 1% (or make it
non-differentiable) and expect the check to fail, so it is known to bite.

Second order (``create_graph=True``) runs each op's differentiable backward,
not the fast one gradcheck sees; it is checked on one-layer models over three
steps, because that path costs far more (see the agreement test below).
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from lmroad.models import GRULM, LSTMLM, RNNLM, TransformerLM
from minigrad import nn
from minigrad.gradcheck import GradcheckError
from minigrad.ops.attention import Attention
from minigrad.ops.linalg import Linear
from minigrad.ops.recurrent import GRUCellUpdate, GRUSequence, LSTMSequence, RNNSequence
from minigrad.testing.layer_kit import bound_parameters

V, B = 7, 2                 # vocabulary, batch

# float64 and eps = 1e-6: central differences err by about eps² |f'''| + 1e-16 |f| / eps, near
# 1e-10 here, so these leave two orders of magnitude of room and still see a 1e-5 relative error
TOL = dict(eps=1e-6, atol=1e-8, rtol=1e-5)


def _stepped(model):
    """The recurrence run cell by cell: the probe switch that turns the fused sequence node off."""
    for cell in model.core.cells:
        cell.fused_sequence = False
    return model


# name -> (factory(layers), train mode, an op the graph must hold, an op it must not)
CASES = {
    "rnn": (lambda L: RNNLM(V, n_embd=5, hidden_size=6, num_layers=L), False,
            "rnn_sequence", "tanh"),
    "rnn-stepped": (lambda L: _stepped(RNNLM(V, n_embd=5, hidden_size=6, num_layers=L)), False,
                    "tanh", "rnn_sequence"),
    "rnn-tied": (lambda L: RNNLM(V, n_embd=6, hidden_size=6, num_layers=L, tie_weights=True),
                 False, "rnn_sequence", None),
    "lstm-fused": (lambda L: LSTMLM(V, n_embd=5, hidden_size=4, num_layers=L), False,
                   "lstm_sequence", "lstm_cell"),
    "lstm-stepped": (lambda L: _stepped(LSTMLM(V, n_embd=5, hidden_size=4, num_layers=L)), False,
                     "lstm_cell", "lstm_sequence"),
    "lstm-dropout": (lambda L: LSTMLM(V, n_embd=5, hidden_size=4, num_layers=L, dropout=0.25),
                     True, "lstm_sequence", None),
    "gru": (lambda L: GRULM(V, n_embd=5, hidden_size=4, num_layers=L), False,
            "gru_sequence", "gru_cell"),
    "gru-stepped": (lambda L: _stepped(GRULM(V, n_embd=5, hidden_size=4, num_layers=L)), False,
                    "gru_cell", "gru_sequence"),
    "transformer": (lambda L: TransformerLM(V, n_layer=L, n_head=2, n_embd=8, block_size=8), False,
                    "scaled_dot_product_attention", "softmax"),
    "transformer-lean": (lambda L: TransformerLM(V, n_layer=L, n_head=2, n_embd=4, block_size=6,
                                                 bias=False, activation="gelu"), False,
                         "scaled_dot_product_attention", None),
    "transformer-dropout": (lambda L: TransformerLM(V, n_layer=L, n_head=2, n_embd=8, block_size=8,
                                                    dropout=0.2), True,
                            "softmax", "scaled_dot_product_attention"),
}


def build(name: str, layers: int = 2):
    factory, train, _, _ = CASES[name]
    mg.manual_seed(0)
    model = factory(layers).to(dtype="float64")
    model.train(train)
    for p in model.parameters():
        nn.init.normal_(p, 0.0, 0.5)
    return model


def data(T: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    idx = mg.tensor(rng.integers(0, V, (B, T)))
    targets = rng.integers(0, V, (B, T))
    targets[0, 1] = -100                    # an ignored position: the mean is over the others
    return idx, mg.tensor(targets)


def initial_state(model, seed: int = 1) -> tuple:
    """A random (nonzero) initial state of a recurrent model, (h,) or (h, c); () otherwise."""
    if not isinstance(model, RNNLM):
        return ()
    rng = np.random.default_rng(seed)
    shape = (model.config.num_layers, B, model.config.hidden_size)
    n = 2 if model.config.cell == "lstm" else 1
    return tuple(mg.tensor(rng.normal(0, 0.5, shape), requires_grad=True) for _ in range(n))


def loss_of(model, idx, targets):
    """(fn, inputs): ``fn(*parameters, *state)`` is the model's loss, ``inputs`` copies of the
    current values. The seed is set before each forward, so dropout draws the same masks."""
    params = list(model.parameters())
    state = initial_state(model)
    n = len(params)

    def fn(*values):
        s = values[n:]
        kwargs = {"state": s[0] if len(s) == 1 else tuple(s)} if s else {}
        mg.manual_seed(7)
        with bound_parameters(model, values[:n]):
            _, loss = model(idx, targets, **kwargs)
        return loss

    inputs = tuple(mg.tensor(p.data.copy(), requires_grad=True) for p in params) + state
    return fn, inputs


def input_names(model, inputs) -> list[str]:
    names = [n for n, _ in model.named_parameters()]
    return names + [f"state[{i}]" for i in range(len(inputs) - len(names))]


def op_names(root) -> set[str]:
    names, stack, seen = set(), [root], set()
    while stack:
        t = stack.pop()
        if id(t) in seen or t.grad_fn is None:
            continue
        seen.add(id(t))
        names.add(t.grad_fn.name())
        stack.extend(t.grad_fn.inputs)
    return names


# --------------------------------------------------------------------------- first order

@pytest.mark.parametrize("name", CASES)
def test_whole_model_gradients_match_finite_differences(name):
    model = build(name)
    fn, inputs = loss_of(model, *data())
    _, _, present, absent = CASES[name]
    loss = fn(*inputs)
    ops = op_names(loss)
    assert present in ops and (absent is None or absent not in ops), sorted(ops)   # the path
    if model.training:      # the dropout cases: the masks do change the loss
        model.eval()
        assert abs(fn(*inputs).item() - loss.item()) > 1e-3
        model.train()
    # every parameter (and the state) reaches the loss through the binding, with a gradient
    # well above the tolerances, so that the check cannot pass vacuously
    grads = mg.grad(loss, list(inputs), allow_unused=True)
    weak = [n for n, g in zip(input_names(model, inputs), grads)
            if g is None or float(np.abs(g.numpy()).max()) < 1e-4]
    assert not weak, f"{name}: no useful gradient for {weak}"
    assert mg.gradcheck(fn, inputs, fast_mode=True, **TOL)


# --------------------------------------------------------------------------- second order

# Each fused op's differentiable backward (minigrad/ops/linalg.py, _vjp_of) differentiates its
# composite reference on the op's real inputs. That walk must stop at them (autograd.vjp):
# when it went on up the graph, a tensor both an input of the op and upstream of another of
# its inputs (a recurrent weight used at every step, a tied embedding) had the upstream path
# counted twice, and each fused op upstream ran the same walk again (time exponential in the
# number of chained fused ops: a 2-layer GRU over 4 steps took minutes). Two layers and four
# steps here, so both the values and the time would show it again.
AGREE = list(CASES)


@pytest.mark.parametrize("name", AGREE)
def test_differentiable_backward_agrees_with_the_fast_one(name):
    """gradcheck sees the engine's first-order path (each op's backward_raw); create_graph=True
    runs each op's differentiable backward instead: both must give the same gradient."""
    model = build(name, layers=2)
    fn, inputs = loss_of(model, *data(T=4))
    fast = mg.grad(fn(*inputs), list(inputs))
    graph = mg.grad(fn(*inputs), list(inputs), create_graph=True)
    wrong = [n for n, a, b in zip(input_names(model, inputs), fast, graph)
             if not np.allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)]
    assert not wrong, f"{name}: create_graph=True gives other gradients for {wrong}"


@pytest.mark.parametrize("name", ["lstm-fused", "transformer-lean"])
def test_whole_model_second_derivatives_match_finite_differences(name):
    """gradgradcheck compares the derivative of the create_graph=True gradient with finite
    differences of that same gradient, so it cannot see a wrong value of it (the agreement
    test above does): it passed for transformer-lean in spite of the old _vjp_of bug."""
    model = build(name, layers=1)
    fn, inputs = loss_of(model, *data(T=3))
    assert mg.gradgradcheck(fn, inputs, fast_mode=True, **TOL)


# --------------------------------------------------------------------------- negative controls

def wrong_by_one_percent(op: type, k: int) -> type:
    """``op`` with the gradient of its input ``k`` 1% too large (on the first-order path)."""
    class Wrong(op):
        def backward_raw(self, g):
            grads = list(op.backward_raw(self, g))
            grads[k] = grads[k] * 1.01
            return grads
    return Wrong


# the failure names the first input (in parameter order) that the wrong gradient reaches
@pytest.mark.parametrize("name, op, k, first_reached", [
    ("lstm-fused", LSTMSequence, 3, "core.cells.0.weight_hh"),   # (gx, h0, c0, W_hh, b_hh): a leaf
    ("rnn", Linear, 2, "core.cells.0.bias_ih"),                  # (x, W, b): every bias, leaves
    ("gru", GRUSequence, 0, "embedding.weight"),                 # (gx, h0, W_hh, b_hh): upstream
    ("gru-stepped", GRUCellUpdate, 2, "embedding.weight"),       # (gx, gh, h): all upstream
    ("rnn", RNNSequence, 2, "core.cells.0.weight_hh"),           # (gx, h0, W_hh, b_hh): a leaf
    ("rnn-stepped", Linear, 2, "core.cells.0.bias_ih"),
    ("transformer", Attention, 1, "wte.weight"),                 # (q, k, v): all upstream
])
def test_gradcheck_catches_a_one_percent_error_in_one_op(monkeypatch, name, op, k, first_reached):
    model = build(name)
    monkeypatch.setattr(F, op.__name__, wrong_by_one_percent(op, k))
    fn, inputs = loss_of(model, *data())
    with pytest.raises(GradcheckError, match=r"input \d+ ") as err:
        mg.gradcheck(fn, inputs, fast_mode=True, **TOL)
    failed = int(str(err.value).split("input ")[1].split(" ")[0])
    assert input_names(model, inputs)[failed] == first_reached, str(err.value)


def treating_input_as_constant(op: type, k: int) -> type:
    """``op`` whose differentiable backward gives the right values but takes input ``k`` as a
    constant (a backward that read ``.data``): its own derivative with respect to it is lost."""
    class Wrong(op):
        def backward(self, g):
            real = self.inputs
            self.inputs = tuple(mg.tensor(t.data, requires_grad=True) if i == k else t
                                for i, t in enumerate(real))
            try:
                return op.backward(self, g)
            finally:
                self.inputs = real
    return Wrong


def test_gradgradcheck_catches_a_backward_that_is_not_differentiable(monkeypatch):
    model = build("lstm-fused", layers=1)
    monkeypatch.setattr(F, "Linear", treating_input_as_constant(Linear, 1))    # W in dx = G W
    fn, inputs = loss_of(model, *data(T=3))
    assert mg.gradcheck(fn, inputs, fast_mode=True, **TOL)      # first order is untouched
    with pytest.raises(GradcheckError):
        mg.gradgradcheck(fn, inputs, fast_mode=True, **TOL)
