"""``NGramLM``: the statistical baseline at the start of the road.

An n-gram model predicts the next token from the previous n-1 only,

    P(w_t | w_1 .. w_{t-1}) ≈ P(w_t | w_{t-n+1} .. w_{t-1}),

estimated by counting in a corpus (``fit``). Raw relative frequencies give
unseen n-grams probability zero (infinite loss), so the counts are smoothed:

``add_k`` (Laplace for k=1, Lidstone otherwise)
    P(w | h) = (c(h w) + k) / (c(h) + k·V)

``kneser_ney`` (interpolated, Kneser & Ney 1995; Chen & Goodman 1998)
    P(w | h) = max(c(h w) − D, 0) / c(h)  +  D·N1+(h •) / c(h) · P_lower(w | h')

    with h' = h minus its first token. The highest order counts tokens
    (c); the lower orders count *continuations*: c'(h w) = N1+(• h w), the
    number of distinct tokens seen before "h w" (a token that follows many
    contexts is a likely continuation of a new one). The recursion ends at
    the unigram, which is itself interpolated with the uniform 1/V, so
    every token keeps a non-zero probability.

``backoff`` (Katz-style backoff with absolute discounting)
    P(w | h) = (c(h w) − D) / c(h)             if c(h w) > 0
             = α(h) · P_lower(w | h')          otherwise,
    where α(h) hands the discounted mass D·N1+(h •)/c(h) to the unseen
    tokens in proportion to the lower order (uniform below the unigram).

A context never seen in training (c(h) = 0) passes to the next lower order
unchanged, so nothing ever divides by zero; each formula sums to one over
the vocabulary for every context (checked by a property test).

The context at position t is the last min(t+1, n-1) tokens: near the start
of a window the model uses the longest context it has, with token counts
at that order.

Interface: ``forward`` returns log-probabilities as "logits" (B, T, V);
their log-softmax is themselves, so cross-entropy and perplexity are those
of the neural models. ``num_parameters()`` is 0: nothing is trained by
gradient; ``num_entries()`` counts the stored n-gram types instead.
``state_dict()`` holds the counts as integer arrays (``order{m}.ngrams``
(N_m, m) and ``order{m}.counts`` (N_m,)), so checkpoints need no pickle.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

import minigrad as mg
from minigrad.tensor import Tensor

from .base import LanguageModel, check_sizes

__all__ = ["NGramLM", "NGramConfig"]

SMOOTHINGS = ("add_k", "kneser_ney", "backoff")


@dataclass(frozen=True)
class NGramConfig:
    n: int = 3
    vocab_size: int = 256
    smoothing: str = "kneser_ney"
    k: float = 1.0            # add_k: pseudo-count added to every token
    discount: float = 0.75    # kneser_ney, backoff: absolute discount D, in (0, 1)

    def __post_init__(self):
        check_sizes(self, ("n", "vocab_size"), "NGramLM")
        if self.smoothing not in SMOOTHINGS:
            raise ValueError(f"NGramLM: smoothing must be one of {SMOOTHINGS}, got {self.smoothing!r}")
        if not (np.isfinite(self.k) and self.k > 0):
            raise ValueError(f"NGramLM: k must be a finite number > 0 (k = 0 gives unseen tokens "
                             f"probability zero), got {self.k}")
        if not 0 < self.discount < 1:
            raise ValueError(f"NGramLM: discount must be in (0, 1), got {self.discount}")


class _Row(NamedTuple):
    """The tokens seen after one context: ids (K,), counts (K,), their total, and K."""
    words: np.ndarray
    counts: np.ndarray
    total: float
    types: int


class _Table:
    """Counts of one order grouped by context: ``get(context) -> _Row | None``.

    Built from lexicographically sorted unique m-grams (N, m), so the m-grams
    that share a context are one contiguous run; the dict maps each context
    to its run, and rows are sliced out only when asked for."""

    def __init__(self, grams: np.ndarray, counts: np.ndarray):
        n = len(grams)
        self.words, self.counts = grams[:, -1], counts.astype(np.float64)
        ctx = grams[:, :-1]
        new_ctx = np.ones(n, bool)
        if n > 1 and ctx.shape[1]:
            new_ctx[1:] = (ctx[1:] != ctx[:-1]).any(axis=1)
        elif n > 1:
            new_ctx[1:] = False                          # unigrams: one empty context
        self.starts = np.flatnonzero(new_ctx)
        self.ends = np.r_[self.starts[1:], n].astype(np.int64)
        self.totals = np.add.reduceat(self.counts, self.starts) if n else np.zeros(0)
        self.index = dict(zip(map(tuple, ctx[self.starts].tolist()), range(len(self.starts))))

    def __len__(self) -> int:
        return len(self.starts)

    def get(self, context: tuple[int, ...]) -> _Row | None:
        g = self.index.get(context)
        if g is None:
            return None
        s, e = self.starts[g], self.ends[g]
        return _Row(self.words[s:e], self.counts[s:e], float(self.totals[g]), int(e - s))


def _unique_rows(rows: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``rows`` (N, m) in lexicographic order, and how often each occurs.

    Rows of ids < base are read as m-digit numbers in that base when they fit
    in int64 (sorting one integer per row is much faster than sorting rows)."""
    m = rows.shape[1]
    if len(rows) == 0:
        return rows.astype(np.int64), np.zeros(0, np.int64)
    if m == 0 or m * math.log2(base) >= 62:
        grams, counts = np.unique(rows, axis=0, return_counts=True)
        return grams.astype(np.int64), counts.astype(np.int64)
    powers = base ** np.arange(m - 1, -1, -1, dtype=np.int64)     # (m,)
    keys, counts = np.unique(rows.astype(np.int64) @ powers, return_counts=True)
    grams = (keys[:, None] // powers) % base                      # back to digits, (N, m)
    return grams, counts.astype(np.int64)


class NGramLM(LanguageModel):
    """Counted n-gram language model with add-k, Kneser-Ney or backoff smoothing."""

    config_class = NGramConfig
    model_type = "ngram"

    def __init__(self, n: int = 3, vocab_size: int = 256, smoothing: str = "kneser_ney",
                 k: float = 1.0, discount: float = 0.75):
        super().__init__()
        self._config = NGramConfig(n=n, vocab_size=vocab_size, smoothing=smoothing, k=k,
                                   discount=discount)
        self._tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}   # m -> (ngrams, counts)
        self._build()

    @property
    def context_size(self) -> int:
        return max(self._config.n - 1, 1)

    def extra_repr(self) -> str:
        c = self._config
        return f"n={c.n}, vocab_size={c.vocab_size}, smoothing={c.smoothing!r}"

    # ----------------------------------------------------------------- counting
    def fit(self, ids) -> NGramLM:
        """Count every m-gram, m = 1..n, in ``ids`` (replacing earlier counts).

        ``ids``: a 1-D array of token ids (one stream), a 2-D array (one
        sequence per row) or a list of 1-D arrays; n-grams never cross from
        one sequence into the next. Returns self."""
        seqs = self._as_sequences(ids)
        n = self._config.n
        self._tables = {}
        for m in range(1, n + 1):
            windows = [np.lib.stride_tricks.sliding_window_view(s, m) for s in seqs if len(s) >= m]
            rows = np.concatenate(windows) if windows else np.zeros((0, m), np.int64)
            self._tables[m] = _unique_rows(rows, self._config.vocab_size)
        self._build()
        return self

    def _as_sequences(self, ids) -> list[np.ndarray]:
        if isinstance(ids, Tensor):
            ids = ids.numpy()
        if isinstance(ids, np.ndarray) and ids.ndim in (1, 2):
            seqs = [ids] if ids.ndim == 1 else list(ids)
        elif isinstance(ids, (list, tuple)) and all(np.ndim(s) == 1 for s in ids):
            seqs = [np.asarray(s) for s in ids]
        else:
            raise TypeError("NGramLM.fit: ids must be a 1-D array of token ids, a 2-D array, or a "
                            f"list of 1-D arrays; got {type(ids).__name__}")
        V = self._config.vocab_size
        out = []
        for s in seqs:
            if s.size and s.dtype.kind not in "iu":
                raise TypeError(f"NGramLM.fit: token ids must be integers, got dtype {s.dtype}")
            s = s.astype(np.int64)
            if s.size and (s.min() < 0 or s.max() >= V):
                bad = int(s[(s < 0) | (s >= V)][0])
                raise IndexError(f"NGramLM.fit: token id {bad} is out of range for vocab_size={V} "
                                 f"(valid: 0 to {V - 1})")
            out.append(s)
        return out

    def _build(self) -> None:
        """Group the count tables by context; derive the continuation counts."""
        n = self._config.n
        self._raw: dict[int, _Table] = {}      # m -> token counts of m-grams
        self._cont: dict[int, _Table] = {}     # m -> continuation counts N1+(• g), m < n
        for m in range(1, n + 1):
            grams, counts = self._tables.get(m, (np.zeros((0, m), np.int64), np.zeros(0, np.int64)))
            self._raw[m] = _Table(grams, counts)
        for m in range(1, n):
            # N1+(• g) for each m-gram g: the distinct (m+1)-gram types that end in g
            higher = self._tables.get(m + 1, (np.zeros((0, m + 1), np.int64),))[0]
            self._cont[m] = _Table(*_unique_rows(higher[:, 1:], self._config.vocab_size))
        self._cache: dict[tuple[int, ...], np.ndarray] = {}

    @property
    def fitted(self) -> bool:
        return any(len(t[0]) for t in self._tables.values())

    def num_entries(self) -> int:
        """How many n-gram types (all orders) the model stores: its size, in place of parameters."""
        return sum(len(t[0]) for t in self._tables.values())

    # ----------------------------------------------------------------- probabilities
    def probs(self, context: Sequence[int]) -> np.ndarray:
        """P(next token | context) over the vocabulary, (V,) float64, summing to one.

        Only the last n-1 tokens of ``context`` matter; it may be shorter or empty."""
        ctx = tuple(int(t) for t in context)
        ctx = ctx[max(0, len(ctx) - (self._config.n - 1)):]
        V = self._config.vocab_size
        if any(t < 0 or t >= V for t in ctx):
            raise IndexError(f"NGramLM.probs: context {ctx} has ids outside 0..{V - 1}")
        p = self._cache.get(ctx)
        if p is None:
            p = getattr(self, "_" + self._config.smoothing)(ctx)
            if len(self._cache) >= 65536:      # bounded memo: evaluation revisits contexts
                self._cache.clear()
            self._cache[ctx] = p
        return p.copy()

    def _add_k(self, ctx: tuple[int, ...]) -> np.ndarray:
        V, k = self._config.vocab_size, self._config.k
        row = self._raw[len(ctx) + 1].get(ctx)
        total = row.total if row is not None else 0.0
        p = np.full(V, k / (total + k * V))
        if row is not None:
            p[row.words] += row.counts / (total + k * V)
        return p

    def _kneser_ney(self, ctx: tuple[int, ...]) -> np.ndarray:
        V, D = self._config.vocab_size, self._config.discount
        p = np.full(V, 1.0 / V)                     # order 0: uniform
        top = len(ctx) + 1
        for m in range(1, top + 1):                 # bottom-up: unigram, bigram, ...
            h = ctx[len(ctx) - (m - 1):] if m > 1 else ()
            row = (self._raw if m == top else self._cont)[m].get(h)
            if row is None:                         # unseen context: the lower order as is
                continue
            p *= D * row.types / row.total
            p[row.words] += (row.counts - D) / row.total
        return p

    def _backoff(self, ctx: tuple[int, ...]) -> np.ndarray:
        V, D = self._config.vocab_size, self._config.discount
        p = np.full(V, 1.0 / V)
        for m in range(1, len(ctx) + 2):
            h = ctx[len(ctx) - (m - 1):] if m > 1 else ()
            row = self._raw[m].get(h)
            if row is None:
                continue
            unseen = np.ones(V, bool)
            unseen[row.words] = False
            unseen_mass = p[unseen].sum()
            if unseen_mass > 0:                     # α(h): the discounted mass, shared by the lower order
                p = np.where(unseen, p * (D * row.types / row.total / unseen_mass), 0.0)
                p[row.words] = (row.counts - D) / row.total
            else:                                   # every token seen: nothing to back off to
                p = np.zeros(V)
                p[row.words] = row.counts / row.total
        return p

    # ----------------------------------------------------------------- the interface
    def forward(self, idx: Tensor, targets: Tensor | None = None):
        """idx (B, T) -> (log-probabilities (B, T, V), mean cross-entropy or None)."""
        self._check_idx(idx)
        if not self.fitted:
            raise RuntimeError("NGramLM: no counts yet; call fit(ids) on a training corpus first")
        host = idx.numpy()
        B, T = host.shape
        out = np.empty((B, T, self._config.vocab_size), dtype=mg.get_default_dtype())
        for b in range(B):
            for t in range(T):
                out[b, t] = np.log(self.probs(host[b, max(0, t + 2 - self._config.n):t + 1]))
        logits = mg.tensor(out, device=idx.device)
        return logits, self._loss(logits, targets)

    def _prefill(self, idx: Tensor):
        if not self.fitted:
            raise RuntimeError("NGramLM: no counts yet; call fit(ids) on a training corpus first")
        return self._next_logits(idx.numpy().astype(np.int64), idx.device)

    def _decode(self, new: Tensor, cache):
        history, dev = cache
        return self._next_logits(np.concatenate([history, new.numpy()], axis=1), dev)

    def _next_logits(self, history: np.ndarray, dev):
        keep = history[:, history.shape[1] - min(history.shape[1], self._config.n - 1):]
        logp = np.stack([np.log(self.probs(row)) for row in history])
        logp = logp.astype(mg.get_default_dtype())
        return mg.tensor(logp, device=dev), (keep, dev)

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> OrderedDict[str, Tensor]:
        out: OrderedDict[str, Tensor] = OrderedDict()
        for m in range(1, self._config.n + 1):
            grams, counts = self._tables.get(m, (np.zeros((0, m), np.int64), np.zeros(0, np.int64)))
            out[f"order{m}.ngrams"] = mg.tensor(grams, dtype=mg.int64)
            out[f"order{m}.counts"] = mg.tensor(counts, dtype=mg.int64)
        return out

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> tuple[list[str], list[str]]:
        """Replace the counts with those in ``state_dict`` (checked first: nothing loads on error)."""
        n = self._config.n
        expected = [f"order{m}.{part}" for m in range(1, n + 1) for part in ("ngrams", "counts")]
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        if missing or (strict and unexpected):
            raise ValueError(f"load_state_dict for NGramLM(n={n}): missing keys {missing}, "
                             f"unexpected keys {unexpected}; nothing was loaded")
        tables = {}
        V = self._config.vocab_size
        for m in range(1, n + 1):
            g, c = (state_dict[f"order{m}.{part}"] for part in ("ngrams", "counts"))
            g = np.asarray(g.numpy() if isinstance(g, Tensor) else g).astype(np.int64)
            c = np.asarray(c.numpy() if isinstance(c, Tensor) else c).astype(np.int64)
            if g.ndim != 2 or g.shape[1] != m or c.shape != (len(g),):
                raise ValueError(f"load_state_dict for NGramLM: order {m} needs ngrams (N, {m}) and "
                                 f"counts (N,), got {g.shape} and {c.shape}; nothing was loaded")
            if g.size and (g.min() < 0 or g.max() >= V):
                raise ValueError(f"load_state_dict for NGramLM: order {m} holds token ids outside "
                                 f"0..{V - 1}; nothing was loaded")
            order = np.lexsort(g.T[::-1]) if m else np.arange(len(g))   # lexicographic rows
            g, c = g[order], c[order]
            if len(g) > 1 and not (g[1:] != g[:-1]).any(axis=1).all():
                raise ValueError(f"load_state_dict for NGramLM: order {m} lists an n-gram twice; "
                                 "nothing was loaded")
            if (c < 1).any():
                raise ValueError(f"load_state_dict for NGramLM: order {m} has counts < 1; "
                                 "nothing was loaded")
            tables[m] = (g, c)
        self._tables = tables
        self._build()
        return [], [k for k in state_dict if k not in expected]
