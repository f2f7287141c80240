"""Softmax, log-softmax and cross-entropy: one graph node each, with a
numerically careful forward and a hand-written backward.

The readable ops come first; their kernels (CUDA C bodies beside their
NumPy fallbacks, see ``minigrad/kernels.py``) and raw-array helpers last.
``minigrad.functional`` is the user-facing namespace for them.
"""

from __future__ import annotations

from .. import backend, cpu
from ..autograd import Function
from ..kernels import Elementwise, Reduction, will_launch
from ..tensor import Tensor
from ._lift import normalize_axes, require_float


class Softmax(Function):
    """s = exp(x - max) / Σ exp(x - max);  dx = s ⊙ (g - Σ g ⊙ s).

    A row where every entry is -inf (fully masked) gives zeros, not NaN."""
    op_name = "softmax"

    def forward(self, x):
        return _softmax_raw(x, self.axis)

    def backward(self, g):
        s = self.output
        gs = g * s
        return gs - s * gs.sum(axis=self.axis, keepdims=True)

    def backward_raw(self, g):
        s = self.output.data
        if self.axis != s.ndim - 1:
            return None                             # the rows are not contiguous: use backward
        return _softmax_last_backward_raw(g, s)     # two kernels on a GPU


class LogSoftmax(Function):
    """y = x - logsumexp(x);  dx = g - softmax(x) Σ g."""
    op_name = "log_softmax"

    def forward(self, x):
        xp = backend.xp_of(x)
        shifted = x - _stable_max(x, self.axis)
        return shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))

    def backward(self, g):
        return g - self.output.exp() * g.sum(axis=self.axis, keepdims=True)


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
        self.m, self.s = _row_max_sum_exp(x)                     # (N, 1) each
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
            # every target ignored: the loss is NaN (0/0, as in PyTorch) but the gradient
            # is zero, not NaN: no row counts, so no row moves (hence the max with 1)
            count = backend.xp_of(self.count).maximum(self.count, 1)
            w = valid * (g / Tensor._make(count, g._device))
        return w.reshape((-1, 1))

    def backward(self, g):
        x = self.inputs[0]
        c = x.shape[1]
        eps = self.label_smoothing
        q = _smoothed_onehot(x.data, self.safe_t, eps / c, 1 - eps + eps / c)
        return (softmax(x, axis=1) - Tensor._make(q, x._device)) * self._weights(g)

    def backward_raw(self, g):
        x = self.inputs[0]
        c = x.shape[1]
        eps = self.label_smoothing
        w = self._weights(Tensor._make(g, x._device)).data
        return _CROSS_ENTROPY_BACKWARD(x.data, self.m, self.s, self.safe_t, w, eps / c,   # one kernel
                                       1 - eps + eps / c, c)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    require_float(x, "softmax")
    return Softmax.apply(x, axis=normalize_axes(axis, x.ndim, "softmax"))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    require_float(x, "log_softmax")
    return LogSoftmax.apply(x, axis=normalize_axes(axis, x.ndim, "log_softmax"))


__all__: list[str] = []     # user-facing in minigrad.functional (softmax, log_softmax, cross_entropy)

METHODS = {"softmax": softmax, "log_softmax": log_softmax}


# --------------------------------------------------------------------------- kernels and raw helpers

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


def _row_max_sum_exp(x):
    """(m, s) of (N, C) logits: the row max (``_row_max``) and Σ_c e^(x_c - m), m taken as 0
    when it is not finite; on the CPU one compiled pass per row, if numba is installed."""
    loop = cpu.kernel("max_sum_exp", x)
    if loop is not None:
        out = loop(x)
        if out is not NotImplemented:
            return out
    m = _row_max(x)
    return m, _SUM_EXP(x, m)


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


def _softmax_raw(x, axis: int = -1, allowed=None, scale: float = 1.0):
    """softmax over ``axis`` of ``scale · x``, a raw array, with -inf where the bool array
    ``allowed`` (broadcasting to x, or None) is False; fully masked rows give zeros.
    On the CPU with numba, over the last axis: mask, scale and softmax in one pass."""
    last = axis in (-1, x.ndim - 1)
    if last and x.ndim:
        loop = cpu.kernel("softmax_rows", x)
        if loop is not None:
            out = loop(x, allowed, scale)
            if out is not NotImplemented:
                return out
    if scale != 1.0:
        x = x * x.dtype.type(scale)
    if allowed is not None:
        x = backend.xp_of(x).where(allowed, x, x.dtype.type(-backend.xp_of(x).inf))
    if last and will_launch(x):   # a GPU: three kernels, exp computed twice
        m = _row_max(x)
        return _SOFTMAX_NORMALIZE(x, m, _SUM_EXP(x, m))
    xp = backend.xp_of(x)
    e = xp.exp(x - _stable_max(x, axis))                # elsewhere: one exp, kept
    s = e.sum(axis=axis, keepdims=True)
    e /= xp.where(s == 0, xp.ones_like(s), s)
    return e


def _softmax_last_backward_raw(g, y, scale=1.0, out=None):
    """scale · y ⊙ (g - Σ_j g ⊙ y) over the last axis, on raw arrays; ``out`` (an array
    the caller owns, g itself say) may receive the result on the CPU."""
    loop = cpu.kernel("softmax_backward_rows", g, y)
    if loop is not None:
        res = loop(g, y, scale, out)
        if res is not NotImplemented:
            return res
    return _SOFTMAX_BACKWARD(g, y, _ROW_DOT(g, y), scale)


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
    fallback=_cross_entropy_backward_raw, preamble=_FINITE_OR_ZERO, cpu_kernel="cross_entropy_backward")
