"""Batches of token windows, made on the host and moved to the model's device.

Three ways through a token stream ``ids`` (int64, shape (N,)):

    random_windows      B windows at random offsets: the Transformer's training batches
    StreamBatcher       B parallel lanes read front to back, so a recurrent model can
                        carry its hidden state from one window to the next
                        (truncated backpropagation through time)
    iter_eval_windows   non-overlapping windows covering the stream once: evaluation

Everywhere ``y`` is ``x`` shifted by one token: ``y[b, t]`` is the token that
follows ``x[b, t]`` in the stream, the target the model predicts from
``x[b, :t+1]``. Both are int64 minigrad tensors of shape (B, T), T = block_size.

A stream too short for one window (block_size + 1 tokens) is a ValueError.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

import minigrad as mg
from minigrad import backend

__all__ = ["random_windows", "StreamBatcher", "StreamBatch", "iter_eval_windows"]


def _as_stream(ids: Any, where: str) -> np.ndarray:
    """A 1-D int64 host array of token ids (from a list, an array or a Tensor)."""
    if isinstance(ids, mg.Tensor):
        ids = ids.numpy()
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{where}: expected a 1-D stream of token ids, got shape {arr.shape}")
    if arr.dtype.kind not in "iu" and arr.size:
        raise TypeError(f"{where}: token ids must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_sizes(batch_size: int, block_size: int, where: str) -> None:
    for name, value in (("batch_size", batch_size), ("block_size", block_size)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{where}: {name} must be a positive int, got {value!r}")


def _check_length(n_tokens: int, block_size: int, where: str) -> None:
    if n_tokens < block_size + 1:
        raise ValueError(f"{where}: the token stream has {n_tokens} tokens, but one window needs "
                         f"block_size + 1 = {block_size + 1} (inputs plus the shifted targets); "
                         "use a smaller block_size or a longer text")


def _windows(ids: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """``ids[s : s + length]`` for each start s, stacked: shape (len(starts), length)."""
    return ids[starts[:, None] + np.arange(length)]


def _pair(windows: np.ndarray, device) -> tuple[mg.Tensor, mg.Tensor]:
    """(B, T+1) windows -> (x, y), each (B, T) on ``device``."""
    x = np.ascontiguousarray(windows[:, :-1])
    y = np.ascontiguousarray(windows[:, 1:])
    return mg.tensor(x, device=device), mg.tensor(y, device=device)


def random_windows(ids: Any, batch_size: int, block_size: int, device: str = "cpu",
                   rng: np.random.Generator | None = None) -> tuple[mg.Tensor, mg.Tensor]:
    """B windows starting at uniformly random offsets.

    ids: (N,) token ids. Returns x, y: int64 (B, T) on ``device`` with
    ``y[:, t] == x[:, t + 1]`` and y's last column the token after the window.
    Offsets come from ``rng``, else from minigrad's seeded host generator
    (``minigrad.manual_seed`` makes them reproducible).
    """
    ids = _as_stream(ids, "random_windows")
    _check_sizes(batch_size, block_size, "random_windows")
    _check_length(len(ids), block_size, "random_windows")
    rng = backend.host_rng() if rng is None else rng
    starts = rng.integers(0, len(ids) - block_size, size=batch_size)  # (B,), last start N - T - 1
    return _pair(_windows(ids, starts, block_size + 1), device)


class StreamBatch(NamedTuple):
    """One step of a ``StreamBatcher``: unpacks as ``x, y, reset = batch``."""

    x: mg.Tensor  # (B, T) int64
    y: mg.Tensor  # (B, T) int64, x shifted by one
    reset: bool  # True when x starts a new pass: zero the hidden state before using it


class StreamBatcher:
    """Consecutive windows along B parallel lanes, for recurrent models.

    The first ``B * L`` tokens (L = N // B, the rest dropped) are laid out as B
    lanes of L consecutive tokens; lane b is ``ids[b*L : (b+1)*L]``. Each call
    returns the next window of T tokens of every lane, so row b of one batch
    continues row b of the previous one and the hidden state can be carried over:

        x_k[b] = lane_b[k*T : k*T + T],    y_k[b] = lane_b[k*T + 1 : k*T + T + 1]

    After ``len(self)`` windows (the last one that fits whole) it wraps to the
    start of the lanes, counts an epoch, and marks that batch ``reset=True``
    (as is the very first one). ``state_dict()`` / ``load_state_dict()`` save
    and restore the position, so a resumed run sees exactly the same batches.
    """

    def __init__(self, ids: Any, batch_size: int, block_size: int, device: str = "cpu"):
        ids = _as_stream(ids, "StreamBatcher")
        _check_sizes(batch_size, block_size, "StreamBatcher")
        backend.device(device)  # an unusable device fails here, not at the first batch
        lane_length = len(ids) // batch_size
        if lane_length < block_size + 1:
            raise ValueError(f"StreamBatcher: {len(ids)} tokens split into batch_size={batch_size} lanes "
                             f"give {lane_length} tokens per lane, but one window needs block_size + 1 = "
                             f"{block_size + 1}; use a smaller batch_size or block_size, or a longer text")
        self.batch_size, self.block_size, self.device = batch_size, block_size, device
        self.n_tokens = len(ids)
        self.lane_length = lane_length
        self._lanes = ids[:batch_size * lane_length].reshape(batch_size, lane_length)  # (B, L)
        self.position = 0  # where the next window starts, in tokens along each lane
        self.epoch = 0  # completed passes over the lanes

    def __len__(self) -> int:
        """Windows per pass over the lanes."""
        return (self.lane_length - 1) // self.block_size

    def __repr__(self) -> str:
        return (f"StreamBatcher(batch_size={self.batch_size}, block_size={self.block_size}, "
                f"lane_length={self.lane_length}, position={self.position}, epoch={self.epoch})")

    def __iter__(self) -> StreamBatcher:
        return self

    def __next__(self) -> StreamBatch:
        return self.next_batch()

    def next_batch(self) -> StreamBatch:
        """The next window of every lane: ``StreamBatch(x, y, reset)``, x and y (B, T)."""
        start, T = self.position, self.block_size
        x, y = _pair(self._lanes[:, start:start + T + 1], self.device)  # from (B, T+1)
        self.position = start + T
        if self.position + T + 1 > self.lane_length:  # the next window would not fit: wrap
            self.position = 0
            self.epoch += 1
        return StreamBatch(x, y, start == 0)

    def state_dict(self) -> dict:
        """JSON-able position in the stream (plus the sizes it is valid for)."""
        return {"position": self.position, "epoch": self.epoch, "batch_size": self.batch_size,
                "block_size": self.block_size, "n_tokens": self.n_tokens}

    def load_state_dict(self, state: dict) -> None:
        """Resume from ``state_dict()``'s output; the stream and sizes must be the same."""
        mine = self.state_dict()
        for key in ("batch_size", "block_size", "n_tokens"):
            if state.get(key) != mine[key]:
                raise ValueError(f"StreamBatcher.load_state_dict: the state was saved with {key}="
                                 f"{state.get(key)!r}, this batcher has {key}={mine[key]}")
        position, epoch = state.get("position"), state.get("epoch")
        valid = range(0, len(self) * self.block_size, self.block_size)
        if position not in valid or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"StreamBatcher.load_state_dict: position={position!r}, epoch={epoch!r} "
                             f"is not a valid state (position must be a multiple of block_size "
                             f"below {len(self) * self.block_size}, epoch >= 0)")
        self.position, self.epoch = int(position), epoch


