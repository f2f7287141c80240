"""Section 1 of the road: the text models, how they are sized and how they train.

Every neural run is a function of its settings alone, never of the clock:

* **Size.** Each architecture is built at a target number of *non-embedding*
  parameters N (Kaplan et al. 2020's N: everything but the token and position
  embeddings; ``flops.non_embedding_parameters``). ``width_for`` searches the
  width whose N is closest to the target: the hidden size of a one-layer RNN,
  LSTM or GRU (embedding width = hidden size, as PyTorch's word-language-model
  example), or the width of a 2-layer, 2-head Transformer.
* **Budget.** A run trains on a fixed number of tokens, the same for every
  architecture at one size (the road derives it from a FLOP budget), in steps
  of ``batch_size`` windows of ``n_ctx`` tokens.
* **Schedule.** AdamW, a linear warmup over the first 5 % of the steps, then a
  cosine to zero at the last step; gradients clipped to norm 1 (Pascanu et al.
  2013), the same shape for everyone. Each architecture keeps its standard
  practice: the Transformer decays its matrices by 0.1 (nanoGPT), the
  recurrent models use no weight decay; the LSTM starts its forget gates at
  bias 1 (Gers et al. 2000; Jozefowicz et al. 2015).
* **Data.** Recurrent models read the training text as ``batch_size`` lanes
  of consecutive windows with the hidden state carried across them (truncated
  backpropagation through time); the lanes start at an offset drawn from the
  run's seed. The Transformer reads windows at random offsets from the same
  seed.
"""

from __future__ import annotations

import math

import numpy as np

from lmroad.data import StreamBatcher, random_windows
from lmroad.models.rnn import GRULM, LSTMLM, RNNLM
from lmroad.models.transformer import TransformerLM
from minigrad import optim

from .common import run_steps
from .flops import non_embedding_parameters

__all__ = ["ARCHS", "RECURRENT", "build_model", "width_for", "train_lm", "TRANSFORMER_SHAPE"]

ARCHS = ("rnn", "lstm", "gru", "transformer")
RECURRENT = ("rnn", "lstm", "gru")
TRANSFORMER_SHAPE = dict(n_layer=2, n_head=2)
WARMUP_FRACTION = 0.05
WEIGHT_DECAY = {"rnn": 0.0, "lstm": 0.0, "gru": 0.0, "transformer": 0.1}
_RNN = {"rnn": RNNLM, "lstm": LSTMLM, "gru": GRULM}


def build_model(arch: str, vocab_size: int, width: int, n_ctx: int):
    """One neural language model; ``width`` is the hidden size or the Transformer's width."""
    if arch in _RNN:
        extra = {"forget_bias": 1.0} if arch == "lstm" else {}
        return _RNN[arch](vocab_size=vocab_size, n_embd=width, hidden_size=width, num_layers=1, **extra)
    if arch == "transformer":
        return TransformerLM(vocab_size=vocab_size, n_embd=width, block_size=n_ctx, **TRANSFORMER_SHAPE)
    raise ValueError(f"build_model: unknown architecture {arch!r}; valid: {', '.join(ARCHS)}")


def width_for(arch: str, vocab_size: int, target: int, n_ctx: int) -> int:
    """The width (multiple of 4) whose non-embedding parameter count is closest to ``target``."""
    best, best_err = 4, None
    for width in range(4, 4097, 4):
        n = non_embedding_parameters(build_model(arch, vocab_size, width, n_ctx))
        err = abs(math.log(n / target))
        if best_err is None or err < best_err:
            best, best_err = width, err
        if n > target:
            break
    return best


def train_lm(model, arch: str, train_ids: np.ndarray, *, tokens: int, batch_size: int, n_ctx: int,
             lr: float, seed: int, curve_points: int = 8, evaluate=None) -> dict:
    """Train ``model`` on ``tokens`` training tokens; returns the step count, the
    training-loss curve and, at ``curve_points`` evenly spaced steps,
    ``evaluate(model)`` (a validation loss; None: no curve)."""
    steps = max(1, math.ceil(tokens / (batch_size * n_ctx)))
    warmup = max(1, round(WARMUP_FRACTION * steps))
    groups = optim.param_groups_for_weight_decay(model, WEIGHT_DECAY[arch])
    opt = optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))
    rng = np.random.default_rng([seed, 1])                 # the data stream of this run
    if arch in RECURRENT:
        offset = int(rng.integers(0, len(train_ids)))
        batcher = StreamBatcher(np.roll(train_ids, -offset), batch_size, n_ctx)
    state = None

    def loss_of_step(step: int):
        nonlocal state
        if arch in RECURRENT:            # the next window of every lane, the state carried in
            x, y, reset = batcher.next_batch()
            _, loss = model(x, y, state=None if reset else state)
            state = model.detach_state(model.last_state)
            return loss
        x, y = random_windows(train_ids, batch_size, n_ctx, rng=rng)
        return model(x, y)[1]

    marks = sorted({max(1, round(steps * (i + 1) / curve_points)) for i in range(curve_points)})
    curve = []

    def after_step(done: int, losses: list[float]) -> None:
        if evaluate is not None and done in marks:
            curve.append(dict(step=done, tokens=done * batch_size * n_ctx,
                              train_loss=float(np.mean(losses[-max(1, steps // curve_points):])),
                              val_loss=float(evaluate(model))))
            model.train()

    losses = run_steps(model, opt, steps=steps, warmup=warmup, loss_of_step=loss_of_step,
                       after_step=after_step)
    tail = losses[-max(1, steps // 10):]
    return dict(steps=steps, warmup=warmup, tokens=steps * batch_size * n_ctx,
                final_train_loss=float(np.mean(tail)), curve=curve,
                train_losses=[float(v) for v in _thin(losses, 200)])


def _thin(values: list[float], n: int) -> list[float]:
    """At most ``n`` means of consecutive chunks (a short training curve for the report)."""
    if len(values) <= n:
        return list(values)
    return [float(np.mean(c)) for c in np.array_split(np.asarray(values), n)]
