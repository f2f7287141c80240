"""Layer normalization as one graph node: a two-pass, shifted forward and a
hand-written backward.

The readable op comes first; its kernels (CUDA C bodies beside their NumPy
fallbacks) and raw-array helpers last. ``minigrad.functional.layer_norm``
checks the arguments and applies it.
"""

from __future__ import annotations

import math

from .. import backend, cpu
from ..autograd import Function
from ..kernels import Elementwise, Reduction, will_launch
from ..tensor import Tensor

__all__: list[str] = []     # user-facing in minigrad.functional


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
        loop = cpu.kernel("layer_norm_forward", x2, *affine)
        if loop is not None:             # the CPU with numba: one compiled pass per row
            out = loop(x2, affine[0] if self.has_weight else None, affine[-1] if self.has_bias else None,
                       self.eps)
            if out is not NotImplemented:
                y, self.shift, self.mean, self.rstd = out
                return y.reshape(x.shape)
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

    def backward_raw(self, g):
        """The first order on raw arrays, (rows, n)."""
        x = self.inputs[0]
        x2, n = self._rows(x.data)
        g2 = self._rows(g)[0]
        inv_n = 1.0 / n if n else 0.0
        w = self.inputs[1].data.reshape(n) if self.has_weight else 1.0
        pshape = x.shape[x.ndim - self.k:]
        loop = cpu.kernel("layer_norm_backward", g2, x2, self.shift)
        out = NotImplemented if loop is None else loop(
            g2, x2, self.shift, self.mean, self.rstd, w if self.has_weight else None)
        if out is not NotImplemented:   # the CPU with numba: one compiled pass per row
            dx, gw, gb = out
            grads = [dx.reshape(x.shape)]
            if self.has_weight:
                grads.append(gw.reshape(pshape))
            if self.has_bias:
                grads.append(gb.reshape(pshape))
            return grads
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
        grads = [dx.reshape(x.shape)]
        if self.has_weight:
            grads.append(gw.reshape(pshape))
        if self.has_bias:
            grads.append(g2.sum(axis=0).reshape(pshape))
        return grads


# --------------------------------------------------------------------------- kernels and raw helpers

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
