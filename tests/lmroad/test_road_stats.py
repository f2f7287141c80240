"""The road's statistics and verdicts on synthetic results, and its per-position analysis.

Every verdict the report can give is produced here from made-up numbers:
clear wins, reversals, ties within the noise, a single seed, missing data."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
from lmroad.experiments import verdicts as V
from lmroad.experiments.positions import (
    carried_position_loss,
    eval_windows,
    fit_power_law,
    per_position_loss,
    summarize,
)
from lmroad.experiments.stats import best_of, compare, mean_se
from lmroad.models import NGramLM
from lmroad.models.rnn import LSTMLM
from lmroad.models.transformer import TransformerLM

# --------------------------------------------------------------------------- the rule


def test_mean_and_standard_error():
    m, se = mean_se([1.0, 2.0, 3.0])
    assert m == 2.0 and se == pytest.approx(1.0 / math.sqrt(3))
    assert mean_se([5.0]) == (5.0, 0.0)
    assert all(math.isnan(x) for x in mean_se([]))
    assert mean_se([1.0, None, 3.0]) == (2.0, 1.0)                      # not measured: left out
    assert all(math.isnan(x) for x in mean_se([1.0, float("nan"), 3.0]))   # diverged: never dropped
    assert compare("a", [1.0, float("nan")], "b", [2.0, 2.1]).winner is None


def test_a_clear_win_counts_and_names_the_winner():
    c = compare("lstm", [1.60, 1.61, 1.62], "rnn", [1.80, 1.79, 1.81])
    assert c.winner == "lstm" and c.diff == pytest.approx(-0.19)
    assert "lstm better by" in c.describe()
    higher = compare("a", [0.9, 0.91], "b", [0.5, 0.52], lower_is_better=False)
    assert higher.winner == "a"


def test_overlapping_error_bars_are_a_tie():
    c = compare("a", [1.5, 1.9, 1.6], "b", [1.7, 1.4, 1.8])
    assert c.winner is None and "a tie" in c.describe()


def test_a_difference_below_the_floor_is_a_tie_however_precise():
    c = compare("a", [1.000, 1.001, 1.000], "b", [1.030, 1.031, 1.030])   # 0.03 < 0.05 nats, se tiny
    assert c.winner is None
    assert compare("a", [1.0, 1.0], "b", [1.06, 1.06]).winner == "a"         # 0.06 > 0.05 and se = 0


def test_reversal_names_the_other_side():
    assert compare("transformer", [2.0, 2.01], "gru", [1.5, 1.52]).winner == "gru"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.5, 3.0), min_size=1, max_size=5), st.lists(st.floats(0.5, 3.0), min_size=1,
                                                                       max_size=5))
def test_the_rule_is_symmetric(a, b):
    ab, ba = compare("a", a, "b", b), compare("b", b, "a", a)
    assert ab.winner == ba.winner
    if ab.winner is not None:
        assert abs(ab.diff) > max(0.05, 2 * ab.se)


def test_best_of_lists_the_ties():
    best, tied = best_of({"a": [1.0, 1.01], "b": [1.02, 1.0], "c": [1.5, 1.51]})
    assert best == "a" and set(tied) == {"a", "b"}
    assert best_of({}) == (None, [])


# --------------------------------------------------------------------------- verdicts

def test_claim_best_gives_every_verdict():
    win = {"transformer": [1.2, 1.21], "lstm": [1.5, 1.5], "rnn": [1.7, 1.71]}
    assert V.claim_best("c", "s", "transformer", win).verdict == V.CONSISTENT
    lose = {"transformer": [1.8, 1.81], "lstm": [1.5, 1.5], "rnn": [1.9, 1.91]}
    assert V.claim_best("c", "s", "transformer", lose).verdict == V.CONTRADICTED
    tie = {"transformer": [1.5, 1.7], "lstm": [1.6, 1.6], "rnn": [1.9, 1.91]}
    v = V.claim_best("c", "s", "transformer", tie)
    assert v.verdict == V.NOT_SETTLED and "a tie" in v.measured
    assert V.claim_best("c", "s", "transformer", {"rnn": [1.0]}).verdict == V.NOT_SETTLED


def test_claim_gradients_eases_and_solves():
    eases, solves = V.claim_gradients(rnn=[-6.0, -6.2, -5.9], lstm=[-2.0, -2.1, -1.9], distance=50)
    assert eases.verdict == V.CONSISTENT and solves.verdict == V.CONTRADICTED
    eases, solves = V.claim_gradients(rnn=[-3.0, -3.1], lstm=[-0.5, -0.4], distance=50)
    assert eases.verdict == V.CONSISTENT and solves.verdict == V.CONSISTENT
    eases, _ = V.claim_gradients(rnn=[-1.0, -1.1], lstm=[-3.0, -3.2], distance=50)
    assert eases.verdict == V.CONTRADICTED
    eases, solves = V.claim_gradients(rnn=[-2.0, -2.5], lstm=[-2.2, -0.8], distance=50)
    assert eases.verdict == V.NOT_SETTLED and solves.verdict == V.NOT_SETTLED


def test_claim_context_follows_the_published_expectation():
    gains_ok = {"transformer": [0.08, 0.09, 0.085], "lstm": [0.002, 0.001, 0.003]}   # beyond 0.05
    plateaus_ok = {"transformer": [250, 240, 256], "lstm": [40, 45, 38]}
    assert V.claim_context(gains_ok, plateaus_ok, 256).verdict == V.CONSISTENT
    reversed_ = {"transformer": [0.001, 0.002], "lstm": [0.05, 0.06]}
    assert V.claim_context(reversed_, {"transformer": [20, 22], "lstm": [200, 210]}, 256).verdict == \
        V.CONTRADICTED
    late = {"transformer": [250, 240], "lstm": [180, 190]}                     # the LSTM still gains late
    assert V.claim_context(gains_ok, late, 256).verdict == V.CONTRADICTED
    assert V.claim_context(gains_ok, plateaus_ok, 64).verdict == V.NOT_SETTLED   # context too short


def test_solved_distance():
    losses = {10: [0.001, 0.002], 30: [0.01, 0.02], 100: [0.15, 0.16]}
    base = {10: 10 * math.log(8) / 30, 30: 10 * math.log(8) / 50, 100: 10 * math.log(8) / 120}
    assert V.solved_distance(losses, base) == 30
    assert V.solved_distance({10: [0.7]}, {10: 0.69}) is None


# --------------------------------------------------------------------------- loss against position

def test_power_law_fit_recovers_its_parameters():
    t = np.arange(1, 257)
    fit = fit_power_law(1.3 + 2.0 * t ** -0.7)
    assert fit["a"] == pytest.approx(1.3, abs=0.01) and fit["b"] == pytest.approx(2.0, abs=0.02)
    assert fit["c"] == pytest.approx(0.7, abs=0.02) and fit["rmse"] < 1e-3


def test_summary_reads_the_curve():
    t = np.arange(1, 257)
    curve = 1.0 + 3.0 * t ** -1.0
    s = summarize(curve)
    assert s["L1"] == pytest.approx(4.0) and s["L10"] == pytest.approx(1.3, rel=0.01)     # 9 .. 11
    assert s["L_ctx"] == pytest.approx(curve[229:].mean())                              # 230 .. 256
    assert s["gain_100"] == pytest.approx(curve[89:110].mean() - curve[229:].mean())
    # 3/t − 3/256 <= 0.01 from t = 3 / (0.01 + 3/256) ≈ 138.1 on
    assert abs(s["within_001"] - 139) <= 3          # the fit's c is on a grid
    flat = summarize(np.full(50, 2.0))
    assert flat["within_001"] == 1 and flat["L100"] is None


def test_per_position_loss_starts_each_window_fresh():
    """Position t of every window depends only on the window's first t tokens."""
    mg.manual_seed(0)
    model = LSTMLM(vocab_size=7, n_embd=4, hidden_size=6)
    ids = np.random.default_rng(0).integers(0, 7, 500)
    w = eval_windows(ids, 12, 16, seed=1)
    assert w.shape == (12, 17) and (eval_windows(ids, 12, 16, seed=1) == w).all()
    curve = per_position_loss(model, w, batch_size=5)
    short = per_position_loss(model, w[:, :9], batch_size=12)              # the first 8 positions alone
    np.testing.assert_allclose(curve[:8], short, rtol=1e-5)
    with mg.no_grad():
        logits, loss = model(mg.tensor(w[:, :-1]), mg.tensor(w[:, 1:]))
    assert curve.mean() == pytest.approx(loss.item(), rel=1e-5)


