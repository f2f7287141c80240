"""The fused ops' bodies as compiled CPU loops (numba), beside their CUDA kernels.

Each function here does in one pass what the op's NumPy code does in several:
an elementwise kernel is a loop over the elements, a row kernel (softmax,
LayerNorm, cross-entropy) a loop over rows whose inner loops see the row in
cache. They take and return NumPy arrays; ``minigrad.cpu.kernel`` hands them
to the ops, and the tests compare each one with the op's NumPy code. The
Python wrapper of each kernel (no leading underscore) checks the layout and
allocates the outputs; it returns ``NotImplemented`` for a layout it was not
written for, and the op's NumPy code runs instead.

Why own ``exp`` and ``tanh``: LLVM, numba's compiler, turns a loop of
arithmetic into SIMD code (8 or 16 float32 lanes at a time), but a call to
the C library's ``expf`` or ``tanhf`` stays one element at a time, and that
measured slower than NumPy's own SIMD ufuncs (benchmarks/cpu_kernels.py). So
in float32 ``exp`` and ``tanh`` are written as arithmetic, the way vectorised
math libraries compute them: ``exp`` by range reduction (e^x = 2^n e^r, with
|r| ≤ ln 2 / 2) and a polynomial for e^r; ``tanh`` as a ratio of two
polynomials (the one Eigen uses). Both are within 5 units in the last place
of the exact value; ``erfc``, for the exact GELU, within 1e-6 relative where
GELU needs it (tests/minigrad/test_cpu_kernels.py measures them). In float64,
where minigrad's use is checking gradients, not speed, the loops call the C
library's exact functions.

fastmath: the loops may reassociate sums and fuse multiply-adds (what makes
a row sum vectorise), but they do not assume that NaN and infinity never occur:
a NaN in stays a NaN out, and a -inf score (a masked key) gives a weight of 0.
"""

from __future__ import annotations

import math
import types as types_

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from . import _threads  # [n]: the loops' thread count, one list shared with minigrad.cpu

#: LLVM's fast-math flags, less 'nnan' and 'ninf' (NaN and ±inf must stay correct)
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def _jit(fn=None, *, strict: bool = False):
    """A loop, compiled lazily twice: serial (one thread, the default) and parallel
    (``prange`` spread over threads); ``set_num_threads`` picks. ``strict``: no fast-math
    at all, for LayerNorm, whose (x - shift) - mean must not become x - (shift + mean)
    (LLVM's fast-math may reassociate it, rounding shift + mean: the digits the shift is
    there to keep; its sums then run in order, one element after another)."""
    if fn is None:
        return lambda f: _Loop(f, strict)
    return _Loop(fn, strict)


class _Loop:
    def __init__(self, fn, strict: bool = False):
        self.fn = fn
        self.fastmath = False if strict else _FASTMATH
        self.builds = {}

    def __call__(self, *args):
        parallel = _threads[0] > 1          # minigrad.cpu.set_num_threads sets it
        build = self.builds.get(parallel)
        if build is None:
            fn = self.fn
            if parallel:    # its own name, so that the two builds never share a cache file
                fn = types_.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel",
                                         fn.__defaults__, fn.__closure__)
                fn.__qualname__ = fn.__name__
            build = self.builds[parallel] = njit(fn, fastmath=self.fastmath, error_model="numpy",
                                                 cache=True, parallel=parallel, nogil=True)
        return build(*args)


# --------------------------------------------------------------------------- exp, tanh, erfc

def fexp(x):
    """e^x; in a compiled loop: float32 by arithmetic (SIMD), float64 by the C library."""
    return np.exp(x)


def ftanh(x):
    return np.tanh(x)


def ferfc(x):
    return math.erfc(x)


