"""Recurrent layers: RNNCell, LSTMCell, GRUCell and the sequence layers RNN,
LSTM, GRU.

Each cell is compared with a direct NumPy transcription of its equations
(PyTorch's, gate order included) and passes the layer test kit (gradients
w.r.t. inputs, state and parameters, first and second order, on cpu and the
fake device; parity; state_dict; train/eval; dtypes). The sequence layers are
compared with the same transcriptions run step by step, layer by layer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from lmroad.layers import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from minigrad.testing import tolerance
from minigrad.testing.layer_kit import check_layer

devices = pytest.mark.parametrize("device", ["cpu", "fake"])
CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
kinds = pytest.mark.parametrize("kind", list(CELLS))


def randn(*shape, seed=0, dtype="float64", device="cpu"):
    return mg.tensor(np.random.default_rng(seed).standard_normal(shape), dtype=dtype, device=device)


# --------------------------------------------------------------------------- NumPy transcriptions

def _sigmoid(u):
    return 1 / (1 + np.exp(-u))


def _params(cell):
    g = lambda p: None if p is None else p.numpy().astype(np.float64)  # noqa: E731
    return g(cell.weight_ih), g(cell.weight_hh), g(cell.bias_ih), g(cell.bias_hh)


def np_cell(kind, cell, x, state):
    """One step of ``cell``'s equations in NumPy (float64), as written in the docstrings."""
    w_ih, w_hh, b_ih, b_hh = _params(cell)
    b_ih = 0 if b_ih is None else b_ih
    b_hh = 0 if b_hh is None else b_hh
    h = state[0] if kind == "lstm" else state
    gi = x @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    H = h.shape[-1]
    if kind == "rnn":
        pre = gi + gh
        return np.tanh(pre) if cell.nonlinearity == "tanh" else np.maximum(pre, 0)
    if kind == "lstm":
        c = state[1]
        a = gi + gh
        i, f, g, o = (a[..., k * H:(k + 1) * H] for k in range(4))
        c2 = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        return _sigmoid(o) * np.tanh(c2), c2
    r = _sigmoid(gi[..., :H] + gh[..., :H])
    z = _sigmoid(gi[..., H:2 * H] + gh[..., H:2 * H])
    n = np.tanh(gi[..., 2 * H:] + r * gh[..., 2 * H:])
    return (1 - z) * n + z * h


def np_sequence(kind, layer, x, state=None):
    """The sequence layer, transcribed: time-major x (T, B, I), layer by layer (no dropout)."""
    T, B = x.shape[:2]
    H, L = layer.hidden_size, layer.num_layers
    if state is None:
        zeros = np.zeros((L, B, H))
        state = (zeros, zeros) if kind == "lstm" else zeros
    finals, y = [], x
    for k, cell in enumerate(layer.cells):
        s = (state[0][k], state[1][k]) if kind == "lstm" else state[k]
        outs = []
        for t in range(T):
            s = np_cell(kind, cell, y[t], s)
            outs.append(s[0] if kind == "lstm" else s)
        finals.append(s)
        y = np.stack(outs) if T else np.zeros((0, B, H))
    if kind == "lstm":
        return y, (np.stack([f[0] for f in finals]), np.stack([f[1] for f in finals]))
    return y, np.stack(finals)


def np_of(state):
    return tuple(s.numpy() for s in state) if isinstance(state, tuple) else state.numpy()


def zero_or_random_state(kind, shape, given_state, seed, device="cpu", dtype="float64"):
    if not given_state:
        return None
    if kind == "lstm":
        return (randn(*shape, seed=seed, device=device, dtype=dtype),
                randn(*shape, seed=seed + 1, device=device, dtype=dtype))
    return randn(*shape, seed=seed, device=device, dtype=dtype)


def assert_close(a, b, tol):
    if isinstance(a, tuple):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, **tol)
    else:
        np.testing.assert_allclose(a, b, **tol)


# =========================================================================== cells

@kinds
@devices
@given(B=st.sampled_from([None, 1, 3]), I=st.integers(1, 3), H=st.integers(1, 4),
       bias=st.booleans(), given_state=st.booleans(), relu=st.booleans(), seed=st.integers(0, 99))
