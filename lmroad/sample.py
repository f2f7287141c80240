"""Sampling: text from a trained checkpoint.

    from lmroad.sample import sample
    texts = sample("out/lstm", prompt="ROMEO:", max_new_tokens=200, temperature=0.8, top_k=40, seed=0)

Each text is the prompt followed by ``max_new_tokens`` generated tokens.
``temperature`` 0 is greedy decoding (the most probable token every time);
``top_k`` keeps the k most probable tokens, ``top_p`` the smallest set
whose probability reaches p (nucleus sampling); both may be combined.
``num_samples`` continuations are drawn together, as rows of one batch, and
``seed`` makes them reproducible. From the command line:

    python -m lmroad sample --checkpoint out/lstm --prompt "ROMEO:" --top-k 40 --num-samples 3
"""

from __future__ import annotations

import math

import numpy as np

import minigrad as mg

from .checkpoint import load_model
from .data import tokenizer_from_dict
from .models import check_sampling_args

__all__ = ["sample", "check_sample_args", "default_prompt"]


def check_sample_args(max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None,
                      num_samples: int, seed: int | None) -> None:
    """ValueError, phrased for the command line, unless the settings make sense."""
    if max_new_tokens < 0:
        raise ValueError(f"--max-new-tokens must be >= 0, got {max_new_tokens}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"--temperature must be a finite number >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")
    if num_samples < 1:
        raise ValueError(f"--num-samples must be >= 1, got {num_samples}")
    if seed is not None and seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    check_sampling_args(temperature, top_k, top_p)


def default_prompt(tokenizer) -> str:
    """A newline when the tokenizer has one (the start of a speech; a byte-level BPE spells every
    byte), else its first token."""
    return "\n" if "\n" in tokenizer.stoi or tokenizer.kind == "bpe" else tokenizer.vocab[0]


def sample(checkpoint, prompt: str | None = None, max_new_tokens: int = 500, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, num_samples: int = 1,
           seed: int | None = None, device: str = "cpu") -> list[str]:
    """``num_samples`` texts, each ``prompt`` + its continuation, from the checkpoint
    directory ``checkpoint`` (or an already loaded ``(model, Checkpoint)`` pair)."""
    check_sample_args(max_new_tokens, temperature, top_k, top_p, num_samples, seed)
    model, ckpt = checkpoint if isinstance(checkpoint, tuple) else load_model(checkpoint, device)
    if ckpt.tokenizer is None:
        raise ValueError(f"{ckpt.directory}: the model comes with no tokenizer, so text cannot be sampled "
                         "(a GPT-2 folder needs its vocab.json and merges.txt)")
    tokenizer = tokenizer_from_dict(ckpt.tokenizer)
    if prompt is None:
        prompt = default_prompt(tokenizer)
    if prompt == "":
        raise ValueError("--prompt must not be empty (the model needs at least one token to start from)")
    if tokenizer.kind == "char":
        unknown = [c for c in dict.fromkeys(prompt) if c not in tokenizer.stoi]
        if unknown:
            raise ValueError(f"--prompt has {len(unknown)} character(s) the model never saw in training: "
                             + ", ".join(map(repr, unknown[:10])))
    ids = tokenizer.encode(prompt)
    if len(ids) == 0:
        raise ValueError(f"--prompt {prompt!r} has no token in the model's vocabulary")
    idx = mg.tensor(np.tile(ids[None, :], (num_samples, 1)), device=str(mg.device(device)))
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         seed=seed)
    rows = out.numpy()
    return [prompt + tokenizer.decode(row[len(ids):]) for row in rows]
