"""The road (``python -m lmroad road``): a ``--quick`` run on a tiny generated
corpus writes the whole report, and its measuring parts measure what they say.

The full quick run takes about 20 s on a 2-core CPU; it runs once per module."""

import csv
import importlib.util

import numpy as np
import pytest

import minigrad as mg
from lmroad.data import tiny_corpus
from lmroad.experiments import road
from lmroad.experiments.gradient_flow import decay_summary, gradient_norms
from lmroad.experiments.interpret import attention_maps, lstm_gates, mean_attention_distance
from lmroad.experiments.long_range import recall_batch
from lmroad.experiments.probes import record_states, top_cell
from lmroad.experiments.quality import build_neural, matched_size
from lmroad.experiments.report import Report, markdown_table
from lmroad.models.rnn import LSTMLM, RNNLM
from lmroad.models.transformer import TransformerLM

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("road")
    corpus = tiny_corpus(seed=3, n_chars=30_000)
    data = tmp / "tiny.txt"
    data.write_text(corpus.train + corpus.val, encoding="utf-8")
    out = tmp / "report"
    assert road.main(["--quick", "--data", str(data), "--out", str(out), "--seed", "0"]) == 0
    return out


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_quick_road_writes_every_section(quick_report):
    text = (quick_report / "report.md").read_text(encoding="utf-8")
    for heading in ("## Setup", "## 1. Quality and cost", "## 2. Gradient flow", "## 3. Long-range",
                    "## 4. Inside the trained models", "## 5. How to choose",
                    "### The seed document's claims, checked"):
        assert heading in text
    assert "| model | parameters |" in text                 # the quality table
    assert "| if you need | choose | measured | runner-up |" in text
    assert "Quick run" in text                              # a quick report says its numbers mean little


def test_quick_road_csv_hold_every_model(quick_report):
    quality = {r["model"]: r for r in _rows(quick_report / "quality.csv")}
    assert set(quality) == {"2-gram", "3-gram", "4-gram", "rnn", "lstm", "gru", "transformer"}
    for r in quality.values():
        assert 0 < float(r["val_bpc"]) < 10 and r["sample"]
    long_range = _rows(quick_report / "long_range.csv")
    assert {(r["model"], int(r["k"])) for r in long_range} == {
        (m, k) for m in ("rnn", "lstm", "transformer") for k in road.QUICK.distances}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in long_range)
    grads = _rows(quick_report / "gradient_flow.csv")
    assert len(grads) == road.QUICK.grad_T and "lstm_trained" in grads[0]


def test_quick_road_figures_or_a_note(quick_report):
    text = (quick_report / "report.md").read_text(encoding="utf-8")
    names = ["quality.png", "gradient_flow.png", "long_range.png", "attention.png", "lstm_gates.png"]
    if HAVE_MPL:
        for n in names:
            assert (quick_report / n).stat().st_size > 1000 and f"]({n})" in text
    else:
        assert "Plots were skipped" in text
        assert not any((quick_report / n).exists() for n in names)


def test_report_without_matplotlib_says_so(tmp_path):
    rep = Report(str(tmp_path), plots=False)
    note = rep.figure("x.png", lambda plt: None, "never drawn")
    assert "skipped" in note and rep.skipped_figures == ["x.png"] and not (tmp_path / "x.png").exists()
    assert markdown_table([dict(a=1.23456, b=None)], [("a", "A", ".2f"), ("b", "B", "")]).splitlines()[-1] \
        == "| 1.23 | – |"


def test_recall_batch_asks_for_the_first_token():
    idx, targets = recall_batch(np.random.default_rng(0), 64, k=7, n_symbols=5)
    assert idx.shape == targets.shape == (64, 8)
    assert (idx[:, 7] == 5).all() and (idx[:, :7] < 5).all()          # the query mark, then symbols
    assert (targets[:, 7] == idx[:, 0]).all() and (targets[:, :7] == -100).all()


def test_gradient_does_not_reach_the_past_without_recurrent_weights():
    mg.manual_seed(0)
    model = RNNLM(vocab_size=7, n_embd=4, hidden_size=6)
    model.core.cells[0].weight_hh.data[...] = 0                       # h_t no longer depends on h_{t-1}
    idx = mg.randint(0, 7, (3, 9))
    norms = gradient_norms(model, idx, idx)
    assert norms.shape == (9,) and norms[0] > 0 and np.all(norms[1:] == 0)


def test_gradient_norms_match_a_hand_unrolled_lstm():
    """∂L_T/∂h_t from the probe equals the same derivative through an explicit unroll."""
    import minigrad.functional as F
    mg.manual_seed(1)
    model = LSTMLM(vocab_size=5, n_embd=3, hidden_size=4)
    idx = mg.randint(0, 5, (2, 6))
    norms = gradient_norms(model, idx, idx)
    cell = top_cell(model)
    x = model.embedding(idx)                                           # (B, T, E)
    state, hs = None, []
    for t in range(6):
        state = cell(x[:, t], state)
        hs.append(state[0])
    loss = F.cross_entropy(model.head(hs[-1]), idx[:, -1], reduction="sum")
    grads = mg.grad(loss, hs)
    expected = [np.linalg.norm(g.numpy(), axis=-1).mean() for g in grads][::-1]
    np.testing.assert_allclose(norms, expected, rtol=1e-5)
    assert decay_summary(norms, distances=(2,))["ratio_2"] == pytest.approx(norms[2] / norms[0])


def test_probes_leave_the_model_as_they_found_it():
    model = RNNLM(vocab_size=5, n_embd=3, hidden_size=4)
    cell = top_cell(model)
    with record_states(cell) as hs:
        model(mg.randint(0, 5, (2, 4)))
    assert len(hs) == 4 and "recurrence" not in cell.__dict__


def test_attention_rows_are_causal_distributions_and_gates_are_probabilities():
    ids = np.arange(10) % 6
    maps = attention_maps(TransformerLM(6, n_layer=2, n_head=2, n_embd=8, block_size=16), ids, "cpu")
    assert maps.shape == (2, 2, 10, 10)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)
    assert np.all(np.triu(maps, k=1) == 0)                              # no query sees the future
    assert mean_attention_distance(maps).shape == (2, 2)
    gates = lstm_gates(LSTMLM(6, n_embd=3, hidden_size=5), ids, "cpu")
    for key in ("i", "f", "o"):
        assert gates[key].shape == (10, 5) and np.all((gates[key] > 0) & (gates[key] < 1))


def test_matched_sizes_are_close_to_the_budget():
    for kind in ("rnn", "lstm", "gru", "transformer"):
        size = matched_size(kind, 65, 50_000, 32)
        n = build_neural(kind, 65, size, 32).num_parameters()
        assert abs(n - 50_000) < 0.2 * 50_000, (kind, size, n)