def test_cell_matches_numpy_transcription(kind, device, B, I, H, bias, given_state, relu, seed):
    kw = {"nonlinearity": "relu" if relu else "tanh"} if kind == "rnn" else {}
    cell = CELLS[kind](I, H, bias=bias, **kw).to(device)
    batch = () if B is None else (B,)
    x = randn(*batch, I, seed=seed, device=device, dtype="float32")
    state = zero_or_random_state(kind, batch + (H,), given_state, seed + 1, device, "float32")
    out = cell(x, state)
    np_state = np_of(state) if state is not None else (
        (np.zeros(batch + (H,)),) * 2 if kind == "lstm" else np.zeros(batch + (H,)))
    ref = np_cell(kind, cell, x.numpy().astype(np.float64), np_state)
    assert_close(np_of(out), ref, tolerance(np.float32))


@given(B=st.integers(1, 2), I=st.integers(1, 2), H=st.integers(1, 2), bias=st.booleans(),
       given_state=st.booleans())
def test_gru_cell_passes_the_layer_kit(B, I, H, bias, given_state):
    state = zero_or_random_state("gru", (B, H), given_state, seed=1)
    check_layer(lambda: GRUCell(I, H, bias=bias), (randn(B, I), state), gradgradcheck=True)


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
@given(B=st.sampled_from([None, 1, 2]), I=st.integers(1, 2), H=st.integers(1, 2),
       given_state=st.booleans())
def test_rnn_and_lstm_cells_pass_the_layer_kit(kind, B, I, H, given_state):
    batch = () if B is None else (B,)
    state = zero_or_random_state(kind, batch + (H,), given_state, seed=1)
    check_layer(lambda: CELLS[kind](I, H), (randn(*batch, I), state), gradgradcheck=H == 1)


@kinds
def test_cell_parameters_have_pytorchs_names_shapes_and_init(kind):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    cell = CELLS[kind](30, 25)
    shapes = {k: v.shape for k, v in cell.state_dict().items()}
    assert shapes == {"weight_ih": (G * 25, 30), "weight_hh": (G * 25, 25),
                      "bias_ih": (G * 25,), "bias_hh": (G * 25,)}
    bound = 1 / math.sqrt(25)
    for p in cell.parameters():
        assert np.abs(p.numpy()).max() <= bound and np.abs(p.numpy()).max() > 0.9 * bound
    assert list(CELLS[kind](3, 2, bias=False).state_dict()) == ["weight_ih", "weight_hh"]


def test_lstm_forget_bias_initialises_the_f_slice_of_bias_ih():
    H = 5
    cell = LSTMCell(3, H, forget_bias=1.0)
    b = cell.bias_ih.numpy()
    np.testing.assert_array_equal(b[H:2 * H], 1.0)
    assert np.abs(np.delete(b, np.s_[H:2 * H])).max() <= 1 / math.sqrt(H)
    assert np.abs(cell.bias_hh.numpy()).max() <= 1 / math.sqrt(H)
    cell.reset_parameters()
    np.testing.assert_array_equal(cell.bias_ih.numpy()[H:2 * H], 1.0)
    lstm = LSTM(3, H, num_layers=2, forget_bias=2.0)
    for c in lstm.cells:
        np.testing.assert_array_equal(c.bias_ih.numpy()[H:2 * H], 2.0)
    with pytest.raises(ValueError, match="forget_bias=1.0 needs bias=True"):
        LSTMCell(3, H, bias=False, forget_bias=1.0)


