"""Fused ops: one graph node where a composite would make many, with a
numerically careful forward and a hand-written backward.

Each backward is written with Tensor ops on the node's inputs and output, so
these stay differentiable to any order. ``minigrad.functional`` is the
user-facing namespace for them.
"""

from __future__ import annotations

import math

from .. import backend, profile
from ..autograd import Function, is_grad_enabled
from ..kernels import Elementwise, Reduction, will_launch
from ..tensor import Tensor

# --- row kernels: softmax over the last axis in three launches on a GPU (max, Σ, normalise)
# instead of about eleven; its backward in two instead of four. m is the row max as it
# comes from ``x.max``: a row of -inf (fully masked) has m = -inf, shifted by 0 instead.
_FINITE_OR_ZERO = """
template <typename U> __device__ __forceinline__ U minigrad_finite_or_zero(U m) {
    return isfinite(m) ? m : U(0);
}
"""


def _finite_or_zero(m):
    xp = backend.xp_of(m)
    return xp.where(xp.isfinite(m), m, xp.zeros_like(m))


def _row_max(x, axis: int = -1):
    """The max over ``axis`` (kept) as the row kernels take it (``m``): -inf for a fully
    masked row; an empty array has no max, and any shift will do (zeros)."""
    return x.sum(axis=axis, keepdims=True) if x.size == 0 else x.max(axis=axis, keepdims=True)


def _stable_max(x, axis):
    """The max over ``axis`` (kept) to shift by, with rows that are all -inf given 0."""
    return _finite_or_zero(_row_max(x, axis))


_SUM_EXP = Reduction(
    "sum_exp", "T x, T m", "T s", "exp(x - minigrad_finite_or_zero(m))", "a + b", "s = a", "0",
    fallback=lambda x, m: backend.xp_of(x).exp(x - _finite_or_zero(m)).sum(axis=-1, keepdims=True),
    preamble=_FINITE_OR_ZERO)


def _softmax_normalize_raw(x, m, s):
    xp = backend.xp_of(x)
    return xp.exp(x - _finite_or_zero(m)) / xp.where(s == 0, xp.ones_like(s), s)


_SOFTMAX_NORMALIZE = Elementwise(
    "softmax_normalize", "T x, T m, T s", "T y",
    "y = s == T(0) ? T(0) : exp(x - minigrad_finite_or_zero(m)) / s;",
    fallback=_softmax_normalize_raw, preamble=_FINITE_OR_ZERO)

_ROW_DOT = Reduction(
    "row_dot", "T g, T y", "T d", "g * y", "a + b", "d = a", "0",
    fallback=lambda g, y: (g * y).sum(axis=-1, keepdims=True))

_SOFTMAX_BACKWARD = Elementwise(
    "softmax_backward", "T g, T y, T d, T scale", "T dx", "dx = scale * y * (g - d);",
    fallback=lambda g, y, d, scale: y * (g - d) if scale == 1.0 else scale * (y * (g - d)))


def _softmax_raw(x, axis: int = -1):
    """softmax over ``axis`` of a raw array (fully masked rows give zeros)."""
    if axis in (-1, x.ndim - 1) and will_launch(x):   # a GPU: three kernels, exp computed twice
        m = _row_max(x)
        return _SOFTMAX_NORMALIZE(x, m, _SUM_EXP(x, m))
    xp = backend.xp_of(x)
    e = xp.exp(x - _stable_max(x, axis))                # elsewhere: one exp, kept
    s = e.sum(axis=axis, keepdims=True)
    e /= xp.where(s == 0, xp.ones_like(s), s)
    return e


def _softmax_last_backward_raw(g, y, scale=1.0):
    """scale · y ⊙ (g - Σ_j g ⊙ y) over the last axis, on raw arrays."""
    return _SOFTMAX_BACKWARD(g, y, _ROW_DOT(g, y), scale)


class Softmax(Function):
    """s = exp(x - max) / Σ exp(x - max);  dx = s ⊙ (g - Σ g ⊙ s).

    A row where every entry is -inf (fully masked) gives zeros, not NaN."""
    op_name = "softmax"

    def forward(self, x):
        return _softmax_raw(x, self.axis)

    def backward(self, g):
        s = self.output
        if self.axis == s.ndim - 1 and not is_grad_enabled():
            return Tensor._make(_softmax_last_backward_raw(g.data, s.data), g._device)
        gs = g * s
        return gs - s * gs.sum(axis=self.axis, keepdims=True)


class LogSoftmax(Function):
    """y = x - logsumexp(x);  dx = g - softmax(x) Σ g."""
    op_name = "log_softmax"

    def forward(self, x):
        xp = backend.xp_of(x)
        shifted = x - _stable_max(x, self.axis)
        return shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))

    def backward(self, g):
        return g - self.output.exp() * g.sum(axis=self.axis, keepdims=True)


