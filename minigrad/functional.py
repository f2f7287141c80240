"""``minigrad.functional`` (import as ``F``): the numerically careful building
blocks of neural networks. Gradients live with the ops in ``minigrad/ops``;
this module only checks arguments and composes.
"""

from __future__ import annotations

import math

from . import backend
from .errors import DeviceError
from .ops._lift import broadcast_shape, lift, require_float
from .ops.attention import Attention
from .ops.elementwise import gelu, relu, sigmoid, tanh, where
from .ops.index import GetItem
from .ops.linalg import Linear, linear_reference
from .ops.norm import LayerNorm
from .ops.recurrent import GRUCellUpdate, LSTMCellUpdate, LSTMSequence
from .ops.softmax import CrossEntropy, log_softmax, softmax
from .tensor import Tensor

__all__ = ["softmax", "log_softmax", "cross_entropy", "nll_loss", "layer_norm", "embedding",
           "dropout", "masked_fill", "scaled_dot_product_attention", "mse_loss", "linear", "lstm_cell",
           "lstm_sequence", "gru_cell", "relu", "gelu", "sigmoid", "tanh"]


def _check_targets(target: Tensor, input: Tensor, n_classes: int, ignore_index: int, op: str) -> None:
    if not isinstance(target, Tensor) or target.dtype.kind not in "iu":
        got = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(f"{op}: target must be an integer tensor of class indices, got {got}")
    if target.device != input.device:
        raise DeviceError(f"{op}: input on {input.device}, target on {target.device}; "
                          "move one with .to()")
    v = backend.first_out_of_range(target.data, 0, n_classes, ignore=ignore_index)
    if v is not None:
        raise IndexError(f"{op}: target {v} is out of range for {n_classes} classes "
                         f"(valid: 0 to {n_classes - 1}, or ignore_index={ignore_index})")


