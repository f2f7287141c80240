"""Training: one flat loop, nanoGPT-style, driven by a ``TrainConfig``.

    from lmroad.train import TrainConfig, train
    result = train(TrainConfig(model="lstm", data="notes.txt", max_iters=500, out="out/lstm"))

The loop, in order, every step:

    lr = cosine_with_warmup(step)            linear warmup, then a half cosine to min_lr
    x, y = next batch                        Transformer: random windows;
                                             RNN/LSTM/GRU: the next window of each lane
                                             (StreamBatcher), hidden state carried over
    logits, loss = model(x, y)
    loss.backward(); clip_grad_norm_; AdamW step (weight decay on matrices only)
    every eval_interval steps: evaluate on the validation split, log to the
    terminal and to out/metrics.jsonl, save out/ (last) and out/best/ (lowest val loss)

The n-gram model is not trained by gradient: it counts the training split
once (``fit``) and is then evaluated and saved like the others.

Recurrent models learn by truncated backpropagation through time: the hidden
state at the end of one window starts the next, detached from the graph, so
the gradient flows back at most ``block_size`` steps while the state still
carries information across windows. It is zeroed when the batcher wraps
around the training text.

Resuming (``resume=True``) restores the weights, the optimizer's moments,
the step, the batcher's position, the carried hidden state and both random
generators (minigrad's host generator: dropout; the data generator: window
offsets), so on the CPU a resumed run continues exactly as if it had never
stopped: same batches, same weights, same losses.

A resumed run keeps its learning-rate schedule. The checkpoint stores the
schedule (``extra["lr_schedule"]``: lr, min_lr, warmup_iters and the horizon
lr_decay_iters, where the cosine reaches min_lr), and ``--resume --max-iters
2N`` on a run started with N steps follows the original cosine to step N and
then trains at min_lr, as nanoGPT does past lr_decay_iters; it does not
stretch the cosine over 2N mid-run (a note says so). ``--lr-decay-iters M``
sets the horizon explicitly, on a new or a resumed run. Checkpoints written
before the schedule was stored resume with the horizon of their saved config
(its lr_decay_iters, else its max_iters).

Ctrl-C stops at the end of the current step, saves a checkpoint and returns
(a second Ctrl-C aborts at once, still saving the last completed step).

Three files: ``lmroad/train_config.py`` (TrainConfig, resolve_config, the
model and the schedule a config asks for), ``lmroad/train_progress.py`` (the
bar and log lines, the Ctrl-C guard) and this one (evaluation, the state of
a run and the loop). Their public names are all importable from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import minigrad as mg
from minigrad import backend, optim

from . import checkpoint as ckpt_mod
from .checkpoint import CheckpointError
from .data import (
    StreamBatcher,
    build_tokenizer,
    iter_eval_windows,
    load_corpus,
    random_windows,
    tokenizer_from_dict,
)
from .train_config import (
    MODEL_KINDS,
    TrainConfig,
    build_model,
    model_config_for,
    resolve_config,
    schedule_for,
)
from .train_progress import Progress, StopOnCtrlC, eval_line

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train", "evaluate", "build_model",
           "model_config_for", "resolve_config", "MODEL_KINDS"]

LN2 = math.log(2.0)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is left in place."""


def _is_recurrent(model) -> bool:
    """Does ``model`` carry a hidden state from one window to the next (``RNNLM`` and kin)?"""
    return hasattr(model, "last_state") and hasattr(model, "detach_state")


# --------------------------------------------------------------------------- evaluation

