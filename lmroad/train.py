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
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
import typing
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
from .models import MODELS

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train", "evaluate", "build_model",
           "model_config_for", "resolve_config", "MODEL_KINDS"]

MODEL_KINDS = tuple(MODELS)      # ngram, rnn, lstm, gru, transformer
LN2 = math.log(2.0)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is left in place."""


# --------------------------------------------------------------------------- configuration

@dataclass
class TrainConfig:
    """Everything a training run depends on; the CLI flags have the same names."""

    # model
    model: str = "transformer"
    n_layer: int = 4             # transformer blocks
    n_head: int = 4              # attention heads
    n_embd: int = 128            # embedding width (transformer and recurrent models)
    hidden_size: int = 256       # recurrent state size
    num_layers: int = 1          # stacked recurrent layers
    ngram_n: int = 3             # n of the n-gram model
    dropout: float = 0.0
    forget_bias: float = 0.0
    # data
    corpus: str = "shakespeare"  # a corpus name, used when ``data`` is None
    data: str | None = None      # a UTF-8 text file (last 10% is validation)
    tokenizer: str = "char"      # "char" or "word"
    # optimisation
    device: str = "cpu"
    max_iters: int = 2000
    batch_size: int = 32
    block_size: int = 64
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int | None = None   # end of the cosine; None: max_iters (resumed: the run's own)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0       # 0: no clipping
    # evaluation, logging, checkpoints
    eval_interval: int = 250
    eval_iters: int = 20         # validation batches per evaluation; 0: the whole split
    log_interval: int = 10
    seed: int = 1337
    out: str | None = None       # None: out/<model>
    resume: bool = False         # continue the run saved in ``out``
    overwrite: bool = False      # start afresh in an ``out`` that holds another run's checkpoint
    progress: str = "auto"       # "auto" (a bar on a terminal with tqdm), "bar", "lines", "none"

    @property
    def out_dir(self) -> Path:
        return Path(self.out if self.out is not None else os.path.join("out", self.model))

    @property
    def decay_iters(self) -> int:
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    def validate(self) -> TrainConfig:
        """ValueError naming the first setting that makes no sense; returns self."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            want = _FIELD_TYPES[f.name]
            if v is None and f.name in _OPTIONAL:
                continue
            if isinstance(v, os.PathLike) and want is str:
                v = os.fspath(v)
                setattr(self, f.name, v)
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
                setattr(self, f.name, v)
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise ValueError(f"{_flag(f.name)} must be {_TYPE_NAMES[want]}, got {v!r}")
            if want is float and not math.isfinite(v):
                raise ValueError(f"{_flag(f.name)} must be a finite number, got {v}")
        need(self.model in MODEL_KINDS,
             f"--model must be one of {', '.join(MODEL_KINDS)}, got {self.model!r}")
        need(self.tokenizer in ("char", "word"),
             f"--tokenizer must be 'char' or 'word', got {self.tokenizer!r}")
        need(self.progress in ("auto", "bar", "lines", "none"),
             f"--progress must be auto, bar, lines or none, got {self.progress!r}")
        for name in ("n_layer", "n_head", "n_embd", "hidden_size", "num_layers", "ngram_n",
                     "batch_size", "block_size", "eval_interval", "log_interval"):
            need(getattr(self, name) >= 1, f"{_flag(name)} must be >= 1, got {getattr(self, name)}")
        for name in ("max_iters", "warmup_iters", "eval_iters", "seed"):
            need(getattr(self, name) >= 0, f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        need(0.0 <= self.dropout < 1.0, f"--dropout must be in [0, 1), got {self.dropout}")
        need(self.lr > 0, f"--lr must be > 0, got {self.lr}")
        need(0 <= self.min_lr <= self.lr, f"--min-lr must be in [0, --lr={self.lr}], got {self.min_lr}")
        need(self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}")
        need(not (self.resume and self.overwrite), "--resume and --overwrite cannot be used together")
        need(self.grad_clip >= 0, f"--grad-clip must be >= 0 (0: off), got {self.grad_clip}")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
             f"--beta1 and --beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        if self.model == "transformer":
            need(self.n_embd % self.n_head == 0,
                 f"--n-embd ({self.n_embd}) must be divisible by --n-head ({self.n_head})")
        backend.Device(self.device)   # ValueError for an unknown device name
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> TrainConfig:
        """A config from a dict (e.g. a config file or a checkpoint); unknown keys are an error."""
        return dataclasses.replace(cls(), **_checked_overrides(d, where))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _field_types() -> tuple[dict[str, type], set[str]]:
    """TrainConfig's field -> its type (int, float, str, bool), and the fields that may be None."""
    types, optional = {}, set()
    for name, hint in typing.get_type_hints(TrainConfig).items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if args:                                  # "X | None"
            optional.add(name)
            hint = args[0]
        types[name] = hint
    return types, optional


_FIELD_TYPES, _OPTIONAL = _field_types()
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _checked_overrides(d: dict, where: str) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a table of settings, got {type(d).__name__}")
    out = {}
    for key, value in d.items():
        name = str(key).replace("-", "_")
        if name not in _FIELD_TYPES:
            raise ValueError(f"{where}: unknown setting {key!r}; valid: {', '.join(sorted(_FIELD_TYPES))}")
        out[name] = value
    return out


def resolve_config(overrides: dict, resume: bool = False) -> TrainConfig:
    """The config of a run: ``overrides`` (command-line flags and config-file
    values, already merged) on top of the defaults, or, when resuming, on top
    of the config saved in the checkpoint in ``overrides['out']`` (default
    out/<model>). So ``--resume --max-iters 5000`` continues a run with all
    its settings and only a new end."""
    overrides = _checked_overrides(overrides, "config")
    base = TrainConfig()
    if resume:
        probe = dataclasses.replace(base, **{k: v for k, v in overrides.items() if k in ("out", "model")})
        out = probe.out_dir
        if not ckpt_mod.has_checkpoint(out):
            raise CheckpointError(f"--resume: no checkpoint in {out} (train without --resume first, or "
                                  "point --out at the run's folder)")
        saved = ckpt_mod.read_checkpoint(out).train_config or {}
        # everything but how to show progress: that belongs to this terminal, not to the run
        saved = {k: v for k, v in saved.items()
                 if k in _FIELD_TYPES and k not in ("resume", "overwrite", "progress")}
        base = dataclasses.replace(base, **saved)
        overrides.setdefault("out", str(out))
    cfg = dataclasses.replace(base, **overrides)
    cfg.resume = resume
    return cfg.validate()


# --------------------------------------------------------------------------- the model

# TrainConfig field -> the model config's field of that meaning (each model has some of them)
_MODEL_FIELDS = {"n_layer": "n_layer", "n_head": "n_head", "n_embd": "n_embd", "hidden_size": "hidden_size",
                 "num_layers": "num_layers", "ngram_n": "n", "dropout": "dropout", "block_size": "block_size",
                 "forget_bias": "forget_bias"}


def model_config_for(cfg: TrainConfig, vocab_size: int) -> dict:
    """The model's config (a dict of its dataclass fields) that ``cfg`` asks for."""
    fields = {f.name for f in dataclasses.fields(MODELS[cfg.model].config_class)}
    out = {"vocab_size": int(vocab_size)}
    out.update({theirs: getattr(cfg, ours) for ours, theirs in _MODEL_FIELDS.items() if theirs in fields})
    if "cell" in fields:         # RNNConfig serves rnn, lstm and gru; its default cell is "rnn"
        out["cell"] = cfg.model
    return out


def build_model(cfg: TrainConfig, vocab_size: int):
    """The model ``cfg`` describes, initialised from minigrad's host generator."""
    return MODELS[cfg.model].from_config(model_config_for(cfg, vocab_size))


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


# --------------------------------------------------------------------------- progress

class _Progress:
    """Messages, and per-step progress: a tqdm bar (loss, tokens/s, ETA) when tqdm is
    installed and the output is a terminal, else a plain line every ``log_interval`` steps.
    ``mode``: "auto", "bar" (a bar even off a terminal), "lines", "none" (silent)."""

    def __init__(self, mode: str, total: int, log_interval: int, stream=None):
        self.mode, self.total, self.log_interval = mode, total, log_interval
        self.stream = stream if stream is not None else sys.stderr
        self.bar = None

    def start(self, step: int) -> None:
        """Begin counting at ``step`` (of ``total``)."""
        if self.mode in ("auto", "bar"):
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            tty = getattr(self.stream, "isatty", lambda: False)()
            if tqdm is not None and (self.mode == "bar" or tty):
                self.bar = tqdm(total=self.total, initial=step, file=self.stream, unit="step",
                                dynamic_ncols=True)
        self.t0 = self.t_last = time.perf_counter()
        self.step0, self.tokens, self.tokens_last = step, 0, 0

    def update(self, step: int, loss: float, lr: float, tokens: int) -> None:
        self.tokens += tokens
        now = time.perf_counter()
        if self.bar is not None:
            rate = self.tokens / max(now - self.t0, 1e-9)
            self.bar.set_postfix_str(f"loss {loss:.4f}, {rate:,.0f} tok/s", refresh=False)
            self.bar.update(1)
        elif step % self.log_interval == 0 or step == self.total:
            rate = (self.tokens - self.tokens_last) / max(now - self.t_last, 1e-9)
            eta = (now - self.t0) / max(step - self.step0, 1) * (self.total - step)
            self.write(f"step {step:>{len(str(self.total))}}/{self.total} | loss {loss:.4f} | "
                       f"lr {lr:.2e} | {rate:,.0f} tok/s | eta {_duration(eta)}")
            self.t_last, self.tokens_last = now, self.tokens

    def write(self, line: str) -> None:
        if self.mode == "none":
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class _StopOnCtrlC:
    """While active (main thread only), the first Ctrl-C asks the loop to stop after
    the current step; a second one raises KeyboardInterrupt at once."""

    def __init__(self, say: Callable[[str], None]):
        self.requested = False
        self.say = say
        self._old = None

    def __enter__(self) -> _StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.say("Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to stop now)")

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


# --------------------------------------------------------------------------- the run

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


_SCHEDULE_KEYS = ("lr", "min_lr", "warmup_iters", "lr_decay_iters")


def _stored_schedule(resumed) -> dict | None:
    """The learning-rate schedule a checkpoint's run was started with, or None if it does not say:
    ``extra["lr_schedule"]``, else (older checkpoints) its train_config, whose horizon is
    lr_decay_iters or, when that is None, max_iters."""
    stored = (resumed.extra or {}).get("lr_schedule")
    if isinstance(stored, dict) and all(k in stored for k in _SCHEDULE_KEYS):
        return {k: stored[k] for k in _SCHEDULE_KEYS}
    saved = resumed.train_config or {}
    if saved.get("max_iters") is None and saved.get("lr_decay_iters") is None:
        return None
    defaults = TrainConfig()
    horizon = saved.get("lr_decay_iters")
    return {"lr": saved.get("lr", defaults.lr), "min_lr": saved.get("min_lr", defaults.min_lr),
            "warmup_iters": saved.get("warmup_iters", defaults.warmup_iters),
            "lr_decay_iters": horizon if horizon is not None else saved["max_iters"]}


def _schedule(cfg: TrainConfig, resumed, say: Callable[[str], None]) -> dict:
    """The learning-rate schedule of this run (``_SCHEDULE_KEYS``): the config's, except that a
    resumed run without an explicit ``lr_decay_iters`` keeps the horizon it was started with.
    Says what changes when a resumed run's settings differ from the stored schedule."""
    schedule = {"lr": cfg.lr, "min_lr": cfg.min_lr, "warmup_iters": cfg.warmup_iters,
                "lr_decay_iters": cfg.decay_iters}
    stored = _stored_schedule(resumed) if resumed is not None else None
    if stored is None:
        return schedule
    horizon = stored["lr_decay_iters"]
    if cfg.lr_decay_iters is None:
        schedule["lr_decay_iters"] = horizon
    elif cfg.lr_decay_iters != horizon:
        say(f"note: --lr-decay-iters {cfg.lr_decay_iters} replaces this run's horizon of {horizon} steps: "
            f"the learning rate follows the new cosine from step {resumed.step} on")
    end, saved_end = schedule["lr_decay_iters"], (resumed.train_config or {}).get("max_iters")
    if cfg.max_iters != end and cfg.max_iters != saved_end:       # the run's end moved, the schedule's not
        after = (f"then trains at --min-lr {cfg.min_lr:g} up to step {cfg.max_iters}" if cfg.max_iters > end
                 else f"but this run stops at step {cfg.max_iters}")
        say(f"note: --max-iters {cfg.max_iters} differs from the horizon of this run's learning-rate "
            f"schedule ({end} steps): the cosine still reaches --min-lr at step {end}, {after}; "
            f"pass --lr-decay-iters N to set another horizon")
    changed = [f"--{k.replace('_', '-')} {stored[k]:g} -> {schedule[k]:g}"
               for k in ("lr", "min_lr", "warmup_iters") if stored[k] != schedule[k]]
    if changed:
        say(f"note: the learning-rate schedule changes from step {resumed.step} on: {', '.join(changed)}")
    return schedule


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


def train(cfg: TrainConfig, on_step: Callable[[int, dict], None] | None = None,
          stream=None) -> TrainResult:
    """Run (or, with ``cfg.resume``, continue) training; see the module docstring.

    ``on_step(step, info)`` is called after every optimizer step with
    ``info = {"loss", "lr"}`` (and ``"eval"`` when it evaluated); raising
    KeyboardInterrupt from it acts as Ctrl-C. Progress and logs go to
    ``stream`` (default stderr)."""
    cfg = dataclasses.replace(cfg).validate()
    out, device = cfg.out_dir, str(mg.device(cfg.device))
    resumed = ckpt_mod.read_checkpoint(out) if cfg.resume else None
    if resumed is None and ckpt_mod.has_checkpoint(out):
        if not cfg.overwrite:
            raise ValueError(f"{out} already holds a checkpoint (step {ckpt_mod.read_checkpoint(out).step}); "
                             "pass --resume to continue it, --overwrite to start afresh there, or "
                             "choose another --out")
        _remove_run(out)
    progress = _Progress(cfg.progress, cfg.max_iters, cfg.log_interval, stream)

    # ---- data: text -> token ids (host)
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
    chars_per_token = len(corpus.val) / max(len(val_ids), 1)
    for name, ids in (("training", train_ids), ("validation", val_ids)):
        if len(ids) < cfg.block_size + 1:
            raise ValueError(f"the {name} text has {len(ids)} tokens, too few for one window of "
                             f"--block-size {cfg.block_size} (plus the next token)")

    # ---- model, optimizer, data position
    mg.manual_seed(cfg.seed)
    model = build_model(cfg, tokenizer.vocab_size).to(device)
    counted = cfg.model == "ngram"              # fitted by counting, not by gradient
    opt = None if counted else optim.AdamW(
        optim.param_groups_for_weight_decay(model, cfg.weight_decay), lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2))
    recurrent = _is_recurrent(model)
    data = _DataPosition(train_ids, cfg, device, recurrent)

    step, best, best_step = 0, None, None
    metrics_path = out / "metrics.jsonl"
    if resumed is not None:
        ckpt_mod.restore_model(model, resumed)
        try:
            if opt is not None:
                opt.load_state_dict(resumed.optimizer)
            data.restore(resumed.data_state, resumed.rng_state)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"{resumed.json_path}: the training state does not fit this run: "
                                  f"{e}") from None
        step = resumed.step
        best = (resumed.metrics.get("best") or {}).get("val_loss")
        best_step = (resumed.metrics.get("best") or {}).get("step")
        _truncate_jsonl(metrics_path, step)
        progress.write(f"resumed {cfg.model} from {out} at step {step}")
    schedule = _schedule(cfg, resumed, progress.write)
    out.mkdir(parents=True, exist_ok=True)
    progress.write(f"{cfg.model}: {model.num_parameters():,} parameters | vocab {tokenizer.vocab_size} "
                   f"({cfg.tokenizer}) | train {len(train_ids):,} tokens, val {len(val_ids):,} | "
                   f"device {device} | out {out}")

    def run_eval(at: int) -> dict:
        ev = evaluate(model, val_ids, cfg.block_size, cfg.batch_size, max_batches=cfg.eval_iters or None,
                      device=device, chars_per_token=chars_per_token)
        record = {"step": at, "split": "val", **ev, "time": time.time()}
        _append_jsonl(metrics_path, record)
        progress.write(_eval_line(record))
        return record

    saved_step = step

    def save(at: int, last_eval: dict | None) -> None:
        """Save ``out`` (the last checkpoint), and ``out/best`` when ``last_eval`` is a new best."""
        nonlocal best, best_step, saved_step
        if last_eval is not None and last_eval["step"] == at and (best is None or last_eval["loss"] < best):
            best, best_step = last_eval["loss"], at
            ckpt_mod.save_checkpoint(out / "best", model, **saved(at, last_eval))
        ckpt_mod.save_checkpoint(out, model, **saved(at, last_eval))
        saved_step = at

    def saved(at: int, last_eval: dict | None) -> dict:
        data_state, rng_state = data.checkpoint_parts()
        return dict(step=at, tokenizer=tokenizer, optimizer=opt, train_config=cfg.to_dict(),
                    data_state=data_state, rng_state=rng_state,
                    metrics={"last": last_eval, "best": {"val_loss": best, "step": best_step}},
                    extra={"data_sha256": data_id, "chars_per_token": chars_per_token,
                           "lr_schedule": schedule})

    # ---- the n-gram model: count once, evaluate, save
    if counted:
        model.fit(train_ids)
        last_eval = run_eval(0)
        save(0, last_eval)
        return TrainResult(out, 0, False, [], last_eval, best)

    # ---- the loop
    history: list[float] = []
    last_eval = run_eval(0) if resumed is None else (resumed.metrics or {}).get("last")
    progress.start(step)
    snapshot = None
    model.train()
    interrupted = False
    try:
        with _StopOnCtrlC(progress.write) as ctrl_c:
            while step < cfg.max_iters:
                snapshot = data.snapshot()
                horizon = schedule["lr_decay_iters"]
                lr = optim.cosine_with_warmup(step, schedule["lr"], min(schedule["warmup_iters"], horizon),
                                              horizon, schedule["min_lr"])
                for group in opt.param_groups:
                    group["lr"] = lr
                x, y = data.next_batch()
                # token ids come from the tokenizer, in range by construction: skip the device-side
                # range checks, so a GPU step never waits for the host (only the logged loss does)
                with mg.device_checks(False):
                    if recurrent:     # truncated BPTT: start from the last window's state, detached
                        _, loss = model(x, y, state=data.state)
                        data.state = model.detach_state(model.last_state)
                    else:
                        _, loss = model(x, y)
                    loss_value = float(loss.item())
                    if not math.isfinite(loss_value):      # stop before NaN reaches the weights
                        raise TrainingDiverged(
                            f"training diverged at step {step + 1} (loss {loss_value}); lower --lr or raise "
                            f"--warmup-iters; the last good checkpoint in {out} is kept")
                    opt.zero_grad()
                    loss.backward()
                    if cfg.grad_clip > 0:
                        optim.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    opt.step()
                step, snapshot = step + 1, None      # the step is whole: nothing to roll back
                history.append(loss_value)
                progress.update(step, loss_value, lr, x.size)
                info: dict[str, Any] = {"loss": loss_value, "lr": lr}
                if step % cfg.log_interval == 0:
                    _append_jsonl(metrics_path, {"step": step, "split": "train", "loss": loss_value,
                                                 "lr": lr, "time": time.time()})
                if step % cfg.eval_interval == 0 or step == cfg.max_iters:
                    last_eval = info["eval"] = run_eval(step)
                    save(step, last_eval)
                if on_step is not None:
                    on_step(step, info)
                if ctrl_c.requested:
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        if snapshot is not None:                 # stopped half-way through a step: undo its data
            data.rollback(snapshot)
    finally:
        progress.close()
    if saved_step != step:       # the end, or an interrupt, between two evaluations
        save(step, last_eval)
    if interrupted:
        progress.write(f"interrupted at step {step}; checkpoint saved to {out} (continue with --resume)")
    return TrainResult(out, step, interrupted, history, last_eval, best)


def _eval_line(ev: dict) -> str:
    bpc = f" | bpc {ev['bpc']:.4f}" if ev.get("bpc") is not None else ""
    return f"step {ev['step']}: val loss {ev['loss']:.4f} | perplexity {ev['perplexity']:.2f}{bpc}"