def _smoothed_onehot(x, t, off, on):
    """q (N, C): ``on`` at each row's target t (N, 1), ``off`` elsewhere, in x's dtype."""
    xp = backend.xp_of(x)
    q = xp.full(x.shape, off, dtype=x.dtype)
    xp.put_along_axis(q, t, x.dtype.type(on), axis=1)
    return q


def _cross_entropy_backward_raw(x, m, s, t, w, off, on, C):
    return w * (_softmax_normalize_raw(x, m, s) - _smoothed_onehot(x, t, off, on))


# dx = w_row (softmax(x) - q) over (N, C) in one launch; t, m, s and w are (N, 1) columns
_CROSS_ENTROPY_BACKWARD = Elementwise(
    "cross_entropy_backward", "T x, T m, T s, int64 t, T w, T off, T on, int64 C", "T dx",
    "dx = w * (exp(x - minigrad_finite_or_zero(m)) / s - ((ptrdiff_t)(i % C) == t ? on : off));",
    fallback=_cross_entropy_backward_raw, preamble=_FINITE_OR_ZERO)


class CrossEntropy(Function):
    """Mean (or sum, or per-row) of -Σ_c q_c log softmax(x)_c over rows of (N, C) logits,
    where q = (1 - ε) onehot(target) + ε / C  (label smoothing ε), and rows whose
    target is ``ignore_index`` count for nothing (the mean is over the others).

    With m the row max and s = Σ_c exp(x_c - m):  -log softmax(x)_t = log s - (x_t - m),
    so the (N, C) log-probabilities are never formed; backward keeps only m and s.
    dx = (softmax(x) - q) · w_row, with w_row the row's weight in the reduction."""
    op_name = "cross_entropy"

    def forward(self, x):
        xp = backend.xp_of(x)
        t = self.target
        valid = t != self.ignore_index
        self.valid = valid.astype(x.dtype)                       # (N,)
        safe_t = xp.where(valid, t, xp.zeros_like(t))
        self.safe_t = safe_t.astype(xp.int64, copy=False)[:, None]   # (N, 1)
        self.m = _row_max(x)                                     # (N, 1)
        self.s = _SUM_EXP(x, self.m)                             # (N, 1)
        shift = _finite_or_zero(self.m)
        log_s = xp.log(self.s)
        nll = (log_s - (xp.take_along_axis(x, self.safe_t, axis=1) - shift))[:, 0]   # (N,)
        eps = self.label_smoothing
        if eps:   # mean_c of -log softmax(x)_c = log s - mean_c (x_c - m)
            nll = (1 - eps) * nll + eps * (log_s - (x - shift).mean(axis=1, keepdims=True))[:, 0]
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
        c = x.shape[1]
        eps = self.label_smoothing
        if not is_grad_enabled():   # first-order fast path on raw arrays: one kernel on a GPU
            w = self._weights(g).data
            dx = _CROSS_ENTROPY_BACKWARD(x.data, self.m, self.s, self.safe_t, w, eps / c,
                                         1 - eps + eps / c, c)
            return Tensor._make(dx, x._device)
        q = _smoothed_onehot(x.data, self.safe_t, eps / c, 1 - eps + eps / c)   # create_graph
        return (softmax(x, axis=1) - Tensor._make(q, x._device)) * self._weights(g)


def _ln_affine(y, w, b):
    """y ⊙ w + b in place on y; the scalars 1.0 and 0.0 stand for no weight, no bias."""
    if not (isinstance(w, float) and w == 1.0):
        y *= w
    if not (isinstance(b, float) and b == 0.0):
        y += b
    return y


def _ln_normalize_raw(x, shift, mu, rstd, w, b):
    return _ln_affine((x - shift - mu) * rstd, w, b)


def _ln_backward_raw(g, w, x, shift, mu, rstd, mg, mgx):
    xhat = (x - shift - mu) * rstd
    return rstd * (g * w - mg - xhat * mgx)


# LayerNorm over the last axis of a (rows, n) array: forward in four launches on a GPU
# (Σ for μ, Σ for σ², 1/√(σ² + ε) per row, normalise) and backward in three plus the
# weight/bias sums. Means are sums of terms already divided by n: a reduction's final
# step (post_map) sees only the result, not the scalars passed in.
_LN_MEAN = Reduction(
    "layer_norm_mean", "T x, T shift, T inv_n", "T mu", "(x - shift) * inv_n", "a + b", "mu = a",
    "0", fallback=lambda x, shift, inv_n: ((x - shift) * inv_n).sum(axis=-1, keepdims=True))
