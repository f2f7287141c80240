"""lmroad.experiments.flops: the analytic FLOPs per token against the products that run.

Each model runs a forward and a backward pass under minigrad.profile.count_flops;
the forward per token must match ``forward_flops_per_token`` and the backward must
be about twice the forward. Tiny float64 models: each case well under a second.
"""

from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
from lmroad.experiments.flops import (
    FFN_MULT,
    forward_flops_per_token,
    non_embedding_parameters,
    training_flops,
)
from lmroad.models import GRULM, LSTMLM, RNNLM, NGramLM, TransformerLM

V = 29

MODELS = {
    "rnn-1": lambda: RNNLM(vocab_size=V, n_embd=12, hidden_size=16, num_layers=1),
    "rnn-2": lambda: RNNLM(vocab_size=V, n_embd=12, hidden_size=16, num_layers=2),
    "lstm-1": lambda: LSTMLM(vocab_size=V, n_embd=12, hidden_size=16, num_layers=1),
    "lstm-2": lambda: LSTMLM(vocab_size=V, n_embd=12, hidden_size=16, num_layers=2),
    "gru-1": lambda: GRULM(vocab_size=V, n_embd=12, hidden_size=16, num_layers=1),
    "gru-2": lambda: GRULM(vocab_size=V, n_embd=12, hidden_size=16, num_layers=2),
    "transformer-small": lambda: TransformerLM(vocab_size=V, n_layer=1, n_head=2, n_embd=8,
                                               block_size=16),
    "transformer-large": lambda: TransformerLM(vocab_size=V, n_layer=2, n_head=4, n_embd=16,
                                               block_size=16),
}


def _count(model, B: int, T: int):
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.integers(0, V, (B, T)))
    y = mg.tensor(rng.integers(0, V, (B, T)))
    with mg.profile.count_flops() as fc:
        _, loss = model(x, y)
        forward = fc.forward
        loss.backward()
    assert fc.forward == forward                     # the backward's products all count as backward
    return fc


@pytest.fixture(autouse=True)
def _float64():
    old = mg.get_default_dtype()
    mg.set_default_dtype(mg.float64)
    yield
    mg.set_default_dtype(old)


@pytest.mark.parametrize("T", [4, 12])
@pytest.mark.parametrize("name", list(MODELS))
def test_counted_forward_matches_the_formula_and_backward_is_twice(name, T):
    model = MODELS[name]()
    B = 3
    fc = _count(model, B, T)
    assert fc.forward / (B * T) == pytest.approx(forward_flops_per_token(model, T), rel=0.03)
    # Backward: two products per forward product (dX = G Wᵀ and dW = Xᵀ G). The fused
    # recurrences compute dh_0 = G W_hh for the zero initial state too, and the
    # Transformer's every input gradient is needed (the first block's reaches the
    # embeddings), so all are exactly 2x (stepped cells skip dh_0: see below). The
    # embedding's scatter-add gradient is no product.
    assert fc.backward == pytest.approx(2 * fc.forward, rel=0.10)
    assert fc.backward <= 2 * fc.forward


@pytest.mark.parametrize("name", ["rnn-2", "gru-2", "lstm-2"])
def test_the_step_by_step_cells_skip_only_the_initial_state_gradient(name):
    """Stepped cell by cell, a gradient nobody needs is not computed: the first step
    multiplies the zero initial state h_0, which needs no gradient, so that step's
    dh_0 = G W_hh is skipped (one product per layer and sequence)."""
    model, B, T = MODELS[name](), 3, 5
    for cell in model.core.cells:
        cell.fused_sequence = False
    fc = _count(model, B, T)
    cfg = model.config
    G = {"rnn": 1, "gru": 3, "lstm": 4}[cfg.cell]
    H = cfg.hidden_size
    skipped = cfg.num_layers * 2 * B * H * G * H     # dh_0 = G W_hh, once per layer
    assert fc.backward == 2 * fc.forward - skipped


@pytest.mark.parametrize("name", ["rnn-2", "gru-2", "lstm-2", "transformer-small", "transformer-large"])
def test_fused_recurrences_and_transformer_backward_is_exactly_twice(name):
    fc = _count(MODELS[name](), 2, 6)
    assert fc.backward == 2 * fc.forward


def test_transformer_attention_term_grows_with_the_context():
    model = MODELS["transformer-large"]()
    cfg = model.config
    extra = forward_flops_per_token(model, 12) - forward_flops_per_token(model, 4)
    assert extra == cfg.n_layer * 2 * 2 * (12 - 4) * cfg.n_embd
    assert model.blocks[0].mlp.hidden == FFN_MULT * cfg.n_embd   # the formula's d_ff


def test_recurrent_cost_does_not_depend_on_the_context():
    model = MODELS["lstm-2"]()
    assert forward_flops_per_token(model, 1) == forward_flops_per_token(model, 1000)


def test_formulas_by_hand():
    lstm = LSTMLM(vocab_size=100, n_embd=10, hidden_size=20, num_layers=2)
    assert forward_flops_per_token(lstm, 7) == 2 * (10 * 80 + 20 * 80) + 2 * (20 * 80 + 20 * 80) \
        + 2 * 20 * 100
    gpt = TransformerLM(vocab_size=100, n_layer=3, n_head=2, n_embd=8, block_size=32)
    per_layer = 2 * (8 * 24 + 8 * 8 + 2 * 8 * 32) + 4 * 32 * 8
    assert forward_flops_per_token(gpt, 32) == 3 * per_layer + 2 * 8 * 100
    assert training_flops(gpt, 32, 1000) == 3 * forward_flops_per_token(gpt, 32) * 1000


def test_non_embedding_parameters():
    gpt = TransformerLM(vocab_size=100, n_layer=3, n_head=2, n_embd=8, block_size=32)
    emb = 100 * 8 + 32 * 8                           # wte (tied to the head) and wpe
    assert non_embedding_parameters(gpt) == gpt.num_parameters() - emb
    # 12·n_layer·d² (Kaplan's N) plus the biases and layer norms
    d = 8
    biases = 3 * (3 * d + d + 4 * d + d + 2 * 2 * d) + 2 * d
    assert non_embedding_parameters(gpt) == 12 * 3 * d * d + biases

    rnn = RNNLM(vocab_size=100, n_embd=10, hidden_size=20)
    assert non_embedding_parameters(rnn) == rnn.num_parameters() - 100 * 10   # untied head counts
    tied = RNNLM(vocab_size=100, n_embd=20, hidden_size=20, tie_weights=True)
    assert non_embedding_parameters(tied) == tied.num_parameters() - 100 * 20  # only the head bias
    assert non_embedding_parameters(tied) == (20 * 20 * 2 + 2 * 20) + 100


def test_bad_arguments():
    gpt = MODELS["transformer-small"]()
    with pytest.raises(ValueError, match="block_size"):
        forward_flops_per_token(gpt, 17)
    with pytest.raises(ValueError, match="n_ctx"):
        forward_flops_per_token(gpt, 0)
    with pytest.raises(TypeError, match="NGramLM"):
        forward_flops_per_token(NGramLM(vocab_size=V), 4)
