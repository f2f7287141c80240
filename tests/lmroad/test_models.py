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
from lmroad.models import NGramLM, build_model, check_sampling_args, filter_logits, sample_logits

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


# =========================================================================== the shared interface

def test_build_model_by_name():
    model = build_model("ngram", {"n": 2, "vocab_size": V})
    assert isinstance(model, NGramLM) and model.config.n == 2
    with pytest.raises(ValueError, match="unknown model"):
        build_model("hmm", {})
