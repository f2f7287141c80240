"""The road (``python -m lmroad road``): a ``--quick`` run on a tiny generated
corpus writes the whole report, and its measuring parts measure what they say.

The full quick run takes about 20 s on a 2-core CPU; it runs once per module."""

import csv
import dataclasses
import importlib.util
import json
import shutil

import numpy as np
import pytest

import minigrad as mg
from lmroad.data import tiny_corpus
from lmroad.experiments import pool as pool_mod
from lmroad.experiments import recheck, road
from lmroad.experiments import runs as runs_mod
from lmroad.experiments.flops import non_embedding_parameters
from lmroad.experiments.gradient_flow import decay_summary, gradient_norms
from lmroad.experiments.interpret import attention_maps, lstm_gates, mean_attention_distance
from lmroad.experiments.long_range import recall_batch
from lmroad.experiments.probes import record_states, top_cell
from lmroad.experiments.quality import ARCHS, build_model, width_for
from lmroad.experiments.report import Report, markdown_table
from lmroad.experiments.runs import is_timing
from lmroad.models.rnn import LSTMLM, RNNLM
from lmroad.models.transformer import TransformerLM

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


def _quick(tmp, name, jobs, data):
    out = tmp / name
    assert road.main(["--quick", "--data", str(data), "--out", str(out), "--seed", "0",
                      "--jobs", str(jobs)]) == 0
    return out


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """The quick road twice on a tiny corpus: one worker, then two."""
    tmp = tmp_path_factory.mktemp("road")
    corpus = tiny_corpus(seed=3, n_chars=30_000)
    data = tmp / "tiny.txt"
    data.write_text(corpus.train + corpus.val, encoding="utf-8")
    return _quick(tmp, "one", 1, data), _quick(tmp, "two", 2, data), data


@pytest.fixture(scope="module")
def quick_report(quick_runs):
    return quick_runs[0]


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _values(folder):
    """Every CSV of a report, without its timing columns."""
    out = {}
    for path in sorted(folder.glob("*.csv")):
        if "timing" in path.name:
            continue
        out[path.name] = [{k: v for k, v in r.items() if not is_timing(k)} for r in _rows(path)]
    return out


def test_quick_road_writes_every_section(quick_report):
    text = (quick_report / "report.md").read_text(encoding="utf-8")
    for heading in ("## Setup", "## 1. Learning rates", "## 2. Quality at matched compute",
                    "## 3. Loss against position", "## 4. Gradient flow", "## 5. Long-range tasks",
                    "### Copying memory", "### Adding problem", "### Recall",
                    "## 6. Inside the trained models",
                    "## 7. How to choose", "### The claims, checked"):
        assert heading in text, heading
    assert "python -m lmroad road --budget quick" in text          # the command that reproduces it
    assert "Quick run" in text                      # a quick report says its numbers mean little
    assert "shared/" not in text and "ERRATA" not in text           # nothing a user of the repository lacks


def test_quick_road_csv_hold_every_model_size_and_seed(quick_report):
    quality = _rows(quick_report / "quality.csv")
    assert {r["arch"] for r in quality} == {"ngram", *ARCHS}
    assert len([r for r in quality if r["arch"] == "lstm"]) == len(road.QUICK.sizes)
    runs = list((quick_report / "runs").glob("lm-*.json"))
    assert len(runs) == len(ARCHS) * len(road.QUICK.sizes) * road.QUICK.seeds
    positions = _rows(quick_report / "position_loss.csv")
    assert len(positions) == road.QUICK.n_ctx and "lstm_carried" in positions[0]
    for task in ("copy", "adding", "recall"):
        rows = _rows(quick_report / f"task_{task}.csv")
        assert {r["arch"] for r in rows} == set(road.TASK_ARCHS)
    verdicts = _rows(quick_report / "verdicts.csv")
    assert verdicts and all(v["verdict"] in ("consistent", "contradicted", "not settled") for v in verdicts)


def test_same_numbers_with_one_worker_or_two(quick_runs):
    one, two, _ = quick_runs
    a, b = _values(one), _values(two)
    assert a.keys() == b.keys() and len(a) >= 10
    for name in a:
        assert a[name] == b[name], name