def _exp32(x):
    f = np.float32
    # e^x = 2^n · e^r with n = round(x / ln 2) and r = x - n ln 2 (ln 2 in two parts, so
    # that n ln 2 is exact); e^r by its Taylor-like polynomial of degree 7 (Cephes' expf)
    n = np.floor(x * f(1.44269504088896341) + f(0.5))
    n = f(-127.0) if n < f(-127.0) else n           # clamp (NaN compares false: stays NaN)
    n = f(128.0) if n > f(128.0) else n
    r = x - n * f(0.693359375)
    r = r - n * f(-2.12194440e-4)
    p = f(1.9875691500e-4)
    p = p * r + f(1.3981999507e-3)
    p = p * r + f(8.3334519073e-3)
    p = p * r + f(4.1665795894e-2)
    p = p * r + f(1.6666665459e-1)
    p = p * r + f(5.0000001201e-1)
    p = p * r * r + r + f(1.0)
    # p · 2^n by adding n to p's exponent field (an integer add on its bits: exact, and out of
    # reach of fast-math's reassociation); right wherever e^x is a normal float32, and the
    # two ends are set apart below
    y = np.int32(np.float32(p).view(np.int32) + (np.int32(n) << np.int32(23))).view(np.float32)
    y = f(np.inf) if x > f(88.72283935546875) else y
    y = f(0.0) if x < f(-87.33654022216797) else y    # below: subnormal, flushed to 0
    return x if x != x else y                          # NaN in, NaN out


def _tanh32(x):
    f = np.float32
    # beyond ±7.9, tanh is ±1 to float32's precision; inside, an odd polynomial of degree 13
    # over an even one of degree 6 (Eigen's ptanh_float; maximum error about 2 ulp)
    c = f(7.90531110763549805)
    z = -c if x < -c else x
    z = c if z > c else z
    x2 = z * z
    p = f(-2.76076847742355e-16)
    p = p * x2 + f(2.00018790482477e-13)
    p = p * x2 + f(-8.60467152213735e-11)
    p = p * x2 + f(5.12229709037114e-08)
    p = p * x2 + f(1.48572235717979e-05)
    p = p * x2 + f(6.37261928875436e-04)
    p = p * x2 + f(4.89352455891786e-03)
    q = f(1.19825839466702e-06)
    q = q * x2 + f(1.18534705686654e-04)
    q = q * x2 + f(2.26843463243900e-03)
    q = q * x2 + f(4.89352518554385e-03)
    y = z * p / q
    y = f(1.0) if x > f(9.0) else y                 # the ratio ends 2 ulp short of ±1
    return f(-1.0) if x < f(-9.0) else y


def _erfc32(x):
    f = np.float32
    # Numerical Recipes' erfcc: a Chebyshev fit with relative error below 1.2e-7 everywhere
    z = abs(x)
    t = f(1.0) / (f(1.0) + f(0.5) * z)
    p = f(0.17087277)
    for c in (-0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806, 0.09678418,
              0.37409196, 1.00002368, -1.26551223):
        p = p * t + f(c)
    r = t * fexp(-z * z + p)
    return f(2.0) - r if x < f(0.0) else r


@overload(fexp, fastmath=_FASTMATH)
def _fexp(x):
    return _exp32 if x == types.float32 else (lambda x: np.exp(x))


@overload(ftanh, fastmath=_FASTMATH)
def _ftanh(x):
    return _tanh32 if x == types.float32 else (lambda x: np.tanh(x))


@overload(ferfc, inline="always", fastmath=_FASTMATH)
def _ferfc(x):
    return _erfc32 if x == types.float32 else (lambda x: math.erfc(x))


@_jit
def _map_exp(x, y):          # for the tests: the loops' exp, tanh and erfc one by one
    for i in prange(x.size):
        y[i] = fexp(x[i])


@_jit
def _map_tanh(x, y):
    for i in prange(x.size):
        y[i] = ftanh(x[i])


@_jit
def _map_erfc(x, y):
    for i in prange(x.size):
        y[i] = ferfc(x[i])


def map_math(name: str, x: np.ndarray) -> np.ndarray:
    """``exp``, ``tanh`` or ``erfc`` as the compiled loops compute them, elementwise."""
    x = _c(x)
    y = np.empty_like(x)
    {"exp": _map_exp, "tanh": _map_tanh, "erfc": _map_erfc}[name](x.reshape(-1), y.reshape(-1))
    return y


# --------------------------------------------------------------------------- layout helpers

def _c(a):
    """``a`` as a C-contiguous NumPy array, copied only if it is not (unlike
    ``np.ascontiguousarray``, a 0-d array stays 0-d)."""
    a = np.asarray(a)
    return a if a.flags.c_contiguous else a.copy(order="C")


