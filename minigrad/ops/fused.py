"""Fused ops: one graph node where a composite would make many, with a
numerically careful forward and a hand-written backward.

Each backward is written with Tensor ops on the node's inputs and output, so
these stay differentiable to any order. ``minigrad.functional`` is the
user-facing namespace for them.
"""

from __future__ import annotations

import math

from .. import backend
from ..autograd import Function, is_grad_enabled
from ..tensor import Tensor


def _stable_max(xp, x, axis):
    """max over ``axis`` (kept), with rows that are all -inf (or empty) given 0."""
    if x.size == 0:   # an empty axis has no max; any shift will do
        return x.sum(axis=axis, keepdims=True)
    m = x.max(axis=axis, keepdims=True)
    return xp.where(xp.isfinite(m), m, xp.zeros_like(m))


class Softmax(Function):
    """s = exp(x - max) / Σ exp(x - max);  dx = s ⊙ (g - Σ g ⊙ s).

    A row where every entry is -inf (fully masked) gives zeros, not NaN."""
    op_name = "softmax"

    def forward(self, x):
        xp = backend.xp_of(x)
        e = xp.exp(x - _stable_max(xp, x, self.axis))
        s = e.sum(axis=self.axis, keepdims=True)
        return e / xp.where(s == 0, xp.ones_like(s), s)

    def backward(self, g):
        s = self.output
        gs = g * s
        return gs - s * gs.sum(axis=self.axis, keepdims=True)


class LogSoftmax(Function):
    """y = x - logsumexp(x);  dx = g - softmax(x) Σ g."""
    op_name = "log_softmax"

    def forward(self, x):
        xp = backend.xp_of(x)
        shifted = x - _stable_max(xp, x, self.axis)
        return shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))

    def backward(self, g):
        return g - self.output.exp() * g.sum(axis=self.axis, keepdims=True)


class CrossEntropy(Function):
    """Mean (or sum, or per-row) of -Σ_c q_c log softmax(x)_c over rows of (N, C) logits,
    where q = (1 - ε) onehot(target) + ε / C  (label smoothing ε), and rows whose
    target is ``ignore_index`` count for nothing (the mean is over the others).

    dx = (softmax(x) - q) · w_row, with w_row the row's weight in the reduction."""
    op_name = "cross_entropy"

    def forward(self, x):
        xp = backend.xp_of(x)
        n, c = x.shape
        t = self.target
        valid = t != self.ignore_index
        self.valid = valid.astype(x.dtype)                       # (N,)
        safe_t = xp.where(valid, t, xp.zeros_like(t))
        shifted = x - _stable_max(xp, x, 1)
        lsm = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))   # (N, C)
        nll = -xp.take_along_axis(lsm, safe_t[:, None], axis=1)[:, 0]       # (N,)
        eps = self.label_smoothing
        if eps:
            nll = (1 - eps) * nll - eps * lsm.mean(axis=1)
        losses = nll * self.valid
        if self.reduction == "none":
            return losses
        total = losses.sum()
        if self.reduction == "sum":
            return total
        self.count = self.valid.sum()
        return total / self.count  # NaN when every target is ignored, as in PyTorch

    def _weights(self, g: Tensor) -> Tensor:
        """Per-row weight of the upstream gradient, shape (N, 1)."""
        valid = Tensor._make(self.valid, g._device)
        if self.reduction == "none":
            w = g * valid
        elif self.reduction == "sum":
            w = valid * g
        else:
            w = valid * (g / Tensor._make(self.count, g._device))
        return w.reshape((-1, 1))

    def backward(self, g):
        x = self.inputs[0]
        xp = x.xp
        n, c = x.shape
        eps = self.label_smoothing
        q = xp.zeros((n, c), dtype=x.dtype)
        if eps:
            q += x.dtype.type(eps / c)
        safe_t = xp.where(self.target != self.ignore_index, self.target, xp.zeros_like(self.target))
        xp.put_along_axis(q, safe_t[:, None], x.dtype.type(1 - eps + eps / c), axis=1)
        if is_grad_enabled():   # differentiable path (create_graph): softmax of the input tensor
            from .fused import softmax
            p = softmax(x, axis=1)
        else:                   # first-order fast path on raw arrays
            p = Tensor._make(xp.exp(self._log_softmax_raw(x.data)), x._device)
        return (p - Tensor._make(q, x._device)) * self._weights(g)

    @staticmethod
    def _log_softmax_raw(x):
        xp = backend.xp_of(x)
        shifted = x - _stable_max(xp, x, 1)
        return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