_LN_VAR = Reduction(
    "layer_norm_var", "T x, T shift, T mu, T inv_n", "T var",
    "(x - shift - mu) * (x - shift - mu) * inv_n", "a + b", "var = a", "0",
    fallback=lambda x, shift, mu, inv_n: ((x - shift - mu) ** 2 * inv_n).sum(axis=-1, keepdims=True))
_RSQRT_EPS = Elementwise(
    "rsqrt_eps", "T var, T eps", "T rstd", "rstd = T(1) / sqrt(var + eps);",
    fallback=lambda var, eps: 1 / backend.xp_of(var).sqrt(var + eps))
_LN_NORMALIZE = Elementwise(
    "layer_norm_normalize", "T x, T shift, T mu, T rstd, T w, T b", "T y",
    "y = (x - shift - mu) * rstd * w + b;", fallback=_ln_normalize_raw)
_LN_GRAD_MEAN = Reduction(
    "layer_norm_grad_mean", "T g, T w, T inv_n", "T mg", "g * w * inv_n", "a + b", "mg = a", "0",
    fallback=lambda g, w, inv_n: (g * w * inv_n).sum(axis=-1, keepdims=True))
_LN_GRAD_XHAT_MEAN = Reduction(
    "layer_norm_grad_xhat_mean", "T g, T w, T x, T shift, T mu, T rstd, T inv_n", "T mgx",
    "g * w * (x - shift - mu) * rstd * inv_n", "a + b", "mgx = a", "0",
    fallback=lambda g, w, x, shift, mu, rstd, inv_n: (
        (g * w * ((x - shift - mu) * rstd) * inv_n).sum(axis=-1, keepdims=True)))
_LN_BACKWARD = Elementwise(
    "layer_norm_backward", "T g, T w, T x, T shift, T mu, T rstd, T mg, T mgx", "T dx",
    "dx = rstd * (g * w - mg - (x - shift - mu) * rstd * mgx);", fallback=_ln_backward_raw)
_LN_GRAD_XHAT = Elementwise(
    "layer_norm_grad_xhat", "T g, T x, T shift, T mu, T rstd", "T gx",
    "gx = g * (x - shift - mu) * rstd;",
    fallback=lambda g, x, shift, mu, rstd: g * ((x - shift - mu) * rstd))


