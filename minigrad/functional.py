"""``minigrad.functional`` (import as ``F``): the numerically careful building
blocks of neural networks. Gradients live with the ops in ``minigrad/ops``;
this module only checks arguments and composes.
"""

from __future__ import annotations

import math

import numpy as np

from . import backend
from .autograd import is_grad_enabled, promote_floats
from .errors import DeviceError
from .ops._lift import broadcast_shape, lift, lift_into, require_float
from .ops.activation import elu, leaky_relu, silu, softplus
from .ops.attention import Attention
from .ops.elementwise import gelu, relu, sigmoid, tanh, where
from .ops.gather import one_hot
from .ops.index import GetItem
from .ops.layout import tril
from .ops.linalg import Linear, linear_reference
from .ops.loss import BinaryCrossEntropy
from .ops.norm import LayerNorm
from .ops.recurrent import GRUCellUpdate, GRUSequence, LSTMCellUpdate, LSTMSequence, RNNSequence
from .ops.softmax import CrossEntropy, log_softmax, softmax
from .tensor import Tensor

__all__ = ["softmax", "log_softmax", "cross_entropy", "nll_loss", "binary_cross_entropy",
           "binary_cross_entropy_with_logits", "layer_norm", "embedding", "one_hot", "dropout",
           "masked_fill", "scaled_dot_product_attention", "mse_loss", "linear", "lstm_cell",
           "lstm_sequence", "gru_cell", "gru_sequence", "rnn_sequence", "relu", "gelu", "sigmoid",
           "tanh", "silu", "softplus", "leaky_relu", "elu"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str, op: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _lifted(like: Tensor, op: str, *xs):
    """Each of ``xs`` as a tensor on ``like``'s device (None stays None)."""
    return tuple(None if x is None else lift(x, like, op) for x in xs)


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    return losses if reduction == "none" else losses.sum() if reduction == "sum" else losses.mean()


def _classes_last(input: Tensor) -> Tensor:
    """(N, C, d1, ...) -> (N·d1·..., C) in the order of a (N, d1, ...) target; (C,) -> (1, C)."""
    c = input.shape[1] if input.ndim > 1 else input.shape[0]
    if input.ndim == 1:
        return input.reshape((1, c))
    if input.ndim > 2:
        input = input.transpose((0,) + tuple(range(2, input.ndim)) + (1,))
    return input.reshape((-1, c))


def _check_targets(target: Tensor, input: Tensor, n_classes: int, ignore_index: int, op: str) -> None:
    if not isinstance(target, Tensor) or target.dtype.kind not in "iu":
        got = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(f"{op}: target must be an integer tensor of class indices, got {got}"
                        + (f" (probabilities: a float tensor of the input's shape {input.shape})"
                           if op == "cross_entropy" else ""))
    if target.device != input.device:
        raise DeviceError(f"{op}: input on {input.device}, target on {target.device}; "
                          "move one with .to()")
    v = backend.first_out_of_range(target.data, 0, n_classes, ignore=ignore_index)
    if v is not None:
        raise IndexError(f"{op}: target {v} is out of range for {n_classes} classes "
                         f"(valid: 0 to {n_classes - 1}, or ignore_index={ignore_index})")


def cross_entropy(input: Tensor, target: Tensor, ignore_index: int = -100,
                  reduction: str = "mean", label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy of logits against class targets (PyTorch's layout).

    ``input``: (N, C), (C,) or (N, C, d1, ...), classes on axis 1 (axis 0 for (C,)).
    ``target``: integer class indices (N,), () or (N, d1, ...); or class
    probabilities, a float tensor of ``input``'s shape: loss = -Σ_c p_c log softmax(x)_c.
    Integer targets equal to ``ignore_index`` contribute nothing. ``reduction`` is
    ``"mean"`` (over the non-ignored targets), ``"sum"`` or ``"none"``;
    ``label_smoothing`` ε mixes the target with the uniform distribution:
    (1 - ε) target + ε / C."""
    require_float(input, "cross_entropy")
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if input.ndim == 0:
        raise ValueError("cross_entropy: input must have a class dimension, got a 0-d tensor")
    axis = 1 if input.ndim > 1 else 0
    c = input.shape[axis]
    if isinstance(target, Tensor) and target.dtype.kind == "f" and target.shape == input.shape:
        return _cross_entropy_probabilities(input, target, axis, reduction, float(label_smoothing))
    expected = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    if not isinstance(target, Tensor) or target.shape != expected:
        got = target.shape if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"cross_entropy: input of shape {input.shape} (classes on axis {axis}) needs "
                         f"target of shape {expected}, got {got}; give class indices (an integer "
                         f"tensor) of shape {expected}, or probabilities (a float tensor) of the "
                         f"input's shape {input.shape}")
    _check_targets(target, input, c, ignore_index, "cross_entropy")
    out = CrossEntropy.apply(_classes_last(input), target=target.data.reshape(-1),
                             ignore_index=ignore_index, reduction=reduction,
                             label_smoothing=float(label_smoothing))
    if reduction == "none":
        out = out.reshape(expected)
    return out


def _cross_entropy_probabilities(input: Tensor, target: Tensor, axis: int, reduction: str,
                                 label_smoothing: float) -> Tensor:
    """-Σ_c q_c log softmax(x)_c with q = (1 - ε) p + ε / C; the mean is over the N·d1·... rows."""
    if target.device != input.device:
        raise DeviceError(f"cross_entropy: input on {input.device}, target on {target.device}; "
                          "move one with .to()")
    input, target = promote_floats(input, target)
    q = target.astype(input.dtype)
    if label_smoothing:
        q = q * (1.0 - label_smoothing) + label_smoothing / input.shape[axis]
    losses = -(q * log_softmax(input, axis=axis)).sum(axis=axis)    # (N, d1, ...) or ()
    return _reduce(losses, reduction)


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of log-probabilities at integer targets (PyTorch's layout):
    loss_n = -w[t_n] · input[n, t_n], with w = ``weight`` (C,) or ones.

    ``input``: (N, C), (C,) or (N, C, d1, ...); ``target``: (N,), () or (N, d1, ...).
    Targets equal to ``ignore_index`` count for nothing. ``reduction="mean"`` is
    Σ loss_n / Σ w[t_n] over the non-ignored targets (a weighted mean, as PyTorch);
    ``"sum"`` or ``"none"`` (per target, the target's shape)."""
    _check_reduction(reduction, "nll_loss")
    expected = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    if input.ndim == 0 or not isinstance(target, Tensor) or target.shape != expected:
        raise ValueError(f"nll_loss: expected input (N, C) and target (N,), or (C,) and (), or "
                         f"(N, C, d1, ...) and (N, d1, ...); got {input.shape} and "
                         f"{getattr(target, 'shape', type(target).__name__)}")
    c = input.shape[1] if input.ndim > 1 else input.shape[0]
    _check_targets(target, input, c, ignore_index, "nll_loss")
    if weight is not None:
        if not isinstance(weight, Tensor) or weight.dtype.kind != "f":
            got = weight.dtype if isinstance(weight, Tensor) else type(weight).__name__
            raise TypeError(f"nll_loss: weight must be a float tensor of shape ({c},), got {got}")
        if weight.shape != (c,):
            raise ValueError(f"nll_loss: weight has shape {weight.shape}, expected ({c},) (one per class)")
        if weight.device != input.device:
            raise DeviceError(f"nll_loss: input on {input.device}, weight on {weight.device}; "
                              "move one with .to()")
    input, weight = promote_floats(input, weight)
    x = _classes_last(input)                                      # (M, C)
    xp = input.xp
    t = target.data.reshape(-1)                                   # (M,)
    valid = t != ignore_index
    safe = xp.where(valid, t, 0)
    w = Tensor._make(valid.astype(input.dtype), input.device)     # 0 at ignored targets
    if weight is not None:
        w = weight.astype(input.dtype)[safe] * w
    picked = -x[xp.arange(x.shape[0]), safe] * w                  # (M,)
    if reduction == "none":
        return picked.reshape(expected)
    if reduction == "sum":
        return picked.sum()
    return picked.sum() / w.sum()    # NaN when every target is ignored, as in PyTorch


def binary_cross_entropy(input: Tensor, target, weight: Tensor | None = None,
                         reduction: str = "mean") -> Tensor:
    """-w [t log x + (1 - t) log(1 - x)] elementwise, then reduced (PyTorch's ``F.binary_cross_entropy``).

    ``input``: probabilities in [0, 1]; ``target`` of the same shape (values in [0, 1]);
    ``weight`` broadcasts to the input's shape. Each log is clamped at -100, as
    PyTorch, so x = 0 or 1 gives a finite loss. For logits use
    ``binary_cross_entropy_with_logits`` (more accurate, and stable)."""
    require_float(input, "binary_cross_entropy")
    _check_reduction(reduction, "binary_cross_entropy")
    input, target, weight = promote_floats(input, *_lifted(input, "binary_cross_entropy", target, weight))
    target = _binary_target(input, target, "binary_cross_entropy")
    x = input.data
    if x.size and (isinstance(x, np.ndarray) or backend.device_checks_enabled()):
        if bool(((x < 0) | (x > 1)).any()):
            raise ValueError(f"binary_cross_entropy: input must hold probabilities in [0, 1], got "
                             f"values from {float(x.min()):.4g} to {float(x.max()):.4g} (shape "
                             f"{input.shape}); for logits use binary_cross_entropy_with_logits")
    losses = BinaryCrossEntropy.apply(input, target)   # PyTorch's gradient at x = 0 and 1
    if weight is not None:
        losses = losses * _broadcast_weight(weight, input, "weight", "binary_cross_entropy")
    return _reduce(losses, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target, weight: Tensor | None = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """Binary cross-entropy of σ(x) against ``target``, computed from the logits x
    (PyTorch's ``F.binary_cross_entropy_with_logits``):

        loss = max(x, 0) - x t + log(1 + e^-|x|)                    (= softplus(x) - x t)
        with pos_weight p:  (1 - t) x + (1 + (p - 1) t) softplus(-x)

    Nothing overflows for any x. ``weight`` broadcasts to the input's shape;
    ``pos_weight`` (the weight of the positive class, e.g. one per class, (C,))
    broadcasts against it too."""
    require_float(input, "binary_cross_entropy_with_logits")
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    op = "binary_cross_entropy_with_logits"
    input, target, weight, pos_weight = promote_floats(input, *_lifted(input, op, target, weight, pos_weight))
    target = _binary_target(input, target, op)
    if pos_weight is None:
        losses = softplus(input, threshold=math.inf) - input * target
    else:
        p = _broadcast_weight(pos_weight, input, "pos_weight", op)
        losses = (1.0 - target) * input + (1.0 + (p - 1.0) * target) * softplus(-input, threshold=math.inf)
    if weight is not None:
        losses = losses * _broadcast_weight(weight, input, "weight", op)
    return _reduce(losses, reduction)


def _binary_target(input: Tensor, target, op: str) -> Tensor:
    target = lift(target, input, op)
    if target.shape != input.shape:
        raise ValueError(f"{op}: target of shape {target.shape} for input of shape {input.shape}; "
                         "they must have the same shape")
    if target.device != input.device:
        raise DeviceError(f"{op}: input on {input.device}, target on {target.device}; move one with .to()")
    return target.astype(input.dtype)


def _broadcast_weight(w, input: Tensor, name: str, op: str) -> Tensor:
    return lift_into(w, input, op, name).astype(input.dtype)


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
    if weight.requires_grad and is_grad_enabled():
        i = i.copy()    # a recorded gather's backward reads the index: idx[...] = v must not move it
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
        allowed = tril(Tensor._make(xp.ones((L, S), dtype=bool), query.device))
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
    hc = LSTMCellUpdate.apply(gates, c)
    return hc[..., :H], hc[..., H:]


def _sequence_shapes(name: str, gx: Tensor, states: tuple[Tensor, ...], weight_hh: Tensor,
                     bias_hh: Tensor | None, G: int) -> tuple[int, int, int]:
    """(T, B, H) for a fused recurrence of G gates over gx (T, ..., G·H) from states
    (..., H) each, or a ValueError naming ``name`` and every shape involved."""
    require_float(gx, name)
    h0 = states[0]
    H = h0.shape[-1] if h0.ndim else 0
    batch = h0.shape[:-1]
    if (gx.ndim < 1 or h0.ndim == 0 or gx.shape[1:] != batch + (G * H,)
            or any(s.shape != h0.shape for s in states)
            or weight_hh.shape != (G * H, H) or (bias_hh is not None and bias_hh.shape != (G * H,))):
        names = ["h0", "c0"][:len(states)]
        g = "" if G == 1 else str(G)
        raise ValueError(
            f"{name}: gx {gx.shape}, " + "".join(f"{n} {s.shape}, " for n, s in zip(names, states))
            + f"weight_hh {weight_hh.shape}{'' if bias_hh is None else f', bias_hh {bias_hh.shape}'}"
            f" do not fit; need (T, ..., {g}H), " + "(..., H), " * len(states)
            + f"({g}H, H) and ({g}H,)")
    return gx.shape[0], math.prod(batch), H


def lstm_sequence(gx: Tensor, h0: Tensor, c0: Tensor, weight_hh: Tensor,
                  bias_hh: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """An LSTM layer's recurrence over a whole sequence, fused (one graph node).

    ``gx`` (T, ..., 4H): W_ih x_t + b_ih for every step, PyTorch's gate order
    (i, f, g, o); ``h0``, ``c0`` (..., H); ``weight_hh`` (4H, H); ``bias_hh``
    (4H,) or None. Returns (hs, (h_T, c_T)) with hs (T, ..., H): the same as
    stepping ``lstm_cell(gx[t] + linear(h, weight_hh, bias_hh), c)``, with a
    hand-written backward through time."""
    T, B, H = _sequence_shapes("lstm_sequence", gx, (h0, c0), weight_hh, bias_hh, 4)
    if T == 0:
        return gx[..., :H], (h0, c0)
    batch = h0.shape[:-1]
    args = (gx.reshape((T, B, 4 * H)), h0.reshape((B, H)), c0.reshape((B, H)), weight_hh)
    ys = LSTMSequence.apply(*args, *(() if bias_hh is None else (bias_hh,)))
    ys = ys.reshape((T,) + batch + (2 * H,))                   # (T, ..., 2H): [h_t, c_t]
    return ys[..., :H], (ys[-1, ..., :H], ys[-1, ..., H:])


def gru_sequence(gx: Tensor, h0: Tensor, weight_hh: Tensor,
                 bias_hh: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """A GRU layer's recurrence over a whole sequence, fused (one graph node).

    ``gx`` (T, ..., 3H): W_ih x_t + b_ih for every step, PyTorch's gate order
    (r, z, n); ``h0`` (..., H); ``weight_hh`` (3H, H); ``bias_hh`` (3H,) or
    None. Returns (hs, h_T) with hs (T, ..., H): the same as stepping
    ``h = gru_cell(gx[t], linear(h, weight_hh, bias_hh), h)``, with a
    hand-written backward through time."""
    T, B, H = _sequence_shapes("gru_sequence", gx, (h0,), weight_hh, bias_hh, 3)
    if T == 0:
        return gx[..., :H], h0
    args = (gx.reshape((T, B, 3 * H)), h0.reshape((B, H)), weight_hh)
    hs = GRUSequence.apply(*args, *(() if bias_hh is None else (bias_hh,)))
    hs = hs.reshape((T,) + h0.shape)
    return hs, hs[-1]


def rnn_sequence(gx: Tensor, h0: Tensor, weight_hh: Tensor, bias_hh: Tensor | None = None,
                 nonlinearity: str = "tanh") -> tuple[Tensor, Tensor]:
    """An Elman RNN layer's recurrence over a whole sequence, fused (one graph node).

    ``gx`` (T, ..., H): W_ih x_t + b_ih for every step; ``h0`` (..., H);
    ``weight_hh`` (H, H); ``bias_hh`` (H,) or None; ``nonlinearity`` "tanh"
    or "relu". Returns (hs, h_T) with hs (T, ..., H): the same as stepping
    ``h = tanh(gx[t] + linear(h, weight_hh, bias_hh))``, with a hand-written
    backward through time."""
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn_sequence: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    T, B, H = _sequence_shapes("rnn_sequence", gx, (h0,), weight_hh, bias_hh, 1)
    if T == 0:
        return gx, h0
    args = (gx.reshape((T, B, H)), h0.reshape((B, H)), weight_hh)
    hs = RNNSequence.apply(*args, *(() if bias_hh is None else (bias_hh,)), nonlinearity=nonlinearity)
    hs = hs.reshape((T,) + h0.shape)
    return hs, hs[-1]


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
    return GRUCellUpdate.apply(gx, gh, h)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Mean (or sum, or elementwise) squared error."""
    _check_reduction(reduction, "mse_loss")
    target = lift(target, input, "mse_loss")
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: input {input.shape} and target {target.shape} must have the same shape")
    if input.device != target.device:
        raise DeviceError(f"mse_loss: input on {input.device}, target on {target.device}; "
                          "move one with .to()")
    d = input - target          # promotes as every op does
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
    if x.dtype.kind != "f":
        return linear_reference(x, weight, bias)     # integer input: matmul's promotion
    return Linear.apply(x, weight, *(() if bias is None else (bias,)))