def test_cell_errors_name_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match=r"LSTMCell\(input_size=8, hidden_size=4\): input has 5 "
                                         r"features \(shape \(3, 5\)\), expected \(B, 8\) or \(8,\)"):
        LSTMCell(8, 4)(mg.zeros(3, 5))
    with pytest.raises(ValueError, match=r"GRUCell\(input_size=2, hidden_size=4\): input has shape "
                                         r"\(1, 3, 2\), expected \(B, 2\) or \(2,\)"):
        GRUCell(2, 4)(mg.zeros(1, 3, 2))
    with pytest.raises(ValueError, match=r"RNNCell\(input_size=2, hidden_size=4\): state h has shape "
                                         r"\(3, 5\), expected \(3, 4\)"):
        RNNCell(2, 4)(mg.zeros(3, 2), mg.zeros(3, 5))
    with pytest.raises(ValueError, match=r"state c has shape \(2, 4\), expected \(3, 4\)"):
        LSTMCell(2, 4)(mg.zeros(3, 2), (mg.zeros(3, 4), mg.zeros(2, 4)))
    with pytest.raises(TypeError, match=r"LSTMCell\(.*\): state must be a tuple \(h, c\)"):
        LSTMCell(2, 4)(mg.zeros(3, 2), mg.zeros(3, 4))
    with pytest.raises(TypeError, match=r"GRUCell\(.*\): state must be a tensor h"):
        GRUCell(2, 4)(mg.zeros(3, 2), (mg.zeros(3, 4),))
    with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
        RNNCell(2, 4, nonlinearity="sigmoid")
    with pytest.raises(TypeError, match="input must be floating point"):
        RNNCell(2, 4)(mg.tensor([[1, 2]]))


# =========================================================================== sequence layers

@kinds
@devices
@given(T=st.integers(0, 3), B=st.integers(1, 2), I=st.integers(1, 3), H=st.integers(1, 3),
       L=st.integers(1, 2), batch_first=st.booleans(), bias=st.booleans(),
       given_state=st.booleans(), seed=st.integers(0, 99))
def test_sequence_layer_matches_numpy_transcription(kind, device, T, B, I, H, L, batch_first, bias,
                                                    given_state, seed):
    layer = LAYERS[kind](I, H, num_layers=L, bias=bias, batch_first=batch_first).to(device)
    x = randn(T, B, I, seed=seed, dtype="float32")
    state = zero_or_random_state(kind, (L, B, H), given_state, seed + 1, device, "float32")
    x_in = x.to(device).swapaxes(0, 1) if batch_first else x.to(device)
    out, final = layer(x_in, state)
    ref_out, ref_final = np_sequence(kind, layer, x.numpy().astype(np.float64),
                                     None if state is None else np_of(state))
    assert out.shape == ((B, T, H) if batch_first else (T, B, H))
    got = out.numpy().swapaxes(0, 1) if batch_first else out.numpy()
    tol = tolerance(np.float32)
    np.testing.assert_allclose(got, ref_out, **tol)
    assert_close(np_of(final), ref_final, tol)


@kinds
@given(T=st.integers(1, 3), B=st.sampled_from([None, 1, 2]), I=st.integers(1, 2), H=st.integers(1, 2),
       L=st.integers(1, 2), dropout=st.sampled_from([0.0, 0.5]), given_state=st.booleans(),
       batch_first=st.booleans())
def test_sequence_layer_passes_the_layer_kit(kind, T, B, I, H, L, dropout, given_state, batch_first):
    batch = () if B is None else (B,)
    x = randn(*((B, T) if batch_first and B else (T,) + batch), I)
    state = zero_or_random_state(kind, (L,) + batch + (H,), given_state, seed=1)
    check_layer(lambda: LAYERS[kind](I, H, num_layers=L, dropout=dropout, batch_first=batch_first),
                (x, state), fast_mode=L > 1)


@kinds
def test_sequence_layer_second_derivatives(kind):
    """Through two layers and two steps, with dropout between the layers (pinned mask)."""
    check_layer(lambda: LAYERS[kind](1, 1, num_layers=2, dropout=0.5), (randn(2, 1, 1),),
                checks=("gradcheck",), gradgradcheck=True)


@kinds
@pytest.mark.parametrize("batch_first", [False, True])
def test_zero_length_sequence_returns_the_initial_state_and_an_empty_output(kind, batch_first):
    layer = LAYERS[kind](3, 4, num_layers=2, batch_first=batch_first)
    x = mg.zeros(2, 0, 3) if batch_first else mg.zeros(0, 2, 3)
    out, final = layer(x)
    assert out.shape == ((2, 0, 4) if batch_first else (0, 2, 4)) and out.dtype == mg.float32
    for s in (final if kind == "lstm" else (final,)):
        assert s.shape == (2, 2, 4) and not s.numpy().any()
    state = zero_or_random_state(kind, (2, 2, 4), True, seed=3, dtype="float32")
    _, final = layer(x, state)
    assert final is state