class LayerNorm(Function):
    """y = (x - μ) / √(σ² + ε) · w + b over the last ``k`` axes; σ² computed
    two-pass (mean of squared deviations), after shifting each row by its first
    element, so rows with a large mean and a small spread (float32, mean 1e4,
    spread 1e-2) keep their digits. Inputs: x, then weight and bias if given.

    dx = r (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)),  ĝ = g w,  r = 1/√(σ² + ε)."""
    op_name = "layer_norm"

    def forward(self, x, *affine):
        xp = backend.xp_of(x)
        axes = tuple(range(x.ndim - self.k, x.ndim))
        # x - shift is exact for values close together (Sterbenz), and the mean of the
        # small differences has no large sum to round: y does not depend on the shift
        self.shift = x[(Ellipsis,) + (slice(0, 1),) * self.k]
        xs = x - self.shift
        self.mean = xs.mean(axis=axes, keepdims=True)
        xc = xs - self.mean
        var = (xc * xc).mean(axis=axes, keepdims=True)
        self.rstd = 1 / xp.sqrt(var + x.dtype.type(self.eps))
        y = xc * self.rstd      # x̂; backward recomputes it from (shift, mean, rstd) rather than
        # keeping a second full-size array alive until then (PyTorch keeps the same three)
        if self.has_weight:
            y = y * affine[0]
        if self.has_bias:
            y = y + affine[-1]
        return y

    def backward(self, g):
        x = self.inputs[0]
        axes = tuple(range(x.ndim - self.k, x.ndim))
        if is_grad_enabled():   # recompute x̂ and r as Tensors of x, for higher derivatives
            xs = x - Tensor._make(self.shift, x._device)   # a constant: same function of x
            xc = xs - xs.mean(axis=axes, keepdims=True)
            rstd = ((xc * xc).mean(axis=axes, keepdims=True) + self.eps) ** -0.5
            xhat = xc * rstd
        else:
            xhat = Tensor._make((x.data - self.shift - self.mean) * self.rstd, x._device)
            rstd = Tensor._make(self.rstd, x._device)
        gh = g * self.inputs[1] if self.has_weight else g
        gx = rstd * (gh - gh.mean(axis=axes, keepdims=True)
                     - xhat * (gh * xhat).mean(axis=axes, keepdims=True))
        grads = [gx]
        if self.has_weight:
            grads.append(g * xhat)
        if self.has_bias:
            grads.append(g)
        return grads


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    from ._lift import normalize_axes, require_float
    require_float(x, "softmax")
    return Softmax.apply(x, axis=normalize_axes(axis, x.ndim, "softmax"))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    from ._lift import normalize_axes, require_float
    require_float(x, "log_softmax")
    return LogSoftmax.apply(x, axis=normalize_axes(axis, x.ndim, "log_softmax"))


class Attention(Function):
    """out = P V,  P = softmax(Q Kᵀ · scale, masked),  for q (..., L, E), k (..., S, E),
    v (..., S, Ev); ``allowed`` (a bool array broadcasting to (..., L, S), or None) is
    True where a query may attend. A query allowed nothing gets zeros.

    One node instead of six, keeping only P for backward:
    dV = Pᵀ G,  dP = G Vᵀ,  dS = P ⊙ (dP - Σ_j dP ⊙ P),  dQ = dS K · scale,  dK = dSᵀ Q · scale."""
    op_name = "scaled_dot_product_attention"

    def forward(self, q, k, v):
        xp = backend.xp_of(q)
        s = (q @ k.swapaxes(-1, -2)) * q.dtype.type(self.scale)      # (..., L, S)
        if self.allowed is not None:
            s = xp.where(self.allowed, s, q.dtype.type(-xp.inf))
        e = xp.exp(s - _stable_max(xp, s, -1))
        den = e.sum(axis=-1, keepdims=True)
        self.p = e / xp.where(den == 0, xp.ones_like(den), den)       # (..., L, S)
        return self.p @ v

    def backward(self, g):
        q, k, v = self.inputs
        if is_grad_enabled():   # rebuild P from Tensors so the backward is differentiable
            s = (q @ k.swapaxes(-1, -2)) * self.scale
            if self.allowed is not None:
                from .elementwise import where
                s = where(Tensor._make(self.allowed, q._device), s, float("-inf"))
            p = softmax(s, axis=-1)
        else:
            p = Tensor._make(self.p, q._device)
        gp = g @ v.swapaxes(-1, -2)
        gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True))
        return (gs @ k) * self.scale, (gs.swapaxes(-1, -2) @ q) * self.scale, p.swapaxes(-1, -2) @ g