class LayerNorm(Function):
    """y = (x - μ) / √(σ² + ε) · w + b over the last ``k`` axes; σ² computed
    two-pass (mean of squared deviations), after shifting each row by its first
    element, so rows with a large mean and a small spread (float32, mean 1e4,
    spread 1e-2) keep their digits. Inputs: x, then weight and bias if given.

    dx = r (ĝ - mean(ĝ) - x̂ mean(ĝ x̂)),  ĝ = g w,  r = 1/√(σ² + ε).
    Computed on the input viewed as (rows, n), n the size of the last k axes."""
    op_name = "layer_norm"

    def _rows(self, a):
        """``a`` (..., normalized dims) as (rows, n)."""
        n = math.prod(a.shape[a.ndim - self.k:])
        return a.reshape(math.prod(a.shape[:a.ndim - self.k]), n), n

    def forward(self, x, *affine):
        x2, n = self._rows(x)
        inv_n = 1.0 / n if n else 0.0
        # x - shift is exact for values close together (Sterbenz), and the mean of the
        # small differences has no large sum to round: y does not depend on the shift
        self.shift = x2[:, :1] if n else backend.xp_of(x).zeros((x2.shape[0], 1), x.dtype)  # (rows, 1)
        # backward recomputes x̂ from (shift, mean, rstd) rather than keeping a second
        # full-size array alive until then (PyTorch keeps the same three)
        w = affine[0].reshape(n) if self.has_weight else 1.0
        b = affine[-1].reshape(n) if self.has_bias else 0.0
        if not will_launch(x):           # off the GPU: one pass that keeps x - shift - μ
            xc = x2 - self.shift
            self.mean = xc.mean(axis=-1, keepdims=True)
            xc -= self.mean
            self.rstd = _RSQRT_EPS((xc * xc).mean(axis=-1, keepdims=True), self.eps)
            return _ln_affine(xc * self.rstd, w, b).reshape(x.shape)
        self.mean = _LN_MEAN(x2, self.shift, inv_n)             # (rows, 1)
        self.rstd = _RSQRT_EPS(_LN_VAR(x2, self.shift, self.mean, inv_n), self.eps)
        return _LN_NORMALIZE(x2, self.shift, self.mean, self.rstd, w, b).reshape(x.shape)

    def backward(self, g):
        x = self.inputs[0]
        axes = tuple(range(x.ndim - self.k, x.ndim))
        if not is_grad_enabled():   # first order: raw arrays, (rows, n)
            x2, n = self._rows(x.data)
            g2 = self._rows(g.data)[0]
            inv_n = 1.0 / n if n else 0.0
            w = self.inputs[1].data.reshape(n) if self.has_weight else 1.0
            pshape = x.shape[x.ndim - self.k:]
            if will_launch(x2):     # a GPU: three kernels, x̂ recomputed inside each
                mg = _LN_GRAD_MEAN(g2, w, inv_n)
                mgx = _LN_GRAD_XHAT_MEAN(g2, w, x2, self.shift, self.mean, self.rstd, inv_n)
                dx = _LN_BACKWARD(g2, w, x2, self.shift, self.mean, self.rstd, mg, mgx)
                gw = (_LN_GRAD_XHAT(g2, x2, self.shift, self.mean, self.rstd).sum(axis=0)
                      if self.has_weight else None)
            else:                   # elsewhere: x̂ once (half the time at GPT-medium sizes)
                xhat = x2 - self.shift
                xhat -= self.mean
                xhat *= self.rstd
                gh = g2 * w if self.has_weight else g2
                dx = gh - gh.mean(axis=-1, keepdims=True)
                dx -= xhat * (gh * xhat).mean(axis=-1, keepdims=True)
                dx *= self.rstd
                gw = (g2 * xhat).sum(axis=0) if self.has_weight else None
            grads = [Tensor._make(dx.reshape(x.shape), x._device)]
            if self.has_weight:
                grads.append(Tensor._make(gw.reshape(pshape), x._device))
            if self.has_bias:
                grads.append(Tensor._make(g2.sum(axis=0).reshape(pshape), x._device))
            return grads
        # recompute x̂ and r as Tensors of x, for higher derivatives
        shift = self.shift.reshape(x.shape[:x.ndim - self.k] + (1,) * self.k)
        xs = x - Tensor._make(shift, x._device)     # a constant: same function of x
        xc = xs - xs.mean(axis=axes, keepdims=True)
        rstd = ((xc * xc).mean(axis=axes, keepdims=True) + self.eps) ** -0.5
        xhat = xc * rstd
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
        if profile.active:          # Q Kᵀ and P V, dense: every (L, S) score, masked or not
            kt = k.swapaxes(-1, -2)
            profile.add_matmul(q, kt)
            profile.add_matmul(profile.matmul_shape(q, kt), v)
        s = (q @ k.swapaxes(-1, -2)) * q.dtype.type(self.scale)      # (..., L, S)
        if self.allowed is not None:
            s = xp.where(self.allowed, s, q.dtype.type(-xp.inf))
        self.p = _softmax_raw(s)                                       # (..., L, S)
        return self.p @ v

    def backward(self, g):
        q, k, v = self.inputs
        if is_grad_enabled():   # rebuild P from Tensors so the backward is differentiable
            s = (q @ k.swapaxes(-1, -2)) * self.scale
            if self.allowed is not None:
                from .elementwise import where
                s = where(Tensor._make(self.allowed, q._device), s, float("-inf"))
            p = softmax(s, axis=-1)
            gp = g @ v.swapaxes(-1, -2)
            gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True))
            return (gs @ k) * self.scale, (gs.swapaxes(-1, -2) @ q) * self.scale, p.swapaxes(-1, -2) @ g
        p, ga = self.p, g.data                    # first order: raw arrays, scale folded in
        vt, pt = v.data.swapaxes(-1, -2), p.swapaxes(-1, -2)   # (..., Ev, S), (..., S, L)
        gs = _softmax_last_backward_raw(ga @ vt, p, self.scale)  # dS (..., L, S)
        gst = gs.swapaxes(-1, -2)
        if profile.active:                        # dP = G Vᵀ, dQ = dS K, dK = dSᵀ Q, dV = Pᵀ G
            for a, b in ((ga, vt), (gs, k.data), (gst, q.data), (pt, ga)):
                profile.add_matmul(a, b)
        dev = g._device
        return (Tensor._make(gs @ k.data, dev), Tensor._make(gst @ q.data, dev),
                Tensor._make(pt @ ga, dev))


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


def _lstm_forward_raw(a, c, H, hc, act):
    """Fill hc (..., 2H) = [h', c'] and act (..., 4H) = [i, f, g, o] (activated)."""
    xp = backend.xp_of(a)
    half = a.dtype.type(0.5)
    xp.multiply(a, half, out=act)
    xp.tanh(act, out=act)
    act += 1
    act *= half                                          # σ(a) = (tanh(a/2) + 1) / 2, all gates
    xp.tanh(a[..., 2 * H:3 * H], out=act[..., 2 * H:3 * H])   # g's slot: tanh instead
    i, f, g, o = (act[..., k * H:(k + 1) * H] for k in range(4))
    c_next = hc[..., H:]
    xp.multiply(f, c, out=c_next)
    c_next += i * g
    h = hc[..., :H]
    xp.tanh(c_next, out=h)
    h *= o
    return hc, act


