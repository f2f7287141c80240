"""Training: one flat loop, nanoGPT-style, driven by a ``TrainConfig``.

    from lmroad.train import TrainConfig, train
    result = train(TrainConfig(model="lstm", data="notes.txt", max_iters=500, out="out/lstm"))

The loop, in order, every step:

    lr = cosine_with_warmup(step)            linear warmup, then a half cosine to min_lr
    x, y = next batch                        Transformer: random windows;
                                             RNN/LSTM/GRU: the next window of each lane
                                             (StreamBatcher), hidden state carried over
    logits, loss = model(x, y)               (--grad-accum-steps K: K micro-batches, loss / K each)
    loss.backward(); clip_grad_norm_ (which measures the total gradient norm)
    loss and norm finite?  AdamW step (weight decay on matrices only); else skip it
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

No NaN reaches the weights. A step whose loss or total gradient norm (before
clipping) is NaN or infinite is skipped, as PyTorch's mixed-precision
gradient scaler skips one: the optimizer does not step (weights and moments
stay as they were, Adam's step count too), a warning names the step, and
metrics.jsonl records it (``"skipped": true``, with the reason). The step
still counts: its batch is used up, the learning-rate schedule moves on (as
the scheduler still steps after a scaler's skip), ``--max-iters`` counts it;
a recurrent model's carried hidden state restarts from zero after it. The
number of skipped steps is logged with every training record and stored in
the checkpoint (``extra["skipped_steps"]``, and the current run of skips in
``extra["skip_streak"]``), so a resumed run keeps counting. More than
``max_skipped_steps`` (``--max-skipped-steps``, default 5) skips in a row
stop the run with ``TrainingDiverged``, keeping the last checkpoint: after a
skip the weights are the same, so a second non-finite step in a row comes
from another batch on the same weights, and a streak means the weights
themselves have diverged. 0 skips nothing: the first non-finite step stops
the run. Reading the loss and the norm is the step's one device-to-host
transfer (the loss is read every step anyway), so the check adds no
synchronisation on a GPU. A checkpoint is never written with non-finite
weights (only an overflowing update could make them so): the run stops with
``TrainingDiverged`` instead.

``max_iters`` 0 trains nothing: the initial model is evaluated and saved
(a note says so), so ``lmroad sample`` and ``lmroad eval`` accept it.

Three files: ``lmroad/train_config.py`` (TrainConfig, resolve_config, the
model and the schedule a config asks for), ``lmroad/train_progress.py`` (the
bar and log lines, the Ctrl-C guard) and this one (evaluation, the state of
a run and the loop). Their public names are all importable from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import minigrad as mg
from minigrad import backend, optim
from minigrad.distributed import DistributedDataParallel

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
from .ranks import Ranks
from .train_config import (
    MAX_NGRAM_N,
    MODEL_KINDS,
    TrainConfig,
    build_model,
    model_config_for,
    resolve_config,
    schedule_for,
)
from .train_log import EVENT_FILES, TENSORBOARD_DIR, add_record, open_tensorboard, write_csv
from .train_progress import Progress, StopOnCtrlC, eval_line

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train", "evaluate", "build_model",
           "model_config_for", "resolve_config", "MODEL_KINDS"]

LN2 = math.log(2.0)


class TrainingDiverged(RuntimeError):
    """More than ``max_skipped_steps`` steps in a row had a NaN or infinite loss or gradient
    (or the weights became non-finite); the last good checkpoint is left in place."""


def _is_recurrent(model) -> bool:
    """Does ``model`` carry a hidden state from one window to the next (``RNNLM`` and kin)?"""
    return hasattr(model, "last_state") and hasattr(model, "detach_state")


# --------------------------------------------------------------------------- evaluation

def evaluate(model, ids, block_size: int, batch_size: int = 32, max_batches: int | None = None,
             device: str = "cpu", chars_per_token: float | None = 1.0,
             carry_state: bool | None = None, ranks: Ranks | None = None) -> dict[str, float]:
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
    model's mode and carried state are restored afterwards.

    On several ranks (``ranks``, every rank calling it with the same
    ``batch_size``), each scores a disjoint share, every rank-th row of each
    batch (a recurrent model: every rank-th lane), and the sums and token
    counts are added over the ranks: the same windows as one process, each
    counted once."""
    ids = np.asarray(ids)
    recurrent = _is_recurrent(model) if carry_state is None else carry_state
    modes = [(m, m.training) for m in model.modules()]
    last_state = getattr(model, "last_state", None)
    model.eval()
    total, count = 0.0, 0
    ranks = ranks or Ranks(0, 1)
    try:
        with mg.no_grad():
            if recurrent:
                state = None
                for x, y in _lane_windows(ids, batch_size, block_size, device, max_batches):
                    x, y = ranks.every_nth_row(x, y)             # this rank's lanes
                    if not y.size:
                        break
                    _, loss = model(x, y, state=state)
                    state = model.last_state
                    total += float(loss.item()) * y.size
                    count += y.size
            else:
                for x, y in iter_eval_windows(ids, batch_size, block_size, device, max_batches):
                    x, y = ranks.every_nth_row(x, y)             # this rank's windows
                    if not y.size:
                        continue
                    _, loss = model(x, y)
                    total += float(loss.item()) * y.size
                    count += y.size
        if ranks.size > 1:
            total, count = ranks.sum(total, count)
            count = int(count)
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
    skipped_steps: int = 0                # steps whose update was skipped (non-finite), in all


