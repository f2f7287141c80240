"""The simple layers: Linear, Embedding, LayerNorm, Dropout, FeedForward and
the positional embeddings. Every layer passes the layer test kit
(``minigrad.testing.layer_kit.check_layer``: gradients w.r.t. inputs and parameters,
device parity, state_dict round trip, train/eval, dtypes) over hypothesis-drawn
sizes, and its forward matches a NumPy transcription of its equation.
Recurrent layers: test_recurrent.py; attention and blocks: test_attention.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from lmroad.layers import (
    Dropout,
    Embedding,
    FeedForward,
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    SinusoidalPositionalEmbedding,
)
from minigrad.testing import tolerance
from minigrad.testing.layer_kit import check_layer

devices = pytest.mark.parametrize("device", ["cpu", "fake"])
batch_shapes = st.sampled_from([(), (1,), (2,), (2, 3)])


def randn(*shape, seed=0, dtype="float64", device="cpu"):
    return mg.tensor(np.random.default_rng(seed).standard_normal(shape), dtype=dtype, device=device)


# =========================================================================== Linear

@given(n_in=st.integers(1, 3), n_out=st.integers(1, 3), batch=batch_shapes, bias=st.booleans())
def test_linear_passes_the_layer_kit(n_in, n_out, batch, bias):
    check_layer(lambda: Linear(n_in, n_out, bias=bias), (randn(*batch, n_in),), gradgradcheck=True)


@devices
@given(n_in=st.integers(1, 4), n_out=st.integers(1, 4), batch=batch_shapes)
def test_linear_matches_numpy(device, n_in, n_out, batch):
    layer = Linear(n_in, n_out).to(device)
    x = randn(*batch, n_in, dtype="float32", device=device)
    w, b = layer.weight.numpy(), layer.bias.numpy()
    np.testing.assert_allclose(layer(x).numpy(), x.numpy() @ w.T + b, **tolerance(np.float32))


def test_linear_initialisation_is_pytorchs_uniform_bound():
    layer = Linear(100, 400)
    bound = 1 / math.sqrt(100)
    for p in (layer.weight, layer.bias):
        a = p.numpy()
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.95 * bound
        assert abs(a.mean()) < 0.1 * bound
    assert layer.weight.shape == (400, 100) and layer.bias.shape == (400,)
    assert Linear(3, 2, bias=False).bias is None
    assert list(Linear(3, 2, bias=False).state_dict()) == ["weight"]


def test_linear_rejects_wrong_feature_count_naming_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Linear\(in_features=3\): input has 5 features "
                                         r"\(shape \(2, 5\)\), expected \(\.\.\., 3\)"):
        Linear(3, 2)(mg.zeros(2, 5))
    with pytest.raises(ValueError, match="in_features must be a positive int"):
        Linear(0, 2)
    with pytest.raises(TypeError, match="must be a minigrad Tensor"):
        Linear(3, 2)(np.zeros((2, 3)))


# =========================================================================== Embedding

@given(n=st.integers(1, 4), dim=st.integers(1, 3), shape=st.sampled_from([(1,), (3,), (2, 3)]),
       data=st.data())
def test_embedding_passes_the_layer_kit(n, dim, shape, data):
    idx = data.draw(st.lists(st.integers(0, n - 1), min_size=math.prod(shape),
                             max_size=math.prod(shape)))
    check_layer(lambda: Embedding(n, dim), (mg.tensor(np.array(idx).reshape(shape)),),
                gradgradcheck=True)


@devices
def test_embedding_gathers_rows_and_accumulates_repeated_gradients(device):
    emb = Embedding(5, 3).to(device)
    idx = mg.tensor([[1, 4, 1], [0, 1, 4]], device=device)
    out = emb(idx)
    np.testing.assert_array_equal(out.numpy(), emb.weight.numpy()[idx.numpy()])
    g = np.random.default_rng(0).standard_normal(out.shape).astype(np.float32)
    out.backward(mg.tensor(g, device=device))
    ref = np.zeros((5, 3), np.float32)
    np.add.at(ref, idx.numpy(), g)
    np.testing.assert_allclose(emb.weight.grad.numpy(), ref, **tolerance(np.float32))


def test_embedding_initialisation_is_standard_normal():
    w = Embedding(500, 40).weight.numpy()
    assert abs(w.mean()) < 0.02 and abs(w.std() - 1) < 0.02


@pytest.mark.parametrize("bad", [5, 7, -1])
def test_embedding_index_out_of_range_names_layer_index_and_size(bad):
    with pytest.raises(IndexError, match=rf"Embedding\(num_embeddings=5, embedding_dim=3\): "
                                         rf"index {bad} is out of range for 5 embeddings"):
        Embedding(5, 3)(mg.tensor([0, bad]))


def test_embedding_rejects_float_indices():
    with pytest.raises(TypeError, match=r"Embedding\(.*\): indices must be an integer tensor"):
        Embedding(5, 3)(mg.tensor([0.0, 1.0]))


# =========================================================================== LayerNorm

@given(shape=st.sampled_from([(1, 3), (2, 4), (2, 2, 3)]), affine=st.booleans(),
       two_axes=st.booleans())
def test_layer_norm_passes_the_layer_kit(shape, affine, two_axes):
    ns = shape[-2:] if two_axes and len(shape) > 2 else shape[-1]
    check_layer(lambda: LayerNorm(ns, elementwise_affine=affine), (randn(*shape),),
                gradgradcheck=True)


@devices
@given(shape=st.sampled_from([(3,), (2, 4), (2, 3, 5)]), seed=st.integers(0, 100))
def test_layer_norm_matches_numpy(device, shape, seed):
    ln = LayerNorm(shape[-1]).to(device)
    rng = np.random.default_rng(seed)
    ln.weight.data = ln.weight.xp.asarray(rng.standard_normal(shape[-1]).astype(np.float32))
    ln.bias.data = ln.bias.xp.asarray(rng.standard_normal(shape[-1]).astype(np.float32))
    x = rng.standard_normal(shape) * 3 + 2
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    ref = (x - mu) / np.sqrt(var + 1e-5) * ln.weight.numpy() + ln.bias.numpy()
    out = ln(mg.tensor(x, dtype="float32", device=device))
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4)


@given(shift=st.floats(-100, 100), scale=st.floats(0.01, 100), seed=st.integers(0, 100))
def test_layer_norm_is_shift_and_scale_invariant(shift, scale, seed):
    ln = LayerNorm(6, eps=0.0).to(dtype="float64")
    x = randn(2, 6, seed=seed)
    y = ln(x).numpy()
    np.testing.assert_allclose(ln(x + shift).numpy(), y, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ln(x * scale).numpy(), y, rtol=1e-9, atol=1e-9)


def test_layer_norm_parameters_and_errors():
    assert list(LayerNorm(4).state_dict()) == ["weight", "bias"]
    assert list(LayerNorm(4, bias=False).state_dict()) == ["weight"]
    assert list(LayerNorm(4, elementwise_affine=False).parameters()) == []
    with pytest.raises(ValueError, match=r"LayerNorm\(normalized_shape=\(4,\)\): input has shape "
                                         r"\(2, 3\), expected \(\.\.\., 4\)"):
        LayerNorm(4)(mg.zeros(2, 3))


# =========================================================================== Dropout

@given(p=st.sampled_from([0.0, 0.3, 0.5]), shape=st.sampled_from([(3,), (2, 3)]))
def test_dropout_passes_the_layer_kit_with_a_pinned_mask(p, shape):
    check_layer(lambda: Dropout(p), (randn(*shape),), gradgradcheck=True)


@devices
def test_dropout_is_the_identity_in_eval_mode(device):
    x = randn(4, 5, dtype="float32", device=device)
    assert Dropout(0.7).eval()(x) is x


@devices
def test_dropout_drops_about_p_scales_the_rest_and_repeats_with_the_seed(device):
    x = mg.ones(200, 100, device=device)
    d = Dropout(0.3)
    mg.manual_seed(5)
    y = d(x).numpy()
    mg.manual_seed(5)
    np.testing.assert_array_equal(d(x).numpy(), y)
    kept = y[y != 0]
    np.testing.assert_allclose(kept, 1 / 0.7, rtol=1e-6)
    assert abs((y == 0).mean() - 0.3) < 0.02           # 20,000 draws: 5 standard deviations
    assert Dropout(1.0)(x).numpy().max() == 0.0


def test_dropout_rejects_bad_p():
    with pytest.raises(ValueError, match=r"Dropout: p must be a probability in \[0, 1\], got 1.5"):
        Dropout(1.5)


# =========================================================================== FeedForward

@given(n_embd=st.integers(1, 3), hidden=st.integers(1, 3),
       activation=st.sampled_from(["gelu", "gelu_tanh", "relu"]),
       dropout=st.sampled_from([0.0, 0.4]), batch=st.sampled_from([(2,), (1, 2)]))
def test_feed_forward_passes_the_layer_kit(n_embd, hidden, activation, dropout, batch):
    check_layer(lambda: FeedForward(n_embd, hidden, dropout=dropout, activation=activation),
                (randn(*batch, n_embd),))


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
def test_feed_forward_second_derivatives(activation):
    check_layer(lambda: FeedForward(2, 2, dropout=0.5, activation=activation), (randn(2, 2),),
                checks=("gradcheck",), gradgradcheck=True)


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh", "relu"])
def test_feed_forward_matches_numpy(activation):
    from scipy.special import erf
    ff = FeedForward(3, activation=activation).to(dtype="float64")
    assert ff.hidden == 12
    x = randn(2, 3, seed=1)
    h = x.numpy() @ ff.fc.weight.numpy().T + ff.fc.bias.numpy()
    act = {"gelu": lambda u: 0.5 * u * (1 + erf(u / math.sqrt(2))),
           "gelu_tanh": lambda u: 0.5 * u * (1 + np.tanh(math.sqrt(2 / math.pi) * (u + 0.044715 * u ** 3))),
           "relu": lambda u: np.maximum(u, 0)}[activation]
    ref = act(h) @ ff.proj.weight.numpy().T + ff.proj.bias.numpy()
    np.testing.assert_allclose(ff(x).numpy(), ref, **tolerance(np.float64))


def test_feed_forward_rejects_unknown_activation():
    with pytest.raises(ValueError, match="activation must be one of"):
        FeedForward(4, activation="swish")


# =========================================================================== positions

@devices
def test_sinusoidal_positions_follow_vaswani_et_al(device):
    max_len, dim = 30, 7
    pe = SinusoidalPositionalEmbedding(max_len, dim).to(device)
    pos = np.arange(max_len)[:, None]
    i = np.arange(dim)
    angle = pos / 10000 ** ((i - i % 2) / dim)
    ref = np.where(i % 2 == 0, np.sin(angle), np.cos(angle))
    np.testing.assert_allclose(pe(max_len).numpy(), ref, atol=1e-6)
    np.testing.assert_allclose(pe(mg.tensor([[3, 0]], device=device)).numpy(), ref[[[3, 0]]],
                               atol=1e-6)
    assert pe.state_dict() == {} and [n for n, _ in pe.named_buffers()] == ["pe"]


@given(k=st.integers(0, 10))
def test_sinusoidal_position_plus_k_is_a_rotation_of_position(k):
    """PE[p + k] = R_k PE[p] with R_k block-diagonal 2x2 rotations independent of p."""
    dim = 6
    pe = SinusoidalPositionalEmbedding(40, dim).to(dtype="float64")(40).numpy()
    freq = 10000.0 ** (-np.arange(0, dim, 2) / dim)
    for j, w in enumerate(freq):
        c, s = math.cos(k * w), math.sin(k * w)
        rot = np.array([[c, s], [-s, c]])        # acts on (sin, cos) pairs
        pairs = pe[:, 2 * j:2 * j + 2]
        np.testing.assert_allclose(pairs[:-k or None] @ rot.T if k else pairs, pairs[k:], atol=1e-6)


def test_positional_embeddings_pass_the_layer_kit():
    check_layer(lambda: LearnedPositionalEmbedding(5, 2), (mg.tensor([[0, 4, 2]]),),
                gradgradcheck=True)
    check_layer(lambda: LearnedPositionalEmbedding(5, 2), (3,))
    check_layer(lambda: SinusoidalPositionalEmbedding(5, 3), (4,))


def test_learned_positions_initialisation_and_errors():
    w = LearnedPositionalEmbedding(300, 40).weight.numpy()
    assert abs(w.std() - 0.02) < 0.002
    for layer in (LearnedPositionalEmbedding(4, 2), SinusoidalPositionalEmbedding(4, 2)):
        name = type(layer).__name__
        with pytest.raises(IndexError, match=rf"{name}\(max_len=4, dim=2\): position 4 is out of "
                                             r"range for max_len=4"):
            layer(mg.tensor([0, 4]))
        with pytest.raises(IndexError, match=r"a sequence of length 5 does not fit max_len=4"):
            layer(5)
        with pytest.raises(TypeError, match="positions must be an int"):
            layer(mg.tensor([0.0]))


# =========================================================================== learning

@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru", "transformer"])
def test_layers_learn_to_recall_the_previous_token(kind):
    """An overfit sanity check: embedding -> core -> linear, trained with Adam on
    one tiny batch, learns to output the previous token (which needs memory)."""
    from lmroad.layers import GRU, LSTM, RNN, TransformerBlock
    from minigrad import nn, optim
    V, T = 5, 6
    idx = mg.tensor(np.random.default_rng(0).integers(0, V, (4, T)))
    target = mg.tensor(np.concatenate([np.zeros((4, 1), int), idx.numpy()[:, :-1]], axis=1))
    emb = Embedding(V, 8)
    if kind == "transformer":
        pos = LearnedPositionalEmbedding(T, 8)
        core = nn.Sequential(TransformerBlock(8, 2), TransformerBlock(8, 2), pos)

        def features():
            return core[1](core[0](emb(idx) + pos(T)))
    else:
        core = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind](8, 8, batch_first=True)

        def features():
            return core(emb(idx))[0]
    head = Linear(8, V)
    opt = optim.Adam([p for m in (emb, core, head) for p in m.parameters()], lr=0.03)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(head(features()).reshape((-1, V)), target.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]
