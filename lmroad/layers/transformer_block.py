"""``TransformerBlock``: attention and an MLP, each in a residual branch."""

from __future__ import annotations

from minigrad import nn
from minigrad.tensor import Tensor

from ._checks import check_features
from .attention import MultiHeadAttention
from .dropout import Dropout
from .feed_forward import ACTIVATIONS, FeedForward
from .kv_cache import KVCache
from .layer_norm import LayerNorm


class TransformerBlock(nn.Module):
    """One Transformer layer over (B, T, n_embd) -> (B, T, n_embd).

    Pre-LN (``norm_first=True``, the default; GPT-2, nanoGPT)::

        x = x + Dropout(MHA(LN₁(x)))
        x = x + FFN(LN₂(x))

    Post-LN (``norm_first=False``; Vaswani et al. 2017)::

        x = LN₁(x + Dropout(MHA(x)))
        x = LN₂(x + FFN(x))

    (The seed document's h_t = LN(h_{t-1} + MultiHeadAttention + SelfAttention
    + b) is not either: self-attention *is* the multi-head attention; see
    docs/seed.md.) Pre-LN keeps an identity path from input to output and trains
    without warm-up more easily; post-LN is the original.

    Submodules: ``ln1``, ``attn`` (MultiHeadAttention, batch first), ``drop``
    (the residual dropout after attention), ``ln2``, ``mlp`` (FeedForward,
    which ends in its own dropout). ``dropout`` is used for the attention
    weights and both residual branches. ``bias=False`` drops the biases of
    every Linear and LayerNorm; ``layer_norm_eps`` is both LayerNorms' eps.

    ``causal=True`` (the default, for language models) masks future
    positions; ``forward(..., is_causal=...)`` overrides it per call.
    ``kv_cache`` is handed to the attention (incremental decoding, see
    ``KVCache``); ``need_weights=True`` also returns the per-head attention
    weights (B, n_head, T, S), for looking at what the block attends to.
    """

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, norm_first: bool = True,
                 bias: bool = True, causal: bool = True, hidden: int | None = None,
                 activation: str = "gelu", layer_norm_eps: float = 1e-5):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"TransformerBlock: activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        self.n_embd, self.n_head = n_embd, n_head
        self.norm_first, self.causal = bool(norm_first), bool(causal)
        self.ln1 = LayerNorm(n_embd, eps=layer_norm_eps, bias=bias)
        self.attn = MultiHeadAttention(n_embd, n_head, dropout=dropout, bias=bias, batch_first=True)
        self.drop = Dropout(dropout)
        self.ln2 = LayerNorm(n_embd, eps=layer_norm_eps, bias=bias)
        self.mlp = FeedForward(n_embd, hidden, dropout=dropout, activation=activation, bias=bias)

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None,
                attn_mask: Tensor | None = None, is_causal: bool | None = None,
                kv_cache: KVCache | None = None, need_weights: bool = False):
        check_features(f"TransformerBlock(n_embd={self.n_embd}, n_head={self.n_head})", x,
                       self.n_embd, ndims=(3,), expected=f"(B, T, {self.n_embd})")
        causal = self.causal if is_causal is None else is_causal

        def attend(h: Tensor):
            out = self.attn(h, key_padding_mask=key_padding_mask, attn_mask=attn_mask,
                            is_causal=causal, need_weights=need_weights, kv_cache=kv_cache)
            return out if need_weights else (out, None)

        if self.norm_first:
            a, weights = attend(self.ln1(x))
            x = x + self.drop(a)
            x = x + self.mlp(self.ln2(x))
        else:
            a, weights = attend(x)
            x = self.ln1(x + self.drop(a))
            x = self.ln2(x + self.mlp(x))
        return (x, weights) if need_weights else x

    def extra_repr(self) -> str:
        return (f"n_embd={self.n_embd}, n_head={self.n_head}, "
                f"norm_first={self.norm_first}, causal={self.causal}")