def _finite_or_none(x: float) -> float | None:
    """``x``, or None for a NaN or an infinity (which JSON cannot hold)."""
    return x if math.isfinite(x) else None


def _host_floats(*values: mg.Tensor) -> list[float]:
    """The values of one-element tensors, read to the host together: one transfer (one
    synchronisation on a GPU) instead of one per value."""
    if len({str(v.device) for v in values}) > 1:
        return [float(v.item()) for v in values]
    xp = values[0].xp
    both = xp.stack([v.data.reshape(()).astype(xp.float64) for v in values])
    return [float(a) for a in backend.to_host(both)]


def _all_finite(params) -> bool:
    """Are all entries of all ``params`` finite? One transfer to the host."""
    params = list(params)
    if not params:
        return True
    xp = params[0].xp
    return bool(backend.to_host(xp.stack([xp.isfinite(p.data).all() for p in params])).all())


def _fingerprint(*texts: str) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def _remove_run(out: Path) -> None:
    """Delete what a run wrote to ``out`` (and only that): checkpoints and the metrics log."""
    for folder in (out / "best", out):
        names = [ckpt_mod.CHECKPOINT_FILE, ckpt_mod.NEXT_FILE, ckpt_mod.MODEL_FILE, "metrics.jsonl",
                 "metrics.csv", "metrics.png"]
        for p in [*(folder / n for n in names), *folder.glob("state-*.safetensors"),
                  *folder.glob("weights-*.npz")]:
            p.unlink(missing_ok=True)
    for p in (out / TENSORBOARD_DIR).glob(EVENT_FILES):        # --log tensorboard's events
        p.unlink(missing_ok=True)


def _append_jsonl(path: Path, record: dict) -> None:
    """One record, a line of strict JSON: a NaN or infinite number is written as null."""
    record = {k: _finite_or_none(v) if isinstance(v, float) else v for k, v in record.items()}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, allow_nan=False) + "\n")


