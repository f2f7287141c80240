"""The two standard long-range benchmarks: the copying memory task and the adding problem.

Both are synthetic: the data is generated, so there is no end to it, and
the answer depends on inputs far back in the sequence, so they test whether
a model can *carry* information over T steps (a recurrent model in its
state, a Transformer by attending back). Each comes with a baseline: the
loss of the best model that does not remember anything. A model that only
reaches the baseline has learnt the easy part of the task and nothing of the
memory part; learning shows as a loss below it.

Copying memory (Arjovsky, Shah & Bengio 2016, "Unitary evolution recurrent
neural networks", section 4.1; after Hochreiter & Schmidhuber 1997)
------------------------------------------------------------------------
Ten ids: 0 = blank, 1..8 = symbols, 9 = delimiter. A sequence has T + 20
positions::

    position  0 .. 9        10 .. T+8       T+9         T+10 .. T+19
    input     s_0 .. s_9    T-1 blanks      delimiter   10 blanks
    target    blank ...................................  s_0 .. s_9

The ten symbols s_i are drawn uniformly from 1..8. The model reads the
input and predicts the target at every position (a language model over the
10 ids, fed the input sequence, not its own targets); the loss is the mean
cross-entropy over all T + 20 positions, in nats. The delimiter says "now
write them back": the model must hold 10 symbols (30 bits) for T steps.

Baseline: a memoryless predictor knows only the position. The best one
says "blank" with certainty for the first T + 10 positions (no loss: they
are always blank) and a uniform guess over the 8 symbols for the last 10
(loss ln 8 each), so its loss is the entropy of the targets given the
position alone,

    baseline = 10 · ln 8 / (T + 20)        (T = 100: 0.173 nats per position).

It gets 1/8 of the copied symbols right. ``copy_baseline`` computes the
entropy from the position-wise target distribution.

The adding problem (Hochreiter & Schmidhuber 1997, experiment 4; here in
the form of Le, Jaitly & Hinton 2015 and Arjovsky et al. 2016)
------------------------------------------------------------------------
Each of T steps carries two numbers: a value drawn uniformly from [0, 1)
and a marker that is 1 at exactly two steps, one drawn uniformly in the
first half [0, T/2) and one in the second half [T/2, T), and 0 elsewhere.
The target is the sum of the two marked values (in [0, 2)); the loss is the
mean squared error. The model must find the two marked values among T and
keep the first one for up to T steps.

Baseline: without looking at the input, the best constant guess is the
mean of the target, E[u₁ + u₂] = 1, and its mean squared error is the
variance of a sum of two independent U(0, 1), 2 · 1/12 = 1/6 ≈ 0.167.

Accuracy: for copying, the fraction of the 10 copied symbols whose argmax
(over all 10 ids) is right (the baseline's is 1/8). For adding, the
fraction of sequences with |prediction − target| < 0.04, the criterion of
Hochreiter & Schmidhuber (1997), who scaled their target into [0, 1]; on
the [0, 2) target here it is twice as strict (the constant guess 1 scores
about 0.078).

Models (``build_task_model``): for copying, lmroad's own language models
(``RNNLM``, ``LSTMLM``, ``TransformerLM``) with vocab_size 10; for adding,
``AddingRegressor``: the same cores reading (B, T, 2) floats, with one
output read at the last step. Every model keeps its own initialisation
(see ``lmroad.models`` and ``AddingRegressor``). ``run_task`` trains one
model with AdamW, warmup then cosine decay and gradient clipping, and
returns its learning curve.
"""

from __future__ import annotations

import math
import time

import numpy as np

import minigrad as mg
import minigrad.functional as F
from lmroad.layers import LSTM, RNN, LayerNorm, LearnedPositionalEmbedding, Linear, TransformerBlock
from lmroad.models import LSTMLM, RNNLM, TransformerLM
from minigrad import nn
from minigrad.tensor import Tensor

from .common import train_steps

__all__ = ["BLANK", "DELIMITER", "N_SYMBOLS", "COPY_VOCAB", "COPY_LENGTH", "ADDING_TOLERANCE",
           "TASKS", "KINDS", "N_LAYER", "N_HEAD", "copy_batch", "copy_target_distribution",
           "copy_baseline", "adding_batch",
           "adding_baseline", "AddingRegressor", "build_task_model", "run_task"]

