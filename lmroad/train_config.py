"""The settings of a training run: ``TrainConfig``, how a run's config is
resolved (``resolve_config``: flags and a config file over the defaults, or
over the config saved in the checkpoint when resuming), the model a config
asks for, and the learning-rate schedule a (resumed) run follows.

Part of ``lmroad.train``, which re-exports these names: ``from lmroad.train
import TrainConfig, resolve_config`` is the usual import.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from minigrad import backend

from . import checkpoint as ckpt_mod
from .checkpoint import CheckpointError
from .models import MODELS

__all__ = ["TrainConfig", "resolve_config", "model_config_for", "build_model", "MODEL_KINDS",
           "schedule_for", "stored_schedule", "SCHEDULE_KEYS", "Range", "RANGES", "MAX_NGRAM_N"]

MODEL_KINDS = tuple(MODELS)      # ngram, rnn, lstm, gru, transformer

# Counting to order n keeps up to n(n+1)/2 token ids per training token (every m-gram, m <= n):
# order 10 is 55 ids a token, about 2 GB for the 4.6M-character Shakespeare text, and orders
# above 5 rarely help (the road stops at 5); NGramLM itself takes any order its text supports
MAX_NGRAM_N = 10


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
    tokenizer: str = "char"      # "char", "word" or "bpe"
    vocab_size: int = 1024       # bpe only: 256 bytes + merges learned on the training text + <|endoftext|>
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
    max_skipped_steps: int = 5   # non-finite steps in a row skipped before the run stops; 0: none
    grad_accum_steps: int = 1    # micro-batches of batch_size per step: the update of a K x larger batch
    # evaluation, logging, checkpoints
    eval_interval: int = 250
    eval_iters: int = 20         # validation batches per evaluation; 0: the whole split
    log_interval: int = 10
    seed: int = 1337
    out: str | None = None       # None: out/<model>
    resume: bool = False         # continue the run saved in ``out``
    overwrite: bool = False      # start afresh in an ``out`` that holds another run's checkpoint
    progress: str = "auto"       # "auto" (a bar on a terminal with tqdm), "bar", "lines", "none"
    log: str = "jsonl"           # "jsonl": metrics.jsonl and .csv; "tensorboard": also OUT/tensorboard/

    @property
    def out_dir(self) -> Path:
        return Path(self.out if self.out is not None else os.path.join("out", self.model))

    @property
    def decay_iters(self) -> int:
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters

    def validate(self) -> TrainConfig:
        """ValueError naming the first setting that makes no sense; returns self.
        Each number must lie in its ``RANGES`` entry (the CLI checks the same ranges while
        parsing); then the settings that constrain each other are checked together."""
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
            if f.name in RANGES:
                need(v in RANGES[f.name], f"{_flag(f.name)} must be {RANGES[f.name]}, got {v}")
            if f.name in ("corpus", "data", "out"):
                need(v.strip() != "", f"{_flag(f.name)} must not be empty (a corpus name, a file or "
                                      "a folder)")
        need(self.model in MODEL_KINDS,
             f"--model must be one of {', '.join(MODEL_KINDS)}, got {self.model!r}")
        need(self.tokenizer in ("char", "word", "bpe"),
             f"--tokenizer must be 'char', 'word' or 'bpe', got {self.tokenizer!r}")
        need(self.progress in ("auto", "bar", "lines", "none"),
             f"--progress must be auto, bar, lines or none, got {self.progress!r}")
        need(self.log in ("jsonl", "tensorboard"),
             "--log must be jsonl (metrics.jsonl and metrics.csv, always written) or tensorboard "
             f"(also TensorBoard event files in OUT/tensorboard/), got {self.log!r}")
        need(self.min_lr <= self.lr, f"--min-lr must be in [0, --lr={self.lr}], got {self.min_lr}")
        # AdamW's decoupled decay multiplies the weight matrices by 1 - lr*wd every step: at
        # lr*wd >= 1 that flips or zeroes them, and their size grows without bound
        need(self.lr * self.weight_decay < 1,
             f"--weight-decay {self.weight_decay:g} with --lr {self.lr:g}: AdamW multiplies the weight "
             f"matrices by 1 - lr*weight_decay = {1 - self.lr * self.weight_decay:g} every step, which "
             f"must be > 0; valid: --weight-decay below 1/--lr = {1 / self.lr:g}")
        need(not (self.resume and self.overwrite), "--resume and --overwrite cannot be used together")
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


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric setting: an int, or a finite float, between ``low`` and
    ``high`` (None: no bound), each end included unless ``low_open``/``high_open``.
    ``str(r)`` says it in words ("an integer >= 1", "a finite number in [0, 1)"),
    ``r.bounds`` the bounds alone ("in [0, 1)", "" when there are none)."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, v) -> bool:
        if self.kind is float and not math.isfinite(v):
            return False
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        return self.high is None or not (v > self.high or (self.high_open and v == self.high))

    @property
    def bounds(self) -> str:
        low, high = (None if b is None else f"{b:g}" for b in (self.low, self.high))
        if low is not None and high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if high is not None:
            return f"{'<' if self.high_open else '<='} {high}"
        return ""

    def __str__(self) -> str:
        kind = "an integer" if self.kind is int else "a finite number"
        return f"{kind} {self.bounds}".rstrip()


# The range of every numeric setting: TrainConfig.validate and the CLI's parser check these
RANGES: dict[str, Range] = {
    "n_layer": Range(int, 1), "n_head": Range(int, 1), "n_embd": Range(int, 1),
    "hidden_size": Range(int, 1), "num_layers": Range(int, 1), "ngram_n": Range(int, 1, MAX_NGRAM_N),
    "dropout": Range(float, 0, 1, high_open=True), "forget_bias": Range(float),
    "max_iters": Range(int, 0), "batch_size": Range(int, 1), "block_size": Range(int, 1),
    "lr": Range(float, 0, low_open=True), "min_lr": Range(float, 0), "warmup_iters": Range(int, 0),
    "lr_decay_iters": Range(int, 0), "weight_decay": Range(float, 0),
    "beta1": Range(float, 0, 1, high_open=True), "beta2": Range(float, 0, 1, high_open=True),
    "grad_clip": Range(float, 0), "max_skipped_steps": Range(int, 0), "grad_accum_steps": Range(int, 1),
    "eval_interval": Range(int, 1), "eval_iters": Range(int, 0), "log_interval": Range(int, 1),
    "seed": Range(int, 0),
    "vocab_size": Range(int, 257),       # the 256 one-byte tokens and <|endoftext|>, at least
}


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



# --------------------------------------------------------------------------- the schedule

SCHEDULE_KEYS = ("lr", "min_lr", "warmup_iters", "lr_decay_iters")


def stored_schedule(resumed) -> dict | None:
    """The learning-rate schedule a checkpoint's run was started with, or None if it does not say:
    ``extra["lr_schedule"]``, else (older checkpoints) its train_config, whose horizon is
    lr_decay_iters or, when that is None, max_iters."""
    stored = (resumed.extra or {}).get("lr_schedule")
    if isinstance(stored, dict) and all(k in stored for k in SCHEDULE_KEYS):
        return {k: stored[k] for k in SCHEDULE_KEYS}
    saved = resumed.train_config or {}
    if saved.get("max_iters") is None and saved.get("lr_decay_iters") is None:
        return None
    defaults = TrainConfig()
    horizon = saved.get("lr_decay_iters")
    return {"lr": saved.get("lr", defaults.lr), "min_lr": saved.get("min_lr", defaults.min_lr),
            "warmup_iters": saved.get("warmup_iters", defaults.warmup_iters),
            "lr_decay_iters": horizon if horizon is not None else saved["max_iters"]}


def schedule_for(cfg: TrainConfig, resumed, say: Callable[[str], None]) -> dict:
    """The learning-rate schedule of this run (``SCHEDULE_KEYS``): the config's, except that a
    resumed run without an explicit ``lr_decay_iters`` keeps the horizon it was started with.
    Says what changes when a resumed run's settings differ from the stored schedule."""
    schedule = {"lr": cfg.lr, "min_lr": cfg.min_lr, "warmup_iters": cfg.warmup_iters,
                "lr_decay_iters": cfg.decay_iters}
    stored = stored_schedule(resumed) if resumed is not None else None
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