def evaluate(model, ids, block_size: int, batch_size: int = 32, max_batches: int | None = None,
             device: str = "cpu", chars_per_token: float | None = 1.0,
             carry_state: bool | None = None) -> dict[str, float]:
    """Mean next-token loss of ``model`` on the token stream ``ids``, and what follows from it.

    Returns ``{"loss", "perplexity", "bpc", "tokens"}``: loss is the mean
    cross-entropy in nats per token over every target evaluated, perplexity
    exp(loss), bpc the bits per character loss / ln 2 / chars_per_token
    (chars_per_token is 1 for a character model; None leaves bpc None).

    The stream is cut into non-overlapping windows of ``block_size``
    (``iter_eval_windows``), ``batch_size`` at a time, the first
    ``max_batches`` batches only if given (None: all of them, every token
    once). A recurrent model (``carry_state``, default: when the model has a
    carried state) instead reads the stream as ``batch_size`` lanes of
    consecutive text with its hidden state carried from window to window, as
    in training; the lanes drop fewer than ``batch_size`` final tokens. The
    model's mode and carried state are restored afterwards."""
    ids = np.asarray(ids)
    recurrent = _is_recurrent(model) if carry_state is None else carry_state
    modes = [(m, m.training) for m in model.modules()]
    last_state = getattr(model, "last_state", None)
    model.eval()
    total, count = 0.0, 0
    try:
        with mg.no_grad():
            if recurrent:
                state = None
                for x, y in _lane_windows(ids, batch_size, block_size, device, max_batches):
                    _, loss = model(x, y, state=state)
                    state = model.last_state
                    total += float(loss.item()) * y.size
                    count += y.size
            else:
                for x, y in iter_eval_windows(ids, batch_size, block_size, device, max_batches):
                    _, loss = model(x, y)
                    total += float(loss.item()) * y.size
                    count += y.size
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
        if recurrent:
            model.last_state = last_state
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
            "bpc": None if chars_per_token is None else loss / LN2 / chars_per_token,
            "tokens": count}


def _lane_windows(ids: np.ndarray, batch_size: int, block_size: int, device: str,
                  max_batches: int | None):
    """Windows along ``batch_size`` lanes of consecutive text (for a carried state)."""
    n_targets = len(ids) - 1
    B = max(1, min(batch_size, n_targets))
    L = n_targets // B
    if L < 1:
        raise ValueError(f"evaluate: {len(ids)} tokens are too few to evaluate")
    starts = np.arange(B) * L
    n = 0
    for t0 in range(0, L, block_size):
        if max_batches is not None and n >= max_batches:
            return
        T = min(block_size, L - t0)
        cols = starts[:, None] + t0 + np.arange(T + 1)       # (B, T+1)
        w = ids[cols]
        yield (mg.tensor(np.ascontiguousarray(w[:, :-1]), device=device),
               mg.tensor(np.ascontiguousarray(w[:, 1:]), device=device))
        n += 1


# --------------------------------------------------------------------------- the state of a run

@dataclass
class TrainResult:
    """What ``train`` did: where it stopped, why, and the numbers it saw."""

    out: Path
    step: int
    interrupted: bool
    train_losses: list[float] = field(default_factory=list)   # one per step of this run
    last_eval: dict | None = None
    best_val_loss: float | None = None


def _fingerprint(*texts: str) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def _remove_run(out: Path) -> None:
    """Delete what a run wrote to ``out`` (and only that): checkpoints and the metrics log."""
    for folder in (out / "best", out):
        for p in [folder / ckpt_mod.CHECKPOINT_FILE, *folder.glob("weights-*.npz"), folder / "metrics.jsonl"]:
            p.unlink(missing_ok=True)