def _vjp_of(composite, inputs: tuple[Tensor, ...], g: Tensor) -> tuple[Tensor | None, ...]:
    """The gradients of ``composite(*inputs)`` built from differentiable ops: the
    higher-order path of a fused op whose first-order backward is on raw arrays."""
    from ..autograd import grad
    wanted = [t for t in inputs if t.requires_grad]
    grads = iter(grad(composite(*inputs), wanted, grad_outputs=g, create_graph=True,
                      allow_unused=True))
    return tuple(next(grads) if t.requires_grad else None for t in inputs)


def lstm_cell_reference(gates: Tensor, c: Tensor) -> Tensor:
    """The LSTM state update from composite ops; returns concat(h', c') (B, 2H)."""
    from .shape import concatenate
    H = c.shape[-1]
    i, f, g, o = (gates[..., k * H:(k + 1) * H] for k in range(4))
    c_next = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return concatenate([o.sigmoid() * c_next.tanh(), c_next], axis=-1)


class LSTMCellUpdate(Function):
    """The elementwise half of an LSTM step, one node instead of ten:

        i, f, g, o = σ(a_i), σ(a_f), tanh(a_g), σ(a_o)     gates a = W_ih x + b_ih + W_hh h + b_hh
        c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')

    Inputs: the pre-activations ``a`` (..., 4H) in PyTorch's gate order (i, f,
    g, o) and the cell state c (..., H). Output: concat(h', c') (..., 2H).
    Backward, with t = tanh(c'):  dc' = g_c + g_h ⊙ o ⊙ (1 - t²),
    da_i = dc' g i(1-i), da_f = dc' c f(1-f), da_g = dc' i (1-g²),
    da_o = g_h t o(1-o), dc = dc' f."""
    op_name = "lstm_cell"

    def forward(self, a, c):
        xp = backend.xp_of(a)
        H = c.shape[-1]
        half = a.dtype.type(0.5)
        sig = (xp.tanh(a * half) + 1) * half                 # σ for all gates (g's slot unused)
        i, f, o = sig[..., :H], sig[..., H:2 * H], sig[..., 3 * H:]
        g = xp.tanh(a[..., 2 * H:3 * H])
        c_next = f * c + i * g
        t = xp.tanh(c_next)
        self.saved = (i, f, g, o, t)
        return xp.concatenate([o * t, c_next], axis=-1)

    def backward(self, grad_out):
        a, c = self.inputs
        if is_grad_enabled():
            return _vjp_of(lstm_cell_reference, (a, c), grad_out)
        xp = a.xp
        H = c.shape[-1]
        i, f, g, o, t = self.saved
        gh, gc = grad_out.data[..., :H], grad_out.data[..., H:]
        dc = gc + gh * o * (1 - t * t)
        da = xp.concatenate([dc * g * i * (1 - i), dc * c.data * f * (1 - f),
                             dc * i * (1 - g * g), gh * t * o * (1 - o)], axis=-1)
        return Tensor._make(da, a._device), Tensor._make(dc * f, c._device)


def linear_reference(x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """x Wᵀ + b from composite ops."""
    y = x @ w.swapaxes(0, 1)
    return y if b is None else y + b


class Linear(Function):
    """y = x Wᵀ + b for x (..., in), W (out, in), b (out,), as one node.

    As a composite, the bias add would keep the product x Wᵀ alive until
    backward although nothing needs it (a (..., out) array per layer); this
    node keeps only x and W. Backward: dx = G W, dW = Gᵀ x (batch dims folded
    into one product), db = Σ G over the batch dims."""
    op_name = "linear"

    def forward(self, x, w, *b):
        y = x @ w.T
        return y + b[0] if b else y

    def backward(self, g):
        if is_grad_enabled():
            return _vjp_of(linear_reference, self.inputs, g)
        x, w = self.inputs[0], self.inputs[1]
        out, inp = w.shape
        rows = math.prod(g.shape[:-1])          # explicit, so empty batches reshape too
        g2 = g.data.reshape(rows, out)
        grads = [Tensor._make(g.data @ w.data, g._device) if x.requires_grad else None]
        grads.append(Tensor._make(g2.T @ x.data.reshape(rows, inp), g._device)
                     if w.requires_grad else None)
        if len(self.inputs) == 3:
            grads.append(Tensor._make(g2.sum(axis=0), g._device))
        return grads