def cross_entropy(input: Tensor, target: Tensor, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of logits against integer class targets (PyTorch's layout).

    ``input``: (N, C), (C,) or (N, C, d1, ...); ``target``: (N,), () or (N, d1, ...).
    Rows with ``target == ignore_index`` contribute nothing; ``reduction`` is
    ``"mean"`` (over non-ignored rows), ``"sum"`` or ``"none"``;
    ``label_smoothing`` ε mixes the one-hot target with the uniform one."""
    require_float(input, "cross_entropy")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.ndim == 0:
        raise ValueError("cross_entropy: input must have a class dimension, got a 0-d tensor")
    c = input.shape[1] if input.ndim > 1 else input.shape[0]
    expected = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    if not isinstance(target, Tensor) or target.shape != expected:
        got = target.shape if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"cross_entropy: input of shape {input.shape} (classes on axis "
                         f"{1 if input.ndim > 1 else 0}) needs target of shape {expected}, got {got}")
    _check_targets(target, input, c, ignore_index, "cross_entropy")
    x = input
    if input.ndim > 2:   # (N, C, d1, ...) -> (N, d1, ..., C) -> (N·d1·..., C): the target's order
        x = input.transpose((0,) + tuple(range(2, input.ndim)) + (1,)).reshape((-1, c))
    elif input.ndim == 1:
        x = input.reshape((1, c))
    out = CrossEntropy.apply(x, target=target.data.reshape(-1), ignore_index=ignore_index,
                             reduction=reduction, label_smoothing=float(label_smoothing))
    if reduction == "none":
        out = out.reshape(expected)
    return out


def nll_loss(input: Tensor, target: Tensor, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities (N, C) at integer targets (N,)."""
    if input.ndim != 2 or target.shape != input.shape[:1]:
        raise ValueError(f"nll_loss: expected input (N, C) and target (N,), got {input.shape} "
                         f"and {getattr(target, 'shape', None)}")
    _check_targets(target, input, input.shape[1], ignore_index, "nll_loss")
    xp = input.xp
    valid = target.data != ignore_index
    safe = Tensor._make(xp.where(valid, target.data, 0), input.device)
    weight = Tensor._make(valid.astype(input.dtype), input.device)
    picked = -input[input.xp.arange(input.shape[0]), safe] * weight
    if reduction == "none":
        return picked
    if reduction == "sum":
        return picked.sum()
    return picked.sum() / Tensor._make(valid.astype(input.dtype).sum(), input.device)


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise over the trailing ``normalized_shape`` axes, then scale and shift."""
    require_float(x, "layer_norm")
    ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if x.shape[x.ndim - len(ns):] != ns or len(ns) > x.ndim:
        raise ValueError(f"layer_norm: input of shape {x.shape} does not end in normalized_shape {ns}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and p.shape != ns:
            raise ValueError(f"layer_norm: {name} has shape {p.shape}, expected {ns}")
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"layer_norm: eps must be a finite number >= 0, got {eps}")
    affine = [p for p in (weight, bias) if p is not None]
    return LayerNorm.apply(x, *affine, k=len(ns), eps=float(eps),
                           has_weight=weight is not None, has_bias=bias is not None)


def embedding(input: Tensor, weight: Tensor) -> Tensor:
    """Rows of ``weight`` (V, D) at integer ``input`` (...,) -> (..., D).

    An index outside [0, V) is an IndexError (no negative wrap-around)."""
    if not isinstance(input, Tensor) or input.dtype.kind not in "iu":
        got = input.dtype if isinstance(input, Tensor) else type(input).__name__
        raise TypeError(f"embedding: indices must be an integer tensor, got {got}")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-D (num_embeddings, embedding_dim), got {weight.shape}")
    v = weight.shape[0]
    i = input.data
    bad = backend.first_out_of_range(i, 0, v)
    if bad is not None:
        raise IndexError(f"embedding: index {bad} is out of range for {v} embeddings (valid: 0 to {v - 1})")
    if input.device != weight.device:
        raise DeviceError(f"embedding: indices on {input.device}, weight on {weight.device}")
    return GetItem.apply(weight, index=(i,), advanced=True)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p);
    the identity when not training. Masks come from ``minigrad.manual_seed``'s generator."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    keep = backend.random_uniform(x.shape, x.dtype, x.device) >= x.dtype.type(p)
    scale = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * Tensor._make(scale, x.device)


def masked_fill(x: Tensor, mask: Tensor, value: float) -> Tensor:
    """``value`` where ``mask`` is True, ``x`` elsewhere (mask broadcasts to x)."""
    if not isinstance(mask, Tensor) or mask.dtype.kind != "b":
        raise TypeError(f"masked_fill: mask must be a bool tensor, got "
                        f"{mask.dtype if isinstance(mask, Tensor) else type(mask).__name__}")
    if broadcast_shape("masked_fill", mask.shape, x.shape) != x.shape:
        raise ValueError(f"masked_fill: mask of shape {mask.shape} must broadcast to the input's "
                         f"shape {x.shape} (it would enlarge it)")
    return where(mask, lift(value, x, "masked_fill"), x)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 training: bool = True, return_weights: bool = False):
    """softmax(Q Kᵀ · scale + M) V, with scale = 1/√E by default.

    Shapes: query (..., L, E), key (..., S, E), value (..., S, Ev) -> (..., L, Ev).
    ``attn_mask`` follows ``torch.nn.functional.scaled_dot_product_attention``:
    a bool mask is True where a query MAY attend (broadcasts to (..., L, S));
    a float mask is added to the scores. ``is_causal`` lets query i see keys
    0..i. A query that may attend to nothing gets zeros (never NaN)."""
    for name, t in (("query", query), ("key", key), ("value", value)):
        require_float(t, "scaled_dot_product_attention")
        if t.ndim < 2:
            raise ValueError(f"scaled_dot_product_attention: {name} must be at least 2-D, got {t.shape}")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: query {query.shape}, key {key.shape} and "
                         f"value {value.shape} do not fit (need (..., L, E), (..., S, E), (..., S, Ev))")
    L, S = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    xp = query.xp
    allowed = None
    if is_causal:
        allowed = Tensor._make(xp.tril(xp.ones((L, S), dtype=bool)), query.device)
    if attn_mask is not None and attn_mask.dtype.kind == "b":
        allowed = attn_mask if allowed is None else allowed & attn_mask
    additive = attn_mask is not None and attn_mask.dtype.kind != "b"
    if not (additive or return_weights or (dropout_p and training)):
        # the common case, as one fused node (see ops/attention.py: Attention)
        return Attention.apply(query, key, value, scale=scale,
                               allowed=None if allowed is None else allowed.data)
    scores = (query @ key.swapaxes(-1, -2)) * scale            # (..., L, S)
    if additive:
        scores = scores + attn_mask
    if allowed is not None:
        scores = where(allowed, scores, -math.inf)
    weights = softmax(scores, axis=-1)                         # fully masked rows -> zeros
    weights_used = dropout(weights, dropout_p, training) if dropout_p else weights
    out = weights_used @ value                                 # (..., L, Ev)
    return (out, weights) if return_weights else out


def lstm_cell(gates: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The state update of an LSTM from its gate pre-activations, fused.

    ``gates`` (..., 4H): W_ih x + b_ih + W_hh h + b_hh in PyTorch's order (i, f, g, o);
    ``c`` (..., H). Returns (h', c') with c' = σ(f)⊙c + σ(i)⊙tanh(g), h' = σ(o)⊙tanh(c')."""
    require_float(gates, "lstm_cell")
    H = c.shape[-1] if c.ndim else 0
    if c.ndim == 0 or gates.shape != c.shape[:-1] + (4 * H,):
        raise ValueError(f"lstm_cell: gates {gates.shape} and cell state {c.shape} do not fit; "
                         "need (..., 4H) and (..., H)")
    if c.dtype != gates.dtype:
        raise TypeError(f"lstm_cell: gates are {gates.dtype} but the cell state is {c.dtype}; "
                        "give both the same float dtype")
    hc = LSTMCellUpdate.apply(gates, c)
    return hc[..., :H], hc[..., H:]


def lstm_sequence(gx: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor,
                  bias_hh: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """An LSTM layer's recurrence over a whole sequence, fused (one graph node).

    ``gx`` (T, ..., 4H): W_ih x_t + b_ih for every step, PyTorch's gate order
    (i, f, g, o); ``h0``, ``c0`` (..., H); ``weight_hh`` (4H, H); ``bias_hh``
    (4H,) or None. Returns (hs, (h_T, c_T)) with hs (T, ..., H): the same as
    stepping ``lstm_cell(gx[t] + linear(h, weight_hh, bias_hh), c)``, with a
    hand-written backward through time."""
    require_float(gx, "lstm_sequence")
    H = c0.shape[-1] if c0.ndim else 0
    batch = h0.shape[:-1]
    if (gx.ndim < 1 or c0.ndim == 0 or gx.shape[1:] != batch + (4 * H,) or h0.shape != c0.shape
            or weight_hh.shape != (4 * H, H) or (bias_hh is not None and bias_hh.shape != (4 * H,))):
        raise ValueError(
            f"lstm_sequence: gx {gx.shape}, h0 {h0.shape}, c0 {c0.shape}, weight_hh {weight_hh.shape}"
            f"{'' if bias_hh is None else f', bias_hh {bias_hh.shape}'} do not fit; need (T, ..., 4H), "
            "(..., H), (..., H), (4H, H) and (4H,)")
    dtypes = {t.dtype for t in (gx, h0, c0, weight_hh, bias_hh) if t is not None}
    if len(dtypes) > 1:
        raise TypeError(f"lstm_sequence: dtypes differ ({', '.join(sorted(map(str, dtypes)))}); "
                        "give all the same float dtype")
    T, B = gx.shape[0], math.prod(batch)
    if T == 0:
        return gx[..., :H], (h0, c0)
    args = (gx.reshape((T, B, 4 * H)), h0.reshape((B, H)), c0.reshape((B, H)), weight_hh)
    ys = LSTMSequence.apply(*args, *(() if bias_hh is None else (bias_hh,)))
    ys = ys.reshape((T,) + batch + (2 * H,))                   # (T, ..., 2H): [h_t, c_t]
    return ys[..., :H], (ys[-1, ..., :H], ys[-1, ..., H:])


def gru_cell(gx: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """The state update of a GRU from its two projections, fused.

    ``gx`` = W_ih x + b_ih and ``gh`` = W_hh h + b_hh, each (..., 3H) in PyTorch's
    order (r, z, n); ``h`` (..., H). Returns h' = n + z⊙(h - n) with
    r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r⊙h_n)."""
    require_float(gx, "gru_cell")
    H = h.shape[-1] if h.ndim else 0
    if h.ndim == 0 or gx.shape != h.shape[:-1] + (3 * H,) or gh.shape != gx.shape:
        raise ValueError(f"gru_cell: gx {gx.shape}, gh {gh.shape} and hidden state {h.shape} do "
                         "not fit; need (..., 3H), (..., 3H) and (..., H)")
    if not gx.dtype == gh.dtype == h.dtype:
        raise TypeError(f"gru_cell: dtypes differ (gx {gx.dtype}, gh {gh.dtype}, h {h.dtype}); "
                        "give all three the same float dtype")
    return GRUCellUpdate.apply(gx, gh, h)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or elementwise) squared error."""
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"mse_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    target = lift(target, input, "mse_loss")
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input {input.shape} and target {target.shape} must have the same shape")
    if input.device != target.device:
        raise DeviceError(f"mse_loss: input on {input.device}, target on {target.device}; "
                          "move one with .to()")
    d = input - target
    sq = d * d
    return sq if reduction == "none" else sq.sum() if reduction == "sum" else sq.mean()


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x Wᵀ + b, with W of shape (out_features, in_features) as in PyTorch."""
    if x.shape[-1:] != weight.shape[1:]:
        raise ValueError(f"linear: input with {x.shape[-1] if x.ndim else 0} features "
                         f"(shape {x.shape}) for a weight of shape {weight.shape}")
    if weight.ndim != 2 or (bias is not None and bias.shape != weight.shape[:1]):
        raise ValueError(f"linear: weight must be (out, in) and bias (out,), got {weight.shape} "
                         f"and {None if bias is None else bias.shape}")
    if x.ndim == 0:
        raise ValueError("linear: input must have at least one dimension (features), got a 0-d tensor")
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        return linear_reference(x, weight, bias)     # mixed dtypes: let promotion decide
    return Linear.apply(x, weight, *(() if bias is None else (bias,)))
