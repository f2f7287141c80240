"""The LSTM and GRU steps, and the RNN, LSTM and GRU over a whole sequence,
each as one graph node.

Each family opens with its plain reference formula (``*_reference``: the same
function from composite ops, differentiable to any order, and what the tests
compare against); then the fused node; then its kernels (CUDA C bodies beside
their NumPy fallbacks) and raw-array helpers.
"""

from __future__ import annotations

from functools import partial

from .. import backend, profile
from ..autograd import Function
from ..kernels import Elementwise
from ..tensor import Tensor
from .linalg import _vjp_of, linear_reference
from .shape import concatenate, stack

__all__: list[str] = []     # user-facing in minigrad.functional

# --------------------------------------------------------------------------- the plain formulas

def lstm_cell_reference(gates: Tensor, c: Tensor) -> Tensor:
    """The LSTM state update from composite ops; returns concat(h', c') (B, 2H)."""
    H = c.shape[-1]
    i, f, g, o = (gates[..., k * H:(k + 1) * H] for k in range(4))
    c_next = f.sigmoid() * c + i.sigmoid() * g.tanh()
    return concatenate([o.sigmoid() * c_next.tanh(), c_next], axis=-1)


def lstm_sequence_reference(gx: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor,
                            b_hh: Tensor | None = None) -> Tensor:
    """The LSTM over a whole sequence from composite ops: (T, B, 2H) = [h_t, c_t] per step."""
    H = c0.shape[-1]
    h, c, out = h0, c0, []
    for t in range(gx.shape[0]):
        hc = lstm_cell_reference(gx[t] + linear_reference(h, w_hh, b_hh), c)
        h, c = hc[..., :H], hc[..., H:]
        out.append(hc)
    return stack(out, axis=0)