@kinds
@given(T=st.integers(1, 4), L=st.integers(1, 2), split=st.integers(0, 4))
def test_running_in_two_windows_with_the_carried_state_equals_one_run(kind, T, L, split):
    """What truncated backpropagation through time relies on."""
    split = min(split, T)
    layer = LAYERS[kind](2, 3, num_layers=L).to(dtype="float64")
    x = randn(T, 2, 2)
    full, full_final = layer(x)
    a, s = layer(x[:split])
    b, final = layer(x[split:], s)
    np.testing.assert_allclose(mg.concatenate([a, b]).numpy(), full.numpy(), rtol=1e-12, atol=1e-12)
    assert_close(np_of(final), np_of(full_final), dict(rtol=1e-12, atol=1e-12))


@kinds
@given(T=st.integers(1, 4), L=st.integers(1, 3), B=st.sampled_from([None, 2]))
def test_step_by_step_equals_the_whole_sequence(kind, T, L, B):
    layer = LAYERS[kind](2, 3, num_layers=L, dropout=0.5).to(dtype="float64").eval()
    batch = () if B is None else (B,)
    x = randn(T, *batch, 2)
    full, full_final = layer(x)
    state, outs = None, []
    for t in range(T):
        h, state = layer.step(x[t], state)
        outs.append(h)
    np.testing.assert_allclose(mg.stack(outs).numpy(), full.numpy(), rtol=1e-12, atol=1e-12)
    assert_close(np_of(state), np_of(full_final), dict(rtol=1e-12, atol=1e-12))


@kinds
def test_dropout_acts_between_layers_and_only_in_training(kind):
    x = randn(4, 3, 2, dtype="float32")
    one = LAYERS[kind](2, 3, num_layers=1, dropout=0.9)   # nothing between layers: no dropout
    np.testing.assert_array_equal(one(x)[0].numpy(), one.eval()(x)[0].numpy())
    two = LAYERS[kind](2, 3, num_layers=2, dropout=0.5)
    plain = LAYERS[kind](2, 3, num_layers=2)
    plain.load_state_dict(two.state_dict())
    assert not np.allclose(two(x)[0].numpy(), plain(x)[0].numpy())
    np.testing.assert_array_equal(two.eval()(x)[0].numpy(), plain(x)[0].numpy())


@kinds
@pytest.mark.parametrize("bias", [True, False])
def test_pytorch_state_dict_uses_pytorchs_names_and_round_trips(kind, bias):
    G = {"rnn": 1, "lstm": 4, "gru": 3}[kind]
    layer = LAYERS[kind](3, 4, num_layers=2, bias=bias)
    sd = layer.pytorch_state_dict()
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if bias else [])
    assert list(sd) == [f"{n}_l{k}" for k in range(2) for n in names]
    assert sd["weight_ih_l0"].shape == (G * 4, 3) and sd["weight_ih_l1"].shape == (G * 4, 4)
    assert sd["weight_hh_l1"].shape == (G * 4, 4)
    fresh = LAYERS[kind](3, 4, num_layers=2, bias=bias)
    fresh.load_pytorch_state_dict({k: v.numpy() for k, v in sd.items()})
    x = randn(3, 2, 3, dtype="float32")
    np.testing.assert_array_equal(fresh(x)[0].numpy(), layer(x)[0].numpy())
    with pytest.raises(ValueError, match="missing keys: cells.1.weight_hh"):
        fresh.load_pytorch_state_dict({k: v for k, v in sd.items() if k != "weight_hh_l1"})