def _flat(*arrays):
    """1-D C-contiguous views of same-shape arrays (copies where strided), or None."""
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        return None
    return [_c(a).reshape(-1) for a in arrays]


def _column(a, rows: int):
    """A (rows, 1) column (or anything of ``rows`` elements) as a 1-D contiguous array."""
    return _c(a).reshape(rows) if a.size == rows else None


# --------------------------------------------------------------------------- GELU

@_jit
def _gelu_tanh(x, y):
    T = x.dtype.type
    for i in prange(x.size):
        v = x[i]
        y[i] = T(0.5) * v * (T(1) + ftanh(T(0.7978845608028654) * (v + T(0.044715) * v * v * v)))


@_jit
def _gelu_tanh_backward(x, g, dx):
    T = x.dtype.type
    for i in prange(x.size):
        v = x[i]
        t = ftanh(T(0.7978845608028654) * (v + T(0.044715) * v * v * v))
        du = T(0.7978845608028654) * (T(1) + T(3 * 0.044715) * v * v)
        dx[i] = g[i] * (T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du)


@_jit
def _gelu_exact(x, y):
    T = x.dtype.type
    for i in prange(x.size):
        v = x[i]
        y[i] = T(0.5) * v * ferfc(-v * T(0.7071067811865476))      # x Φ(x), Φ(x) = erfc(-x/√2)/2


@_jit
def _gelu_exact_backward(x, g, dx):
    T = x.dtype.type
    for i in prange(x.size):
        v = x[i]
        cdf = T(0.5) * ferfc(-v * T(0.7071067811865476))
        dx[i] = g[i] * (cdf + v * T(0.3989422804014327) * fexp(T(-0.5) * v * v))


def _unary(loop, x):
    x = _c(x)
    y = np.empty_like(x)
    loop(x.reshape(-1), y.reshape(-1))
    return y


def _binary(loop, x, g):
    flat = _flat(x, g)
    if flat is None:
        return NotImplemented
    dx = np.empty(x.shape, x.dtype)
    loop(*flat, dx.reshape(-1))
    return dx


def gelu_tanh(x):
    return _unary(_gelu_tanh, x)


def gelu_tanh_backward(x, g):
    return _binary(_gelu_tanh_backward, x, g)


def gelu_exact(x):
    return _unary(_gelu_exact, x)


def gelu_exact_backward(x, g):
    return _binary(_gelu_exact_backward, x, g)


# --------------------------------------------------------------------------- softmax rows

@_jit
def _softmax_rows(x, allowed, masked, scale, y):
    """y[r] = softmax(scale · x[r]) with, if ``masked``, x[r, j] = -inf where not
    allowed[r % L, j]; a row with nothing allowed (or all -inf) gives zeros."""
    T = x.dtype.type
    rows, n = x.shape
    L = allowed.shape[0]
    for r in prange(rows):
        m = T(-np.inf)
        if masked:      # pass 1: the allowed scores, then their max (in two loops: with
            a = allowed[r % L]                   # the mask's test inside, the max ran 2x slower)
            for j in range(n):
                y[r, j] = x[r, j] * scale if a[j] else T(-np.inf)
            for j in range(n):
                m = y[r, j] if y[r, j] > m else m
        else:
            for j in range(n):
                s = x[r, j] * scale
                y[r, j] = s
                m = s if s > m else m
        shift = m if m > T(-np.inf) else T(0)   # all -inf: shift by 0, every e^s is 0
        total = T(0)
        for j in range(n):                       # pass 2: e^(s - max) and their sum
            e = fexp(y[r, j] - shift)
            y[r, j] = e
            total += e
        inv = T(0) if total == T(0) else T(1) / total
        for j in range(n):                       # pass 3: normalise (the row is in cache)
            y[r, j] *= inv