def test_a_bigram_needs_one_token_of_context_and_a_transformer_sees_the_window():
    ids = np.tile(np.arange(5), 200)
    lm = NGramLM(2, 5, "kneser_ney").fit(ids)
    curve = per_position_loss(lm, eval_windows(ids, 20, 10, seed=0))
    # a deterministic cycle: known from the first token on
    assert curve.max() < 0.01 and np.allclose(curve, curve[0], atol=1e-4)
    model = TransformerLM(vocab_size=5, n_layer=1, n_head=1, n_embd=8, block_size=10)
    assert per_position_loss(model, eval_windows(ids, 4, 10, seed=0)).shape == (10,)


def test_carried_state_skips_the_cold_first_window():
    mg.manual_seed(0)
    model = LSTMLM(vocab_size=7, n_embd=4, hidden_size=6)
    ids = np.random.default_rng(0).integers(0, 7, 400)
    curve = carried_position_loss(model, ids, n_ctx=10, n_lanes=4, max_windows=5)
    assert curve.shape == (10,) and np.isfinite(curve).all()
    with pytest.raises(ValueError, match="need at least 2"):
        carried_position_loss(model, ids[:30], n_ctx=10, n_lanes=4, max_windows=5)


def test_claim_task_needs_someone_to_learn_the_task():
    base = 0.46
    stuck = {"transformer": [0.462, 0.462], "lstm": [0.451, 0.455], "rnn": [0.90, 0.91]}
    v = V.claim_task("c", "s", "transformer", stuck, base, min_effect=0.046)
    assert v.verdict == V.NOT_SETTLED and "not learned" in v.measured
    learned = {"transformer": [0.01, 0.012], "lstm": [0.44, 0.45], "rnn": [0.90, 0.91]}
    assert V.claim_task("c", "s", "transformer", learned, base, min_effect=0.046).verdict == V.CONSISTENT
    recall = {"transformer": [1.0, 1.0], "lstm": [0.12, 0.13]}
    assert V.claim_task("c", "s", "transformer", recall, 0.125, lower_is_better=False,
                        min_effect=0.05).verdict == V.CONSISTENT
    lstm_wins = {"transformer": [0.13, 0.12], "lstm": [0.9, 0.95]}
    assert V.claim_task("c", "s", "transformer", lstm_wins, 0.125, lower_is_better=False,
                        min_effect=0.05).verdict == V.CONTRADICTED