def test_sequence_layer_errors_name_the_layer_and_the_shapes():
    lstm = LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match=r"LSTM\(input_size=3, hidden_size=4, num_layers=2\): input "
                                         r"has 5 features \(shape \(6, 2, 5\)\), expected "
                                         r"\(T, B, 3\) or \(T, 3\)"):
        lstm(mg.zeros(6, 2, 5))
    with pytest.raises(ValueError, match=r"expected \(B, T, 3\)"):
        GRU(3, 4, batch_first=True)(mg.zeros(6, 2, 5))
    with pytest.raises(ValueError, match=r"input has shape \(3,\)"):
        RNN(3, 4)(mg.zeros(3))
    with pytest.raises(ValueError, match=r"state h has shape \(1, 2, 4\), expected \(2, 2, 4\) "
                                         r"\(num_layers, batch, hidden_size\)"):
        lstm(mg.zeros(6, 2, 3), (mg.zeros(1, 2, 4), mg.zeros(1, 2, 4)))
    with pytest.raises(TypeError, match=r"state must be a tuple \(h, c\) of shape \(2, 2, 4\)"):
        lstm(mg.zeros(6, 2, 3), mg.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="dropout must be a probability"):
        RNN(3, 4, dropout=-0.1)
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        GRU(3, 4, num_layers=0)


@devices
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("make", [lambda bf: LSTM(3, 4, num_layers=2, batch_first=bf),
                                  lambda bf: GRU(3, 4, num_layers=2, batch_first=bf),
                                  lambda bf: RNN(3, 4, num_layers=2, batch_first=bf),
                                  lambda bf: RNN(3, 4, num_layers=2, batch_first=bf, nonlinearity="relu")],
                         ids=["lstm", "gru", "rnn", "rnn-relu"])
def test_the_fused_sequence_equals_the_step_by_step_graph(device, batch_first, make):
    """Each layer runs its recurrence as one fused node (F.lstm_sequence, F.gru_sequence,
    F.rnn_sequence); turned off, it steps the cell. Same outputs, final state and
    gradients, in float64."""
    results, ops = [], []
    for fused in (True, False):
        mg.manual_seed(3)
        layer = make(batch_first).to(device).to(mg.float64)
        for cell in layer.cells:
            cell.fused_sequence = fused
        x = mg.randn(2, 5, 3, dtype=mg.float64, device=device, requires_grad=True)
        y, state = layer(x)
        states = state if isinstance(state, tuple) else (state,)
        gy = mg.tensor(np.linspace(-1, 1, y.size).reshape(y.shape), device=device)
        loss = (y * gy).sum() + (states[0] * states[0]).sum() + sum(s.sum() for s in states[1:])
        ops.append(_op_names(loss))
        loss.backward()
        results.append([y.numpy(), *(s.numpy() for s in states), x.grad.numpy()]
                       + [p.grad.numpy() for p in layer.parameters()])
    sequence_op = {LSTM: "lstm_sequence", GRU: "gru_sequence", RNN: "rnn_sequence"}[type(layer)]
    assert sequence_op in ops[0] and sequence_op not in ops[1]
    for fused, stepped in zip(*results):
        np.testing.assert_allclose(fused, stepped, rtol=1e-10, atol=1e-12)


def _op_names(root) -> set[str]:
    """The names of the ops in the graph behind ``root``."""
    names, stack, seen = set(), [root], set()
    while stack:
        t = stack.pop()
        if id(t) not in seen and t.grad_fn is not None:
            seen.add(id(t))
            names.add(t.grad_fn.name())
            stack.extend(t.grad_fn.inputs)
    return names


def test_a_state_probe_still_sees_every_lstm_step():
    from lmroad.experiments.probes import record_states
    layer = LSTM(3, 4)
    with record_states(layer.cells[0]) as hs:
        y, _ = layer(mg.randn(6, 2, 3))
    assert len(hs) == 6 and all(h.shape == (2, 4) for h in hs)
    assert layer.cells[0].fused_sequence                   # restored afterwards


def test_an_lstm_cell_subclass_that_changes_the_step_is_stepped_not_fused():
    calls = []

    class CountingCell(LSTMCell):
        def recurrence(self, gx, state):
            calls.append(gx.shape)
            return super().recurrence(gx, state)

    class CountingLSTM(LSTM):
        cell_class = CountingCell

    CountingLSTM(3, 4)(mg.randn(5, 2, 3))
    assert len(calls) == 5