def softmax_rows(x, allowed=None, scale=1.0):
    """softmax over the last axis of ``x`` (..., n) of ``scale · x``, where ``allowed``
    (None, or a bool array broadcasting to x whose own shape is at most (L, n) for
    x's last two dims) is False the score is -inf."""
    n = x.shape[-1]
    x2 = _c(x).reshape(-1, n)
    if allowed is None:
        allow2, masked = np.ones((1, 1), np.bool_), False
    else:
        a = np.asarray(allowed)
        if a.dtype != np.bool_ or a.ndim > x.ndim or any(d != 1 for d in a.shape[:-2]):
            return NotImplemented                # a per-batch mask: the NumPy code handles it
        a2 = a.reshape(a.shape[-2:] if a.ndim >= 2 else (1,) + a.shape)
        L = x.shape[-2] if x.ndim >= 2 else 1
        if a2.shape[0] not in (1, L) or a2.shape[1] not in (1, n):
            return NotImplemented
        allow2, masked = _c(np.broadcast_to(a2, (L, n))), True    # a copy only if it broadcasts
    y = np.empty(x2.shape, x.dtype)
    if x2.size:
        _softmax_rows(x2, allow2, masked, x.dtype.type(scale), y)
    return y.reshape(x.shape)


@_jit
def _softmax_backward_rows(g, y, scale, dx):
    T = g.dtype.type
    rows, n = g.shape
    for r in prange(rows):
        d = T(0)
        for j in range(n):
            d += g[r, j] * y[r, j]
        for j in range(n):
            dx[r, j] = scale * y[r, j] * (g[r, j] - d)


def softmax_backward_rows(g, y, scale=1.0, out=None):
    """scale · y ⊙ (g - Σ_j g ⊙ y) over the last axis; ``out`` may be g (in place)."""
    if g.shape != y.shape:
        return NotImplemented
    n = g.shape[-1]
    g2, y2 = (_c(a).reshape(-1, n) for a in (g, y))
    if out is None or not out.flags.c_contiguous or out.shape != g.shape:
        out = np.empty(g.shape, g.dtype)
    if g.size:
        _softmax_backward_rows(g2, y2, g.dtype.type(scale), out.reshape(-1, n))
    return out


# --------------------------------------------------------------------------- cross-entropy rows

@_jit
def _max_sum_exp(x, m, s):
    T = x.dtype.type
    rows, n = x.shape
    for r in prange(rows):
        mx = T(-np.inf)
        for j in range(n):
            mx = x[r, j] if x[r, j] > mx else mx
        shift = mx if mx > T(-np.inf) and mx < T(np.inf) else T(0)
        total = T(0)
        for j in range(n):
            total += fexp(x[r, j] - shift)
        m[r] = mx
        s[r] = total


def max_sum_exp(x):
    """(m, s), each (rows, 1): each row's max, and Σ e^(x - m) (m taken as 0 when it is
    not finite), over the last axis of (rows, n) logits: what cross-entropy keeps."""
    rows, n = x.shape
    if n == 0:
        return NotImplemented
    x = _c(x)
    m, s = np.empty(rows, x.dtype), np.empty(rows, x.dtype)
    _max_sum_exp(x, m, s)
    return m.reshape(rows, 1), s.reshape(rows, 1)


@_jit
def _cross_entropy_backward(x, m, s, t, w, off, on, dx):
    T = x.dtype.type
    rows, n = x.shape
    for r in prange(rows):
        shift = m[r] if m[r] > T(-np.inf) and m[r] < T(np.inf) else T(0)
        inv = T(1) / s[r]
        for j in range(n):
            q = on if j == t[r] else off
            dx[r, j] = w[r] * (fexp(x[r, j] - shift) * inv - q)


def cross_entropy_backward(x, m, s, t, w, off, on, C):
    """dx = w_row (softmax(x) - q), q the smoothed one-hot (``on`` at each row's target
    t, ``off`` elsewhere), from the m and s of ``max_sum_exp``."""
    if x.ndim != 2:
        return NotImplemented
    rows = x.shape[0]
    cols = [_column(a, rows) for a in (m, s, w)]
    if any(c is None for c in cols) or t.size != rows:
        return NotImplemented
    dx = np.empty(x.shape, x.dtype)
    T = x.dtype.type
    _cross_entropy_backward(_c(x), *cols[:2],
                            _c(t).reshape(rows).astype(np.int64, copy=False),
                            cols[2], T(off), T(on), dx)
    return dx


# --------------------------------------------------------------------------- LayerNorm rows