class _DataPosition:
    """Where a run is in its data: the source of batches, the generator of window
    offsets, minigrad's host generator (dropout masks) and, for a recurrent
    model, the hidden state carried into the next window. Saving and
    restoring all of it is what makes a resumed run exact."""

    def __init__(self, train_ids: np.ndarray, cfg: TrainConfig, device: str, recurrent: bool,
                 ranks: Ranks | None = None):
        ranks = ranks or Ranks(0, 1)
        self.train_ids, self.cfg, self.device, self.ranks = train_ids, cfg, device, ranks
        self.rng = np.random.default_rng(cfg.seed)
        # on several ranks, or with gradient accumulation, every rank makes the global batch
        # (ranks x micro-batches x --batch-size rows) and keeps its rows (lmroad/ranks.py)
        self.micro = cfg.grad_accum_steps
        self.global_batch = cfg.batch_size * self.micro * ranks.size
        self.whole = ranks.size == 1 and self.micro == 1       # the batch is all this rank's
        self.batcher = (StreamBatcher(train_ids, self.global_batch, cfg.block_size,
                                      device if self.whole else "cpu") if recurrent else None)
        # recurrent models: the detached final state of the last window, of this rank's rows
        # (its micro-batches' lanes side by side)
        self.state = None

    def next_batch(self) -> list[tuple[mg.Tensor, mg.Tensor]]:
        """This step's micro-batches (one without --grad-accum-steps): (x, y) pairs, each
        (B, T) on the device, B = --batch-size; this rank's rows of the global batch."""
        where = self.device if self.whole else "cpu"
        if self.batcher is None:
            x, y = random_windows(self.train_ids, self.global_batch, self.cfg.block_size, where,
                                  rng=self.rng)
        else:
            x, y, reset = self.batcher.next_batch()
            if reset:           # a new pass over the text: nothing to carry over
                self.state = None
        if self.whole:
            return [(x, y)]
        B = self.cfg.batch_size
        mine = [t.numpy()[self.ranks.rows(B * self.micro)] for t in (x, y)]
        return [tuple(mg.tensor(np.ascontiguousarray(t[k * B:(k + 1) * B]), device=self.device)
                      for t in mine) for k in range(self.micro)]

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
        """(data_state, rng_state) for ``save_checkpoint``; the carried state as host arrays
        (num_layers, global batch, H): on several ranks, every rank's lanes put together
        (a collective call: every rank makes it)."""
        snap = self.snapshot()
        s = snap["state"]
        parts = None if s is None else [t.numpy() for t in s] if isinstance(s, (tuple, list)) else [s.numpy()]
        if parts is not None:       # (None on every rank alike: the lanes wrap together)
            parts = [self.ranks.gather_rows(a, axis=1) for a in parts]
        host = None if parts is None else tuple(parts) if isinstance(s, (tuple, list)) else parts[0]
        return {"batcher": snap["batcher"], "carried_state": host}, snap["rng"]

    def restore(self, data_state: dict, rng_state: dict) -> None:
        saved = (data_state.get("batcher") or {}).get("batch_size")
        if self.batcher is not None and saved is not None and saved != self.global_batch:
            raise ValueError(f"its recurrent lanes were cut for a global batch of {saved} (ranks x "
                             f"--grad-accum-steps x --batch-size), and this run has {self.ranks.size} x "
                             f"{self.micro} x {self.cfg.batch_size} = {self.global_batch}; resume with a "
                             f"product of {saved}")
        s = data_state.get("carried_state")

        def own(a):             # this rank's lanes of the saved global state
            return mg.tensor(self.ranks.own_rows(np.asarray(a), axis=1), device=self.device)
        if isinstance(s, (tuple, list)):
            s = tuple(own(a) for a in s)
        elif s is not None:
            s = own(s)
        self.rollback({"batcher": data_state["batcher"], "rng": rng_state, "state": s})


# --------------------------------------------------------------------------- a run's pieces

def _open_out(cfg: TrainConfig, ranks: Ranks):
    """The checkpoint to resume (None for a new run). A new run in an ``out`` that holds a
    checkpoint is an error, unless ``overwrite`` (then rank 0 removes that run's files).
    Every rank reads ``out``: on several machines it must be on a shared file system."""
    out = cfg.out_dir
    resumed = ckpt_mod.read_checkpoint(out) if cfg.resume else None
    if resumed is None and ckpt_mod.has_checkpoint(out):
        if not cfg.overwrite:
            raise ValueError(f"{out} already holds a checkpoint (step {ckpt_mod.read_checkpoint(out).step}); "
                             "pass --resume to continue it, --overwrite to start afresh there, or "
                             "choose another --out")
        ranks.barrier()                          # every rank has looked before rank 0 removes
        if ranks.main:
            _remove_run(out)
    ranks.barrier()
    return resumed


@dataclass
class _Text:
    """The run's text as token ids (host), and what a checkpoint records about it."""
    tokenizer: Any
    train_ids: np.ndarray
    val_ids: np.ndarray
    chars_per_token: float
    data_id: str          # fingerprint of the text: a resumed run must read the same


def _extra(resumed) -> dict:
    """The trainer's own part of a checkpoint (``extra``), checked: a dict, whose skip
    counters are non-negative ints (the loader checks the rest of the file)."""
    extra = resumed.extra if resumed.extra is not None else {}
    if not isinstance(extra, dict):
        raise CheckpointError(f"{resumed.json_path}: extra must be an object, got "
                              f"{type(extra).__name__}")
    for key in ("skipped_steps", "skip_streak"):
        v = extra.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CheckpointError(f"{resumed.json_path}: extra.{key} must be an int >= 0, got {v!r}")
    return extra