def _append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_jsonl(path: Path, last_step: int) -> None:
    """Drop records a crashed run wrote after its last checkpoint, so a resumed log has no repeats."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue            # a line cut short by a crash
        if rec.get("step", 0) <= last_step:
            keep.append(line)
    path.write_text("".join(x + "\n" for x in keep), encoding="utf-8")


class _DataPosition:
    """Where a run is in its data: the source of batches, the generator of window
    offsets, minigrad's host generator (dropout masks) and, for a recurrent
    model, the hidden state carried into the next window. Saving and
    restoring all of it is what makes a resumed run exact."""

    def __init__(self, train_ids: np.ndarray, cfg: TrainConfig, device: str, recurrent: bool):
        self.train_ids, self.cfg, self.device = train_ids, cfg, device
        self.rng = np.random.default_rng(cfg.seed)
        self.batcher = (StreamBatcher(train_ids, cfg.batch_size, cfg.block_size, device)
                        if recurrent else None)
        self.state = None       # recurrent models: the detached final state of the last window

    def next_batch(self):
        """(x, y), each (B, T) on the device."""
        if self.batcher is None:
            return random_windows(self.train_ids, self.cfg.batch_size, self.cfg.block_size,
                                  self.device, rng=self.rng)
        x, y, reset = self.batcher.next_batch()
        if reset:               # a new pass over the text: nothing to carry over
            self.state = None
        return x, y

    def snapshot(self) -> dict:
        """Cheap (no device sync): enough to undo a step that was interrupted half-way."""
        return {"batcher": self.batcher.state_dict() if self.batcher is not None else None,
                "rng": {"host": backend.get_rng_state(), "data": self.rng.bit_generator.state},
                "state": self.state}

    def rollback(self, snap: dict) -> None:
        if self.batcher is not None:
            self.batcher.load_state_dict(snap["batcher"])
        backend.set_rng_state(snap["rng"]["host"])
        self.rng.bit_generator.state = snap["rng"]["data"]
        self.state = snap["state"]

    def checkpoint_parts(self) -> tuple[dict, dict]:
        """(data_state, rng_state) for ``save_checkpoint``; the carried state as host arrays."""
        snap = self.snapshot()
        s = snap["state"]
        host = (None if s is None else tuple(t.numpy() for t in s) if isinstance(s, (tuple, list))
                else s.numpy())
        return {"batcher": snap["batcher"], "carried_state": host}, snap["rng"]

    def restore(self, data_state: dict, rng_state: dict) -> None:
        s = data_state.get("carried_state")
        if isinstance(s, (tuple, list)):
            s = tuple(mg.tensor(a, device=self.device) for a in s)
        elif s is not None:
            s = mg.tensor(s, device=self.device)
        self.rollback({"batcher": data_state["batcher"], "rng": rng_state, "state": s})


# --------------------------------------------------------------------------- a run's pieces

def _open_out(cfg: TrainConfig):
    """The checkpoint to resume (None for a new run). A new run in an ``out`` that holds a
    checkpoint is an error, unless ``overwrite`` (then that run's files are removed)."""
    out = cfg.out_dir
    resumed = ckpt_mod.read_checkpoint(out) if cfg.resume else None
    if resumed is None and ckpt_mod.has_checkpoint(out):
        if not cfg.overwrite:
            raise ValueError(f"{out} already holds a checkpoint (step {ckpt_mod.read_checkpoint(out).step}); "
                             "pass --resume to continue it, --overwrite to start afresh there, or "
                             "choose another --out")
        _remove_run(out)
    return resumed


@dataclass
class _Text:
    """The run's text as token ids (host), and what a checkpoint records about it."""
    tokenizer: Any
    train_ids: np.ndarray
    val_ids: np.ndarray
    chars_per_token: float
    data_id: str          # fingerprint of the text: a resumed run must read the same


def _load_text(cfg: TrainConfig, resumed) -> _Text:
    """text -> token ids, with the tokenizer the checkpoint saved when resuming."""
    corpus = load_corpus(cfg.data if cfg.data is not None else cfg.corpus)
    data_id = _fingerprint(corpus.train, corpus.val)
    if resumed is None:
        tokenizer = build_tokenizer(cfg.tokenizer, corpus)
    elif (resumed.extra or {}).get("data_sha256") != data_id:
        raise CheckpointError(f"{resumed.json_path}: was trained on other text than "
                              f"{cfg.data or cfg.corpus!r}; resume with the same --corpus/--data")
    else:
        tokenizer = tokenizer_from_dict(resumed.tokenizer)
    train_ids, val_ids = tokenizer.encode(corpus.train), tokenizer.encode(corpus.val)
    for name, ids in (("training", train_ids), ("validation", val_ids)):
        if len(ids) < cfg.block_size + 1:
            raise ValueError(f"the {name} text has {len(ids)} tokens, too few for one window of "
                             f"--block-size {cfg.block_size} (plus the next token)")
    return _Text(tokenizer, train_ids, val_ids, len(corpus.val) / max(len(val_ids), 1), data_id)


class _Run:
    """One run's state between steps: the model, the optimizer (None for the counted n-gram
    model), the data position, the step, the best validation loss, the schedule; and the
    three things done with them: one training step, an evaluation, a save."""

    def __init__(self, cfg: TrainConfig, device: str, resumed, text: _Text, progress: Progress):
        self.cfg, self.device, self.text, self.progress = cfg, device, text, progress
        self.out = cfg.out_dir
        self.metrics_path = self.out / "metrics.jsonl"
        mg.manual_seed(cfg.seed)
        self.model = build_model(cfg, text.tokenizer.vocab_size).to(self.device)
        self.counted = cfg.model == "ngram"              # fitted by counting, not by gradient
        self.opt = None if self.counted else optim.AdamW(
            optim.param_groups_for_weight_decay(self.model, cfg.weight_decay), lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2))
        self.recurrent = _is_recurrent(self.model)
        self.data = _DataPosition(text.train_ids, cfg, self.device, self.recurrent)
        self.step, self.best, self.best_step = 0, None, None
        if resumed is not None:
            self._restore(resumed)
        self.saved_step = self.step
        self.schedule = schedule_for(cfg, resumed, progress.write)

    def _restore(self, resumed) -> None:
        """Weights, optimizer moments, data position and generators, step and best from ``resumed``."""
        ckpt_mod.restore_model(self.model, resumed)
        try:
            if self.opt is not None:
                self.opt.load_state_dict(resumed.optimizer)
            self.data.restore(resumed.data_state, resumed.rng_state)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{resumed.json_path}: the training state does not fit this run: "
                                  f"{e}") from None
        self.step = resumed.step
        self.best = (resumed.metrics.get("best") or {}).get("val_loss")
        self.best_step = (resumed.metrics.get("best") or {}).get("step")
        _truncate_jsonl(self.metrics_path, self.step)
        self.progress.write(f"resumed {self.cfg.model} from {self.out} at step {self.step}")

    def train_step(self) -> tuple[float, float, int]:
        """One optimizer step at ``self.step``: (its loss, its learning rate, tokens seen).
        Leaves ``self.step`` alone: the caller counts the step once it is whole."""
        cfg, model, schedule = self.cfg, self.model, self.schedule
        horizon = schedule["lr_decay_iters"]
        lr = optim.cosine_with_warmup(self.step, schedule["lr"], min(schedule["warmup_iters"], horizon),
                                      horizon, schedule["min_lr"])
        for group in self.opt.param_groups:
            group["lr"] = lr
        x, y = self.data.next_batch()
        # token ids come from the tokenizer, in range by construction: skip the device-side
        # range checks, so a GPU step never waits for the host (only the logged loss does)
        with mg.device_checks(False):
            if self.recurrent:     # truncated BPTT: start from the last window's state, detached
                _, loss = model(x, y, state=self.data.state)
                self.data.state = model.detach_state(model.last_state)
            else:
                _, loss = model(x, y)
            loss_value = float(loss.item())
            if not math.isfinite(loss_value):      # stop before NaN reaches the weights
                raise TrainingDiverged(
                    f"training diverged at step {self.step + 1} (loss {loss_value}); lower --lr or raise "
                    f"--warmup-iters; the last good checkpoint in {self.out} is kept")
            self.opt.zero_grad()
            loss.backward()
            if cfg.grad_clip > 0:
                optim.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.opt.step()
        return loss_value, lr, x.size

    def evaluate(self) -> dict:
        """Evaluate at ``self.step`` on the validation split; logged and returned."""
        cfg, text = self.cfg, self.text
        ev = evaluate(self.model, text.val_ids, cfg.block_size, cfg.batch_size,
                      max_batches=cfg.eval_iters or None, device=self.device,
                      chars_per_token=text.chars_per_token)
        record = {"step": self.step, "split": "val", **ev, "time": time.time()}
        _append_jsonl(self.metrics_path, record)
        self.progress.write(eval_line(record))
        return record

    def log_train_loss(self, loss: float, lr: float) -> None:
        _append_jsonl(self.metrics_path, {"step": self.step, "split": "train", "loss": loss,
                                          "lr": lr, "time": time.time()})

    def save(self, last_eval: dict | None) -> None:
        """Save ``out`` (the last checkpoint), and ``out/best`` when ``last_eval`` is a new best."""
        at = self.step
        if last_eval is not None and last_eval["step"] == at and (self.best is None
                                                                   or last_eval["loss"] < self.best):
            self.best, self.best_step = last_eval["loss"], at
            ckpt_mod.save_checkpoint(self.out / "best", self.model, **self._checkpoint(last_eval))
        ckpt_mod.save_checkpoint(self.out, self.model, **self._checkpoint(last_eval))
        self.saved_step = at

    def _checkpoint(self, last_eval: dict | None) -> dict:
        data_state, rng_state = self.data.checkpoint_parts()
        text = self.text
        return dict(step=self.step, tokenizer=text.tokenizer, optimizer=self.opt,
                    train_config=self.cfg.to_dict(), data_state=data_state, rng_state=rng_state,
                    metrics={"last": last_eval, "best": {"val_loss": self.best, "step": self.best_step}},
                    extra={"data_sha256": text.data_id, "chars_per_token": text.chars_per_token,
                           "lr_schedule": self.schedule})