@njit(error_model="numpy", cache=True)
def _sum8(u, v):
    """Σ_j u_j (v None) or Σ_j u_j v_j over 1-D arrays, as eight interleaved running
    sums added up at the end. Without fast-math (LayerNorm's loops, see ``_jit``) LLVM
    keeps one running sum in order, an element at a time; eight independent sums are
    the same kind of additions, and it runs them as one 8-lane SIMD add per step."""
    T = u.dtype.type
    n = u.size
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = T(0)
    j = 0
    while j + 8 <= n:
        if v is None:                           # decided when compiling, not per element
            s0 += u[j]
            s1 += u[j + 1]
            s2 += u[j + 2]
            s3 += u[j + 3]
            s4 += u[j + 4]
            s5 += u[j + 5]
            s6 += u[j + 6]
            s7 += u[j + 7]
        else:
            s0 += u[j] * v[j]
            s1 += u[j + 1] * v[j + 1]
            s2 += u[j + 2] * v[j + 2]
            s3 += u[j + 3] * v[j + 3]
            s4 += u[j + 4] * v[j + 4]
            s5 += u[j + 5] * v[j + 5]
            s6 += u[j + 6] * v[j + 6]
            s7 += u[j + 7] * v[j + 7]
        j += 8
    s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    for k in range(j, n):
        s += u[k] if v is None else u[k] * v[k]
    return s


@_jit(strict=True)
def _layer_norm_forward(x, w, b, eps, y, shift, mean, rstd):
    """Per row: shift by the first element, two-pass mean and variance, normalise,
    then ⊙ w + b (w, b of size 0: none). y holds the centred row on the way."""
    T = x.dtype.type
    rows, n = x.shape
    has_w, has_b = w.size > 0, b.size > 0
    inv_n = T(1) / T(n)
    for r in prange(rows):
        sh = x[r, 0]
        yr = y[r]
        for j in range(n):
            yr[j] = x[r, j] - sh
        mu = _sum8(yr, None) * inv_n
        for j in range(n):
            yr[j] = yr[j] - mu                  # (x - shift) - mean, as the NumPy code
        rs = T(1) / np.sqrt(_sum8(yr, yr) * inv_n + eps)
        for j in range(n):
            v = yr[j] * rs
            if has_w:
                v *= w[j]
            if has_b:
                v += b[j]
            yr[j] = v
        shift[r], mean[r], rstd[r] = sh, mu, rs


def layer_norm_forward(x2, w, b, eps):
    """(y, shift, mean, rstd) of LayerNorm over the rows of x2 (rows, n), n ≥ 1; w and b
    (n,) arrays or None."""
    rows, n = x2.shape
    if n == 0:
        return NotImplemented
    x2 = _c(x2)
    T = x2.dtype.type
    empty = np.empty(0, x2.dtype)
    w = empty if w is None else _c(w).reshape(n)
    b = empty if b is None else _c(b).reshape(n)
    y = np.empty_like(x2)
    shift, mean, rstd = (np.empty((rows, 1), x2.dtype) for _ in range(3))
    _layer_norm_forward(x2, w, b, T(eps), y, shift.reshape(rows), mean.reshape(rows), rstd.reshape(rows))
    return y, shift, mean, rstd


@_jit(strict=True)
def _layer_norm_backward(g, x, shift, mean, rstd, w, blocks, dx, gw, gb, gh):
    """dx = r (ĝ - mean ĝ - x̂ mean(ĝ x̂)), ĝ = g w; and each block of rows' Σ g x̂ and
    Σ g in its own row of gw and gb (summed afterwards: no two threads write one sum).
    On the way, dx[r] holds x̂ and the block's row of ``gh`` holds ĝ."""
    T = x.dtype.type
    rows, n = x.shape
    has_w = w.size > 0
    inv_n = T(1) / T(n)
    per = (rows + blocks - 1) // blocks
    for k in prange(blocks):
        ghk, gwk, gbk = gh[k], gw[k], gb[k]
        for r in range(k * per, min(rows, (k + 1) * per)):
            sh, mu, rs = shift[r], mean[r], rstd[r]
            xr, gr, xh = x[r], g[r], dx[r]
            for j in range(n):
                xh[j] = (xr[j] - sh - mu) * rs
                ghk[j] = gr[j] * w[j] if has_w else gr[j]
                gwk[j] += gr[j] * xh[j]
                gbk[j] += gr[j]
            a = _sum8(ghk, None) * inv_n
            c = _sum8(ghk, xh) * inv_n
            for j in range(n):
                xh[j] = rs * (ghk[j] - a - xh[j] * c)