def _lstm_backward_raw(act, hc, grad_out, c, H, da, dc):
    """Fill da (..., 4H) and dc (..., H) from the saved activations and output."""
    xp = backend.xp_of(act)
    i, f, g, o = (act[..., k * H:(k + 1) * H] for k in range(4))
    t = xp.tanh(hc[..., H:])
    gh, gc = grad_out[..., :H], grad_out[..., H:]
    d = gc + gh * o * (1 - t * t)                        # dL/dc'
    da[..., :H] = d * g * i * (1 - i)
    da[..., H:2 * H] = d * c * f * (1 - f)
    da[..., 2 * H:3 * H] = d * i * (1 - g * g)
    da[..., 3 * H:] = gh * t * o * (1 - o)
    xp.multiply(d, f, out=dc)
    return da, dc


# The LSTM step as CUDA C, one thread per (row, unit): it reads the unit's four gate
# pre-activations, writes h', c' and the four activations (kept for backward). Flat indices
# into (..., 4H) and (..., 2H). Two kernels share each body: the single step, whose gate
# pre-activations come ready (a), and the step inside a whole sequence, which adds them up
# itself (gx_t + h W_hhᵀ + b_hh: two launches fewer per step).
_LSTM_STEP = """const ptrdiff_t j = i % H, r4 = (i / H) * 4 * H, r2 = (i / H) * 2 * H;
    const T ig = T(0.5) * (tanh(T(0.5) * ({a0})) + T(1));
    const T fg = T(0.5) * (tanh(T(0.5) * ({a1})) + T(1));
    const T gg = tanh({a2});
    const T og = T(0.5) * (tanh(T(0.5) * ({a3})) + T(1));
    const T cn = fg * c + ig * gg;
    hc[r2 + j] = og * tanh(cn);
    hc[r2 + H + j] = cn;
    act[r4 + j] = ig;
    act[r4 + H + j] = fg;
    act[r4 + 2 * H + j] = gg;
    act[r4 + 3 * H + j] = og;"""
_LSTM_STEP_BACKWARD = """const ptrdiff_t j = i % H, r4 = (i / H) * 4 * H, r2 = (i / H) * 2 * H;
    const T ig = act[r4 + j], fg = act[r4 + H + j], gg = act[r4 + 2 * H + j], og = act[r4 + 3 * H + j];
    const T t = tanh(hc[r2 + H + j]);
    const T gh = {gh};
    const T d = {gc} + gh * og * (T(1) - t * t);
    da[r4 + j] = d * gg * ig * (T(1) - ig);
    da[r4 + H + j] = d * c * fg * (T(1) - fg);
    da[r4 + 2 * H + j] = d * ig * (T(1) - gg * gg);
    da[r4 + 3 * H + j] = gh * t * og * (T(1) - og);
    dc = d * fg;"""


def _gates(pre: str) -> dict[str, str]:
    """The four gates' pre-activation expressions from one with ``{o}`` (gate k's offset)."""
    return {f"a{k}": pre.format(o=f"{k} * H") for k in range(4)}


_LSTM_FORWARD = Elementwise(
    "lstm_forward", "raw T a, T c, int32 H", "raw T hc, raw T act",
    _LSTM_STEP.format(**_gates("a[r4 + {o} + j]")), fallback=_lstm_forward_raw)
_LSTM_BACKWARD = Elementwise(
    "lstm_backward", "raw T act, raw T hc, raw T grad_out, T c, int32 H", "raw T da, T dc",
    _LSTM_STEP_BACKWARD.format(gh="grad_out[r2 + j]", gc="grad_out[r2 + H + j]"),
    fallback=_lstm_backward_raw)
_LSTM_SEQ_FORWARD = Elementwise(
    "lstm_seq_forward", "raw T gx, raw T hw, raw T b, T c, int32 H", "raw T hc, raw T act",
    _LSTM_STEP.format(**_gates("gx[r4 + {o} + j] + hw[r4 + {o} + j] + b[{o} + j]")),
    fallback=lambda gx, hw, b, c, H, hc, act: _lstm_forward_raw(gx + hw + b, c, H, hc, act))


def _lstm_seq_backward_raw(act, hc, grad_out, dh_next, dc_next, c, H, da, dc):
    g = grad_out.copy()                                  # [dh_t, dc_t] plus what step t+1 sent
    g[..., :H] += dh_next
    g[..., H:] += dc_next
    return _lstm_backward_raw(act, hc, g, c, H, da, dc)


