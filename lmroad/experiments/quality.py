"""Section 1 of the road: quality and cost of every model on the same text and budget.

* n-gram models (several n, interpolated Kneser-Ney) count the training text once.
* RNN, LSTM, GRU and Transformer are sized to about the same number of
  parameters (``matched_size``) and each trains for the same wall-clock time:
  a short speed probe sets the number of steps, then AdamW with nanoGPT's
  warmup + cosine schedule runs exactly that many. Recurrent models read the
  text as parallel lanes of consecutive windows with the hidden state carried
  across windows (truncated backpropagation through time); the Transformer
  reads random windows of ``block_size``.
* Every model is scored on the same validation tokens (a prefix of the
  validation split) with ``lmroad.train.evaluate``, in bits per character, and
  writes a short sample from the same prompt.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

import minigrad as mg
from lmroad.data import StreamBatcher, random_windows
from lmroad.models import NGramLM
from lmroad.models.rnn import GRULM, LSTMLM, RNNLM
from lmroad.models.transformer import TransformerLM
from lmroad.train import evaluate
from minigrad import optim

from .common import Progress

__all__ = ["NEURAL", "build_neural", "matched_size", "QualityResult", "run_quality"]

NEURAL = ("rnn", "lstm", "gru", "transformer")
RECURRENT = ("rnn", "lstm", "gru")
_RNN_CLASSES = {"rnn": RNNLM, "lstm": LSTMLM, "gru": GRULM}


def build_neural(kind: str, vocab_size: int, size: int, block_size: int, n_layer: int = 4,
                 n_head: int = 4, n_embd_rnn: int = 64):
    """One neural model; ``size`` is the recurrent hidden size, or the Transformer's width."""
    if kind in _RNN_CLASSES:
        return _RNN_CLASSES[kind](vocab_size=vocab_size, n_embd=n_embd_rnn, hidden_size=size)
    if kind == "transformer":
        return TransformerLM(vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=size,
                             block_size=block_size)
    raise ValueError(f"build_neural: unknown model {kind!r}; valid: {NEURAL}")


def _count(kind: str, vocab_size: int, size: int, block_size: int, **kw) -> int:
    return build_neural(kind, vocab_size, size, block_size, **kw).num_parameters()


def matched_size(kind: str, vocab_size: int, target: int, block_size: int, **kw) -> int:
    """The size whose parameter count is closest to ``target`` (hidden sizes in
    steps of 8; Transformer widths in multiples of 2·n_head)."""
    step = 2 * kw.get("n_head", 4) if kind == "transformer" else 8
    best, best_err = step, None
    for size in range(step, 4096 + 1, step):
        n = _count(kind, vocab_size, size, block_size, **kw)
        err = abs(n - target)
        if best_err is None or err < best_err:
            best, best_err = size, err
        if n > target:
            break
    return best


@dataclass
class QualityResult:
    rows: list[dict]                               # one per model
    models: dict = field(default_factory=dict)     # name -> trained neural model (for sections 2 and 4)
    sizes: dict = field(default_factory=dict)      # name -> size passed to build_neural
    eval_tokens: int = 0
    prompt: str = ""


def _sample(model, tok, prompt: str, n_chars: int, device: str, seed: int) -> tuple[str, float]:
    """A sample continuing ``prompt`` (temperature 0.8, top-k 40) and the generation speed."""
    idx = mg.tensor(tok.encode(prompt)[None, :], device=device)
    t0 = time.perf_counter()
    out = model.generate(idx, max_new_tokens=n_chars, temperature=0.8, top_k=40, seed=seed)
    dt = time.perf_counter() - t0
    return tok.decode(out.numpy()[0]), n_chars / max(dt, 1e-9)