def _load_text(cfg: TrainConfig, resumed, ranks: Ranks | None = None) -> _Text:
    """text -> token ids, with the tokenizer the checkpoint saved when resuming."""
    corpus = load_corpus(cfg.data if cfg.data is not None else cfg.corpus)
    data_id = _fingerprint(corpus.train, corpus.val)
    if resumed is None:
        tokenizer = build_tokenizer(cfg.tokenizer, corpus, vocab_size=cfg.vocab_size)
    elif _extra(resumed).get("data_sha256") != data_id:
        raise CheckpointError(f"{resumed.json_path}: was trained on other text than "
                              f"{cfg.data or cfg.corpus!r}; resume with the same --corpus/--data")
    else:
        tokenizer = tokenizer_from_dict(resumed.tokenizer)
    train_ids, val_ids = tokenizer.encode(corpus.train), tokenizer.encode(corpus.val)
    for name, ids in (("training", train_ids), ("validation", val_ids)):
        if len(ids) < cfg.block_size + 1:
            raise ValueError(f"the {name} text has {len(ids)} tokens, too few for one window of "
                             f"--block-size {cfg.block_size} (plus the next token); valid here: "
                             f"--block-size up to {len(ids) - 1}")
    ranks = ranks or Ranks(0, 1)
    times = ranks.size * cfg.grad_accum_steps
    n, T, B = len(train_ids), cfg.block_size, cfg.batch_size * times
    if cfg.model in ("rnn", "lstm", "gru") and n // B < T + 1:
        on = "" if times == 1 else f" times {times} (ranks x --grad-accum-steps: a global batch of {B})"
        most = n // (T + 1) // times
        raise ValueError(f"--batch-size {cfg.batch_size}{on}: a recurrent model reads the training text "
                         f"({n} tokens) as {B} lanes of {n // B} tokens, but one window of --block-size {T} "
                         f"needs {T + 1}; valid here: --batch-size up to {most}, or a smaller --block-size")
    if cfg.model == "ngram" and cfg.ngram_n > n:
        raise ValueError(f"--ngram-n {cfg.ngram_n} is above what the training text supports: it has {n} "
                         f"tokens, so not one {cfg.ngram_n}-gram to count; valid here: --ngram-n 1 to "
                         f"{min(n, MAX_NGRAM_N)}")
    return _Text(tokenizer, train_ids, val_ids, len(corpus.val) / max(len(val_ids), 1), data_id)


class _Step(NamedTuple):
    """What one training step did."""
    loss: float
    lr: float
    tokens: int
    grad_norm: float               # the total gradient norm, before clipping
    skipped: str | None            # why its update was skipped (non-finite loss or gradient), or None