def iter_eval_windows(ids: Any, batch_size: int, block_size: int, device: str = "cpu",
                      max_batches: int | None = None) -> Iterator[tuple[mg.Tensor, mg.Tensor]]:
    """Non-overlapping windows that cover the stream once, for evaluation.

    Window k holds ``x = ids[k*T : k*T + T]``, ``y = ids[k*T + 1 : k*T + T + 1]``;
    they come B at a time, in order, as (x, y) of shape (B, T) (the last batch
    may have fewer rows). The leftover tokens after the last whole window come
    as one final (1, r) window, r < T, so every token but the first is a target
    exactly once: weight each batch's mean loss by ``y.size``. With
    ``batch_size=1`` successive windows are consecutive text, so a recurrent
    model may carry its hidden state across them. ``max_batches`` stops early
    (a quick estimate on a prefix).
    """
    ids = _as_stream(ids, "iter_eval_windows")
    _check_sizes(batch_size, block_size, "iter_eval_windows")
    _check_length(len(ids), block_size, "iter_eval_windows")
    backend.device(device)
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"iter_eval_windows: max_batches must be None or >= 1, got {max_batches}")
    return _eval_windows(ids, batch_size, block_size, device, max_batches)


def _eval_windows(ids, batch_size, block_size, device, max_batches):
    # A generator of its own, so that iter_eval_windows checks its arguments at the call.
    T = block_size
    n_whole = (len(ids) - 1) // T
    starts = np.arange(n_whole) * T  # (n_whole,)
    batches = [starts[i:i + batch_size] for i in range(0, n_whole, batch_size)]
    leftover = len(ids) - 1 - n_whole * T
    n_yielded = 0
    for batch_starts in batches:
        if max_batches is not None and n_yielded >= max_batches:
            return
        yield _pair(_windows(ids, batch_starts, T + 1), device)
        n_yielded += 1
    if leftover and (max_batches is None or n_yielded < max_batches):
        yield _pair(ids[None, n_whole * T:], device)  # (1, leftover + 1) -> (1, leftover) each