_LSTM_SEQ_BACKWARD = Elementwise(
    "lstm_seq_backward", "raw T act, raw T hc, raw T grad_out, T dh_next, T dc_next, T c, int32 H",
    "raw T da, T dc",
    _LSTM_STEP_BACKWARD.format(gh="grad_out[r2 + j] + dh_next", gc="grad_out[r2 + H + j] + dc_next"),
    fallback=_lstm_seq_backward_raw)


class LSTMCellUpdate(Function):
    """The elementwise half of an LSTM step, one node instead of ten:

        i, f, g, o = σ(a_i), σ(a_f), tanh(a_g), σ(a_o)     gates a = W_ih x + b_ih + W_hh h + b_hh
        c' = f ⊙ c + i ⊙ g,   h' = o ⊙ tanh(c')

    Inputs: the pre-activations ``a`` (..., 4H) in PyTorch's gate order (i, f,
    g, o) and the cell state c (..., H). Output: concat(h', c') (..., 2H).
    Backward, with t = tanh(c'):  dc' = g_c + g_h ⊙ o ⊙ (1 - t²),
    da_i = dc' g i(1-i), da_f = dc' c f(1-f), da_g = dc' i (1-g²),
    da_o = g_h t o(1-o), dc = dc' f. Keeps the activated gates and the output;
    one CUDA kernel each way on a GPU."""
    op_name = "lstm_cell"

    def forward(self, a, c):
        xp = backend.xp_of(a)
        H = c.shape[-1]
        hc = xp.empty(a.shape[:-1] + (2 * H,), dtype=a.dtype)
        self.act = xp.empty(a.shape, dtype=a.dtype)
        _LSTM_FORWARD(xp.ascontiguousarray(a), c, H, hc, self.act)
        self.hc = hc
        return hc

    def backward(self, grad_out):
        a, c = self.inputs
        if is_grad_enabled():
            return _vjp_of(lstm_cell_reference, (a, c), grad_out)
        xp = a.xp
        H = c.shape[-1]
        da = xp.empty(a.shape, dtype=a.dtype)
        dc = xp.empty(c.shape, dtype=c.dtype)
        _LSTM_BACKWARD(self.act, self.hc, xp.ascontiguousarray(grad_out.data), c.data, H, da, dc)
        return Tensor._make(da, a._device), Tensor._make(dc, c._device)


def lstm_sequence_reference(gx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor,
                            b_hh: Tensor | None = None) -> Tensor:
    """The LSTM over a whole sequence from composite ops: (T, B, 2H) = [h_t, c_t] per step."""
    from .shape import stack
    H = c0.shape[-1]
    h, c, out = h0, c0, []
    for t in range(gx.shape[0]):
        hc = lstm_cell_reference(gx[t] + linear_reference(h, w_hh, b_hh), c)
        h, c = hc[..., :H], hc[..., H:]
        out.append(hc)
    return stack(out, axis=0)