def layer_norm_backward(g2, x2, shift, mean, rstd, w):
    """(dx, Σ_rows g x̂, Σ_rows g) for LayerNorm over the rows of x2 (rows, n)."""
    rows, n = x2.shape
    if n == 0 or g2.shape != x2.shape:
        return NotImplemented
    g2, x2 = _c(g2), _c(x2)
    w = np.empty(0, x2.dtype) if w is None else _c(w).reshape(n)
    blocks = max(1, min(_threads[0], rows))
    dx = np.empty_like(x2)
    gw = np.zeros((blocks, n), x2.dtype)
    gb = np.zeros((blocks, n), x2.dtype)
    gh = np.empty((blocks, n), x2.dtype)                # each block's ĝ row, scratch
    _layer_norm_backward(g2, x2, shift.reshape(rows), mean.reshape(rows), rstd.reshape(rows), w, blocks,
                         dx, gw, gb, gh)
    return dx, gw.sum(axis=0), gb.sum(axis=0)


# --------------------------------------------------------------------------- Adam

@_jit
def _adam_step(g, lr, t, decoupled_wd, l2, beta1, beta2, eps, p, m, v):
    T = p.dtype.type
    step = T(lr / (1.0 - beta1 ** t))            # the bias corrections in float64, once
    c2 = T(1.0 / math.sqrt(1.0 - beta2 ** t))
    decay = T(1.0 - lr * decoupled_wd)
    b1, b2, l2_, eps_ = T(beta1), T(beta2), T(l2), T(eps)
    for i in prange(p.size):
        gi = g[i] + l2_ * p[i]
        pi = p[i] * decay
        mi = b1 * m[i] + (T(1) - b1) * gi
        vi = b2 * v[i] + (T(1) - b2) * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = pi - step * (mi / (np.sqrt(vi) * c2 + eps_))


def adam_step(g, lr, t, decoupled_wd, l2, beta1, beta2, eps, p, m, v):
    """One Adam(W) step in place on p, m, v, as the op's NumPy code does it."""
    if not (p.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous) or g.shape != p.shape:
        return NotImplemented
    _adam_step(_c(g).reshape(-1), float(lr), float(t), float(decoupled_wd), float(l2),
               float(beta1), float(beta2), float(eps), p.reshape(-1), m.reshape(-1), v.reshape(-1))
    return p, m, v


# --------------------------------------------------------------------------- LSTM and GRU steps

@njit(inline="always")
def _sigmoid(T, a):
    return T(0.5) * (ftanh(T(0.5) * a) + T(1))       # as the NumPy code: (tanh(a/2) + 1) / 2


@_jit
def _lstm_step(a, hw, b, summed, c, hc, act):
    """Gate pre-activations a (+ hw + b when ``summed``), (B, 4H) in the order i, f, g, o;
    writes hc = [h', c'] (B, 2H) and the activations act (B, 4H). One inner loop per gate
    and per output, each reading and writing few arrays: LLVM vectorises a loop only
    when it can check cheaply that its stores overlap none of its loads."""
    B, H = c.shape
    T = a.dtype.type
    for r in prange(B):
        for k in range(4):                      # the gates: σ for i, f, o; tanh for g
            o = k * H
            if summed:
                for j in range(H):
                    act[r, o + j] = a[r, o + j] + hw[r, o + j] + b[o + j]
            else:
                for j in range(H):
                    act[r, o + j] = a[r, o + j]
            if k == 2:
                for j in range(H):
                    act[r, o + j] = ftanh(act[r, o + j])
            else:
                for j in range(H):
                    act[r, o + j] = _sigmoid(T, act[r, o + j])
        for j in range(H):                      # c' = f c + i g
            hc[r, H + j] = act[r, H + j] * c[r, j] + act[r, j] * act[r, 2 * H + j]
        for j in range(H):                      # h' = o tanh(c')
            hc[r, j] = act[r, 3 * H + j] * ftanh(hc[r, H + j])


