"""Tests of lmroad.train's non-finite steps: a NaN or infinite loss or gradient norm skips the
update (the weights stay finite), is counted, warned about and logged, survives a resume, and
more than ``max_skipped_steps`` in a row stop the run; without one, the trainer's numbers are
those of the plain loop it always ran.

NaN is injected by wrapping a model's forward for chosen training steps (evaluation calls,
in eval mode, are left alone)."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest

import minigrad as mg
from lmroad import train as train_mod
from lmroad.checkpoint import read_checkpoint
from lmroad.data import StreamBatcher, random_windows
from lmroad.models import LSTMLM, TransformerLM
from lmroad.train import TrainConfig, TrainingDiverged, build_model, train
from minigrad import backend, optim

SIZES = {"transformer": dict(n_layer=1, n_head=2, n_embd=16, dropout=0.1),
         "lstm": dict(n_embd=8, hidden_size=16, dropout=0.1)}
CLASSES = {"transformer": TransformerLM, "lstm": LSTMLM}


def config(text_file, out, model="transformer", **kw) -> TrainConfig:
    base = dict(model=model, data=str(text_file), out=str(out), max_iters=6, batch_size=4, block_size=16,
                lr=3e-3, min_lr=3e-4, warmup_iters=2, eval_interval=100, eval_iters=2, log_interval=1,
                seed=7, progress="lines")
    base.update(SIZES[model])
    base.update(kw)
    return TrainConfig(**base)


def inject(monkeypatch, model: str, steps: set[int], how: str = "loss"):
    """From now on, the training forward of each step in ``steps`` (1-based) returns a NaN loss
    (``how="loss"``) or a finite loss whose gradient is NaN (``how="grad"``). Returns the
    weights seen at the start of every training forward: {step: {name: array}}."""
    cls = CLASSES[model]
    real = cls.forward
    calls = {"n": 0}
    seen: dict[int, dict[str, np.ndarray]] = {}

    def forward(self, idx, targets=None, **kw):
        logits, loss = real(self, idx, targets, **kw)
        if not self.training or targets is None:
            return logits, loss
        calls["n"] += 1
        seen[calls["n"]] = {k: v.numpy().copy() for k, v in self.state_dict().items()}
        if calls["n"] in steps:
            if how == "loss":
                loss = loss * float("nan")
            else:        # d sqrt(s)/ds at s = 0 is inf, times ds/dw = 0: NaN; the value stays the loss
                w = next(iter(self.parameters()))
                loss = loss + ((w - w.detach()) ** 2).sum().sqrt()
        return logits, loss

    monkeypatch.setattr(cls, "forward", forward)
    return seen


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_finite(weights: dict[str, np.ndarray]) -> None:
    for k, v in weights.items():
        assert np.isfinite(v).all(), k


# =========================================================================== one bad step

@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # NumPy's, from the injected NaN
@pytest.mark.parametrize(("model", "how"), [("transformer", "loss"), ("transformer", "grad"),
                                            ("lstm", "loss")])
def test_one_nonfinite_step_is_skipped_counted_warned_and_the_run_goes_on(text_file, tmp_path, monkeypatch,
                                                                         model, how):
    seen = inject(monkeypatch, model, {3}, how)
    stream = io.StringIO()
    infos = []
    result = train(config(text_file, tmp_path, model), stream=stream,
                   on_step=lambda step, info: infos.append(info["skipped"]))
    assert (result.step, result.skipped_steps, result.interrupted) == (6, 1, False)
    assert infos == [False, False, True, False, False, False]
    for name in seen[3]:                              # step 3 changed nothing; the others did
        np.testing.assert_array_equal(seen[4][name], seen[3][name], err_msg=name)
    assert any(not np.array_equal(seen[5][k], seen[4][k]) for k in seen[4])
    saved = read_checkpoint(tmp_path)
    assert_finite(saved.weights)
    assert (saved.step, saved.extra["skipped_steps"], saved.extra["skip_streak"]) == (6, 1, 0)
    text = stream.getvalue()
    reason = "the loss is nan" if how == "loss" else "the gradient norm is nan"
    assert f"warning: step 3: {reason}" in text and "its update was skipped" in text
    assert "--max-skipped-steps" in text and text.count("warning:") == 1
    skipped = [r for r in records(tmp_path) if r.get("skipped")]
    assert [(r["step"], r["split"], r["skipped_steps"]) for r in skipped] == [(3, "train", 1)]
    assert reason in skipped[0]["reason"] and skipped[0]["grad_norm"] is None
    assert (skipped[0]["loss"] is None) == (how == "loss")
    train_records = [r for r in records(tmp_path) if r["split"] == "train" and not r.get("skipped")]
    assert [(r["step"], r["skipped_steps"]) for r in train_records] == \
        [(1, 0), (2, 0), (4, 1), (5, 1), (6, 1)]
    assert math.isnan(result.train_losses[2]) == (how == "loss")


def test_the_schedule_moves_on_over_a_skipped_step(text_file, tmp_path, monkeypatch):
    lrs = []
    train(config(text_file, tmp_path / "a", progress="none"), on_step=lambda s, info: lrs.append(info["lr"]))
    inject(monkeypatch, "transformer", {2, 4})
    skipped_lrs = []
    result = train(config(text_file, tmp_path / "b", progress="none"),
                   on_step=lambda s, info: skipped_lrs.append(info["lr"]))
    assert result.skipped_steps == 2 and skipped_lrs == lrs      # step k always has the lr of step k


# =========================================================================== too many in a row

def test_more_than_k_skips_in_a_row_stop_with_a_clear_error_and_keep_the_checkpoint(text_file, tmp_path,
                                                                                   monkeypatch):
    seen = inject(monkeypatch, "transformer", set(range(3, 100)))
    stream = io.StringIO()
    with pytest.raises(TrainingDiverged) as e:
        train(config(text_file, tmp_path, max_iters=20, eval_interval=2, max_skipped_steps=2), stream=stream)
    message = str(e.value)
    assert "training diverged at step 5: 3 steps in a row (3 to 5)" in message
    assert "more than --max-skipped-steps 2" in message and "the loss is nan" in message
    assert f"the last checkpoint in {tmp_path} (step 4) is kept" in message
    assert stream.getvalue().count("warning: step") == 2               # steps 3 and 4; 5 raised
    saved = read_checkpoint(tmp_path)          # saved after two skips: the weights of step 2
    assert saved.step == 4 and saved.extra["skipped_steps"] == 2
    for name, w in seen[3].items():
        np.testing.assert_array_equal(saved.weights[name], w, err_msg=name)
    assert [r["step"] for r in records(tmp_path) if r.get("skipped")] == [3, 4, 5]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_max_skipped_steps_0_stops_at_the_first_nonfinite_step(text_file, tmp_path, monkeypatch):
    inject(monkeypatch, "lstm", {2}, how="grad")
    with pytest.raises(TrainingDiverged, match=r"diverged at step 2: the gradient norm is nan "
                                               r"\(--max-skipped-steps 0: no step is skipped\)") as e:
        train(config(text_file, tmp_path, "lstm", max_skipped_steps=0))
    assert "no checkpoint was saved" in str(e.value)


def test_a_streak_of_skips_survives_a_resume(text_file, tmp_path, monkeypatch):
    inject(monkeypatch, "transformer", {3, 4, 5})

    def ctrl_c_at_4(step, info):
        if step == 4:
            raise KeyboardInterrupt

    first = train(config(text_file, tmp_path, max_skipped_steps=2), on_step=ctrl_c_at_4)
    saved = read_checkpoint(tmp_path)
    assert first.interrupted and saved.step == 4
    assert (saved.extra["skipped_steps"], saved.extra["skip_streak"]) == (2, 2)
    assert_finite(saved.weights)
    monkeypatch.undo()
    inject(monkeypatch, "transformer", {1})             # the resumed run's first step is step 5
    with pytest.raises(TrainingDiverged, match=r"diverged at step 5: 3 steps in a row \(3 to 5\)"):
        train(config(text_file, tmp_path, max_skipped_steps=2, resume=True))


def test_the_skip_count_survives_a_resume(text_file, tmp_path, monkeypatch):
    inject(monkeypatch, "lstm", {2})
    first = train(config(text_file, tmp_path, "lstm", max_iters=3))
    assert first.skipped_steps == 1
    monkeypatch.undo()
    second = train(config(text_file, tmp_path, "lstm", max_iters=5, resume=True))
    assert second.skipped_steps == 1 and read_checkpoint(tmp_path).extra["skipped_steps"] == 1
    assert [r["skipped_steps"] for r in records(tmp_path) if r["split"] == "train"][-1] == 1


def test_an_update_that_overflows_is_never_saved(text_file, tmp_path):
    # lr 1e30: the first update is finite but makes every later forward NaN
    with pytest.raises(TrainingDiverged, match="diverged by step 3: the validation loss is nan") as e:
        with np.errstate(all="ignore"):
            train(config(text_file, tmp_path, max_iters=3, lr=1e30, min_lr=0.0, weight_decay=0.0,
                         warmup_iters=0, progress="none"))
    assert "no checkpoint was saved" in str(e.value)
    assert not (tmp_path / "checkpoint.json").exists()


# =========================================================================== nothing skipped: as before

def _plain_loop(cfg: TrainConfig) -> tuple[list[float], dict[str, np.ndarray]]:
    """The trainer's loop as it was before non-finite steps were skipped (forward, read the
    loss, backward, clip if asked, step), on the same data, schedule and generators."""
    text = train_mod._load_text(cfg, None)
    mg.manual_seed(cfg.seed)
    model = build_model(cfg, text.tokenizer.vocab_size)
    opt = optim.AdamW(optim.param_groups_for_weight_decay(model, cfg.weight_decay), lr=cfg.lr,
                      betas=(cfg.beta1, cfg.beta2))
    rng = np.random.default_rng(cfg.seed)
    recurrent = cfg.model == "lstm"
    batcher = StreamBatcher(text.train_ids, cfg.batch_size, cfg.block_size, "cpu") if recurrent else None
    state, losses = None, []
    model.train()
    for step in range(cfg.max_iters):
        lr = optim.cosine_with_warmup(step, cfg.lr, min(cfg.warmup_iters, cfg.max_iters), cfg.max_iters,
                                      cfg.min_lr)
        for group in opt.param_groups:
            group["lr"] = lr
        if recurrent:
            x, y, reset = batcher.next_batch()
            _, loss = model(x, y, state=None if reset else state)
            state = model.detach_state(model.last_state)
        else:
            x, y = random_windows(text.train_ids, cfg.batch_size, cfg.block_size, "cpu", rng=rng)
            _, loss = model(x, y)
        losses.append(float(loss.item()))
        opt.zero_grad()
        loss.backward()
        if cfg.grad_clip > 0:
            optim.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
    return losses, {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("model", "grad_clip"), [("transformer", 1.0), ("transformer", 0.0), ("lstm", 1.0),
                                                  ("lstm", 0.0)])
def test_without_a_nonfinite_step_the_numbers_are_the_plain_loops_bit_for_bit(text_file, tmp_path, model,
                                                                             grad_clip):
    cfg = config(text_file, tmp_path, model, max_iters=8, grad_clip=grad_clip, progress="none")
    result = train(cfg)
    losses, weights = _plain_loop(dataclasses.replace(cfg))
    assert result.skipped_steps == 0
    assert result.train_losses == losses
    saved = read_checkpoint(tmp_path).weights
    for k, v in weights.items():
        np.testing.assert_array_equal(saved[k], v, err_msg=k)


@pytest.mark.parametrize("model", ["transformer", "lstm"])
@pytest.mark.parametrize("grad_clip", [1.0, 0.0])
def test_a_step_on_a_device_waits_for_it_once(text_file, tmp_path, model, grad_clip):
    """The fake device counts synchronisations as CuPy incurs them: reading the loss and the
    gradient norm is one (as reading the loss alone was), the check adds none."""
    counts = []
    cfg = config(text_file, tmp_path, model, device="fake", max_iters=5, grad_clip=grad_clip, progress="none")
    train(cfg, on_step=lambda step, info: counts.append(backend.sync_count()))
    per_step = np.diff(counts[:-1])                  # the last step also evaluates and saves
    assert per_step.tolist() == [1, 1, 1]