def test_the_road_on_two_ranks_writes_the_report_of_one_process(quick_runs, tmp_path):
    """``mpiexec -n 2 python -m lmroad road``: the runs dealt out to the ranks, rank 0 writes."""
    pytest.importorskip("mpi4py", reason='needs mpi4py and mpich: pip install -e ".[distributed]"')
    import os
    import subprocess
    import sys
    from pathlib import Path
    one, _, data = quick_runs
    mpiexec = Path(sys.executable).with_name("mpiexec")
    from minigrad import distributed
    env = {k: v for k, v in os.environ.items() if k not in distributed.launcher_variables()}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    out = tmp_path / "ranks"
    done = subprocess.run([str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", "2", sys.executable,
                           "-m", "lmroad", "road", "--quick", "--data", str(data), "--out", str(out),
                           "--seed", "0", "--jobs", "1"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("phase 1 of 2") == 1            # rank 0 alone speaks
    a, b = _values(one), _values(out)
    assert a.keys() == b.keys() and len(a) >= 10
    for name in a:
        assert a[name] == b[name], name
    names = [sorted(p.name for p in (d / "runs").iterdir()) for d in (one, out)]
    assert names[0] == names[1]


def test_an_interrupted_road_finishes_where_it_stopped(quick_runs, tmp_path):
    """Remove three saved runs and half-write a fourth (as a crash would): the same
    command reruns exactly those four and writes the same numbers."""
    _, two, data = quick_runs
    out = tmp_path / "resumed"
    shutil.copytree(two, out)
    files = sorted((out / "runs").glob("*.json"))
    for f in files[:3]:
        f.unlink()
    files[3].write_text(files[3].read_text()[:100])
    kept = {f.name: f.stat().st_mtime_ns for f in files[4:]}
    assert road.main(["--quick", "--data", str(data), "--out", str(out), "--seed", "0", "--jobs", "1"]) == 0
    assert {f.name: f.stat().st_mtime_ns for f in files[4:]} == kept           # the saved runs: not rerun
    assert all(f.exists() and json.loads(f.read_text())["result"] for f in files[:4])   # the rest: rerun
    assert _values(out) == _values(two)


def test_ctrl_c_keeps_the_finished_runs(tmp_path, monkeypatch):
    data = road.Data(train=np.arange(3000) % 7, tune=np.arange(300) % 7, val=np.arange(600) % 7,
                     tokenizer=None, prompt="", line="")
    specs = [dict(kind="fake", seed=i) for i in range(5)]
    done = []

    def execute(spec, d):
        if len(done) == 2:
            raise KeyboardInterrupt
        done.append(spec)
        return dict(spec, value=spec["seed"] * 2)

    monkeypatch.setattr(pool_mod, "execute", execute)
    with pytest.raises(pool_mod.Interrupted, match="2 of 5 runs are saved"):
        pool_mod.run_all(specs, data, str(tmp_path), quiet=True, in_process=True)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2
    monkeypatch.setattr(pool_mod, "execute", lambda spec, d: dict(spec, value=spec["seed"] * 2))
    results = pool_mod.run_all(specs, data, str(tmp_path), quiet=True, in_process=True)
    assert [results[runs_mod.spec_id(s)]["value"] for s in specs] == [0, 2, 4, 6, 8]


def test_a_changed_spec_is_run_again(tmp_path, monkeypatch):
    data = None
    calls = []
    monkeypatch.setattr(pool_mod, "execute", lambda spec, d: calls.append(spec) or dict(spec, v=1))
    spec = dict(kind="fake", seed=0, tokens=10, cost=1.0)
    pool_mod.run_all([spec], data, str(tmp_path), quiet=True, in_process=True)
    pool_mod.run_all([dict(spec, cost=5.0)], data, str(tmp_path), quiet=True, in_process=True)   # schedules
    assert len(calls) == 1
    pool_mod.run_all([dict(spec, tokens=20)], data, str(tmp_path), quiet=True, in_process=True)
    assert len(calls) == 2


def test_budgets_are_tokens_derived_from_flops():
    for b in road.BUDGETS.values():
        for i, n in enumerate(b.sizes):
            assert b.tokens(i) == round(b.flops[i] / (3 * 2 * n))
        assert not any("second" in f.name for f in dataclasses.fields(b))
    d = road.DEFAULT
    assert len(d.sizes) >= 3 and d.sizes[-1] / d.sizes[0] >= 8 and d.seeds >= 3 and d.n_ctx >= 256
    assert d.eval_windows >= 1000 and len(d.ngram_orders) >= 3


def test_the_learning_rate_is_the_sweeps_best_for_each_architecture():
    results = {f"{a}{lr}": dict(kind="sweep", arch=a, lr=lr, tune_loss=loss)
               for a in ARCHS for lr, loss in ((1e-3, 2.0), (3e-3, 1.5 if a != "gru" else 2.5), (1e-2, 1.8))}
    results["nan"] = dict(kind="sweep", arch="rnn", lr=3e-2, tune_loss=float("nan"))   # a diverged trial
    lrs = road.best_lrs(results)
    assert lrs == {"rnn": 3e-3, "lstm": 3e-3, "gru": 1e-2, "transformer": 3e-3}


def test_quick_road_figures_or_a_note(quick_report):
    text = (quick_report / "report.md").read_text(encoding="utf-8")
    names = ["quality_params.png", "quality_flops.png", "position_loss.png", "gradient_flow.png",
             "task_copy.png", "task_adding.png", "task_recall.png", "attention.png", "lstm_gates.png"]
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


def test_widths_match_the_parameter_targets():
    for arch in ARCHS:
        for target in (6_000, 54_000):
            n = non_embedding_parameters(build_model(arch, 65, width_for(arch, 65, target, 64), 64))
            assert abs(n - target) < 0.2 * target, (arch, target, n)


def test_the_lstm_of_the_road_starts_with_open_forget_gates():
    cell = top_cell(build_model("lstm", 10, 8, 16))
    H = 8
    forget = cell.bias_ih.numpy()[H:2 * H] + cell.bias_hh.numpy()[H:2 * H]   # gates i, f, g, o
    np.testing.assert_allclose(forget, 1.0, atol=0.5)                        # bias 1 (+ the U(±1/√H) init)
    assert forget.mean() > 0.6


def test_a_sweep_whose_best_is_at_the_edge_looks_one_step_further():
    b = dataclasses.replace(road.DEFAULT, sweep_lrs=(3e-3, 1e-2, 3e-2))

    def results(losses):
        return {f"{a}{lr}": dict(kind="sweep", arch=a, lr=lr, tune_loss=loss)
                for a, trials in losses.items() for lr, loss in trials.items()}
    grid = {"rnn": {3e-3: 2.5, 1e-2: 2.2, 3e-2: 2.1},          # best at the top: try 0.1
            "lstm": {3e-3: 2.0, 1e-2: 2.2, 3e-2: 2.4},         # best at the bottom: try 1e-3
            "transformer": {3e-3: 2.5, 1e-2: 2.2, 3e-2: 2.4}}  # inside the grid: done
    assert road.sweep_extensions(b, results(grid)) == {"rnn": 0.1, "lstm": 1e-3}
    grid["rnn"].update({0.1: 2.0, 0.3: 1.9})                  # two steps beyond the grid: stop there
    assert "rnn" not in road.sweep_extensions(b, results(grid))
    grid["rnn"][0.3] = float("nan")                            # a diverged trial never wins
    assert road.best_lrs(results(grid))["rnn"] == 0.1


def test_a_text_too_short_for_the_budget_is_a_clear_error(tmp_path, capsys):
    data = tmp_path / "short.txt"
    data.write_text(tiny_corpus(seed=1, n_chars=3_000).train, encoding="utf-8")
    assert road.main(["--quick", "--data", str(data), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "lmroad road: error: the text is too short for --budget quick" in err
    assert "validation:" in err and "needs" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "runs").exists()                   # nothing started


def test_a_negative_seed_is_refused_by_name(capsys):
    with pytest.raises(SystemExit) as e:
        road.main(["--quick", "--seed", "-1"])
    assert e.value.code == 2 and "--seed must be >= 0" in capsys.readouterr().err


def test_recheck_recomputes_a_saved_run_and_notices_a_changed_value(quick_runs, tmp_path, capsys):
    _, two, data = quick_runs
    out = tmp_path / "copy"
    shutil.copytree(two, out)
    run = sorted((out / "runs").glob("copy-*.json"))[0]
    args = [str(out), run.stem, "--budget", "quick", "--data", str(data), "--seed", "0"]
    assert recheck.main(args) == 0 and "identical" in capsys.readouterr().out
    saved = json.loads(run.read_text())
    saved["result"]["final_eval_loss"] += 1e-12                       # one value, off by a rounding
    run.write_text(json.dumps(saved))
    assert recheck.main(args) == 1 and "final_eval_loss" in capsys.readouterr().out