@_jit
def _lstm_step_backward(act, hc, gout, dh_next, dc_next, summed, c, da, dc):
    """From the step's activations and output [h', c'], the gradient [dh', dc'] (plus, when
    ``summed``, what step t+1 sent back): da (B, 4H) and dc (B, H), which also holds
    tanh(c') and then dL/dc' on the way. One inner loop per quantity, as in the forward."""
    B, H = c.shape
    T = act.dtype.type
    for r in prange(B):
        for j in range(H):                      # t = tanh(c')
            dc[r, j] = ftanh(hc[r, H + j])
        for j in range(H):                      # da_o = dh' t σ'(o)
            gh = gout[r, j] + dh_next[r, j] if summed else gout[r, j]
            og = act[r, 3 * H + j]
            da[r, 3 * H + j] = gh * dc[r, j] * og * (T(1) - og)
        for j in range(H):                      # d = dL/dc' = dc' + dh' o (1 - t²)
            gh = gout[r, j] + dh_next[r, j] if summed else gout[r, j]
            gc = gout[r, H + j] + dc_next[r, j] if summed else gout[r, H + j]
            t = dc[r, j]
            dc[r, j] = gc + gh * act[r, 3 * H + j] * (T(1) - t * t)
        for j in range(H):                      # da_i = d g σ'(i)
            ig = act[r, j]
            da[r, j] = dc[r, j] * act[r, 2 * H + j] * ig * (T(1) - ig)
        for j in range(H):                      # da_f = d c σ'(f)
            fg = act[r, H + j]
            da[r, H + j] = dc[r, j] * c[r, j] * fg * (T(1) - fg)
        for j in range(H):                      # da_g = d i (1 - g²)
            gg = act[r, 2 * H + j]
            da[r, 2 * H + j] = dc[r, j] * act[r, j] * (T(1) - gg * gg)
        for j in range(H):                      # dc = d f
            dc[r, j] = dc[r, j] * act[r, H + j]


def _two_d(*arrays):
    """Every array 2-D (a (B, n) step's operands; other ranks: the NumPy code)."""
    return all(a.ndim == 2 for a in arrays)


def _lstm_shapes(a, c, hc, act):
    """After _two_d: a and act (B, 4H), hc (B, 2H) for c (B, H)."""
    B, H = c.shape
    return a.shape == act.shape == (B, 4 * H) and hc.shape == (B, 2 * H)


def lstm_forward(a, c, H, hc, act):
    if not _two_d(a, c, hc, act) or not _lstm_shapes(a, c, hc, act):
        return NotImplemented
    _lstm_step(a, a, np.empty(0, a.dtype), False, c, hc, act)
    return hc, act


def lstm_seq_forward(gx, hw, b, c, H, hc, act):
    if not _two_d(gx, hw, c, hc, act) or not _lstm_shapes(gx, c, hc, act) or hw.shape != gx.shape \
            or b.shape != (gx.shape[1],):
        return NotImplemented
    _lstm_step(gx, hw, b, True, c, hc, act)
    return hc, act


def lstm_backward(act, hc, grad_out, c, H, da, dc):
    if not _two_d(act, hc, grad_out, c, da, dc) or not _lstm_shapes(da, c, hc, act) \
            or grad_out.shape != hc.shape or dc.shape != c.shape:
        return NotImplemented
    _lstm_step_backward(act, hc, grad_out, c, c, False, c, da, dc)
    return da, dc


def lstm_seq_backward(act, hc, grad_out, dh_next, dc_next, c, H, da, dc):
    if not _two_d(act, hc, grad_out, dh_next, dc_next, c, da, dc) or not _lstm_shapes(da, c, hc, act) \
            or grad_out.shape != hc.shape or not dc.shape == dh_next.shape == dc_next.shape == c.shape:
        return NotImplemented
    _lstm_step_backward(act, hc, grad_out, dh_next, dc_next, True, c, da, dc)
    return da, dc