class LSTMSequence(Function):
    """An LSTM layer's recurrence over a whole sequence, as one node:

        a_t = gx_t + W_hh h_{t-1} + b_hh,   (h_t, c_t) = the LSTM step of (a_t, c_{t-1})

    Inputs: gx (T, B, 4H) (the input projections W_ih x_t + b_ih of every step,
    one matrix product done by the caller), h0, c0 (B, H), W_hh (4H, H) and,
    if given, b_hh (4H,). Output: (T, B, 2H), [h_t, c_t] for every step.

    What the step-by-step graph does in ~8 nodes per step, this does in a
    Python loop over raw arrays (one product and one fused kernel per step),
    and backward through time is written by hand: per step, in reverse,
    the cell's backward kernel and dh_{t-1} = da_t W_hh; then the weight
    gradient of all steps as one product, dW_hh = Σ_t da_tᵀ h_{t-1}, as cuDNN
    does. Checked against the cell-by-cell graph in the tests."""
    op_name = "lstm_sequence"

    def forward(self, gx, h0, c0, w_hh, *b_hh):
        xp = backend.xp_of(gx)
        T, B, H = gx.shape[0], gx.shape[1], c0.shape[-1]
        ys = xp.empty((T, B, 2 * H), dtype=gx.dtype)                # [h_t, c_t]
        self.acts = xp.empty((T, B, 4 * H), dtype=gx.dtype)
        gx = xp.ascontiguousarray(gx)
        bias = b_hh[0] if b_hh else xp.zeros(4 * H, dtype=gx.dtype)
        hw = xp.empty((B, 4 * H), dtype=gx.dtype)                    # h_{t-1} W_hhᵀ
        h, c, wt = h0, c0, w_hh.T
        if profile.active:
            profile.add_matmul(h0, wt, times=T)                      # (B, H) @ (H, 4H) per step
        for t in range(T):
            xp.matmul(h, wt, out=hw)
            _LSTM_SEQ_FORWARD(gx[t], hw, bias, c, H, ys[t], self.acts[t])   # + gx_t + b_hh
            h, c = ys[t, :, :H], ys[t, :, H:]
        self.ys = ys
        return ys

    def backward(self, g):
        if is_grad_enabled():
            return _vjp_of(lstm_sequence_reference, self.inputs, g)
        gx, h0, c0, w_hh = self.inputs[:4]
        xp = gx.xp
        T, B, H = gx.shape[0], gx.shape[1], c0.shape[-1]
        ys, w = self.ys, w_hh.data
        gout = xp.ascontiguousarray(g.data)                          # (T, B, 2H): [dh_t, dc_t]
        da = xp.empty((T, B, 4 * H), dtype=gx.dtype)
        dc = xp.empty((B, H), dtype=gx.dtype)
        dh_next = xp.zeros((B, H), dtype=gx.dtype)                   # from step t+1
        dc_next = xp.zeros((B, H), dtype=gx.dtype)
        if profile.active:
            profile.add_matmul((B, 4 * H), w, times=T)               # dh_{t-1} = da_t W_hh per step
        for t in range(T - 1, -1, -1):
            c_prev = c0.data if t == 0 else ys[t - 1, :, H:]
            _LSTM_SEQ_BACKWARD(self.acts[t], ys[t], gout[t], dh_next, dc_next, c_prev, H, da[t], dc)
            xp.matmul(da[t], w, out=dh_next)                         # dh_{t-1} (B, H)
            dc_next, dc = dc, dc_next                                # reuse the two buffers
        h_prev = xp.concatenate([h0.data[None], ys[:-1, :, :H]], axis=0)   # (T, B, H)
        if profile.active:
            profile.add_matmul((4 * H, T * B), (T * B, H))
        dw = da.reshape(T * B, 4 * H).T @ h_prev.reshape(T * B, H)   # (4H, H)
        dev = g._device
        grads = [Tensor._make(da, dev), Tensor._make(dh_next, dev), Tensor._make(dc_next, dev),
                 Tensor._make(dw, dev)]
        if len(self.inputs) == 5:
            grads.append(Tensor._make(da.sum(axis=(0, 1)), dev))
        return grads