# --------------------------------------------------------------------------- the loop

def train(cfg: TrainConfig, on_step: Callable[[int, dict], None] | None = None,
          stream=None) -> TrainResult:
    """Run (or, with ``cfg.resume``, continue) training; see the module docstring.

    ``on_step(step, info)`` is called after every optimizer step with
    ``info = {"loss", "lr"}`` (and ``"eval"`` when it evaluated); raising
    KeyboardInterrupt from it acts as Ctrl-C. Progress and logs go to
    ``stream`` (default stderr)."""
    # ---- setup: the config, the checkpoint to continue, the text, the model and its optimizer
    cfg = dataclasses.replace(cfg).validate()
    device = str(mg.device(cfg.device))         # an unusable device fails before out/ is touched
    resumed = _open_out(cfg)
    progress = Progress(cfg.progress, cfg.max_iters, cfg.log_interval, stream)
    run = _Run(cfg, device, resumed, _load_text(cfg, resumed), progress)
    out, text = run.out, run.text
    out.mkdir(parents=True, exist_ok=True)
    progress.write(f"{cfg.model}: {run.model.num_parameters():,} parameters | vocab "
                   f"{text.tokenizer.vocab_size} ({cfg.tokenizer}) | train {len(text.train_ids):,} tokens, "
                   f"val {len(text.val_ids):,} | device {run.device} | out {out}")

    # ---- the n-gram model: count once, evaluate, save
    if run.counted:
        run.step = 0
        run.model.fit(text.train_ids)
        last_eval = run.evaluate()
        run.save(last_eval)
        return TrainResult(out, 0, False, [], last_eval, run.best)

    # ---- the steps. A snapshot of the data position is taken before each step and
    # dropped once the step is whole: an interrupt half-way rolls the data back to it,
    # so the checkpoint saved below is the last whole step, exactly
    history: list[float] = []
    last_eval = run.evaluate() if resumed is None else (resumed.metrics or {}).get("last")
    progress.start(run.step)
    snapshot = None
    run.model.train()
    interrupted = False
    try:
        with StopOnCtrlC(progress.write) as ctrl_c:
            while run.step < cfg.max_iters:
                snapshot = run.data.snapshot()
                loss, lr, tokens = run.train_step()
                run.step, snapshot = run.step + 1, None      # the step is whole: nothing to roll back
                history.append(loss)
                progress.update(run.step, loss, lr, tokens)
                info: dict[str, Any] = {"loss": loss, "lr": lr}
                # ---- log; every eval_interval steps (and at the end): evaluate and save
                if run.step % cfg.log_interval == 0:
                    run.log_train_loss(loss, lr)
                if run.step % cfg.eval_interval == 0 or run.step == cfg.max_iters:
                    last_eval = info["eval"] = run.evaluate()
                    run.save(last_eval)
                if on_step is not None:
                    on_step(run.step, info)
                if ctrl_c.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        if snapshot is not None:                 # stopped half-way through a step: undo its data
            run.data.rollback(snapshot)
    finally:
        progress.close()

    # ---- the end, or an interrupt between two evaluations: save the last whole step
    if run.saved_step != run.step:
        run.save(last_eval)
    if interrupted:
        progress.write(f"interrupted at step {run.step}; checkpoint saved to {out} (continue with --resume)")
    return TrainResult(out, run.step, interrupted, history, last_eval, run.best)
