"""How much arithmetic a model costs: matrix-product FLOPs per token, and Kaplan's N.

The convention (Kaplan et al. 2020, "Scaling laws for neural language
models", section 2.1): count only matrix products, at 2 FLOPs per
multiply-add, so a product (m, k) @ (k, n) is 2·m·k·n. Biases, activations,
layer norms, softmax and the loss are left out (they are small beside the
products), and an embedding lookup is a gather, 0 FLOPs. A training step
costs about 3 forward passes: the backward pass does two products for each
product of the forward (one for the gradient of each operand), so

    training FLOPs = 3 · forward FLOPs per token · tokens      (often written 6·N·D)

These formulas are what the code computes, product by product, and
``minigrad.profile.count_flops`` measures the same products as they run
(``tests/lmroad/test_flops.py`` checks one against the other). Per token,
with V the vocabulary size:

Recurrent (RNNLM, LSTMLM, GRULM), H = hidden_size, G = the gates of the cell
(RNN 1, GRU 3, LSTM 4), in_l = n_embd for layer 0 and H above it:

    Σ_l 2·(in_l·G·H + H·G·H)  +  2·H·V

each layer's input projection W_ih x_t (all gates at once) and its recurrent
projection W_hh h_{t-1}; the GRU's is 3H wide too (its reset gate multiplies
W_hn h + b_hn after the product, as in PyTorch and cuDNN). The cost per
token does not depend on the sequence length.

Transformer (TransformerLM), d = n_embd, d_ff = 4·d (the MLP's width),
n_ctx = the length of the sequences it runs on:

    n_layer · [2·(d·3d + d·d + 2·d·d_ff)  +  2·2·n_ctx·d]  +  2·d·V

the fused Q, K, V projection, the output projection and the two MLP layers,
then the attention proper, Q Kᵀ and A V, each 2·n_ctx·d per token summed
over the heads, and the (tied) output head. The attention term counts every
query against all n_ctx keys, as the dense product computes it (the causal
mask zeroes half of the scores after they are computed). Kaplan et al. count
2·n_layer·n_ctx·d_attn for it, half of ours: they average over the causal
mask, where a query at position t looks at t keys. Their 2·N for the rest
(N the non-embedding parameters, 12·n_layer·d² here) leaves out the head's
2·d·V, which we count, since it is a product the model runs.

N, the non-embedding parameters (``non_embedding_parameters``), is every
parameter except the input token embedding and the learned position
embedding, as Kaplan's N. A head tied to the token embedding (the
Transformer's, an RNN's with ``tie_weights``) is the same matrix and is
excluded with it; an untied recurrent head (a separate (V, H) matrix and its
bias) is counted in N, as any other layer. So for the recurrent models N does
include the de-embedding; for the Transformer it does not.
"""

from __future__ import annotations

from lmroad.layers import Embedding, LearnedPositionalEmbedding
from lmroad.models.rnn import CORES, RNNLM
from lmroad.models.transformer import TransformerLM

__all__ = ["forward_flops_per_token", "training_flops", "non_embedding_parameters"]

#: the MLP of every TransformerLM block is FeedForward's default, hidden = 4·n_embd
FFN_MULT = 4


def _check_n_ctx(model, n_ctx: int) -> int:
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int) or n_ctx < 1:
        raise ValueError(f"forward_flops_per_token: n_ctx must be an int >= 1, got {n_ctx!r}")
    if isinstance(model, TransformerLM) and n_ctx > model.config.block_size:
        raise ValueError(f"forward_flops_per_token: n_ctx {n_ctx} is longer than the model's "
                         f"block_size {model.config.block_size}")
    return n_ctx


def forward_flops_per_token(model, n_ctx: int) -> float:
    """Matrix-product FLOPs of one forward pass, per token, on sequences of ``n_ctx`` tokens.

    ``model``: an RNNLM / LSTMLM / GRULM or a TransformerLM (sizes read from
    ``model.config``); the formulas are in this module's docstring. ``n_ctx``
    changes only the Transformer's attention term."""
    n_ctx = _check_n_ctx(model, n_ctx)
    cfg = model.config
    V = cfg.vocab_size
    if isinstance(model, TransformerLM):
        d, d_ff = cfg.n_embd, FFN_MULT * cfg.n_embd
        dense = 2 * (d * 3 * d + d * d + 2 * d * d_ff)      # QKV, out_proj, fc and proj
        attention = 2 * 2 * n_ctx * d                       # Q Kᵀ and A V, all n_ctx keys
        return float(cfg.n_layer * (dense + attention) + 2 * d * V)
    if isinstance(model, RNNLM):
        H = cfg.hidden_size
        G = CORES[cfg.cell].cell_class.gates                # RNN 1, GRU 3, LSTM 4
        total = 0
        for layer in range(cfg.num_layers):
            inp = cfg.n_embd if layer == 0 else H
            total += 2 * (inp * G * H + H * G * H)          # W_ih x_t and W_hh h_{t-1}
        return float(total + 2 * H * V)                     # + the head
    raise TypeError(f"forward_flops_per_token: expected an RNNLM, LSTMLM, GRULM or TransformerLM, "
                    f"got {type(model).__name__}")


def training_flops(model, n_ctx: int, tokens: int) -> float:
    """3 · ``forward_flops_per_token(model, n_ctx)`` · ``tokens``: forward plus a
    backward of twice the forward's products (the usual 6·N·D)."""
    return 3 * forward_flops_per_token(model, n_ctx) * tokens


def non_embedding_parameters(model) -> int:
    """Kaplan et al.'s N: the parameters of ``model`` minus the token embedding and
    the learned position embedding (a head tied to the token embedding is the same
    Parameter, so it goes with it; an untied head counts). Shared parameters once."""
    embeddings = {id(p) for m in model.modules()
                  if isinstance(m, (Embedding, LearnedPositionalEmbedding))
                  for p in m.parameters()}
    return int(sum(p.size for p in model.parameters() if id(p) not in embeddings))
