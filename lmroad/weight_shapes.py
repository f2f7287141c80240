"""The weights a model's config implies, from the config alone: no model is built.

    expected_weights(kind, config) -> iterator of (name, shape, dtype kinds)

is what ``model.state_dict()`` of ``MODELS[kind].from_config(config)`` holds:
its names, each shape (ints, or a letter for a size the config leaves free,
such as the n-gram model's number of distinct n-grams, which must agree
wherever the letter appears) and the NumPy dtype kinds a stored array may
have ("f" floating point, "iu" integer). Checkpoints check a file's arrays
against it before building the model, so that a config claiming
``n_embd=10**9`` is refused instead of allocated. The iterator is lazy: a
config claiming ``n_layer=10**9`` costs only as many names as the file holds.

A test builds every model at many configs and compares: a new model, or a
layer that changes its parameters, must update this table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["expected_weights", "KINDS"]

Shape = tuple["int | str", ...]
Weight = tuple[str, Shape, str]

FLOAT, INT = "f", "iu"
_GATES = {"rnn": 1, "gru": 3, "lstm": 4}


def _transformer(c: Any) -> Iterator[Weight]:
    V, C, T = c.vocab_size, c.n_embd, c.block_size

    def linear(name: str, n_out: int, n_in: int) -> Iterator[Weight]:
        yield f"{name}.weight", (n_out, n_in), FLOAT
        if c.bias:
            yield f"{name}.bias", (n_out,), FLOAT

    def layer_norm(name: str) -> Iterator[Weight]:
        yield f"{name}.weight", (C,), FLOAT
        if c.bias:
            yield f"{name}.bias", (C,), FLOAT

    yield "wte.weight", (V, C), FLOAT
    yield "wpe.weight", (T, C), FLOAT
    for i in range(c.n_layer):
        b = f"blocks.{i}"
        yield from layer_norm(f"{b}.ln1")
        yield f"{b}.attn.in_proj_weight", (3 * C, C), FLOAT
        if c.bias:
            yield f"{b}.attn.in_proj_bias", (3 * C,), FLOAT
        yield from linear(f"{b}.attn.out_proj", C, C)
        yield from layer_norm(f"{b}.ln2")
        yield from linear(f"{b}.mlp.fc", 4 * C, C)
        yield from linear(f"{b}.mlp.proj", C, 4 * C)
    yield from layer_norm("ln_f")
    yield "lm_head.weight", (V, C), FLOAT             # tied to wte, saved under both names


def _recurrent(c: Any) -> Iterator[Weight]:
    V, E, H = c.vocab_size, c.n_embd, c.hidden_size
    G = _GATES[c.cell] * H                             # all gates stacked
    yield "embedding.weight", (V, E), FLOAT
    for i in range(c.num_layers):
        cell = f"core.cells.{i}"
        yield f"{cell}.weight_ih", (G, E if i == 0 else H), FLOAT
        yield f"{cell}.weight_hh", (G, H), FLOAT
        yield f"{cell}.bias_ih", (G,), FLOAT
        yield f"{cell}.bias_hh", (G,), FLOAT
    yield "head.weight", (V, H), FLOAT
    yield "head.bias", (V,), FLOAT


def _ngram(c: Any) -> Iterator[Weight]:
    for m in range(1, c.n + 1):                        # N{m}: how many distinct m-grams
        yield f"order{m}.ngrams", (f"N{m}", m), INT
        yield f"order{m}.counts", (f"N{m}",), INT


KINDS = {"transformer": _transformer, "rnn": _recurrent, "lstm": _recurrent, "gru": _recurrent,
         "ngram": _ngram}


def expected_weights(kind: str, config: Any) -> Iterator[Weight]:
    """(name, shape, dtype kinds) of each weight a ``kind`` model with ``config`` (its
    checked config dataclass) holds; KeyError for an unknown kind."""
    return KINDS[kind](config)
