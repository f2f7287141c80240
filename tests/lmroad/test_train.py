"""Tests of lmroad.train: evaluation, exact resume, Ctrl-C, the n-gram path, progress output.

Tiny models and a few steps each; the corpus is the synthetic one written to
a temporary file, so nothing touches the network.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import signal
import sys

import numpy as np
import pytest

import minigrad as mg
from lmroad import train as train_mod
from lmroad.checkpoint import CheckpointError, load_model, read_checkpoint
from lmroad.data import iter_eval_windows
from lmroad.models import LSTMLM, NGramLM, TransformerLM
from lmroad.train import TrainConfig, TrainingDiverged, evaluate, resolve_config, train
from minigrad import optim

SIZES = {
    "transformer": dict(n_layer=1, n_head=2, n_embd=16, dropout=0.1),
    "lstm": dict(n_embd=8, hidden_size=16, dropout=0.1),
    "gru": dict(n_embd=8, hidden_size=16),
    "rnn": dict(n_embd=8, hidden_size=16),
}


def config(text_file, out, model="transformer", **kw) -> TrainConfig:
    base = dict(model=model, data=str(text_file), out=str(out), max_iters=8, batch_size=4, block_size=16,
                lr=3e-3, min_lr=3e-4, warmup_iters=2, eval_interval=4, eval_iters=2, log_interval=2,
                seed=7, progress="none")
    base.update(SIZES.get(model, {}))
    base.update(kw)
    return TrainConfig(**base)


def final_weights(out) -> dict[str, np.ndarray]:
    return read_checkpoint(out).weights


def val_records(out) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [{k: r[k] for k in ("step", "loss")} for r in map(json.loads, lines) if r["split"] == "val"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# =========================================================================== evaluate

def test_evaluate_is_the_token_weighted_mean_loss_and_bpc_is_loss_over_ln2():
    mg.manual_seed(0)
    model = TransformerLM(vocab_size=5, n_layer=1, n_head=1, n_embd=8, block_size=4, dropout=0.5)
    ids = np.random.default_rng(0).integers(0, 5, 23)
    model.train()
    ev = evaluate(model, ids, block_size=4, batch_size=3)
    assert model.training                                  # the mode is restored
    total = n = 0
    model.eval()
    for x, y in iter_eval_windows(ids, 3, 4):
        _, loss = model(x, y)
        total, n = total + loss.item() * y.size, n + y.size
    assert ev["tokens"] == n == 22
    assert ev["loss"] == pytest.approx(total / n, rel=1e-6)
    assert ev["perplexity"] == pytest.approx(math.exp(ev["loss"]))
    assert ev["bpc"] == pytest.approx(ev["loss"] / math.log(2))
    assert evaluate(model, ids, 4, 3, chars_per_token=None)["bpc"] is None
    assert evaluate(model, ids, 4, 3, max_batches=1)["tokens"] == 12


def test_evaluate_carries_a_recurrent_state_along_lanes():
    mg.manual_seed(0)
    model = LSTMLM(vocab_size=5, n_embd=4, hidden_size=8)
    ids = np.random.default_rng(1).integers(0, 5, 41)
    ev = evaluate(model, ids, block_size=4, batch_size=2)
    assert ev["tokens"] == 40                              # 2 lanes of 20 targets
    # the same as one long forward pass over each lane
    x = mg.tensor(np.stack([ids[0:20], ids[20:40]]))
    y = mg.tensor(np.stack([ids[1:21], ids[21:41]]))
    _, loss = model(x, y)
    assert ev["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert model.last_state is not None and model.last_state[0].shape == (1, 2, 8)


# =========================================================================== resume is exact

@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_interrupt_then_resume_matches_a_straight_run(text_file, tmp_path, model):
    straight = train(config(text_file, tmp_path / "a", model))

    def ctrl_c_at_3(step, info):
        if step == 3:
            raise KeyboardInterrupt

    first = train(config(text_file, tmp_path / "b", model), on_step=ctrl_c_at_3)
    assert first.interrupted and first.step == 3 and read_checkpoint(tmp_path / "b").step == 3
    second = train(config(text_file, tmp_path / "b", model, resume=True))
    assert (second.step, second.interrupted) == (8, False)
    assert first.train_losses + second.train_losses == straight.train_losses
    assert_same_weights(final_weights(tmp_path / "b"), final_weights(tmp_path / "a"))
    assert val_records(tmp_path / "b") == val_records(tmp_path / "a")
    best_a, best_b = (read_checkpoint(d / "best").metrics for d in (tmp_path / "a", tmp_path / "b"))
    assert best_b["best"] == best_a["best"] and best_b["last"]["loss"] == best_a["last"]["loss"]


def test_an_interrupt_in_the_middle_of_a_step_saves_the_last_whole_step(text_file, tmp_path, monkeypatch):
    straight = train(config(text_file, tmp_path / "a", "lstm", max_iters=6))
    calls = {"n": 0}
    real = train_mod.optim.clip_grad_norm_

    def interrupted_clip(params, max_norm):
        calls["n"] += 1
        if calls["n"] == 3:                                # during step 3, after backward
            raise KeyboardInterrupt
        return real(params, max_norm)

    monkeypatch.setattr(train_mod.optim, "clip_grad_norm_", interrupted_clip)
    first = train(config(text_file, tmp_path / "b", "lstm", max_iters=6))
    monkeypatch.undo()
    assert first.interrupted and read_checkpoint(tmp_path / "b").step == 2
    second = train(config(text_file, tmp_path / "b", "lstm", max_iters=6, resume=True))
    assert first.train_losses + second.train_losses == straight.train_losses
    assert_same_weights(final_weights(tmp_path / "b"), final_weights(tmp_path / "a"))


def test_a_real_ctrl_c_stops_after_the_step_and_saves(text_file, tmp_path):
    def press_ctrl_c(step, info):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)            # handled: the loop finishes this step

    handler = signal.getsignal(signal.SIGINT)
    result = train(config(text_file, tmp_path, max_iters=8), on_step=press_ctrl_c)
    assert result.interrupted and result.step == 2 and len(result.train_losses) == 2
    assert read_checkpoint(tmp_path).step == 2
    assert signal.getsignal(signal.SIGINT) is handler      # the old handler is back


def test_resume_continues_with_a_new_end_and_the_saved_settings(text_file, tmp_path):
    train(config(text_file, tmp_path, max_iters=4, lr_decay_iters=8))
    cfg = resolve_config({"out": str(tmp_path), "max_iters": 6}, resume=True)
    assert (cfg.max_iters, cfg.lr_decay_iters, cfg.n_embd, cfg.resume) == (6, 8, 16, True)
    assert train(cfg).step == 6


def _lr_at(step, N, lr=3e-3, min_lr=3e-4, warmup=2):
    return optim.cosine_with_warmup(step, lr, warmup, N, min_lr)


def _lrs(cfg, **kw) -> tuple[list[float], str]:
    """The lr of every step ``train`` runs, and what it printed."""
    lrs, stream = [], io.StringIO()
    train(dataclasses.replace(cfg, progress="lines"), on_step=lambda step, info: lrs.append(info["lr"]),
          stream=stream, **kw)
    return lrs, stream.getvalue()


@pytest.mark.parametrize("old_checkpoint", [False, True], ids=["stored-schedule", "old-checkpoint"])
def test_resume_with_a_larger_max_iters_keeps_the_schedule_it_was_started_with(text_file, tmp_path,
                                                                                old_checkpoint):
    N, k = 6, 3

    def ctrl_c_at_k(step, info):
        first.append(info["lr"])
        if step == k:
            raise KeyboardInterrupt

    first: list[float] = []
    train(config(text_file, tmp_path, max_iters=N, model="lstm"), on_step=ctrl_c_at_k)
    assert read_checkpoint(tmp_path).extra["lr_schedule"] == {"lr": 3e-3, "min_lr": 3e-4, "warmup_iters": 2,
                                                              "lr_decay_iters": N}
    if old_checkpoint:          # as written before the schedule was stored: only train_config says
        path = tmp_path / "checkpoint.json"
        meta = json.loads(path.read_text())
        del meta["extra"]["lr_schedule"]
        path.write_text(json.dumps(meta))
    cfg = resolve_config({"out": str(tmp_path), "max_iters": 2 * N}, resume=True)   # as the CLI does
    rest, printed = _lrs(cfg)
    lrs = first + rest
    assert len(lrs) == 2 * N
    assert lrs == pytest.approx([_lr_at(s, N) for s in range(2 * N)], rel=1e-12)
    assert lrs[N:] == [3e-4] * N                       # past the horizon: min_lr, as nanoGPT
    assert "note: --max-iters 12 differs from the horizon" in printed and "--lr-decay-iters" in printed
    assert read_checkpoint(tmp_path).extra["lr_schedule"]["lr_decay_iters"] == N   # and stays so


def test_lr_decay_iters_sets_the_horizon_of_a_new_or_a_resumed_run(text_file, tmp_path):
    lrs, _ = _lrs(config(text_file, tmp_path, max_iters=3, lr_decay_iters=10))
    assert lrs == pytest.approx([_lr_at(s, 10) for s in range(3)], rel=1e-12)
    cfg = resolve_config({"out": str(tmp_path), "max_iters": 6, "lr_decay_iters": 4}, resume=True)
    rest, printed = _lrs(cfg)
    assert rest == pytest.approx([_lr_at(s, 4) for s in range(3, 6)], rel=1e-12)
    assert "note: --lr-decay-iters 4 replaces this run's horizon of 10 steps" in printed
    again = resolve_config({"out": str(tmp_path), "max_iters": 7}, resume=True)    # the new horizon is kept
    lrs, printed = _lrs(again)
    assert lrs == [3e-4] and "note: --max-iters 7 differs from the horizon" in printed


def test_resume_refuses_another_model_or_other_data(text_file, tmp_path):
    train(config(text_file, tmp_path, max_iters=2))
    with pytest.raises(CheckpointError, match="config differs: n_embd"):
        train(config(text_file, tmp_path, max_iters=4, n_embd=32, resume=True))
    other = tmp_path / "other.txt"
    other.write_text(text_file.read_text()[::-1])
    with pytest.raises(CheckpointError, match="other text"):
        train(config(other, tmp_path, max_iters=4, resume=True))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_config({"out": str(tmp_path / "empty")}, resume=True)


@pytest.mark.parametrize("extra", [[1, 2], {"skip_streak": -1}, {"skipped_steps": "3"},
                                   {"skipped_steps": True}])
def test_resume_refuses_a_checkpoint_whose_trainer_state_is_malformed(text_file, tmp_path, extra):
    train(config(text_file, tmp_path, max_iters=2))
    meta = json.loads((tmp_path / "checkpoint.json").read_text())
    if isinstance(extra, dict):
        extra = {**meta["extra"], **extra}
    meta["extra"] = extra
    (tmp_path / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"checkpoint.json: extra"):
        train(config(text_file, tmp_path, max_iters=4, resume=True))


# =========================================================================== other models, output

@pytest.mark.parametrize("model", ["gru", "rnn"])
def test_every_recurrent_model_trains_and_loads(text_file, tmp_path, model):
    result = train(config(text_file, tmp_path, model, max_iters=3))
    loaded, c = load_model(tmp_path)
    assert loaded.model_type == model and c.step == 3 == result.step
    assert c.data_state["carried_state"] is not None      # the state for the next window is saved


def test_ngram_is_fitted_once_then_evaluated_and_saved(text_file, tmp_path):
    result = train(config(text_file, tmp_path, "ngram", ngram_n=3))
    model, c = load_model(tmp_path)
    assert isinstance(model, NGramLM) and model.config.n == 3 and model.num_entries() > 0
    assert result.last_eval["loss"] < math.log(c.model_config["vocab_size"])
    assert c.metrics["best"]["val_loss"] == pytest.approx(result.best_val_loss)


def test_training_on_the_fake_device_loads_on_cpu(text_file, tmp_path):
    train(config(text_file, tmp_path, "lstm", device="fake", max_iters=2))
    model, _ = load_model(tmp_path, device="cpu")
    assert next(iter(model.parameters())).device == mg.device("cpu")


@pytest.mark.cuda
def test_training_on_cuda_loads_on_cpu_and_samples_on_cuda(text_file, tmp_path):
    train(config(text_file, tmp_path, "lstm", device="cuda", max_iters=2))
    model, _ = load_model(tmp_path, device="cpu")
    assert next(iter(model.parameters())).device == mg.device("cpu")
    gpu, _ = load_model(tmp_path, device="cuda")
    out = gpu.generate(mg.tensor([[1, 2]], device="cuda"), 5, seed=0)
    assert out.shape == (1, 7)


def test_plain_progress_lines_and_metrics_file(text_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)    # as if tqdm were not installed
    stream = io.StringIO()
    train(config(text_file, tmp_path, max_iters=4, progress="bar", log_interval=2), stream=stream)
    text = stream.getvalue()
    assert "step 2/4 | loss" in text and "tok/s" in text and "eta" in text
    assert "step 4: val loss" in text and "bpc" in text
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [0, 4]
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4]
    assert all(r["bpc"] == pytest.approx(r["loss"] / math.log(2)) for r in records if r["split"] == "val")


def test_tqdm_bar_when_asked(text_file, tmp_path):
    pytest.importorskip("tqdm")
    stream = io.StringIO()
    train(config(text_file, tmp_path, max_iters=3, progress="bar"), stream=stream)
    assert "tok/s" in stream.getvalue() and "3/3" in stream.getvalue()


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_checkpoint(text_file, tmp_path, monkeypatch):
    """With --max-skipped-steps 0 the first NaN stops the run (skipping: test_nonfinite.py)."""
    train(config(text_file, tmp_path, max_iters=2))
    real = TransformerLM.forward

    def nan_loss(self, idx, targets=None):
        logits, loss = real(self, idx, targets)
        return logits, loss * float("nan")

    monkeypatch.setattr(TransformerLM, "forward", nan_loss)
    with pytest.raises(TrainingDiverged, match="diverged at step 3: the loss is nan"):
        train(config(text_file, tmp_path, max_iters=4, resume=True, max_skipped_steps=0))
    assert read_checkpoint(tmp_path).step == 2


def test_max_iters_0_saves_the_initial_model_and_says_so(text_file, tmp_path):
    stream = io.StringIO()
    result = train(config(text_file, tmp_path, "lstm", max_iters=0, progress="lines"), stream=stream)
    assert result.step == 0 and result.train_losses == []
    note = f"note: --max-iters 0: nothing to train; the initial model is saved to {tmp_path}"
    assert note in stream.getvalue()
    model, c = load_model(tmp_path)
    assert c.step == 0 and read_checkpoint(tmp_path / "best").step == 0
    assert c.metrics["last"]["loss"] == pytest.approx(result.last_eval["loss"])
    resumed = train(config(text_file, tmp_path, "lstm", max_iters=2, resume=True))   # and it resumes
    assert resumed.step == 2


def test_overwrite_removes_the_old_runs_checkpoint_files_and_only_those(text_file, tmp_path):
    train(config(text_file, tmp_path, "lstm", max_iters=2))
    for folder in (tmp_path, tmp_path / "best"):       # what a crashed save or a version-1 run leaves
        (folder / "checkpoint.next.json").write_text("{}")
        (folder / "state-00000009-0123abcd.safetensors").write_bytes(b"x")
        (folder / "weights-00000001-0123abcd.npz").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not the run's")
    train_mod._remove_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "notes.txt"]
    assert not any((tmp_path / "best").iterdir())
    train(config(text_file, tmp_path, "lstm", max_iters=1))
    names = {p.name for p in tmp_path.iterdir()}
    assert {"best", "checkpoint.json", "model.safetensors", "metrics.jsonl", "notes.txt"} <= names
    state = json.loads((tmp_path / "checkpoint.json").read_text())["state_file"]
    assert [n for n in names if n.startswith("state-")] == [state] and state.startswith("state-00000001-")
    assert not [n for n in names if n.endswith(".npz") or n == "checkpoint.next.json"]


def test_resuming_a_run_past_its_max_iters_says_there_is_nothing_to_do(text_file, tmp_path):
    train(config(text_file, tmp_path, max_iters=3))
    before = sorted(p.name for p in tmp_path.iterdir())
    stream = io.StringIO()
    result = train(config(text_file, tmp_path, max_iters=2, resume=True, progress="lines"), stream=stream)
    assert result.step == 3
    assert "note: this run is at step 3 and --max-iters is 2: nothing to train" in stream.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == before                 # nothing saved again


def test_an_ngram_order_above_the_text_length_is_a_clear_error(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("abcdefgh\nab\n", encoding="utf-8")     # 9 training characters, 3 validation
    with pytest.raises(ValueError, match=r"--ngram-n 10 is above what the training text supports: it has "
                                         r"9 tokens, so not one 10-gram to count; valid here: --ngram-n 1 "
                                         r"to 9"):
        train(config(short, tmp_path / "out", "ngram", ngram_n=10, block_size=2))
    assert train(config(short, tmp_path / "ok", "ngram", ngram_n=9, block_size=2)).last_eval is not None


def test_a_batch_too_wide_for_a_recurrent_model_is_a_clear_error(text_file, tmp_path):
    with pytest.raises(ValueError, match=r"--batch-size 1000: a recurrent model reads the training text "
                                         r"\(\d+ tokens\) as 1000 lanes of \d+ tokens, but one window of "
                                         r"--block-size 16 needs 17; valid here: --batch-size up to \d+"):
        train(config(text_file, tmp_path, "gru", batch_size=1000))


@pytest.mark.parametrize(("change", "message"), [
    ({"lr": -1.0}, r"--lr must be a finite number > 0, got -1.0"),
    ({"min_lr": 1.0}, r"--min-lr must be in \[0, --lr=0.001\], got 1.0"),
    ({"model": "lstmm"}, "--model must be one of"),
    ({"batch_size": 0}, "--batch-size must be an integer >= 1, got 0"),
    ({"n_embd": 10, "n_head": 4}, "divisible"),
    ({"dropout": 1.0}, r"--dropout must be a finite number in \[0, 1\), got 1.0"),
    ({"max_iters": 2.5}, "--max-iters must be an integer"),
    ({"device": "tpu"}, "unknown device"),
    ({"ngram_n": 11}, r"--ngram-n must be an integer in \[1, 10\], got 11"),
    ({"max_skipped_steps": -1}, "--max-skipped-steps must be an integer >= 0, got -1"),
    ({"beta2": 1.0}, r"--beta2 must be a finite number in \[0, 1\)"),
    ({"weight_decay": 1000.0}, r"--weight-decay 1000 with --lr 0.001: .* below 1/--lr = 1000"),
    ({"out": ""}, "--out must not be empty"),
    ({"data": " "}, "--data must not be empty"),
    ({"grad_clip": math.inf}, "--grad-clip must be a finite number, got inf"),
])
def test_bad_settings_are_value_errors_naming_the_flag(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(TrainConfig(), **change).validate()


def test_every_numeric_setting_has_a_range():
    from lmroad.train_config import _FIELD_TYPES, RANGES
    numeric = {f.name for f in dataclasses.fields(TrainConfig) if _FIELD_TYPES[f.name] in (int, float)}
    assert numeric == set(RANGES)


def test_word_models_report_bits_per_character_not_per_token(text_file, tmp_path):
    result = train(config(text_file, tmp_path, max_iters=1, tokenizer="word", block_size=8))
    ev = result.last_eval
    assert ev["bpc"] < ev["loss"] / math.log(2)           # a word is several characters
    assert read_checkpoint(tmp_path).tokenizer["type"] == "word"


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_accumulation_is_the_update_of_a_k_times_larger_batch_in_float64(text_file, tmp_path, monkeypatch,
                                                                        model):
    """--grad-accum-steps 4 --batch-size 2 against --batch-size 8, the models in float64: the
    logged losses and the final weights agree to 1e-12 (float32 runs agree to float32
    rounding: test_train_ranks.py). A missing 1/K would show: clipping at 1 and Adam's eps
    both see the gradient's scale, and move the weights by far more than 1e-12."""
    build = train_mod.build_model
    monkeypatch.setattr(train_mod, "build_model", lambda *a, **k: build(*a, **k).to(dtype="float64"))
    common = dict(model=model, data=str(text_file), n_layer=1, n_head=2, n_embd=16, hidden_size=16,
                  block_size=8, max_iters=4, warmup_iters=0, eval_interval=100, eval_iters=1,
                  log_interval=1, progress="none")
    train(TrainConfig(**common, batch_size=2, grad_accum_steps=4, out=str(tmp_path / "a")),
          stream=io.StringIO())
    train(TrainConfig(**common, batch_size=8, out=str(tmp_path / "b")), stream=io.StringIO())
    runs = [read_checkpoint(tmp_path / r) for r in "ab"]
    for name, a in runs[0].weights.items():
        assert a.dtype == np.float64, name
        np.testing.assert_allclose(a, runs[1].weights[name], rtol=0, atol=1e-12, err_msg=name)
    logs = [[json.loads(line) for line in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
            for r in "ab"]
    losses = [[rec["loss"] for rec in log if rec["split"] == "train"] for log in logs]
    assert len(losses[0]) == 4
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-12)
