"""``KVCache``: the keys and values an attention layer has already computed,
so that generating one more token costs one position, not the whole prefix."""

from __future__ import annotations

import minigrad as mg
from minigrad.tensor import Tensor


class KVCache:
    """Keys and values of one self-attention layer for the tokens seen so far,
    each (B, nh, T_so_far, hs).

    Pass the same cache to ``MultiHeadAttention.forward(x_new, is_causal=True,
    kv_cache=cache)`` for each new chunk of tokens (usually one): the layer
    projects only the new tokens, appends their keys and values here, and
    lets them attend to everything cached. The outputs equal those of one
    causal forward pass over the whole sequence. One cache per layer; a model
    keeps a list. ``reset()`` (or a new cache) starts a new sequence.
    """

    def __init__(self):
        self.keys: Tensor | None = None      # (B, nh, T_so_far, hs)
        self.values: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    @property
    def length(self) -> int:
        """How many positions are cached (the position of the next token)."""
        return len(self)

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add (B, nh, T_new, hs) keys and values; return all of them so far."""
        if self.keys is not None and (k.shape[:2] != self.keys.shape[:2] or k.shape[3] != self.keys.shape[3]):
            raise ValueError(f"KVCache: new keys of shape {k.shape} do not fit cached keys of shape "
                             f"{self.keys.shape} (batch, heads and head size must match); "
                             "reset() the cache to start a new sequence")
        if self.keys is None:
            self.keys, self.values = k, v
        else:
            self.keys = mg.concatenate([self.keys, k], axis=2)
            self.values = mg.concatenate([self.values, v], axis=2)
        return self.keys, self.values

    def reset(self) -> None:
        self.keys = self.values = None

    def __repr__(self) -> str:
        shape = None if self.keys is None else self.keys.shape
        return f"KVCache(length={len(self)}, keys={shape})"
