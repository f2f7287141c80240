"""``TransformerLM``: a GPT-style decoder-only Transformer (Radford et al.
2018, 2019), the end of the road.

    x_0 = Dropout(W_te[idx] + W_pe[0..T-1])          token + learned positions (B, T, C)
    x_l = Block_l(x_{l-1}),  l = 1..n_layer          pre-LN: x + MHA(LN(x)), then x + FFN(LN(x))
    logits = LN_f(x_L) W_teᵀ                         the head is the token embedding (B, T, V)

Every position attends only to itself and the past (a causal mask), so one
forward pass trains all T next-token predictions at once, and a sequence
may be at most ``block_size`` long (there are no position vectors beyond).

Weight tying (Press & Wolf 2017): ``lm_head.weight`` *is* ``wte.weight``,
one Parameter (``state_dict`` lists it under both names, as PyTorch does);
``tie_weights=False`` gives the head its own matrix.

The config holds what loading GPT-2's own weights needs (``from_pretrained``,
``lmroad.interop``): biases (``bias``), learned positions, the tanh GELU
(``activation="gelu_tanh"``), the tied head, ``layer_norm_eps`` and any
vocabulary size (GPT-2's is 50257).
GPT-2 initialisation: weights N(0, 0.02²), biases 0, LayerNorms (1, 0), and
the two projections that write into the residual stream in each block
(``attn.out_proj``, ``mlp.proj``) N(0, (0.02/√(2·n_layer))²), so the
residual sum of 2·n_layer branches starts with the variance of one.

Generation keeps a key/value cache per block (``lmroad.layers.KVCache``):
each new token is one position through the network, not the whole context.
Once the context reaches ``block_size`` the positions must shift, which the
cache cannot do, so from then on each token recomputes the last
``block_size`` tokens (what the uncached reference does all along).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import minigrad as mg
from lmroad.layers import (
    Dropout,
    Embedding,
    KVCache,
    LayerNorm,
    LearnedPositionalEmbedding,
    Linear,
    MultiHeadAttention,
    TransformerBlock,
)
from minigrad import nn
from minigrad.tensor import Tensor

from .base import LanguageModel, check_sizes

__all__ = ["TransformerLM", "TransformerConfig"]


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int = 256
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True          # biases in the Linears and LayerNorms (False: GPT-2-style lean variant)
    activation: str = "gelu_tanh"  # GPT-2's tanh GELU; "gelu" (exact erf, as nanoGPT) or "relu"
    layer_norm_eps: float = 1e-5   # every LayerNorm's eps (GPT-2's layer_norm_epsilon)
    tie_weights: bool = True       # the head is the token embedding (GPT-2, nanoGPT); False: its own

    def __post_init__(self):
        check_sizes(self, ("vocab_size", "n_layer", "n_head", "n_embd", "block_size"), "TransformerLM")
        if self.n_embd % self.n_head:
            raise ValueError(f"TransformerLM: n_embd ({self.n_embd}) must be divisible by n_head "
                             f"({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerLM: dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.layer_norm_eps <= 0.1:
            raise ValueError(f"TransformerLM: layer_norm_eps must be in (0, 0.1], got {self.layer_norm_eps}")
        if self.activation not in ("gelu", "gelu_tanh", "relu"):
            raise ValueError(f"TransformerLM: activation must be 'gelu', 'gelu_tanh' or 'relu', "
                             f"got {self.activation!r}")


class TransformerLM(LanguageModel):
    """GPT: token and position embeddings, ``n_layer`` pre-LN blocks, a final
    LayerNorm, and the tied output head."""

    config_class = TransformerConfig
    model_type = "transformer"

    def __init__(self, vocab_size: int = 256, n_layer: int = 4, n_head: int = 4, n_embd: int = 128,
                 block_size: int = 64, dropout: float = 0.0, bias: bool = True,
                 activation: str = "gelu_tanh", layer_norm_eps: float = 1e-5, tie_weights: bool = True):
        super().__init__()
        cfg = self._config = TransformerConfig(vocab_size=vocab_size, n_layer=n_layer,
                                               n_head=n_head, n_embd=n_embd,
                                               block_size=block_size, dropout=dropout, bias=bias,
                                               activation=activation, layer_norm_eps=layer_norm_eps,
                                               tie_weights=tie_weights)
        self.wte = Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = LearnedPositionalEmbedding(cfg.block_size, cfg.n_embd)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(TransformerBlock(cfg.n_embd, cfg.n_head, cfg.dropout,
                                                     norm_first=True, bias=cfg.bias,
                                                     activation=cfg.activation,
                                                     layer_norm_eps=cfg.layer_norm_eps)
                                    for _ in range(cfg.n_layer))
        self.ln_f = LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps, bias=cfg.bias)
        self.lm_head = Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.wte.weight           # weight tying: one (V, C) Parameter
        self._init_weights()

    @classmethod
    def from_pretrained(cls, path, allow_pickle: bool = False) -> TransformerLM:
        """GPT-2 from a Hugging Face model folder (``config.json`` and ``model.safetensors``,
        as ``save_pretrained`` writes it or the hub serves it), or nanoGPT's checkpoint
        (see ``lmroad.interop.load_pretrained``). A PyTorch ``.bin`` or ``ckpt.pt`` is a
        pickle, which can run code when loaded: read only with ``allow_pickle=True``."""
        from lmroad.interop import load_pretrained
        return load_pretrained(path, allow_pickle=allow_pickle)[0]

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, MultiHeadAttention):
                nn.init.normal_(m.in_proj_weight, 0.0, 0.02)
                if m.in_proj_bias is not None:
                    nn.init.zeros_(m.in_proj_bias)
            elif isinstance(m, (Embedding, LearnedPositionalEmbedding)):
                nn.init.normal_(m.weight, 0.0, 0.02)
        residual_std = 0.02 / math.sqrt(2 * self._config.n_layer)
        for block in self.blocks:
            nn.init.normal_(block.attn.out_proj.weight, 0.0, residual_std)
            nn.init.normal_(block.mlp.proj.weight, 0.0, residual_std)

    @property
    def context_size(self) -> int:
        return self._config.block_size

    def extra_repr(self) -> str:
        c = self._config
        return f"n_layer={c.n_layer}, n_head={c.n_head}, n_embd={c.n_embd}, block_size={c.block_size}"

    # ----------------------------------------------------------------- forward
    def forward(self, idx: Tensor, targets: Tensor | None = None):
        """idx (B, T), T <= block_size -> (logits (B, T, V), loss or None)."""
        self._check_idx(idx)
        T, block = idx.shape[1], self._config.block_size
        if T > block:
            raise ValueError(f"TransformerLM: a sequence of length {T} is longer than block_size "
                             f"{block}; crop it to the last {block} tokens (generate does this)")
        logits = self._run(idx, 0, None)
        return logits, self._loss(logits, targets)

    def _run(self, idx: Tensor, start: int, caches: list[KVCache] | None) -> Tensor:
        """Logits for tokens at positions start .. start+T-1, appending to ``caches`` if given."""
        T = idx.shape[1]
        pos = mg.arange(start, start + T, device=idx.device)                # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))                        # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, kv_cache=None if caches is None else caches[i])    # (B, T, C)
        return self.lm_head(self.ln_f(x))                                   # (B, T, V)

    # ----------------------------------------------------------------- generation with a KV cache
    def _prefill(self, idx: Tensor):
        block = self._config.block_size
        window = idx if idx.shape[1] <= block else idx[:, -block:]
        caches = [KVCache() for _ in self.blocks]
        logits = self._run(window, 0, caches)
        return logits[:, -1, :], (caches, window)

    def _decode(self, new: Tensor, cache):
        caches, window = cache
        window = mg.concatenate([window, new.astype(window.dtype)], axis=1)
        pos = len(caches[0])                             # the new token's position
        if pos >= self._config.block_size:               # positions would shift: recompute
            return self._prefill(window)
        logits = self._run(new, pos, caches)             # (B, 1, V): one position
        return logits[:, -1, :], (caches, window)