def _train_neural(model, kind: str, train_ids: np.ndarray, seconds: float, batch_size: int,
                  block_size: int, lr: float, device: str, seed: int, progress: Progress) -> dict:
    """Train for about ``seconds``: probe the step time, then a full warmup+cosine schedule."""
    opt = optim.AdamW(optim.param_groups_for_weight_decay(model, 0.1), lr=lr, betas=(0.9, 0.99))
    rng = np.random.default_rng(seed)
    batcher = StreamBatcher(train_ids, batch_size, block_size, device) if kind in RECURRENT else None
    state = None

    def step(lr_now: float) -> float:
        nonlocal state
        for g in opt.param_groups:
            g["lr"] = lr_now
        if batcher is not None:
            x, y, reset = batcher.next_batch()
            if reset:
                state = None
            _, loss = model(x, y, state=state)
            state = model.detach_state(model.last_state)
        else:
            x, y = random_windows(train_ids, batch_size, block_size, device, rng=rng)
            _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.item())

    model.train()
    t0 = time.perf_counter()
    probe = 3
    for _ in range(probe):                       # the probe's steps count as training (at warmup lr)
        step(lr * 0.1)

    def planned(done: int) -> int:
        """Steps that fit the time budget at the speed measured so far (re-planned as the
        machine's load changes, so the schedule still ends when the time is up)."""
        per_step = (time.perf_counter() - t0) / done
        return max(done + 1, int(seconds / per_step))

    total = planned(probe)
    warmup = max(1, min(100, total // 10))
    losses, s, reported = [], probe, 0
    while s < total:
        losses.append(step(optim.cosine_with_warmup(s, lr, warmup, total, lr / 10)))
        s += 1
        if s % 25 == 0:
            total = planned(s)
        if 5 * s // max(total, 1) > reported:
            reported = 5 * s // max(total, 1)
            progress.say(f"  {kind:<11} step {s:>5}/{total}  train loss {losses[-1]:.3f}")
    total = s
    elapsed = time.perf_counter() - t0
    tail = losses[-max(1, len(losses) // 10):] or [float("nan")]
    return dict(steps=total, train_tokens=total * batch_size * block_size, train_seconds=elapsed,
                tokens_per_s=total * batch_size * block_size / elapsed,
                final_train_loss=float(np.mean(tail)))


def run_quality(train_ids: np.ndarray, val_ids: np.ndarray, tok, *, ngram_orders, param_budget: int,
                seconds_per_model: float, batch_size: int, block_size: int, eval_tokens: int,
                sample_chars: int, prompt: str, lr_rnn: float, lr_transformer: float,
                device: str, seed: int, progress: Progress, models=NEURAL) -> QualityResult:
    V = tok.vocab_size
    val = val_ids[:eval_tokens + 1]
    res = QualityResult(rows=[], eval_tokens=len(val) - 1, prompt=prompt)

    for n in ngram_orders:
        t0 = time.perf_counter()
        lm = NGramLM(n, V, "kneser_ney").fit(train_ids)
        fit_s = time.perf_counter() - t0
        ev = evaluate(lm, val, block_size=256, batch_size=8, device="cpu")
        sample, gen_speed = _sample(lm, tok, prompt, sample_chars, "cpu", seed)
        res.rows.append(dict(model=f"{n}-gram", kind="ngram", parameters=None, entries=lm.num_entries(),
                             size=n, steps=None, train_tokens=len(train_ids), train_seconds=fit_s,
                             tokens_per_s=len(train_ids) / fit_s, val_loss=ev["loss"], val_bpc=ev["bpc"],
                             val_perplexity=ev["perplexity"], gen_chars_per_s=gen_speed, sample=sample))
        progress.say(f"quality  {n}-gram (Kneser-Ney): {lm.num_entries():,} n-grams, fit {fit_s:.1f}s, "
                     f"val {ev['bpc']:.3f} bits/char")

    for kind in models:
        size = matched_size(kind, V, param_budget, block_size)
        mg.manual_seed(seed)
        model = build_neural(kind, V, size, block_size).to(device)
        n_params = model.num_parameters()
        progress.say(f"quality  {kind}: size {size}, {n_params:,} parameters, training "
                     f"{seconds_per_model:.0f}s")
        stats = _train_neural(model, kind, train_ids, seconds_per_model, batch_size, block_size,
                              lr_transformer if kind == "transformer" else lr_rnn, device, seed, progress)
        ev = evaluate(model, val, block_size=block_size, batch_size=batch_size, device=device)
        sample, gen_speed = _sample(model, tok, prompt, sample_chars, device, seed)
        res.rows.append(dict(model=kind, kind=kind, parameters=n_params, entries=None, size=size,
                             **stats, val_loss=ev["loss"], val_bpc=ev["bpc"],
                             val_perplexity=ev["perplexity"], gen_chars_per_s=gen_speed, sample=sample))
        res.models[kind] = model
        res.sizes[kind] = size
        progress.say(f"quality  {kind}: {stats['steps']} steps, {stats['tokens_per_s']:,.0f} tokens/s, "
                     f"val {ev['bpc']:.3f} bits/char")
    return res
