"""MultiHeadAttention, KVCache and TransformerBlock.

The attention is compared with a NumPy transcription of softmax(QKᵀ/√d + M)V
per head, under PyTorch's mask convention (bool True = may NOT attend),
including rows that may attend to nothing. Properties: causal attention and
causal blocks never look ahead (values and gradients); fully masked rows give
zeros and finite gradients; a key/value cache reproduces the full causal
forward pass one token (or one chunk) at a time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from lmroad.layers import KVCache, MultiHeadAttention, TransformerBlock
from minigrad.testing import tolerance
from minigrad.testing.layer_kit import check_layer

devices = pytest.mark.parametrize("device", ["cpu", "fake"])
TIGHT = dict(rtol=1e-12, atol=1e-12)


def randn(*shape, seed=0, dtype="float64", device="cpu"):
    return mg.tensor(np.random.default_rng(seed).standard_normal(shape), dtype=dtype, device=device)


def np_mha(m: MultiHeadAttention, q, k, v, blocked=None, added=None):
    """PyTorch's MultiheadAttention in NumPy, batch first: q (B, L, E), k and v
    (B, S, E); ``blocked`` (broadcasts to (B, nh, L, S)) True = may not
    attend; ``added`` is added to the scores. Returns (output, weights)."""
    E, nh = m.embed_dim, m.num_heads
    hs = E // nh
    W = m.in_proj_weight.numpy().astype(np.float64)
    b = np.zeros(3 * E) if m.in_proj_bias is None else m.in_proj_bias.numpy()
    heads = lambda t: t.reshape(t.shape[0], t.shape[1], nh, hs).transpose(0, 2, 1, 3)  # noqa: E731
    Q, K, V = (heads(t @ W[i * E:(i + 1) * E].T + b[i * E:(i + 1) * E]) for i, t in enumerate((q, k, v)))
    scores = Q @ K.transpose(0, 1, 3, 2) / math.sqrt(hs)          # (B, nh, L, S)
    if added is not None:
        scores = scores + added
    if blocked is not None:
        scores = np.where(blocked, -np.inf, scores)
    mx = scores.max(-1, keepdims=True)
    e = np.exp(scores - np.where(np.isfinite(mx), mx, 0))
    s = e.sum(-1, keepdims=True)
    w = e / np.where(s == 0, 1, s)                                 # rows with no key: zeros
    y = (w @ V).transpose(0, 2, 1, 3).reshape(q.shape[0], q.shape[1], E)
    Wo, bo = m.out_proj.weight.numpy(), m.out_proj.bias
    return y @ Wo.T + (0 if bo is None else bo.numpy()), w


def causal_blocked(L, S):
    """True where query i may not see key j: j > i + (S - L)."""
    return np.triu(np.ones((L, S), bool), k=S - L + 1)


@st.composite
def attention_case(draw, max_b=2, max_len=3):
    """Sizes, inputs and PyTorch-convention bool masks (fully masked rows included)."""
    B, L, nh, hs = (draw(st.integers(1, max_b)), draw(st.integers(1, max_len)),
                    draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    cross = draw(st.booleans())
    S = draw(st.integers(1, max_len)) if cross else L
    bools = lambda shape: np.array(draw(st.lists(st.booleans(), min_size=math.prod(shape),  # noqa: E731
                                                 max_size=math.prod(shape)))).reshape(shape)
    attn_mask = bools((L, S)) if draw(st.booleans()) else None
    kpm = bools((B, S)) if draw(st.booleans()) else None
    return dict(B=B, L=L, S=S, nh=nh, E=nh * hs, cross=cross, attn_mask=attn_mask, kpm=kpm,
                is_causal=draw(st.booleans()), bias=draw(st.booleans()), seed=draw(st.integers(0, 99)))


def _blocked(c):
    blocked = np.zeros((c["B"], c["nh"], c["L"], c["S"]), bool)
    if c["attn_mask"] is not None:
        blocked |= c["attn_mask"]
    if c["kpm"] is not None:
        blocked |= c["kpm"][:, None, None, :]
    if c["is_causal"]:
        blocked |= causal_blocked(c["L"], c["S"])
    return blocked


def _call_kwargs(c, device="cpu"):
    t = lambda a: None if a is None else mg.tensor(a, device=device)  # noqa: E731
    return dict(attn_mask=t(c["attn_mask"]), key_padding_mask=t(c["kpm"]), is_causal=c["is_causal"])


# =========================================================================== MultiHeadAttention

@devices
@given(c=attention_case())
def test_attention_matches_numpy_transcription(device, c):
    m = MultiHeadAttention(c["E"], c["nh"], bias=c["bias"]).to(device)
    q = randn(c["B"], c["L"], c["E"], seed=c["seed"], dtype="float32", device=device)
    kv = randn(c["B"], c["S"], c["E"], seed=c["seed"] + 1, dtype="float32", device=device) \
        if c["cross"] else q
    out, w = m(q, kv, kv, need_weights=True, **_call_kwargs(c, device))
    ref, ref_w = np_mha(m, q.numpy().astype(np.float64), kv.numpy(), kv.numpy(), _blocked(c))
    tol = tolerance(np.float32)
    np.testing.assert_allclose(out.numpy(), ref, **tol)
    np.testing.assert_allclose(w.numpy(), ref_w, **tol)
    assert w.shape == (c["B"], c["nh"], c["L"], c["S"])


@given(seed=st.integers(0, 99), per_head=st.booleans())
def test_float_masks_are_added_to_the_scores(seed, per_head):
    B, L, S, nh, E = 2, 3, 4, 2, 4
    m = MultiHeadAttention(E, nh).to(dtype="float64")
    q, kv = randn(B, L, E, seed=seed), randn(B, S, E, seed=seed + 1)
    rng = np.random.default_rng(seed)
    am = rng.standard_normal((B * nh, L, S) if per_head else (L, S))
    kpm = rng.standard_normal((B, S))
    out = m(q, kv, attn_mask=mg.tensor(am), key_padding_mask=mg.tensor(kpm))
    added = (am.reshape(B, nh, L, S) if per_head else am) + kpm[:, None, None, :]
    np.testing.assert_allclose(out.numpy(), np_mha(m, q.numpy(), kv.numpy(), kv.numpy(),
                                                   added=added)[0], **tolerance(np.float64))


@given(c=attention_case(), dropout=st.sampled_from([0.0, 0.5]), need_weights=st.booleans())
def test_attention_passes_the_layer_kit(c, dropout, need_weights):
    q = randn(c["B"], c["L"], c["E"], seed=c["seed"])
    kv = (randn(c["B"], c["S"], c["E"], seed=c["seed"] + 1),) * 2 if c["cross"] else (None, None)
    check_layer(lambda: MultiHeadAttention(c["E"], c["nh"], dropout=dropout, bias=c["bias"]),
                (q, *kv), kwargs=dict(_call_kwargs(c), need_weights=need_weights),
                fast_mode=c["E"] > 2)


def test_attention_second_derivatives():
    check_layer(lambda: MultiHeadAttention(2, 2), (randn(1, 2, 2),),
                kwargs=dict(is_causal=True, key_padding_mask=mg.tensor([[False, True]])),
                checks=("gradcheck",), gradgradcheck=True, fast_mode=True)


@given(L=st.integers(2, 5), t=st.integers(0, 3), seed=st.integers(0, 99))
def test_causal_attention_never_looks_ahead(L, t, seed):
    t = min(t, L - 2)
    m = MultiHeadAttention(4, 2).to(dtype="float64")
    x = randn(2, L, 4, seed=seed)
    later = np.zeros((2, L, 4))
    later[:, t + 1:] = np.random.default_rng(seed + 1).standard_normal((2, L - t - 1, 4)) * 10
    a = m(x, is_causal=True).numpy()
    b = m(x + mg.tensor(later), is_causal=True).numpy()
    np.testing.assert_allclose(b[:, :t + 1], a[:, :t + 1], **TIGHT)
    assert not np.allclose(b[:, t + 1:], a[:, t + 1:])
    x.requires_grad = True
    (g,) = mg.grad(m(x, is_causal=True)[:, :t + 1].sum(), x)
    assert not g.numpy()[:, t + 1:].any()


@devices
@pytest.mark.parametrize("how", ["key_padding_mask", "attn_mask", "float_mask"])
def test_fully_masked_rows_give_zeros_and_finite_gradients(device, how):
    B, L, S, E = 2, 3, 4, 4
    m = MultiHeadAttention(E, 2).to(device, "float64")
    for p in m.parameters():   # nonzero biases, so "zeros before out_proj" is visible
        p.data = p.xp.asarray(np.random.default_rng(0).standard_normal(p.shape))
    q = randn(B, L, E, device=device, seed=1)
    kv = randn(B, S, E, device=device, seed=2)
    q.requires_grad = kv.requires_grad = True
    blocked = np.zeros((B, 1, L, S), bool)
    if how == "key_padding_mask":
        kpm = np.zeros((B, S), bool)
        kpm[0] = True                                   # batch 0 sees no key at all
        kw = dict(key_padding_mask=mg.tensor(kpm, device=device))
        blocked[0] = True
    else:
        am = np.zeros((L, S), bool)
        am[1] = True                                    # query 1 sees no key
        blocked[:, :, 1] = True
        kw = dict(attn_mask=mg.tensor(np.where(am, -np.inf, 0.0) if how == "float_mask" else am,
                                      device=device))
    out, w = m(q, kv, need_weights=True, **kw)
    rows = np.broadcast_to(blocked[:, 0].all(-1), (B, L))
    np.testing.assert_allclose(out.numpy()[rows], np.broadcast_to(m.out_proj.bias.numpy(),
                                                                  out.numpy()[rows].shape), **TIGHT)
    assert not w.numpy()[np.broadcast_to(blocked.all(-1), w.shape[:3])].any()
    g = np.random.default_rng(3).standard_normal(out.shape)
    grads = mg.grad(out, [q, kv] + list(m.parameters()), grad_outputs=mg.tensor(g, device=device))
    assert all(np.isfinite(x.numpy()).all() for x in grads)
    assert not grads[0].numpy()[rows].any()             # a query that sees nothing has no say


@given(B=st.integers(1, 2), L=st.integers(1, 3), S=st.integers(1, 3), seed=st.integers(0, 99))
def test_batch_first_false_and_unbatched_inputs_agree_with_batch_first(B, L, S, seed):
    m = MultiHeadAttention(4, 2).to(dtype="float64")
    m2 = MultiHeadAttention(4, 2, batch_first=False).to(dtype="float64")
    m2.load_state_dict(m.state_dict())
    q, kv = randn(B, L, 4, seed=seed), randn(B, S, 4, seed=seed + 1)
    ref, ref_w = m(q, kv, need_weights=True)
    out = m2(q.swapaxes(0, 1), kv.swapaxes(0, 1))
    np.testing.assert_allclose(out.swapaxes(0, 1).numpy(), ref.numpy(), **TIGHT)
    one, one_w = m(q[0], kv[0], need_weights=True)
    np.testing.assert_allclose(one.numpy(), ref.numpy()[0], **TIGHT)
    np.testing.assert_allclose(one_w.numpy(), ref_w.numpy()[0], **TIGHT)


def test_need_weights_per_head_rows_sum_to_one_and_average_on_request():
    m = MultiHeadAttention(6, 3)
    x = randn(2, 4, 6, dtype="float32")
    out, w = m(x, need_weights=True, is_causal=True)
    assert w.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(w.numpy().sum(-1), 1.0, rtol=1e-6)
    assert not np.triu(w.numpy(), k=1).any()
    _, avg = m(x, need_weights=True, average_attn_weights=True, is_causal=True)
    np.testing.assert_allclose(avg.numpy(), w.numpy().mean(1), rtol=1e-6)
    assert isinstance(m(x), mg.Tensor)


def test_attention_parameters_are_pytorchs():
    m = MultiHeadAttention(8, 2)
    assert {k: v.shape for k, v in m.state_dict().items()} == {
        "in_proj_weight": (24, 8), "in_proj_bias": (24,), "out_proj.weight": (8, 8),
        "out_proj.bias": (8,)}
    assert not m.in_proj_bias.numpy().any() and not m.out_proj.bias.numpy().any()
    bound = math.sqrt(6 / (8 + 24))                      # xavier-uniform over (3E, E)
    assert np.abs(m.in_proj_weight.numpy()).max() <= bound
    assert list(MultiHeadAttention(8, 2, bias=False).state_dict()) == ["in_proj_weight",
                                                                       "out_proj.weight"]


def test_attention_errors_name_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match=r"MultiHeadAttention: embed_dim \(6\) must be divisible by "
                                         r"num_heads \(4\)"):
        MultiHeadAttention(6, 4)
    m = MultiHeadAttention(4, 2)
    x = mg.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(embed_dim=4, num_heads=2\): query "
                                         r"has 5 features \(shape \(2, 3, 5\)\)"):
        m(mg.zeros(2, 3, 5))
    with pytest.raises(ValueError, match=r"attn_mask has shape \(3, 2\), expected \(3, 3\), "
                                         r"\(4, 3, 3\)"):
        m(x, attn_mask=mg.zeros(3, 2, dtype="bool"))
    with pytest.raises(ValueError, match=r"key_padding_mask has shape \(3, 3\), expected \(2, 3\)"):
        m(x, key_padding_mask=mg.zeros(3, 3, dtype="bool"))
    with pytest.raises(TypeError, match=r"attn_mask must be bool \(True = may not attend\) or float"):
        m(x, attn_mask=mg.zeros(3, 3, dtype="int64"))
    with pytest.raises(ValueError, match="key and value the same length"):
        m(x, mg.zeros(2, 3, 4), mg.zeros(2, 2, 4))
    with pytest.raises(ValueError, match="all have a batch axis or none"):
        m(x, mg.zeros(3, 4))


# =========================================================================== KV cache

@given(T=st.integers(1, 6), chunks=st.lists(st.integers(1, 3), min_size=1, max_size=6),
       seed=st.integers(0, 99), use_masks=st.booleans())
def test_cached_incremental_attention_equals_the_full_causal_pass(T, chunks, seed, use_masks):
    m = MultiHeadAttention(4, 2).to(dtype="float64")
    x = randn(2, T, 4, seed=seed)
    kpm = np.zeros((2, T), bool)
    if use_masks:
        kpm[1, 0] = True                                 # batch 1 ignores its first token
    full = m(x, is_causal=True, key_padding_mask=mg.tensor(kpm)).numpy()
    cache, outs, start = KVCache(), [], 0
    for n in chunks * T:                                 # enough chunks to cover T
        if start >= T:
            break
        n = min(n, T - start)
        outs.append(m(x[:, start:start + n], is_causal=True, kv_cache=cache,
                      key_padding_mask=mg.tensor(kpm[:, :start + n])))
        start += n
        assert cache.length == start and cache.keys.shape == (2, 2, start, 2)
    np.testing.assert_allclose(mg.concatenate(outs, axis=1).numpy(), full, **TIGHT)


@pytest.mark.parametrize("norm_first", [True, False])
def test_cached_transformer_block_equals_the_full_causal_pass(norm_first):
    blk = TransformerBlock(4, 2, norm_first=norm_first).to(dtype="float64")
    x = randn(2, 5, 4)
    full = blk(x).numpy()
    cache = KVCache()
    outs = [blk(x[:, t:t + 1], kv_cache=cache) for t in range(5)]
    np.testing.assert_allclose(mg.concatenate(outs, axis=1).numpy(), full, **TIGHT)
    cache.reset()
    assert len(cache) == 0 and cache.keys is None


def test_kv_cache_errors():
    m = MultiHeadAttention(4, 2)
    cache = KVCache()
    with pytest.raises(ValueError, match="kv_cache is for self-attention"):
        m(mg.zeros(1, 2, 4), mg.zeros(1, 3, 4), kv_cache=cache)
    m(mg.zeros(2, 2, 4), kv_cache=cache, is_causal=True)
    with pytest.raises(ValueError, match=r"KVCache: new keys of shape \(3, 2, 1, 2\) do not fit "
                                         r"cached keys of shape \(2, 2, 2, 2\)"):
        m(mg.zeros(3, 1, 4), kv_cache=cache, is_causal=True)


# =========================================================================== TransformerBlock

@given(n_embd=st.sampled_from([2, 4]), n_head=st.integers(1, 2), T=st.integers(1, 3),
       B=st.integers(1, 2), dropout=st.sampled_from([0.0, 0.3]), norm_first=st.booleans(),
       bias=st.booleans())
def test_transformer_block_passes_the_layer_kit(n_embd, n_head, T, B, dropout, norm_first, bias):
    check_layer(lambda: TransformerBlock(n_embd, n_head, dropout=dropout, norm_first=norm_first,
                                         bias=bias, hidden=3),
                (randn(B, T, n_embd),), fast_mode=True)


def test_transformer_block_second_derivatives():
    check_layer(lambda: TransformerBlock(2, 1, hidden=2), (randn(1, 2, 2),),
                checks=("gradcheck",), gradgradcheck=True, fast_mode=True)


@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_block_is_the_documented_composition(norm_first):
    """In training, with dropout (the same seed, so the same masks, in the same order)."""
    blk = TransformerBlock(4, 2, dropout=0.3, norm_first=norm_first).to(dtype="float64")
    rng = np.random.default_rng(0)
    for p in blk.parameters():     # LayerNorms and biases start as ones and zeros: tell them apart
        p.data = rng.standard_normal(p.shape)
    x = randn(2, 3, 4)
    a = lambda h: blk.drop(blk.attn(h, is_causal=True))  # noqa: E731
    mg.manual_seed(7)
    if norm_first:
        h = x + a(blk.ln1(x))
        ref = h + blk.mlp(blk.ln2(h))
    else:
        h = blk.ln1(x + a(x))
        ref = blk.ln2(h + blk.mlp(h))
    mg.manual_seed(7)
    np.testing.assert_allclose(blk(x).numpy(), ref.numpy(), **TIGHT)
    blk.eval()
    out, w = blk(x, need_weights=True)
    assert w.shape == (2, 2, 3, 3)
    other = TransformerBlock(4, 2, norm_first=norm_first, causal=False).to(dtype="float64")
    other.load_state_dict(blk.state_dict())
    np.testing.assert_allclose(blk(x, is_causal=False).numpy(), other(x).numpy(), **TIGHT)


@pytest.mark.parametrize("norm_first", [True, False])
@given(L=st.integers(2, 5), t=st.integers(0, 3), seed=st.integers(0, 99))
def test_causal_transformer_block_never_looks_ahead(norm_first, L, t, seed):
    t = min(t, L - 2)
    blk = TransformerBlock(4, 2, norm_first=norm_first).to(dtype="float64")
    x = randn(2, L, 4, seed=seed)
    later = np.zeros((2, L, 4))
    later[:, t + 1:] = np.random.default_rng(seed + 1).standard_normal((2, L - t - 1, 4)) * 10
    a, b = blk(x).numpy(), blk(x + mg.tensor(later)).numpy()
    np.testing.assert_allclose(b[:, :t + 1], a[:, :t + 1], **TIGHT)
    x.requires_grad = True
    (g,) = mg.grad(blk(x)[:, :t + 1].sum(), x)
    assert not g.numpy()[:, t + 1:].any()


def test_transformer_block_rejects_wrong_input_shape():
    with pytest.raises(ValueError, match=r"TransformerBlock\(n_embd=4, n_head=2\): input has shape "
                                         r"\(3, 4\), expected \(B, T, 4\)"):
        TransformerBlock(4, 2)(mg.zeros(3, 4))