def gru_cell_reference(gx: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """The GRU state update from composite ops."""
    H = h.shape[-1]
    x_r, x_z, x_n = (gx[..., k * H:(k + 1) * H] for k in range(3))
    h_r, h_z, h_n = (gh[..., k * H:(k + 1) * H] for k in range(3))
    r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return n + z * (h - n)


def gru_sequence_reference(gx: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None = None) -> Tensor:
    """The GRU over a whole sequence from composite ops: (T, B, H) = h_t per step."""
    h, out = h0, []
    for t in range(gx.shape[0]):
        h = gru_cell_reference(gx[t], linear_reference(h, w_hh, b_hh), h)
        out.append(h)
    return stack(out, axis=0)


def rnn_sequence_reference(gx: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor | None = None,
                           nonlinearity: str = "tanh") -> Tensor:
    """The Elman RNN over a whole sequence from composite ops: (T, B, H) = h_t per step."""
    h, out = h0, []
    for t in range(gx.shape[0]):
        pre = gx[t] + linear_reference(h, w_hh, b_hh)
        h = pre.tanh() if nonlinearity == "tanh" else pre.relu()
        out.append(h)
    return stack(out, axis=0)


# --------------------------------------------------------------------------- the fused nodes

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
        return _vjp_of(lstm_cell_reference, self.inputs, grad_out)

    def backward_raw(self, grad_out):
        a, c = self.inputs
        xp = a.xp
        H = c.shape[-1]
        da = xp.empty(a.shape, dtype=a.dtype)
        dc = xp.empty(c.shape, dtype=c.dtype)
        _LSTM_BACKWARD(self.act, self.hc, xp.ascontiguousarray(grad_out), c.data, H, da, dc)
        return da, dc


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
        return _vjp_of(lstm_sequence_reference, self.inputs, g)

    def backward_raw(self, g):
        gx, h0, c0, w_hh = self.inputs[:4]
        xp = gx.xp
        T, B, H = gx.shape[0], gx.shape[1], c0.shape[-1]
        ys, w = self.ys, w_hh.data
        gout = xp.ascontiguousarray(g)                               # (T, B, 2H): [dh_t, dc_t]
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
        grads = [da, dh_next, dc_next, _sum_of_products(da, h0.data, ys)]   # dW_hh (4H, H)
        if len(self.inputs) == 5:
            grads.append(da.sum(axis=(0, 1)))
        return grads


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
        return _vjp_of(gru_cell_reference, self.inputs, g)

    def backward_raw(self, g):
        gx, gh, h = self.inputs
        xp = gx.xp
        H = h.shape[-1]
        dgx = xp.empty(gx.shape, dtype=gx.dtype)
        dgh = xp.empty(gh.shape, dtype=gh.dtype)
        dh = xp.empty(h.shape, dtype=h.dtype)
        _GRU_BACKWARD(self.saved, h.data, g, H, dgx, dgh, dh)
        return dgx, dgh, dh

class GRUSequence(Function):
    """A GRU layer's recurrence over a whole sequence, as one node:

        gh_t = W_hh h_{t-1} + b_hh,   h_t = the GRU step of (gx_t, gh_t, h_{t-1})

    Inputs: gx (T, B, 3H) (W_ih x_t + b_ih for every step, one product done by
    the caller), h0 (B, H), W_hh (3H, H) and, if given, b_hh (3H,). Output: the
    hidden states (T, B, H). Per step: one product and the GRU step's kernel.
    Backward through time by hand, as ``LSTMSequence``'s: per step, in reverse,
    the step's backward kernel gives d(gx_t), d(gh_t) and the direct part of
    dh_{t-1} (g z), to which d(gh_t) W_hh is added; then dW_hh = Σ_t d(gh_t)ᵀ h_{t-1}
    as one product."""
    op_name = "gru_sequence"

    def forward(self, gx, h0, w_hh, *b_hh):
        xp = backend.xp_of(gx)
        T, B, H = gx.shape[0], gx.shape[1], h0.shape[-1]
        ys = xp.empty((T, B, H), dtype=gx.dtype)
        self.saved = xp.empty((T, B, 4 * H), dtype=gx.dtype)           # [r, z, n, h_n] per step
        gx = xp.ascontiguousarray(gx)
        gh = xp.empty((B, 3 * H), dtype=gx.dtype)
        h, wt = h0, w_hh.T
        if profile.active:
            profile.add_matmul(h0, wt, times=T)                      # (B, H) @ (H, 3H) per step
        for t in range(T):
            xp.matmul(h, wt, out=gh)
            if b_hh:
                gh += b_hh[0]
            _GRU_FORWARD(gx[t], gh, h, H, ys[t], self.saved[t])
            h = ys[t]
        self.ys = ys
        return ys

    def backward(self, g):
        return _vjp_of(gru_sequence_reference, self.inputs, g)

    def backward_raw(self, g):
        gx, h0, w_hh = self.inputs[:3]
        xp = gx.xp
        T, B, H = gx.shape[0], gx.shape[1], h0.shape[-1]
        ys, w = self.ys, w_hh.data
        gout = xp.ascontiguousarray(g)                               # (T, B, H)
        dgx = xp.empty((T, B, 3 * H), dtype=gx.dtype)
        dgh = xp.empty((T, B, 3 * H), dtype=gx.dtype)                # kept for dW_hh
        g_t = xp.empty((B, H), dtype=gx.dtype)                       # dh_t: its own and step t+1's
        dh_direct = xp.empty((B, H), dtype=gx.dtype)
        dh_next = xp.zeros((B, H), dtype=gx.dtype)
        if profile.active:
            profile.add_matmul((B, 3 * H), w, times=T)               # d(gh_t) W_hh per step
        for t in range(T - 1, -1, -1):
            xp.add(gout[t], dh_next, out=g_t)
            _GRU_BACKWARD(self.saved[t], h0.data if t == 0 else ys[t - 1], g_t, H,
                          dgx[t], dgh[t], dh_direct)
            xp.matmul(dgh[t], w, out=dh_next)
            dh_next += dh_direct                                     # dh_{t-1}
        grads = [dgx, dh_next, _sum_of_products(dgh, h0.data, ys)]
        if len(self.inputs) == 4:
            grads.append(dgh.sum(axis=(0, 1)))
        return grads


class RNNSequence(Function):
    """An Elman RNN layer's recurrence over a whole sequence, as one node:

        h_t = tanh(gx_t + W_hh h_{t-1} + b_hh)       (or relu: ``nonlinearity``)

    Inputs: gx (T, B, H) (W_ih x_t + b_ih for every step), h0 (B, H), W_hh
    (H, H) and, if given, b_hh (H,). Output: the hidden states (T, B, H). Per
    step one product and one kernel each way: backward, in reverse,
    da_t = (g_t + dh_t) ⊙ (1 - h_t²) (relu: ⊙ [h_t > 0]) and dh_{t-1} = da_t W_hh;
    then dW_hh = Σ_t da_tᵀ h_{t-1} as one product."""
    op_name = "rnn_sequence"

    def forward(self, gx, h0, w_hh, *b_hh):
        xp = backend.xp_of(gx)
        T, B, H = gx.shape[0], gx.shape[1], h0.shape[-1]
        ys = xp.empty((T, B, H), dtype=gx.dtype)
        gx = xp.ascontiguousarray(gx)
        hw = xp.empty((B, H), dtype=gx.dtype)
        h, wt, relu = h0, w_hh.T, int(self.nonlinearity == "relu")
        if profile.active:
            profile.add_matmul(h0, wt, times=T)
        for t in range(T):
            xp.matmul(h, wt, out=hw)
            if b_hh:
                hw += b_hh[0]                                        # as Linear: (h W_hhᵀ + b) + gx_t
            _RNN_FORWARD(gx[t], hw, relu, ys[t])
            h = ys[t]
        self.ys = ys
        return ys

    def backward(self, g):
        return _vjp_of(partial(rnn_sequence_reference, nonlinearity=self.nonlinearity), self.inputs, g)

    def backward_raw(self, g):
        gx, h0, w_hh = self.inputs[:3]
        xp = gx.xp
        T, B, H = gx.shape[0], gx.shape[1], h0.shape[-1]
        ys, w, relu = self.ys, w_hh.data, int(self.nonlinearity == "relu")
        gout = xp.ascontiguousarray(g)
        da = xp.empty((T, B, H), dtype=gx.dtype)
        dh_next = xp.zeros((B, H), dtype=gx.dtype)
        if profile.active:
            profile.add_matmul((B, H), w, times=T)
        for t in range(T - 1, -1, -1):
            _RNN_BACKWARD(gout[t], dh_next, ys[t], relu, da[t])
            xp.matmul(da[t], w, out=dh_next)                         # dh_{t-1}
        grads = [da, dh_next, _sum_of_products(da, h0.data, ys)]
        if len(self.inputs) == 4:
            grads.append(da.sum(axis=(0, 1)))
        return grads


def _sum_of_products(d, h0, ys):
    """dW_hh = Σ_t d_tᵀ h_{t-1} (d (T, B, G·H), h_{-1} = h0, h_t = ys[t]) as one product."""
    xp = backend.xp_of(d)
    T, B, GH = d.shape
    H = h0.shape[-1]
    h_prev = xp.concatenate([h0[None], ys[:-1, :, :H]], axis=0)      # (T, B, H)
    if profile.active:
        profile.add_matmul((GH, T * B), (T * B, H))
    return d.reshape(T * B, GH).T @ h_prev.reshape(T * B, H)


# --------------------------------------------------------------------------- kernels and raw helpers

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
    _LSTM_STEP.format(**_gates("a[r4 + {o} + j]")),
    cpu_kernel="lstm_forward", fallback=_lstm_forward_raw)
