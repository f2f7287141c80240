"""``MultiHeadAttention`` (Vaswani et al. 2017), with PyTorch's parameter
layout and mask convention, and a key/value cache for incremental decoding."""

from __future__ import annotations

import math

import minigrad as mg
import minigrad.functional as F
from minigrad import nn
from minigrad.tensor import Tensor

from ._checks import check_features, check_positive, check_probability, check_tensor
from .kv_cache import KVCache
from .linear import Linear


class MultiHeadAttention(nn.Module):
    """MHA(Q, K, V) = Concat(head_1, ..., head_h) Wᴼ + bᴼ, with
    head_i = softmax(Q Wᵢ^Q (K Wᵢ^K)ᵀ / √d_k + M) V Wᵢ^V and d_k = embed_dim / num_heads.

    Self-attention: ``attn(x)`` (queries, keys and values all from x).
    Cross-attention: ``attn(query, key, value)`` (``value`` defaults to ``key``).

    Shapes (``batch_first=True``, the default here; PyTorch's default is
    False): query (B, L, E), key and value (B, S, E) -> output (B, L, E).
    With ``batch_first=False``: (L, B, E) and (S, B, E). Without a batch
    axis: (L, E) and (S, E).

    Parameters as PyTorch's ``torch.nn.MultiheadAttention`` (names, shapes,
    initialisation), so weights can be exchanged with PyTorch:
    ``in_proj_weight`` (3E, E) stacks W^Q, W^K, W^V (xavier-uniform),
    ``in_proj_bias`` (3E,) (zeros), ``out_proj`` a Linear(E, E) (bias zeros).

    Masks follow ``torch.nn.MultiheadAttention``: a bool mask is True where a
    query may NOT attend (the opposite of
    ``minigrad.functional.scaled_dot_product_attention``, where True means may
    attend; this layer inverts it before calling that function); a float mask
    is added to the scores (use -inf to block).

    - ``attn_mask``: (L, S), or (B·num_heads, L, S) as PyTorch, or anything
      that broadcasts to (B, num_heads, L, S).
    - ``key_padding_mask``: (B, S), True at padding keys.
    - ``is_causal``: query i may attend to keys 0 .. i + (S - L): the usual
      lower-triangular mask when S == L, and, with a cache holding S - L
      earlier positions, "everything up to myself". Combined with the masks.

    A query that may attend to nothing (a fully masked row) gets zeros before
    ``out_proj`` (so the output is ``out_proj.bias``), never NaN, and its
    gradients are finite. ``dropout`` applies to the attention weights, in
    training only.

    Returns the output alone; with ``need_weights=True`` a pair (output,
    weights) where weights are per head, (B, num_heads, L, S), before dropout
    (``average_attn_weights=True`` averages over heads, (B, L, S), which is
    PyTorch's default). Unlike PyTorch, which always returns a pair.

    ``kv_cache``: a ``KVCache`` for incremental self-attention (see there).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = True):
        super().__init__()
        check_positive("MultiHeadAttention", embed_dim=embed_dim, num_heads=num_heads)
        if embed_dim % num_heads:
            raise ValueError(f"MultiHeadAttention: embed_dim ({embed_dim}) must be divisible by "
                             f"num_heads ({num_heads}), so that every head gets embed_dim // "
                             f"num_heads features")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = check_probability("MultiHeadAttention", dropout)
        self.batch_first = bool(batch_first)
        self.in_proj_weight = nn.Parameter(mg.zeros(3 * embed_dim, embed_dim))
        self.register_parameter("in_proj_bias", nn.Parameter(mg.zeros(3 * embed_dim)) if bias else None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    @property
    def _name(self) -> str:
        return f"MultiHeadAttention(embed_dim={self.embed_dim}, num_heads={self.num_heads})"

    # ------------------------------------------------------------------ forward
    def forward(self, query: Tensor, key: Tensor | None = None, value: Tensor | None = None,
                key_padding_mask: Tensor | None = None, attn_mask: Tensor | None = None,
                is_causal: bool = False, need_weights: bool = False,
                average_attn_weights: bool = False, kv_cache: KVCache | None = None):
        E = self.embed_dim
        self_attention = (key is None or key is query) and (value is None or value is query)
        if key is None:
            key = query
        if value is None:
            value = key
        q, k, v, unbatched = self._to_batch_first(query, key, value)   # (B, L, E), (B, S, E) x2
        if kv_cache is not None and not self_attention:
            raise ValueError(f"{self._name}: kv_cache is for self-attention (no key/value arguments)")

        if self_attention:                                  # one matrix product for Q, K and V
            q, k, v = F.linear(q, self.in_proj_weight, self.in_proj_bias).split(3, axis=-1)
        else:
            w, b = self.in_proj_weight, self.in_proj_bias
            q, k, v = (F.linear(t, w[i * E:(i + 1) * E], None if b is None else b[i * E:(i + 1) * E])
                       for i, t in enumerate((q, k, v)))
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)  # (B, nh, ·, hs)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)                    # (B, nh, S_so_far, hs)

        B, L, S = q.shape[0], q.shape[2], k.shape[2]
        if unbatched and key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0) if key_padding_mask.ndim == 1 \
                else key_padding_mask
        mask = self._combined_mask(B, L, S, attn_mask, key_padding_mask, is_causal, q)
        # the weights are asked for only when wanted: without them the attention is one
        # fused node (minigrad.ops.fused.Attention) instead of the composite
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0,
            training=self.training, return_weights=need_weights)  # (B, nh, L, hs) [, (B, nh, L, S)]
        y, weights = out if need_weights else (out, None)
        y = y.swapaxes(1, 2).reshape((B, L, E))             # concatenate the heads
        y = self.out_proj(y)                                # (B, L, E)

        if unbatched:
            y = y.squeeze(0)
            weights = None if weights is None else weights.squeeze(0)
        elif not self.batch_first:
            y = y.swapaxes(0, 1)                            # (L, B, E)
        if not need_weights:
            return y
        return y, (weights.mean(axis=-3) if average_attn_weights else weights)

    # ------------------------------------------------------------------ helpers
    def _to_batch_first(self, query, key, value):
        E = self.embed_dim
        for what, t in (("query", query), ("key", key), ("value", value)):
            batch = "(B, L, E)" if self.batch_first else "(L, B, E)"
            check_features(self._name, t, E, ndims=(2, 3), what=what,
                           expected=f"{batch.replace('E', str(E))} or (L, {E})")
        if not query.ndim == key.ndim == value.ndim:
            raise ValueError(f"{self._name}: query {query.shape}, key {key.shape} and value "
                             f"{value.shape} must all have a batch axis or none")
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.swapaxes(0, 1), key.swapaxes(0, 1), value.swapaxes(0, 1)
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(f"{self._name}: query {query.shape}, key {key.shape} and value "
                             f"{value.shape} (as (B, ·, E)) need the same batch size, and key and "
                             "value the same length")
        return query, key, value, unbatched

    def _split_heads(self, t: Tensor) -> Tensor:
        B, T, _ = t.shape
        return t.reshape((B, T, self.num_heads, self.head_dim)).swapaxes(1, 2)  # (B, nh, T, hs)

    def _combined_mask(self, B, L, S, attn_mask, key_padding_mask, is_causal, q):
        """One mask for F.scaled_dot_product_attention, broadcasting to (B, nh, L, S):
        bool with True = MAY attend, or float (added to the scores)."""
        nh = self.num_heads
        allowed, added = None, None
        if is_causal:   # query i sees keys up to S - L + i: the lower triangle, shifted by the cache
            allowed = mg.tril(mg.ones((L, S), dtype="bool", device=q.device), k=S - L)
        if attn_mask is not None:
            m = self._check_mask(attn_mask, "attn_mask")
            if m.ndim == 2:
                ok = m.shape == (L, S)
            elif m.ndim == 3 and m.shape[1:] == (L, S) and m.shape[0] in (B * nh, B, 1):
                m = m.reshape((B, nh, L, S)) if m.shape[0] == B * nh else m.unsqueeze(1)
                ok = True
            else:
                ok = m.ndim == 4 and all(a in (1, b) for a, b in zip(m.shape, (B, nh, L, S)))
            if not ok:
                raise ValueError(f"{self._name}: attn_mask has shape {attn_mask.shape}, expected "
                                 f"({L}, {S}), ({B * nh}, {L}, {S}) or a shape that broadcasts to "
                                 f"({B}, {nh}, {L}, {S}) (batch, heads, queries, keys)")
            allowed, added = self._merge(allowed, added, m, q)
        if key_padding_mask is not None:
            m = self._check_mask(key_padding_mask, "key_padding_mask")
            if m.shape != (B, S):
                raise ValueError(f"{self._name}: key_padding_mask has shape {m.shape}, expected "
                                 f"({B}, {S}) (batch, keys)")
            allowed, added = self._merge(allowed, added, m.reshape((B, 1, 1, S)), q)
        if added is None:
            return allowed
        return added if allowed is None else mg.where(allowed, added, -math.inf)

    @staticmethod
    def _merge(allowed, added, m: Tensor, q: Tensor):
        if m.dtype.kind == "b":                             # True = may NOT attend (PyTorch's MHA)
            return (~m if allowed is None else allowed & ~m), added
        m = m.astype(q.dtype)
        return allowed, (m if added is None else added + m)

    def _check_mask(self, m, what: str) -> Tensor:
        check_tensor(self._name, m, what)
        if m.dtype.kind not in "bf":
            raise TypeError(f"{self._name}: {what} must be bool (True = may not attend) or float "
                            f"(added to the scores), got {m.dtype}")
        return m

    def extra_repr(self) -> str:
        extra = f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
        if self.dropout:
            extra += f", dropout={self.dropout}"
        return extra + ("" if self.batch_first else ", batch_first=False")