# --------------------------------------------------------------------------- the copying task

BLANK = 0            # id of the blank
N_SYMBOLS = 8        # symbols are ids 1 .. N_SYMBOLS
DELIMITER = 9        # id of the "now copy" marker
COPY_VOCAB = 10      # blank, 8 symbols, delimiter
COPY_LENGTH = 10     # how many symbols are to be remembered


def _check_int(where: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value}")
    return int(value)


def copy_batch(rng: np.random.Generator, batch_size: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` copying sequences with a gap of T -> (idx, targets), each (B, T+20) int64.

    idx:     s_0..s_9, T-1 blanks, the delimiter (position T+9), 10 blanks
    targets: T+10 blanks, then s_0..s_9 (positions T+10 .. T+19)

    Draws one (B, 10) array of symbols from ``rng`` (uniform on 1..8)."""
    _check_int("copy_batch", "batch_size", batch_size, 1)
    _check_int("copy_batch", "T", T, 1)
    L = T + 2 * COPY_LENGTH
    symbols = rng.integers(1, N_SYMBOLS + 1, size=(batch_size, COPY_LENGTH), dtype=np.int64)
    idx = np.full((batch_size, L), BLANK, dtype=np.int64)              # (B, T+20)
    idx[:, :COPY_LENGTH] = symbols
    idx[:, T + COPY_LENGTH - 1] = DELIMITER
    targets = np.full((batch_size, L), BLANK, dtype=np.int64)          # (B, T+20)
    targets[:, T + COPY_LENGTH:] = symbols
    return idx, targets


def copy_target_distribution(T: int) -> np.ndarray:
    """(T+20, 10) float64: row t is the distribution of the target at position t
    when nothing but the position is known (what the task's definition says)."""
    _check_int("copy_target_distribution", "T", T, 1)
    L = T + 2 * COPY_LENGTH
    p = np.zeros((L, COPY_VOCAB))
    p[:T + COPY_LENGTH, BLANK] = 1.0                                   # always blank
    p[T + COPY_LENGTH:, 1:N_SYMBOLS + 1] = 1.0 / N_SYMBOLS            # a uniform symbol
    return p


def copy_baseline(T: int) -> float:
    """The memoryless baseline of the copying task: the mean cross-entropy per
    position (nats) of the best predictor that knows only the position.

    That predictor outputs the target's distribution at each position, and
    its expected loss there is that distribution's entropy; averaged over
    the T + 20 positions this comes to 10 · ln 8 / (T + 20)."""
    _check_int("copy_baseline", "T", T, 1)
    p = copy_target_distribution(T)                                    # (T+20, 10)
    logp = np.log(np.where(p > 0, p, 1.0))                             # 0 · log 0 = 0
    entropy = -(p * logp).sum(axis=1)                                  # (T+20,)
    return float(entropy.mean())


# --------------------------------------------------------------------------- the adding problem

ADDING_TOLERANCE = 0.04   # |error| below this counts as right (Hochreiter & Schmidhuber 1997)


def adding_batch(rng: np.random.Generator, batch_size: int, T: int,
                 dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` adding sequences of T steps -> (x (B, T, 2), y (B,)), both ``dtype``.

    x[..., 0] are values U[0, 1); x[..., 1] is 1 at one step in [0, ⌈T/2⌉)
    and one in [⌈T/2⌉, T) (the halves [0, T/2) and [T/2, T) for odd T too),
    0 elsewhere; y is the sum of the two marked values (computed in float64,
    then cast). Draws, in this order: the (B, T) values, the (B,) first and
    the (B,) second marked steps."""
    _check_int("adding_batch", "batch_size", batch_size, 1)
    _check_int("adding_batch", "T", T, 2)
    half = (T + 1) // 2                     # first integer position >= T/2
    values = rng.random((batch_size, T))                               # (B, T) float64
    first = rng.integers(0, half, size=batch_size)                     # (B,)
    second = rng.integers(half, T, size=batch_size)                    # (B,)
    rows = np.arange(batch_size)
    markers = np.zeros((batch_size, T))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1).astype(dtype)             # (B, T, 2)
    y = (values[rows, first] + values[rows, second]).astype(dtype)     # (B,)
    return x, y


def adding_baseline() -> float:
    """MSE of the best constant prediction, the target's mean 1: the variance
    of u₁ + u₂ with u₁, u₂ independent U(0, 1), i.e. 2 · Var(U(0, 1))."""
    mean_u = 1 / 2                          # E[u]  = ∫₀¹ u du
    second_moment_u = 1 / 3                 # E[u²] = ∫₀¹ u² du
    var_u = second_moment_u - mean_u ** 2   # Var(u) = E[u²] − E[u]² = 1/12
    return 2 * var_u                        # variances of independent terms add: 1/6


# --------------------------------------------------------------------------- models

TASKS = ("copy", "adding")
KINDS = ("rnn", "lstm", "transformer")
N_LAYER = 2           # Transformer depth on both tasks
N_HEAD = 2            # and its number of heads
COPY_EMBD = 16        # embedding width of the recurrent copy models (10 ids fit)
FORGET_BIAS = 1.0     # LSTM forget-gate bias at initialisation (gates start open)


def _check_choice(where: str, name: str, value, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"{where}: unknown {name} {value!r}; valid: {', '.join(valid)}")
    return value


class AddingRegressor(nn.Module):
    """A regressor for the adding problem: x (B, T, 2) -> prediction (B,).

    ``kind`` "rnn" / "lstm": a one-layer RNN / LSTM core (input_size 2,
    ``hidden`` units, batch first; the LSTM with forget-gate bias
    ``forget_bias``), then ``head`` Linear(hidden, 1) on the last step's h.

    ``kind`` "transformer": ``inp`` Linear(2, hidden) + learned positions
    (``max_len`` of them, required) -> ``n_layer`` pre-LN causal
    TransformerBlocks -> LayerNorm -> ``head`` Linear(hidden, 1) at the last
    position (which attends to every step). Initialised as TransformerLM
    (GPT-2: weights N(0, 0.02²), biases 0, residual projections scaled by
    1/√(2·n_layer)).

    ``forward(x, y=None) -> (prediction (B,), MSE loss or None)``, the
    ``(output, loss)`` interface of the language models."""

    def __init__(self, kind: str, hidden: int, max_len: int | None = None, n_layer: int = N_LAYER,
                 n_head: int = N_HEAD, forget_bias: float = FORGET_BIAS):
        super().__init__()
        where = "AddingRegressor"
        self.kind = _check_choice(where, "kind", kind, KINDS)
        self.hidden = _check_int(where, "hidden", hidden, 1)
        if kind == "rnn":
            self.core = RNN(2, hidden, batch_first=True)
        elif kind == "lstm":
            self.core = LSTM(2, hidden, batch_first=True, forget_bias=forget_bias)
        else:
            if max_len is None:
                raise ValueError(f"{where}: kind='transformer' needs max_len (the longest T)")
            self.max_len = _check_int(where, "max_len", max_len, 1)
            if hidden % n_head:
                raise ValueError(f"{where}: hidden ({hidden}) must be divisible by n_head ({n_head})")
            self.inp = Linear(2, hidden)
            self.wpe = LearnedPositionalEmbedding(max_len, hidden)
            self.blocks = nn.ModuleList(TransformerBlock(hidden, n_head, norm_first=True,
                                                         activation="gelu_tanh")
                                        for _ in range(n_layer))
            self.ln_f = LayerNorm(hidden)
            self._init_transformer(n_layer)
        self.head = Linear(hidden, 1)

    def _init_transformer(self, n_layer: int) -> None:
        for m in self.modules():
            if isinstance(m, Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for block in self.blocks:
            nn.init.normal_(block.attn.in_proj_weight, 0.0, 0.02)
            nn.init.zeros_(block.attn.in_proj_bias)
            std = 0.02 / math.sqrt(2 * n_layer)
            nn.init.normal_(block.attn.out_proj.weight, 0.0, std)
            nn.init.normal_(block.mlp.proj.weight, 0.0, std)

    def forward(self, x: Tensor, y: Tensor | None = None):
        if not isinstance(x, Tensor) or x.ndim != 3 or x.shape[-1] != 2:
            got = x.shape if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"AddingRegressor: x must be a (B, T, 2) tensor, got {got}")
        if self.kind == "transformer":
            T = x.shape[1]
            if T > self.max_len:
                raise ValueError(f"AddingRegressor: a sequence of {T} steps is longer than "
                                 f"max_len {self.max_len}")
            h = self.inp(x) + self.wpe(T)                      # (B, T, d)
            for block in self.blocks:
                h = block(h)                                   # (B, T, d)
            last = self.ln_f(h[:, -1, :])                      # (B, d)
        else:
            out, _ = self.core(x)                              # (B, T, H)
            last = out[:, -1, :]                               # (B, H)
        pred = self.head(last).reshape(x.shape[0])             # (B,)
        return pred, (None if y is None else F.mse_loss(pred, y))


def build_task_model(task: str, kind: str, T: int, size: int):
    """A fresh model for ``task`` ("copy" or "adding") of ``kind`` ("rnn",
    "lstm" or "transformer") for sequences with gap / length T.

    ``size``: hidden units of a recurrent model, the width d of a Transformer
    (N_LAYER = 2 blocks, N_HEAD = 2 heads, so d must be even). Copy: RNNLM /
    LSTMLM (embedding width 16, forget-gate bias 1) or TransformerLM with
    vocab_size 10 and block_size T + 20, each with its own initialisation.
    Adding: ``AddingRegressor(kind, size, max_len=T)``."""
    where = "build_task_model"
    _check_choice(where, "task", task, TASKS)
    _check_choice(where, "kind", kind, KINDS)
    _check_int(where, "T", T, 1 if task == "copy" else 2)
    _check_int(where, "size", size, 1)
    if kind == "transformer" and size % N_HEAD:
        raise ValueError(f"{where}: a Transformer's size (its width) must be divisible by "
                         f"n_head={N_HEAD}, got {size}")
    if task == "adding":
        return AddingRegressor(kind, size, max_len=T)
    if kind == "rnn":
        return RNNLM(vocab_size=COPY_VOCAB, n_embd=COPY_EMBD, hidden_size=size)
    if kind == "lstm":
        return LSTMLM(vocab_size=COPY_VOCAB, n_embd=COPY_EMBD, hidden_size=size,
                      forget_bias=FORGET_BIAS)
    return TransformerLM(vocab_size=COPY_VOCAB, n_layer=N_LAYER, n_head=N_HEAD, n_embd=size,
                         block_size=T + 2 * COPY_LENGTH)


# --------------------------------------------------------------------------- training

_TASK_ID = {"copy": 0, "adding": 1}     # fixed numbers for the seeds (str hashes vary per process)
_EVAL_CHUNK = 256                       # sequences per forward pass in evaluation


def _batch(task: str, rng: np.random.Generator, n: int, T: int):
    return copy_batch(rng, n, T) if task == "copy" else adding_batch(rng, n, T)


def _evaluate(model, task: str, T: int, data: tuple[np.ndarray, np.ndarray],
              device: str) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on the fixed evaluation ``data``
    (in chunks of _EVAL_CHUNK sequences; the loss is the mean over all of them)."""
    x_all, y_all = data
    n = len(x_all)
    loss_sum, right, count = 0.0, 0, 0
    model.eval()
    try:
        with mg.no_grad():
            for start in range(0, n, _EVAL_CHUNK):
                x, y = x_all[start:start + _EVAL_CHUNK], y_all[start:start + _EVAL_CHUNK]
                out, loss = model(mg.tensor(x, device=device), mg.tensor(y, device=device))
                loss_sum += float(loss.item()) * len(x)
                if task == "copy":
                    # (b, 10) guesses for the copied symbols, argmax over all 10 ids
                    guess = out[:, T + COPY_LENGTH:, :].numpy().argmax(axis=-1)
                    right += int((guess == y[:, T + COPY_LENGTH:]).sum())
                    count += guess.size
                else:
                    err = np.abs(out.numpy().astype(np.float64) - y.astype(np.float64))   # (b,)
                    right += int((err < ADDING_TOLERANCE).sum())
                    count += err.size
    finally:
        model.train()
    return loss_sum / n, right / count


def run_task(task: str, kind: str, T: int, *, size: int, steps: int, batch_size: int, lr: float,
             seed: int, eval_every: int, n_eval: int, device: str = "cpu",
             warmup_frac: float = 0.1, weight_decay: float = 0.0) -> dict:
    """Train one ``kind`` model on ``task`` with gap/length T from scratch; return its record.

    Seeding: ``mg.manual_seed(seed)`` right before the model is built (the
    initial weights); the training batches come from
    ``np.random.default_rng([seed, task number, T, 0])``, the ``n_eval``
    evaluation sequences, drawn once, from ``[seed, task number, T, 1]``. Both
    streams are independent of ``kind`` and ``size``, so for a given (task,
    T, seed) every model trains on the same batches and is scored on the
    same sequences.

    Optimisation: AdamW (``weight_decay``, default 0: the tasks are
    noise-free), learning rate ``lr`` with a linear warmup over
    round(warmup_frac · steps) steps then a cosine to 0 at ``steps``
    (``minigrad.optim.cosine_with_warmup``), gradients clipped to total
    norm 1.

    Returns a dict: task, kind, T, size, parameters, steps, batch_size, lr,
    seed, tokens (steps · batch_size · sequence length: T + 20 for copy, T
    for adding), baseline, curve (a list of dict(step, train_loss,
    eval_loss) after every ``eval_every`` steps and after the last;
    train_loss is the mean training loss over the steps since the previous
    point, eval_loss the mean loss on the evaluation set; eval_every >= steps
    gives the one point at the end), final_eval_loss,
    accuracy (on the evaluation set after training: copy, the fraction of
    the copied symbols predicted right by argmax; adding, the fraction of
    sequences with |error| < 0.04), seconds (wall clock, the only entry that
    is not reproducible). Losses: nats per position (copy), MSE (adding).
    Everything but ``seconds`` is the same, bit for bit, for the same
    arguments on the same device and BLAS thread count."""
    where = "run_task"
    _check_choice(where, "task", task, TASKS)
    _check_choice(where, "kind", kind, KINDS)
    T = _check_int(where, "T", T, 1 if task == "copy" else 2)
    steps = _check_int(where, "steps", steps, 1)
    batch_size = _check_int(where, "batch_size", batch_size, 1)
    eval_every = _check_int(where, "eval_every", eval_every, 1)
    n_eval = _check_int(where, "n_eval", n_eval, 1)
    seed = _check_int(where, "seed", seed, 0)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"{where}: lr must be a finite number > 0, got {lr!r}")
    if not 0.0 <= warmup_frac < 1.0:
        raise ValueError(f"{where}: warmup_frac must be in [0, 1), got {warmup_frac}")
    if not weight_decay >= 0:
        raise ValueError(f"{where}: weight_decay must be >= 0, got {weight_decay}")

    t0 = time.perf_counter()
    mg.manual_seed(seed)
    model = build_task_model(task, kind, T, size).to(device)
    train_rng = np.random.default_rng([seed, _TASK_ID[task], T, 0])
    eval_data = _batch(task, np.random.default_rng([seed, _TASK_ID[task], T, 1]), n_eval, T)
    scores = {}

    def next_batch():
        x, y = _batch(task, train_rng, batch_size, T)
        return mg.tensor(x, device=device), mg.tensor(y, device=device)

    def evaluate(m) -> float:
        scores["loss"], scores["accuracy"] = _evaluate(m, task, T, eval_data, device)
        return scores["loss"]

    # the road's training loop: AdamW, warmup then cosine to 0, clipping at 1
    stats = train_steps(model, next_batch, steps=steps, lr=float(lr), weight_decay=float(weight_decay),
                        warmup_fraction=warmup_frac, curve_every=eval_every,
                        evaluate=evaluate)
    curve = stats["curve"]
    accuracy = scores["accuracy"]

    seq_len = T + 2 * COPY_LENGTH if task == "copy" else T
    return dict(task=task, kind=kind, T=T, size=size, parameters=model.num_parameters(),
                steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                tokens=steps * batch_size * seq_len,
                baseline=copy_baseline(T) if task == "copy" else adding_baseline(),
                curve=curve, final_eval_loss=curve[-1]["eval_loss"], accuracy=accuracy,
                seconds=time.perf_counter() - t0)