def gru_cell_reference(gx: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """The GRU state update from composite ops."""
    H = h.shape[-1]
    x_r, x_z, x_n = (gx[..., k * H:(k + 1) * H] for k in range(3))
    h_r, h_z, h_n = (gh[..., k * H:(k + 1) * H] for k in range(3))
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return n + z * (h - n)


def _gru_forward_raw(gx, gh, h, H, saved):
    """h' (..., H); fills saved (..., 4H) = [r, z, n, h_n]."""
    xp = backend.xp_of(gx)
    half = gx.dtype.type(0.5)
    rz = gx[..., :2 * H] + gh[..., :2 * H]
    xp.multiply(rz, half, out=rz)
    xp.tanh(rz, out=rz)
    rz += 1
    rz *= half                                           # σ = (tanh(a/2) + 1) / 2
    saved[..., :2 * H] = rz
    saved[..., 3 * H:] = gh[..., 2 * H:]
    r, z = rz[..., :H], rz[..., H:]
    n = saved[..., 2 * H:3 * H]
    xp.tanh(gx[..., 2 * H:] + r * gh[..., 2 * H:], out=n)
    return n + z * (h - n)


def _gru_backward_raw(saved, h, g, H, dgx, dgh):
    """Fill dgx, dgh (..., 3H) and return dh (..., H)."""
    r, z, n, hn = (saved[..., k * H:(k + 1) * H] for k in range(4))
    dn = g * (1 - z) * (1 - n * n)                       # through tanh: dL/d(pre-activation of n)
    dz = g * (h - n) * z * (1 - z)
    dr = dn * hn * r * (1 - r)
    dgx[..., :H] = dr
    dgx[..., H:2 * H] = dz
    dgx[..., 2 * H:] = dn
    dgh[..., :2 * H] = dgx[..., :2 * H]
    dgh[..., 2 * H:] = dn * r
    return g * z


# One thread per (row, unit), as the LSTM's: gate order r, z, n in (..., 3H)
_GRU_FORWARD = Elementwise(
    "gru_forward", "raw T gx, raw T gh, T h, int32 H", "T y, raw T saved",
    """const ptrdiff_t j = i % H, r3 = (i / H) * 3 * H, r4 = (i / H) * 4 * H;
    const T r = T(0.5) * (tanh(T(0.5) * (gx[r3 + j] + gh[r3 + j])) + T(1));
    const T z = T(0.5) * (tanh(T(0.5) * (gx[r3 + H + j] + gh[r3 + H + j])) + T(1));
    const T hn = gh[r3 + 2 * H + j];
    const T n = tanh(gx[r3 + 2 * H + j] + r * hn);
    y = n + z * (h - n);
    saved[r4 + j] = r;
    saved[r4 + H + j] = z;
    saved[r4 + 2 * H + j] = n;
    saved[r4 + 3 * H + j] = hn;""",
    fallback=lambda gx, gh, h, H, y, saved: (_gru_fill(y, _gru_forward_raw(gx, gh, h, H, saved)),
                                             saved))
_GRU_BACKWARD = Elementwise(
    "gru_backward", "raw T saved, T h, T g, int32 H", "raw T dgx, raw T dgh, T dh",
    """const ptrdiff_t j = i % H, r3 = (i / H) * 3 * H, r4 = (i / H) * 4 * H;
    const T r = saved[r4 + j], z = saved[r4 + H + j], n = saved[r4 + 2 * H + j];
    const T hn = saved[r4 + 3 * H + j];
    const T dn = g * (T(1) - z) * (T(1) - n * n);
    const T dz = g * (h - n) * z * (T(1) - z);
    const T dr = dn * hn * r * (T(1) - r);
    dgx[r3 + j] = dr;
    dgx[r3 + H + j] = dz;
    dgx[r3 + 2 * H + j] = dn;
    dgh[r3 + j] = dr;
    dgh[r3 + H + j] = dz;
    dgh[r3 + 2 * H + j] = dn * r;
    dh = g * z;""",
    fallback=lambda saved, h, g, H, dgx, dgh, dh: (dgx, dgh, _gru_fill(
        dh, _gru_backward_raw(saved, h, g, H, dgx, dgh))))


def _gru_fill(out, value):
    out[...] = value
    return out


class GRUCellUpdate(Function):
    """The elementwise half of a GRU step, one node instead of eleven:

        r = σ(x_r + h_r),  z = σ(x_z + h_z),  n = tanh(x_n + r ⊙ h_n),  h' = n + z ⊙ (h - n)

    Inputs: gx = W_ih x + b_ih and gh = W_hh h + b_hh, each (..., 3H) in
    PyTorch's gate order (r, z, n), and h (..., H). Backward, with
    dn = g (1 - z)(1 - n²):  d(x_n) = dn, d(h_n) = dn r, d(x_r) = d(h_r) = dn h_n r(1-r),
    d(x_z) = d(h_z) = g (h - n) z(1-z), dh = g z (plus what flows through gh).
    Keeps r, z, n and h_n; one CUDA kernel each way on a GPU."""
    op_name = "gru_cell"

    def forward(self, gx, gh, h):
        xp = backend.xp_of(gx)
        H = h.shape[-1]
        y = xp.empty(h.shape, dtype=h.dtype)
        self.saved = xp.empty(h.shape[:-1] + (4 * H,), dtype=h.dtype)
        _GRU_FORWARD(xp.ascontiguousarray(gx), xp.ascontiguousarray(gh), h, H, y, self.saved)
        return y

    def backward(self, g):
        gx, gh, h = self.inputs
        if is_grad_enabled():
            return _vjp_of(gru_cell_reference, (gx, gh, h), g)
        xp = gx.xp
        H = h.shape[-1]
        dgx = xp.empty(gx.shape, dtype=gx.dtype)
        dgh = xp.empty(gh.shape, dtype=gh.dtype)
        dh = xp.empty(h.shape, dtype=h.dtype)
        _GRU_BACKWARD(self.saved, h.data, g.data, H, dgx, dgh, dh)
        dev = g._device
        return Tensor._make(dgx, dev), Tensor._make(dgh, dev), Tensor._make(dh, dev)


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
        if profile.active:
            profile.add_matmul(x, w.T)                   # (..., in) @ (in, out)
        y = x @ w.T
        return y + b[0] if b else y

    def backward(self, g):
        if is_grad_enabled():
            return _vjp_of(linear_reference, self.inputs, g)
        x, w = self.inputs[0], self.inputs[1]
        out, inp = w.shape
        rows = math.prod(g.shape[:-1])          # explicit, so empty batches reshape too
        g2 = g.data.reshape(rows, out)
        if profile.active:                      # dx = G W (..., out) @ (out, in), dW = Gᵀ x
            if x.requires_grad:
                profile.add_matmul(g.data, w.data)
            if w.requires_grad:
                profile.add_matmul((out, rows), (rows, inp))
        grads = [Tensor._make(g.data @ w.data, g._device) if x.requires_grad else None]
        grads.append(Tensor._make(g2.T @ x.data.reshape(rows, inp), g._device)
                     if w.requires_grad else None)
        if len(self.inputs) == 3:
            grads.append(Tensor._make(g2.sum(axis=0), g._device))
        return grads
