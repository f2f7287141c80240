"""Tests of lmroad.models: the shared interface, sampling, and each model.

Tiny sizes throughout: the whole file runs in well under a minute with
HYPOTHESIS_PROFILE=ci.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from lmroad.models import (
    GRULM,
    LSTMLM,
    MODELS,
    RNNLM,
    NGramLM,
    TransformerLM,
    build_model,
    check_sampling_args,
    detach_state,
    filter_logits,
    sample_logits,
)
from minigrad import optim

V = 11  # vocabulary of the tiny models


def ids(shape, vocab=V, seed=0, device="cpu"):
    return mg.tensor(np.random.default_rng(seed).integers(0, vocab, shape), device=device)


# =========================================================================== sampling

def test_sample_temperature_zero_is_argmax():
    logits = np.random.default_rng(0).normal(size=(5, V))
    assert (sample_logits(logits, temperature=0.0) == logits.argmax(-1)).all()


def test_sample_top_k_one_is_greedy_even_with_ties():
    logits = np.zeros((3, V))
    logits[:, [4, 7]] = 2.0                          # a tie: argmax takes the lower id
    for seed in range(5):
        got = sample_logits(logits, 1.0, top_k=1, rng=np.random.default_rng(seed))
        assert (got == 4).all()


def test_sample_frequencies_follow_softmax_over_temperature():
    logits = np.array([[2.0, 1.0, 0.0, -1.0]])
    t = 0.7
    draws = sample_logits(np.repeat(logits, 40000, axis=0), t, rng=np.random.default_rng(0))
    freq = np.bincount(draws, minlength=4) / len(draws)
    p = np.exp(logits[0] / t) / np.exp(logits[0] / t).sum()
    assert np.abs(freq - p).max() < 0.01


def test_filter_top_k_keeps_exactly_k():
    logits = np.random.default_rng(1).normal(size=(4, V))
    kept = np.isfinite(filter_logits(logits, top_k=3))
    assert (kept.sum(-1) == 3).all()
    assert (np.sort(np.where(kept, logits, -np.inf), -1)[:, -3:] == np.sort(logits, -1)[:, -3:]).all()


def test_filter_top_p_keeps_the_smallest_nucleus():
    logits = np.log(np.array([[0.6, 0.3, 0.1]]))
    assert np.isfinite(filter_logits(logits, top_p=0.55)).tolist() == [[True, False, False]]
    assert np.isfinite(filter_logits(logits, top_p=0.85)).tolist() == [[True, True, False]]
    assert np.isfinite(filter_logits(logits, top_p=0.95)).all()
    assert np.isfinite(filter_logits(logits, top_p=1.0)).all()


def test_sample_never_draws_a_filtered_token():
    logits = np.random.default_rng(2).normal(size=(2000, V))
    draws = sample_logits(logits, 2.0, top_k=2, top_p=0.9, rng=np.random.default_rng(0))
    kept = np.isfinite(filter_logits(logits / 2.0, top_k=2, top_p=0.9))
    assert kept[np.arange(len(draws)), draws].all()


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-1.0), "temperature must be a finite number >= 0"),
    (dict(temperature=float("nan")), "temperature must be a finite number >= 0"),
    (dict(top_k=0), "top_k must be >= 1"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
])
def test_bad_sampling_settings_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        check_sampling_args(**kwargs)
    with pytest.raises(ValueError, match=message):
        sample_logits(np.zeros((1, 3)), **{"temperature": 1.0, **kwargs})


def test_sample_rejects_nan_logits():
    with pytest.raises(ValueError, match="NaN"):
        sample_logits(np.array([[0.0, np.nan]]))


# =========================================================================== n-gram

def structured_corpus(n_tokens, vocab=V, seed=0):
    """A second-order Markov chain in which each pair of tokens has two likely successors."""
    rng = np.random.default_rng(seed)
    succ = np.random.default_rng(99).integers(0, vocab, (vocab, vocab, 2))   # fixed grammar
    out = list(rng.integers(0, vocab, 2))
    for _ in range(n_tokens - 2):
        a, b = out[-2], out[-1]
        out.append(succ[a, b, rng.integers(0, 2)] if rng.random() < 0.95 else rng.integers(0, vocab))
    return np.array(out, dtype=np.int64)


SMOOTHINGS = ["add_k", "kneser_ney", "backoff"]


@given(corpus=st.lists(st.integers(0, 5), min_size=0, max_size=60),
       context=st.lists(st.integers(0, 5), max_size=5),
       n=st.integers(1, 4), smoothing=st.sampled_from(SMOOTHINGS),
       k=st.sampled_from([0.01, 1.0]), discount=st.sampled_from([0.1, 0.75, 0.99]))
def test_ngram_probabilities_sum_to_one_for_any_context(corpus, context, n, smoothing, k, discount):
    model = NGramLM(n, 6, smoothing, k=k, discount=discount).fit(np.array(corpus, dtype=np.int64))
    p = model.probs(context)
    assert p.shape == (6,)
    assert (p > 0).all()
    assert abs(p.sum() - 1.0) < 1e-12


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_ngram_forward_gives_log_probabilities_and_their_nll(device, smoothing):
    model = NGramLM(3, V, smoothing).fit(structured_corpus(500))
    x, y = ids((2, 7), seed=1, device=device), ids((2, 7), seed=2, device=device)
    logits, loss = model(x, y)
    assert logits.shape == (2, 7, V) and logits.device == mg.device(device)
    lp = logits.numpy()
    assert np.allclose(np.exp(lp).sum(-1), 1.0, atol=1e-5)
    nll = -np.take_along_axis(lp, y.numpy()[..., None], -1).mean()
    assert loss.item() == pytest.approx(nll, rel=1e-5)
    assert model(x)[1] is None
    assert model.num_parameters() == 0 and model.num_entries() > 0


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
def test_ngram_unseen_contexts_have_finite_loss(smoothing):
    model = NGramLM(4, V, smoothing).fit(np.array([0, 1, 2, 0, 1, 2, 0, 1, 3]))
    x = mg.tensor([[10, 9, 8, 7, 6, 5]])             # ids never seen in training
    logits, loss = model(x, mg.tensor([[4, 5, 6, 7, 8, 9]]))
    assert np.isfinite(logits.numpy()).all() and np.isfinite(loss.item())


def test_ngram_kneser_ney_beats_add_one_on_structured_text():
    train, test = structured_corpus(3000, seed=0), structured_corpus(1001, seed=1)
    x, y = mg.tensor(test[None, :-1]), mg.tensor(test[None, 1:])
    kn = NGramLM(3, V, "kneser_ney").fit(train)(x, y)[1].item()
    add1 = NGramLM(3, V, "add_k", k=1.0).fit(train)(x, y)[1].item()
    assert kn < add1 - 0.05


def test_ngram_probabilities_match_hand_computation():
    corpus = np.array([0, 2, 1, 2, 2, 0, 1])
    kn = NGramLM(2, 3, "kneser_ney", discount=0.75).fit(corpus)
    # after "2": each of 3 successors seen once -> (1 - D)/3 + D·3/3 · P_cont, where
    # P_cont(w) interpolates N1+(• w) = (1, 2, 3) (of 6 bigram types) with the uniform 1/3
    p_cont = (np.array([1, 2, 3]) - 0.75) / 6 + 0.75 * 3 / 6 / 3
    np.testing.assert_allclose(kn.probs([2]), 0.25 / 3 + 0.75 * p_cont, rtol=1e-12)
    np.testing.assert_allclose(kn.probs([]), [2 / 7, 2 / 7, 3 / 7], rtol=1e-12)  # no context: counts
    add1 = NGramLM(2, 3, "add_k", k=1.0).fit(corpus)
    np.testing.assert_allclose(add1.probs([0]), [1 / 5, 2 / 5, 2 / 5], rtol=1e-12)
    backoff = NGramLM(2, 3, "backoff", discount=0.75).fit(corpus)
    # after "0": 1 and 2 seen once each keep (1 - D)/2; the unseen 0 gets the discounted mass D
    np.testing.assert_allclose(backoff.probs([0]), [0.75, 0.125, 0.125], rtol=1e-12)


def test_ngram_counting_paths_agree():
    """Rows packed into one integer each (small vocabularies) and plain row sorting agree."""
    from lmroad.models.ngram import _unique_rows
    rows = np.random.default_rng(0).integers(0, 6, (200, 3))
    packed, plain = _unique_rows(rows, 6), _unique_rows(rows, 2**40)
    assert all(np.array_equal(a, b) for a, b in zip(packed, plain))


def test_ngram_fit_respects_sequence_boundaries():
    model = NGramLM(2, V, "add_k").fit([np.array([1, 2]), np.array([3, 4])])
    assert model.state_dict()["order2.ngrams"].tolist() == [[1, 2], [3, 4]]   # no (2, 3)


def test_ngram_generate_and_state_round_trip():
    model = NGramLM(3, V, "kneser_ney").fit(structured_corpus(500))
    prompt = ids((2, 3), seed=3)
    out = model.generate(prompt, 8, seed=0)
    assert out.shape == (2, 11) and (out.numpy()[:, :3] == prompt.numpy()).all()
    assert (model.generate(prompt, 8, seed=0).numpy() == out.numpy()).all()
    assert (model.generate(prompt, 8, seed=0, use_cache=False).numpy() == out.numpy()).all()
    clone = NGramLM.from_config(json.loads(json.dumps(dataclasses.asdict(model.config))))
    clone.load_state_dict(model.state_dict())
    assert np.array_equal(clone(prompt)[0].numpy(), model(prompt)[0].numpy())


def test_ngram_errors_speak_plainly():
    with pytest.raises(RuntimeError, match="call fit"):
        NGramLM(2, V)(ids((1, 3)))
    with pytest.raises(IndexError, match="token id 11 is out of range for vocab_size=11"):
        NGramLM(2, V).fit(np.array([1, 11]))
    with pytest.raises(ValueError, match="smoothing must be one of"):
        NGramLM(2, V, "laplace")
    with pytest.raises(ValueError, match="k must be a finite number > 0"):
        NGramLM(2, V, "add_k", k=0.0)
    with pytest.raises(ValueError, match=r"missing keys \['order2.ngrams'"):
        NGramLM(2, V).load_state_dict({"order1.ngrams": np.zeros((0, 1)), "order1.counts": np.zeros(0)})


# =========================================================================== neural models

BLOCK = 8  # the Transformer's block_size

BUILDERS = {
    "rnn": lambda: RNNLM(V, n_embd=8, hidden_size=8, num_layers=2, tie_weights=True),
    "lstm": lambda: LSTMLM(V, n_embd=8, hidden_size=12, num_layers=2),
    "gru": lambda: GRULM(V, n_embd=8, hidden_size=12),
    "transformer": lambda: TransformerLM(V, n_layer=2, n_head=2, n_embd=16, block_size=BLOCK),
}
NEURAL = list(BUILDERS)


def build(name, device="cpu", seed=0):
    mg.manual_seed(seed)
    return BUILDERS[name]().to(device)


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("name", NEURAL)
def test_forward_gives_logits_and_mean_cross_entropy(name, device):
    model = build(name, device)
    x, y = ids((3, 5), seed=1, device=device), ids((3, 5), seed=2, device=device)
    logits, loss = model(x, y)
    assert logits.shape == (3, 5, V) and logits.device == mg.device(device)
    assert loss.shape == () and model(x)[1] is None
    lp = log_softmax(logits.numpy().astype(np.float64))
    expected = -np.take_along_axis(lp, y.numpy()[..., None], -1).mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and np.isfinite(p.grad.numpy()).all(), pname


_CAUSAL_MODELS: dict = {}


@given(name=st.sampled_from(NEURAL), t=st.integers(0, BLOCK - 1), seed=st.integers(0, 2**16))
def test_logits_never_depend_on_later_tokens(name, t, seed):
    """Perturbing tokens after position t leaves the logits at positions 0..t unchanged."""
    model = _CAUSAL_MODELS.get(name) or _CAUSAL_MODELS.setdefault(name, build(name))
    rng = np.random.default_rng(seed)
    a = rng.integers(0, V, (2, BLOCK))
    b = a.copy()
    b[:, t + 1:] = rng.integers(0, V, (2, BLOCK - t - 1))
    la, lb = model(mg.tensor(a))[0].numpy(), model(mg.tensor(b))[0].numpy()
    np.testing.assert_allclose(la[:, :t + 1], lb[:, :t + 1], rtol=1e-5, atol=1e-6)
    if t + 1 < BLOCK and (a[:, t + 1:] != b[:, t + 1:]).any():
        assert not np.allclose(la[:, t + 1:], lb[:, t + 1:])        # and the future does matter


@pytest.mark.parametrize("name", NEURAL)
def test_every_neural_model_overfits_one_batch(name):
    model = build(name)
    rng = np.random.default_rng(0)
    data = np.stack([rng.permutation(V)[:BLOCK + 1] for _ in range(2)])   # distinct first tokens
    x, y = mg.tensor(data[:, :-1]), mg.tensor(data[:, 1:])
    opt = optim.Adam(model.parameters(), lr=0.02)
    for _ in range(300):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model(x, y)[1].item() < 0.05


@pytest.mark.parametrize("name", NEURAL)
def test_state_dict_round_trip_through_json_config_gives_identical_logits(name):
    model = build(name, seed=0)
    clone = type(model).from_config(json.loads(json.dumps(dataclasses.asdict(model.config))))
    x = ids((2, 6), seed=4)
    assert not np.array_equal(clone(x)[0].numpy(), model(x)[0].numpy())   # fresh weights differ
    clone.load_state_dict(model.state_dict())
    assert np.array_equal(clone(x)[0].numpy(), model(x)[0].numpy())
    assert clone.num_parameters() == model.num_parameters()
    assert MODELS[model.model_type] is type(model)


def test_tied_weights_are_one_parameter_and_stay_tied():
    rnn, gpt = build("rnn"), build("transformer")
    assert rnn.head.weight is rnn.embedding.weight and gpt.lm_head.weight is gpt.wte.weight
    assert gpt.num_parameters() == sum(p.size for p in {id(p): p for _, p in gpt.named_parameters()
                                                        }.values())
    clone = build("rnn", seed=1)
    clone.load_state_dict(rnn.state_dict())
    assert clone.head.weight is clone.embedding.weight
    with pytest.raises(ValueError, match="tie_weights needs n_embd == hidden_size"):
        RNNLM(V, n_embd=8, hidden_size=16, tie_weights=True)


def test_transformer_has_gpt2_initialisation():
    mg.manual_seed(0)
    model = TransformerLM(V, n_layer=4, n_head=2, n_embd=64, block_size=BLOCK)
    resid = np.concatenate([w.numpy().ravel() for b in model.blocks
                            for w in (b.attn.out_proj.weight, b.mlp.proj.weight)])
    assert resid.std() == pytest.approx(0.02 / np.sqrt(2 * 4), rel=0.05)
    assert model.blocks[0].mlp.fc.weight.numpy().std() == pytest.approx(0.02, rel=0.05)
    assert model.wte.weight.numpy().std() == pytest.approx(0.02, rel=0.05)
    for pname, p in model.named_parameters():
        if pname.endswith("bias"):
            assert not p.numpy().any(), pname


def test_configure_optimizers_decays_matrices_only():
    model = build("transformer")
    opt = model.configure_optimizers(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95))
    assert isinstance(opt, optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    with pytest.raises(TypeError, match="no parameters to train"):
        NGramLM(2, V).configure_optimizers()


# ----------------------------------------------------------------- recurrent state (truncated BPTT)

@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_carried_state_continues_the_sequence(name):
    model = build(name)
    x = ids((2, 10), seed=5)
    full = model(x)[0].numpy()
    model(x[:, :6])
    state = model.detach_state(model.last_state)
    second = model(x[:, 6:], state=state)[0].numpy()
    np.testing.assert_allclose(second, full[:, 6:], rtol=1e-5, atol=1e-6)
    for s in (state if isinstance(state, tuple) else (state,)):
        assert s.grad_fn is None and not s.requires_grad


def test_detached_state_stops_gradients_at_the_window_boundary():
    model = build("lstm")
    x, y = ids((2, 4), seed=6), ids((2, 4), seed=7)
    model(x, y)
    state = detach_state(model.last_state)
    assert isinstance(state, tuple) and len(state) == 2
    _, loss = model(x, y, state=state)
    loss.backward()                                   # only this window's graph
    assert all(s.grad is None for s in state)
    assert detach_state(None) is None


# ----------------------------------------------------------------- generation

@pytest.mark.parametrize("name", NEURAL)
def test_generate_shapes_and_prompt(name, device):
    model = build(name, device)
    prompt = ids((2, 3), seed=8, device=device)
    out = model.generate(prompt, 5, seed=0)
    assert out.shape == (2, 8) and out.dtype == mg.int64 and out.device == mg.device(device)
    assert np.array_equal(out.numpy()[:, :3], prompt.numpy())
    assert ((out.numpy() >= 0) & (out.numpy() < V)).all()
    assert model.generate(prompt, 0).shape == (2, 3)


@pytest.mark.parametrize("name", NEURAL)
def test_greedy_is_deterministic_and_follows_the_argmax(name):
    model = build(name)
    prompt = ids((2, 3), seed=9)
    out = model.generate(prompt, 6, temperature=0).numpy()
    assert np.array_equal(model.generate(prompt, 6, temperature=0).numpy(), out)
    assert np.array_equal(model.generate(prompt, 6, top_k=1, seed=5).numpy(), out)   # top_k=1 == greedy
    first = model(prompt)[0].numpy()[:, -1].argmax(-1)
    assert np.array_equal(out[:, 3], first)


@pytest.mark.parametrize("name", NEURAL)
def test_seeded_sampling_is_reproducible(name):
    model = build(name)
    prompt = ids((2, 2), seed=10)
    a = model.generate(prompt, 20, temperature=1.5, seed=123).numpy()
    assert np.array_equal(model.generate(prompt, 20, temperature=1.5, seed=123).numpy(), a)
    assert not np.array_equal(model.generate(prompt, 20, temperature=1.5, seed=124).numpy(), a)
    mg.manual_seed(7)
    b = model.generate(prompt, 10).numpy()
    mg.manual_seed(7)
    assert np.array_equal(model.generate(prompt, 10).numpy(), b)   # no seed: minigrad's generator


@pytest.mark.parametrize("name", NEURAL)
@pytest.mark.parametrize("prompt_len", [1, 5, BLOCK + 3])
@pytest.mark.parametrize("sampling", [dict(temperature=0), dict(temperature=2.0, seed=3),
                                      dict(temperature=1.0, top_k=4, top_p=0.9, seed=4)])
def test_incremental_generation_matches_recomputation(name, prompt_len, sampling):
    """KV cache (Transformer) and carried state (RNNs) give the tokens of full
    recomputation, also past block_size, where the Transformer falls back."""
    model = build(name)
    prompt = ids((2, prompt_len), seed=11)
    cached = model.generate(prompt, 12, use_cache=True, **sampling).numpy()
    fresh = model.generate(prompt, 12, use_cache=False, **sampling).numpy()
    assert np.array_equal(cached, fresh)


def test_kv_cache_makes_each_new_token_one_position(monkeypatch):
    model = build("transformer")
    lengths = []
    run = model._run
    monkeypatch.setattr(model, "_run", lambda idx, *a: lengths.append(idx.shape[1]) or run(idx, *a))
    model.generate(ids((1, 5)), 6)
    # prompt once; positions 5, 6, 7 one at a time; then the context is full: recompute 8
    assert lengths == [5, 1, 1, 1, 8, 8]


def test_generate_runs_in_eval_mode_without_a_graph_and_restores_modes():
    mg.manual_seed(0)
    model = TransformerLM(V, n_layer=1, n_head=2, n_embd=8, block_size=BLOCK, dropout=0.5)
    model.train()
    model.blocks[0].mlp.eval()                        # a mixed state must come back as it was
    prompt = ids((1, 3), seed=12)
    a = model.generate(prompt, 6, temperature=0).numpy()
    assert np.array_equal(model.generate(prompt, 6, temperature=0).numpy(), a)   # no dropout
    assert model.training and model.blocks[0].attn.training and not model.blocks[0].mlp.training
    assert all(p.grad is None for p in model.parameters())


def test_generate_leaves_the_training_state_of_a_recurrent_model_alone():
    model = build("gru")
    model(ids((2, 4), seed=13))
    before = model.last_state
    model.generate(ids((2, 2), seed=14), 3)
    assert model.last_state is before


# ----------------------------------------------------------------- errors

def test_transformer_refuses_sequences_longer_than_block_size():
    model = build("transformer")
    with pytest.raises(ValueError, match=f"length {BLOCK + 1} is longer than block_size {BLOCK}"):
        model(ids((1, BLOCK + 1)))
    assert model.generate(ids((1, BLOCK + 1)), 2).shape == (1, BLOCK + 3)   # generate crops


@pytest.mark.parametrize("name", NEURAL + ["ngram"])
@pytest.mark.parametrize("bad", [V, -1])
def test_token_ids_outside_the_vocabulary_are_index_errors(name, bad):
    model = NGramLM(2, V).fit(np.arange(V)) if name == "ngram" else build(name)
    x = mg.tensor([[0, bad, 1]])
    with pytest.raises(IndexError, match=f"token id {bad} in idx is out of range for vocab_size={V}"):
        model(x)
    with pytest.raises(IndexError, match="out of range"):
        model.generate(x, 2)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(temperature=-0.5), ValueError, "temperature must be a finite number >= 0"),
    (dict(top_p=0.0), ValueError, r"top_p must be in \(0, 1\]"),
    (dict(top_p=2.0), ValueError, r"top_p must be in \(0, 1\]"),
    (dict(top_k=0), ValueError, "top_k must be >= 1"),
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be >= 0"),
    (dict(seed=1.5), TypeError, "seed must be an int"),
])
def test_bad_generation_settings_raise_before_any_work(kwargs, error, message):
    model = build("gru")
    with pytest.raises(error, match=message):
        model.generate(ids((1, 2)), **{"max_new_tokens": 3, **kwargs})


def test_bad_inputs_speak_plainly():
    model = build("lstm")
    with pytest.raises(TypeError, match="idx must hold integer token ids"):
        model(mg.tensor([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"idx must have shape \(B, T\)"):
        model(mg.tensor([0, 1]))
    with pytest.raises(TypeError, match="must be an integer minigrad Tensor"):
        model(np.array([[0, 1]]))
    with pytest.raises(ValueError, match=r"targets must be a tensor of shape \(1, 2\)"):
        model(mg.tensor([[0, 1]]), mg.tensor([0, 1]))
    with pytest.raises(ValueError, match="prompt must hold at least one token"):
        model.generate(mg.tensor(np.zeros((1, 0), np.int64)), 2)
    with pytest.raises(ValueError, match="LSTMLM: cell is always 'lstm'"):
        LSTMLM(V, cell="gru")
    with pytest.raises(ValueError, match="n_embd .* must be divisible by n_head"):
        TransformerLM(V, n_head=3, n_embd=16)
    with pytest.raises(ValueError, match="unknown fields"):
        TransformerLM.from_config({"vocab_size": V, "n_layers": 2})


# =========================================================================== the shared interface

def test_build_model_by_name():
    model = build_model("ngram", {"n": 2, "vocab_size": V})
    assert isinstance(model, NGramLM) and model.config.n == 2
    assert set(MODELS) == {"ngram", "rnn", "lstm", "gru", "transformer"}
    assert isinstance(build_model("lstm", {"vocab_size": V, "n_embd": 4, "hidden_size": 4,
                                           "cell": "lstm"}), LSTMLM)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("hmm", {})


@pytest.mark.parametrize("name,cell", [("lstm", "lstm"), ("gru", "gru"), ("rnn", "rnn")])
def test_build_model_fills_in_the_cell_of_recurrent_models(name, cell):
    from lmroad.models import build_model
    m = build_model(name, {"vocab_size": 5, "n_embd": 4, "hidden_size": 4, "num_layers": 1})
    assert m.config.cell == cell


def test_transformer_uses_the_fused_attention_node():
    """Without need_weights the attention is one fused node, not the composite."""
    from minigrad.autograd import _toposort
    from minigrad.ops.fused import Attention
    model = TransformerLM(vocab_size=11, n_layer=2, n_head=2, n_embd=8, block_size=8)
    x = mg.randint(0, 11, (2, 8))
    _, loss = model(x, x)
    nodes = [t._ctx for t in _toposort([loss]) if t._ctx is not None]
    assert sum(isinstance(n, Attention) for n in nodes) == 2     # one per block


def test_lstm_lm_forget_bias_opens_the_forget_gates_and_round_trips_its_config():
    m = LSTMLM(vocab_size=7, n_embd=4, hidden_size=3, num_layers=2, forget_bias=1.0)
    for cell in m.core.cells:
        assert np.allclose(cell.bias_ih.numpy()[3:6], 1.0)       # the f slice of (i, f, g, o)
    assert LSTMLM.from_config(dataclasses.asdict(m.config)).config.forget_bias == 1.0
    with pytest.raises(ValueError, match="forget_bias is for cell='lstm' only"):
        RNNLM(vocab_size=7, forget_bias=1.0)