class _Run:
    """One run's state between steps: the model, the optimizer (None for the counted n-gram
    model), the data position, the step, the best validation loss, the schedule, the count
    of skipped steps; and what is done with them: a training step, an evaluation, a save."""

    def __init__(self, cfg: TrainConfig, device: str, resumed, text: _Text, progress: Progress,
                 ranks: Ranks):
        self.cfg, self.device, self.text, self.progress = cfg, device, text, progress
        self.ranks = ranks
        self.out = cfg.out_dir
        self.metrics_path = self.out / "metrics.jsonl"
        mg.manual_seed(cfg.seed)
        self.model = build_model(cfg, text.tokenizer.vocab_size).to(self.device)
        self.counted = cfg.model == "ngram"              # fitted by counting, not by gradient
        self.opt = None if self.counted else optim.AdamW(
            optim.param_groups_for_weight_decay(self.model, cfg.weight_decay), lr=cfg.lr,
            betas=(cfg.beta1, cfg.beta2))
        self.recurrent = _is_recurrent(self.model)
        # on several ranks the forward goes through the wrapper that averages the gradients
        self.forward = (DistributedDataParallel(self.model) if ranks.size > 1 and not self.counted
                        else self.model)
        self.data = _DataPosition(text.train_ids, cfg, self.device, self.recurrent, ranks)
        self.step, self.best, self.best_step = 0, None, None
        self.skipped, self.streak = 0, 0      # skipped steps: in all, and in a row up to now
        if resumed is not None:
            self._restore(resumed)
        self.saved_step = self.step if resumed is not None else None     # None: nothing saved yet
        self.schedule = schedule_for(cfg, resumed, progress.write)
        # --log tensorboard (rank 0): OUT/tensorboard/ rewritten from the log (cut back to the
        # checkpoint's step on a resume), then each record's events as it is logged
        self.events = open_tensorboard(self.out) if cfg.log == "tensorboard" and ranks.main else None

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
        self.skipped = _extra(resumed).get("skipped_steps", 0)
        self.streak = _extra(resumed).get("skip_streak", 0)
        self.best = (resumed.metrics.get("best") or {}).get("val_loss")
        self.best_step = (resumed.metrics.get("best") or {}).get("step")
        if self.ranks.main:
            ckpt_mod.truncate_metrics_log(self.metrics_path, self.step, warn=self.progress.write)
        self.ranks.barrier()
        self.progress.write(f"resumed {self.cfg.model} from {self.out} at step {self.step}")

    def train_step(self) -> _Step:
        """One optimizer step at ``self.step``, or, when its loss or gradient norm is not
        finite, none (``skipped`` says why). Leaves ``self.step`` alone: the caller counts
        the step once it is whole."""
        cfg, model, schedule = self.cfg, self.model, self.schedule
        horizon = schedule["lr_decay_iters"]
        lr = optim.cosine_with_warmup(self.step, schedule["lr"], min(schedule["warmup_iters"], horizon),
                                      horizon, schedule["min_lr"])
        for group in self.opt.param_groups:
            group["lr"] = lr
        micro = self.data.next_batch()
        if self.ranks.size > 1:        # this rank's dropout masks: its own, reproducible
            mg.manual_seed(self.ranks.step_seed(cfg.seed, self.step))
        # token ids come from the tokenizer, in range by construction: skip the device-side
        # range checks, so a GPU step waits for the device once: to read the loss and the norm
        with mg.device_checks(False):
            if len(micro) == 1:
                x, y = micro[0]
                loss = self._forward(x, y, self.data.state)
                self.opt.zero_grad()
                loss.backward()
            else:
                loss = self._accumulate(micro)
            # the total norm (max_norm inf: measured, never scaled); a non-finite one is
            # reported below as a skipped step, not as clip_grad_norm_'s warning
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                norm = optim.clip_grad_norm_(model.parameters(),
                                             cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
            loss_value, norm_value = _host_floats(loss, norm)     # the step's one host read
            if self.ranks.size > 1:    # the global batch's loss (the norm is the same everywhere)
                loss_value = self.ranks.sum(loss_value)[0] / self.ranks.size
            tokens = micro[0][0].size * len(micro) * self.ranks.size
            if math.isfinite(loss_value) and math.isfinite(norm_value):
                self.opt.step()
                return _Step(loss_value, lr, tokens, norm_value, None)
        # skipped: no update; drop the gradients, and a carried state that may hold the NaN
        self.opt.zero_grad()
        if self.recurrent:
            self.data.state = None
        why = [f"{name} is {v}" for name, v in (("the loss", loss_value), ("the gradient norm", norm_value))
               if not math.isfinite(v)]
        return _Step(loss_value, lr, tokens, norm_value, " and ".join(why))

    def _forward(self, x, y, state):
        """The loss of one (micro-)batch; a recurrent model starts from ``state`` (truncated
        BPTT: the last window's, detached) and leaves its new one in ``self.data.state``."""
        if not self.recurrent:
            return self.forward(x, y)[1]
        _, loss = self.forward(x, y, state=state)
        self.data.state = self.model.detach_state(self.model.last_state)
        return loss

    def _accumulate(self, micro: list) -> mg.Tensor:
        """--grad-accum-steps K: the K micro-batches' gradients of loss / K summed in .grad (on
        several ranks averaged once, with the last); returns their mean loss. Each recurrent
        micro-batch carries its own lanes' state."""
        K, B = len(micro), micro[0][0].shape[0]
        states = _split_state(self.data.state, K, B)
        self.opt.zero_grad()
        losses, finals = [], []
        for k, (x, y) in enumerate(micro):
            sync = self.forward.no_sync() if k < K - 1 and self.forward is not self.model \
                else contextlib.nullcontext()
            with sync:
                loss = self._forward(x, y, states[k])
                (loss / K).backward()
            losses.append(loss)
            finals.append(self.data.state)
        if self.recurrent:
            self.data.state = _join_states(finals)
        return mg.stack([loss.detach() for loss in losses]).mean()     # (their graphs are spent)

    def skip(self, step: _Step) -> None:
        """Count the skipped step ``self.step``, log it and warn; when it makes more than
        ``max_skipped_steps`` in a row, raise TrainingDiverged."""
        self.skipped, self.streak = self.skipped + 1, self.streak + 1
        limit = self.cfg.max_skipped_steps
        self._log({"step": self.step, "split": "train", "loss": step.loss,
                                          "lr": step.lr, "grad_norm": step.grad_norm, "skipped": True,
                                          "reason": step.skipped, "skipped_steps": self.skipped,
                                          "time": time.time()})
        if self.streak > limit:
            kept = (f"the last checkpoint in {self.out} (step {self.saved_step}) is kept"
                    if self.saved_step is not None else f"no checkpoint was saved in {self.out}")
            what = (f"{step.skipped} (--max-skipped-steps 0: no step is skipped)" if limit == 0 else
                    f"{self.streak} steps in a row ({self.step - self.streak + 1} to {self.step}) had a "
                    f"non-finite loss or gradient, more than --max-skipped-steps {limit} (the last: "
                    f"{step.skipped}); their updates were not applied")
            raise TrainingDiverged(f"training diverged at step {self.step}: {what}; lower --lr or raise "
                                   f"--warmup-iters; {kept}")
        self.progress.write(f"warning: step {self.step}: {step.skipped}; its update was skipped, the "
                            f"weights are unchanged ({self.streak} in a row, {self.skipped} in this run; "
                            f"more than {limit} in a row stop the run: --max-skipped-steps)")

    def evaluate(self) -> dict:
        """Evaluate at ``self.step`` on the validation split; logged and returned."""
        cfg, text = self.cfg, self.text
        ev = evaluate(self.model, text.val_ids, cfg.block_size, self.data.global_batch,
                      max_batches=cfg.eval_iters or None, device=self.device,
                      chars_per_token=text.chars_per_token, ranks=self.ranks)
        record = {"step": self.step, "split": "val", **ev, "time": time.time()}
        self._log(record)
        self.progress.write(eval_line(record))
        return record

    def log_train_loss(self, loss: float, lr: float) -> None:
        self._log({"step": self.step, "split": "train", "loss": loss, "lr": lr,
                   "skipped_steps": self.skipped, "time": time.time()})

    def _log(self, record: dict) -> None:
        """One line of metrics.jsonl, and with --log tensorboard its events (rank 0 writes them)."""
        if self.ranks.main:
            _append_jsonl(self.metrics_path, record)
            if self.events is not None:
                add_record(self.events, record)
                self.events.flush()

    def save(self, last_eval: dict | None) -> None:
        """Save ``out`` (the last checkpoint), and ``out/best`` when ``last_eval`` is a new best.
        TrainingDiverged, and nothing saved, if the weights are not all finite or the
        evaluation of this step is not: such a model cannot be sampled from."""
        at = self.step
        broken = None
        if not self.counted and not _all_finite(self.model.parameters()):
            broken = "the weights hold NaN or infinite values (an update overflowed)"
        elif last_eval is not None and last_eval["step"] == at and not math.isfinite(last_eval["loss"]):
            broken = f"the validation loss is {last_eval['loss']}"
        if broken is not None:
            kept = (f"the last checkpoint in {self.out} (step {self.saved_step}) is kept"
                    if self.saved_step is not None else f"no checkpoint was saved in {self.out}")
            raise TrainingDiverged(f"training diverged by step {at}: {broken}; lower --lr or raise "
                                   f"--warmup-iters; {kept}")
        new_best = last_eval is not None and last_eval["step"] == at and (
            self.best is None or last_eval["loss"] < self.best)
        if new_best:
            self.best, self.best_step = last_eval["loss"], at
        contents = self._checkpoint(last_eval)           # (on several ranks, a collective call)
        if self.ranks.main:
            if new_best:
                ckpt_mod.save_checkpoint(self.out / "best", self.model, **contents)
            ckpt_mod.save_checkpoint(self.out, self.model, **contents)
            if self.metrics_path.exists():
                write_csv(self.out)                       # metrics.csv beside metrics.jsonl
        self.ranks.barrier()                              # the others wait for rank 0's files
        self.saved_step = at

    def _checkpoint(self, last_eval: dict | None) -> dict:
        data_state, rng_state = self.data.checkpoint_parts()
        text = self.text
        return dict(step=self.step, tokenizer=text.tokenizer, optimizer=self.opt,
                    train_config=self.cfg.to_dict(), data_state=data_state, rng_state=rng_state,
                    metrics={"last": last_eval, "best": {"val_loss": self.best, "step": self.best_step}},
                    extra={"data_sha256": text.data_id, "chars_per_token": text.chars_per_token,
                           "lr_schedule": self.schedule, "skipped_steps": self.skipped,
                           "skip_streak": self.streak})


def _split_state(state, K: int, B: int) -> list:
    """A carried state of K micro-batches' lanes side by side (..., K·B, H) -> K states."""
    if state is None:
        return [None] * K
    if isinstance(state, (tuple, list)):
        return [tuple(s[:, k * B:(k + 1) * B] for s in state) for k in range(K)]
    return [state[:, k * B:(k + 1) * B] for k in range(K)]


def _join_states(states: list):
    """The inverse of ``_split_state``."""
    if isinstance(states[0], (tuple, list)):
        return tuple(mg.concatenate([s[i] for s in states], axis=1) for i in range(len(states[0])))
    return mg.concatenate(states, axis=1)


# --------------------------------------------------------------------------- the loop

def train(cfg: TrainConfig, on_step: Callable[[int, dict], None] | None = None,
          stream=None) -> TrainResult:
    """Run (or, with ``cfg.resume``, continue) training; see the module docstring.

    ``on_step(step, info)`` is called after every optimizer step with
    ``info = {"loss", "lr", "skipped"}`` (and ``"eval"`` when it evaluated); raising
    KeyboardInterrupt from it acts as Ctrl-C. Progress and logs go to
    ``stream`` (default stderr)."""
    # ---- setup: the config, the checkpoint to continue, the text, the model and its optimizer
    cfg = dataclasses.replace(cfg).validate()
    device = str(mg.device(cfg.device))         # an unusable device fails before out/ is touched
    ranks = Ranks()                             # several under mpiexec (lmroad/ranks.py)
    resumed = _open_out(cfg, ranks)
    progress = Progress(cfg.progress if ranks.main else "none", cfg.max_iters, cfg.log_interval, stream)
    run = _Run(cfg, device, resumed, _load_text(cfg, resumed, ranks), progress, ranks)
    out, text = run.out, run.text
    if ranks.main:
        out.mkdir(parents=True, exist_ok=True)
    ranks.barrier()
    progress.write(f"{cfg.model}: {run.model.num_parameters():,} parameters | vocab "
                   f"{text.tokenizer.vocab_size} ({cfg.tokenizer}) | train {len(text.train_ids):,} tokens, "
                   f"val {len(text.val_ids):,} | device {run.device} | out {out}")
    if ranks.size > 1:
        progress.write(f"data parallel: {ranks.size} ranks x --batch-size {cfg.batch_size} = a global "
                       f"batch of {ranks.size * cfg.batch_size} sequences")

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
    if cfg.max_iters <= run.step:
        progress.write(f"note: --max-iters {cfg.max_iters}: nothing to train; the initial model is saved to "
                       f"{out}" if resumed is None else
                       f"note: this run is at step {run.step} and --max-iters is {cfg.max_iters}: nothing "
                       "to train (pass a larger --max-iters to continue it)")
    progress.start(run.step)
    snapshot = None
    run.model.train()
    interrupted = False
    try:
        with StopOnCtrlC(progress.write) as ctrl_c:
            while run.step < cfg.max_iters:
                snapshot = run.data.snapshot()
                step = run.train_step()
                run.step, snapshot = run.step + 1, None      # the step is whole: nothing to roll back
                history.append(step.loss)
                progress.update(run.step, step.loss, step.lr, step.tokens)
                info: dict[str, Any] = {"loss": step.loss, "lr": step.lr, "skipped": step.skipped is not None}
                # ---- log (a skipped step always); every eval_interval steps (and at the end):
                # evaluate and save
                if step.skipped is not None:
                    run.skip(step)                       # TrainingDiverged after too many in a row
                else:
                    run.streak = 0
                    if run.step % cfg.log_interval == 0:
                        run.log_train_loss(step.loss, step.lr)
                if run.step % cfg.eval_interval == 0 or run.step == cfg.max_iters:
                    last_eval = info["eval"] = run.evaluate()
                    run.save(last_eval)
                if on_step is not None:
                    on_step(run.step, info)
                if ranks.any(ctrl_c.requested):          # every rank stops at the same step
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
    return TrainResult(out, run.step, interrupted, history, last_eval, run.best, run.skipped)