@_jit
def _gru_step(gx, gh, h, y, saved):
    """r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r h_n), h' = n + z (h - n);
    gx, gh (B, 3H); saved (B, 4H) = [r, z, n, h_n]. One inner loop per quantity."""
    B, H = h.shape
    T = h.dtype.type
    for i in prange(B):
        for j in range(H):
            saved[i, j] = _sigmoid(T, gx[i, j] + gh[i, j])                      # r
        for j in range(H):
            saved[i, H + j] = _sigmoid(T, gx[i, H + j] + gh[i, H + j])          # z
        for j in range(H):
            saved[i, 3 * H + j] = gh[i, 2 * H + j]                              # h_n
        for j in range(H):
            saved[i, 2 * H + j] = ftanh(gx[i, 2 * H + j] + saved[i, j] * saved[i, 3 * H + j])   # n
        for j in range(H):
            n = saved[i, 2 * H + j]
            y[i, j] = n + saved[i, H + j] * (h[i, j] - n)


@_jit
def _gru_step_backward(saved, h, g, dgx, dgh, dh):
    B, H = h.shape
    T = h.dtype.type
    for i in prange(B):
        for j in range(H):                      # dn, through tanh
            z, n = saved[i, H + j], saved[i, 2 * H + j]
            dgx[i, 2 * H + j] = g[i, j] * (T(1) - z) * (T(1) - n * n)
        for j in range(H):                      # dz
            z, n = saved[i, H + j], saved[i, 2 * H + j]
            dgx[i, H + j] = g[i, j] * (h[i, j] - n) * z * (T(1) - z)
        for j in range(H):                      # dr
            r = saved[i, j]
            dgx[i, j] = dgx[i, 2 * H + j] * saved[i, 3 * H + j] * r * (T(1) - r)
        for j in range(2 * H):
            dgh[i, j] = dgx[i, j]
        for j in range(H):
            dgh[i, 2 * H + j] = dgx[i, 2 * H + j] * saved[i, j]
        for j in range(H):
            dh[i, j] = g[i, j] * saved[i, H + j]


def gru_forward(gx, gh, h, H, y, saved):
    if not _two_d(gx, gh, h, y, saved):
        return NotImplemented
    B, H = h.shape
    if not gx.shape == gh.shape == (B, 3 * H) \
            or y.shape != h.shape or saved.shape != (B, 4 * H):
        return NotImplemented
    _gru_step(gx, gh, h, y, saved)
    return y, saved


def gru_backward(saved, h, g, H, dgx, dgh, dh):
    if not _two_d(saved, h, g, dgx, dgh, dh):
        return NotImplemented
    B, H = h.shape
    if not g.shape == dh.shape == h.shape \
            or not dgx.shape == dgh.shape == (B, 3 * H) or saved.shape != (B, 4 * H):
        return NotImplemented
    _gru_step_backward(saved, h, g, dgx, dgh, dh)
    return dgx, dgh, dh


# --------------------------------------------------------------------------- the RNN step

@_jit
def _rnn_step(gx, hw, relu, h):
    """h = tanh(gx + hw), or max(gx + hw, 0) (NaN kept) when ``relu``; flat arrays."""
    T = h.dtype.type
    if relu:
        for i in prange(h.size):
            a = gx[i] + hw[i]
            h[i] = T(0) if a < T(0) else a
    else:
        for i in prange(h.size):
            h[i] = ftanh(gx[i] + hw[i])


@_jit
def _rnn_step_backward(g, dh_next, h, relu, da):
    """da = (g + dh_next) times the step's derivative, read from its output h."""
    T = h.dtype.type
    if relu:
        for i in prange(h.size):
            da[i] = g[i] + dh_next[i] if h[i] > T(0) else T(0)
    else:
        for i in prange(h.size):
            da[i] = (g[i] + dh_next[i]) * (T(1) - h[i] * h[i])


def rnn_forward(gx, hw, relu, h):
    flat = _flat(gx, hw, h)
    if flat is None or not h.flags.c_contiguous:      # h is written: it must be its own buffer
        return NotImplemented
    _rnn_step(flat[0], flat[1], bool(relu), flat[2])
    return h


def rnn_backward(g, dh_next, h, relu, da):
    flat = _flat(g, dh_next, h, da)
    if flat is None or not da.flags.c_contiguous:
        return NotImplemented
    _rnn_step_backward(flat[0], flat[1], flat[2], bool(relu), flat[3])
    return da