_LSTM_BACKWARD = Elementwise(
    "lstm_backward", "raw T act, raw T hc, raw T grad_out, T c, int32 H", "raw T da, T dc",
    _LSTM_STEP_BACKWARD.format(gh="grad_out[r2 + j]", gc="grad_out[r2 + H + j]"),
    cpu_kernel="lstm_backward", fallback=_lstm_backward_raw)
_LSTM_SEQ_FORWARD = Elementwise(
    "lstm_seq_forward", "raw T gx, raw T hw, raw T b, T c, int32 H", "raw T hc, raw T act",
    _LSTM_STEP.format(**_gates("gx[r4 + {o} + j] + hw[r4 + {o} + j] + b[{o} + j]")),
    cpu_kernel="lstm_seq_forward",
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
    cpu_kernel="lstm_seq_backward", fallback=_lstm_seq_backward_raw)


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
    cpu_kernel="gru_forward",
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
    cpu_kernel="gru_backward",
    fallback=lambda saved, h, g, H, dgx, dgh, dh: (dgx, dgh, _gru_fill(
        dh, _gru_backward_raw(saved, h, g, H, dgx, dgh))))


def _gru_fill(out, value):
    out[...] = value
    return out


def _rnn_forward_raw(gx, hw, relu, h):
    xp = backend.xp_of(gx)
    xp.add(gx, hw, out=h)
    return xp.maximum(h, 0, out=h) if relu else xp.tanh(h, out=h)


def _rnn_backward_raw(g, dh_next, h, relu, da):
    xp = backend.xp_of(g)
    xp.add(g, dh_next, out=da)                           # dh_t: its own and step t+1's
    if relu:
        da *= h > 0
    else:
        da *= 1 - h * h
    return da


# The RNN step, one thread per element: h = tanh(gx + hw) (relu: max(., 0), NaN kept), where
# hw = h_{t-1} W_hhᵀ + b_hh; backward da = (g + dh_next) tanh'(.), written with the output h
_RNN_FORWARD = Elementwise(
    "rnn_forward", "T gx, T hw, int32 relu", "T h",
    "const T a = gx + hw; h = relu ? (a < T(0) ? T(0) : a) : tanh(a);",
    cpu_kernel="rnn_forward", fallback=_rnn_forward_raw)
_RNN_BACKWARD = Elementwise(
    "rnn_backward", "T g, T dh_next, T h, int32 relu", "T da",
    "const T d = g + dh_next; da = relu ? (h > T(0) ? d : T(0)) : d * (T(1) - h * h);",
    cpu_kernel="rnn_backward", fallback=_rnn_backward_raw)
