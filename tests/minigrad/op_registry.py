"""The op registry: one entry per differentiable op (like PyTorch's OpInfo).

An entry says how to call the op on Tensors (``fn``), how to draw valid
inputs for it (``cases``: a hypothesis strategy of ``Case``), and what it
computes, in plain NumPy (``ref``). The generic tests in
``test_ops_registry.py`` run every entry on every device: gradcheck,
gradgradcheck, forward against ``ref``, float32 stays float32, strided
inputs, empty inputs. A new op is its family file under ``minigrad/ops/``
(listed in that file's ``__all__``) plus one entry here, nothing else.

A ``Case`` holds the positional arrays and the keyword arguments shared by
``fn`` and ``ref``. Float arrays become differentiable tensors; integer and
bool arrays (targets, indices, masks) become plain tensors on the same device.
``cases(min_side)`` draws shapes with every side >= ``min_side``: the tests
use 1, and 0 for entries marked ``empty_ok``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad.testing import arrays, axes, broadcastable_shapes, distinct_arrays, lattice_arrays, shapes


class Case(NamedTuple):
    args: tuple            # NumPy arrays; float ones are differentiated
    kwargs: dict[str, Any]  # everything else, passed to fn and ref alike


class Edge(NamedTuple):
    """A point where a derivative formula evaluates 0·∞ or 0/0 although the function is
    smooth there (or has a one-sided value), and the gradient PyTorch returns there.
    ``grads`` holds one array per float argument, for an upstream gradient of ones."""
    case: Case
    grads: tuple
    why: str


@dataclass(frozen=True)
class OpInfo:
    name: str                                           # unique; shown in test ids
    fn: Callable[..., Any]                              # fn(*tensors, **kwargs) -> Tensor | tuple
    cases: Callable[[int], st.SearchStrategy[Case]]     # cases(min_side) -> strategy
    ref: Callable[..., Any]                             # ref(*arrays, **kwargs) -> ndarray | tuple
    covers: tuple[str, ...] | None = None               # exported names tested; default (name,)
    gradgrad: bool = True                               # twice differentiable: run gradgradcheck
    empty_ok: bool = False                              # defined on empty inputs: test them too
    via_float32: bool = False                           # rounds through float32 (astype)
    random: bool = False                                # draws random numbers (differ on cuda)
    edges: tuple[Edge, ...] = ()                        # fixed points where formulas meet 0·∞

    @property
    def exports(self) -> tuple[str, ...]:
        return (self.name,) if self.covers is None else self.covers

    def __repr__(self) -> str:
        return self.name


REGISTRY: list[OpInfo] = []


def register(name: str, fn, cases, ref, **flags) -> None:
    if any(e.name == name for e in REGISTRY):
        raise ValueError(f"op registry: duplicate entry {name!r}")
    REGISTRY.append(OpInfo(name, fn, cases, ref, **flags))


# --------------------------------------------------------------------------- case builders

def unary(low: float = -2.0, high: float = 2.0, avoid=(), **kwargs_strategies):
    """One array of any shape (0-d included), values in [low, high] away from ``avoid``."""
    @st.composite
    def cases(draw, min_side):
        x = draw(shapes(min_side=min_side).flatmap(lambda s: arrays(s, low, high, avoid)))
        return Case((x,), {k: draw(v) for k, v in kwargs_strategies.items()})
    return cases


def binary(a_arrays=arrays, b_arrays=arrays):
    """Two arrays of broadcast-compatible shapes."""
    @st.composite
    def cases(draw, min_side):
        sa, sb = draw(broadcastable_shapes(min_side=min_side))
        return Case((draw(a_arrays(sa)), draw(b_arrays(sb))), {})
    return cases


def _positive(shape):
    return arrays(shape, 0.5, 2.0)


def _nonzero(shape):
    return arrays(shape, -2.0, 2.0, avoid=(0.0,), margin=0.5)


def _lattice_b(shape):
    return lattice_arrays(shape, offset=0.25)


def reduction(array_fn=arrays, min_count: int = 1, ddof: bool = False):
    """An array, an ``axis`` (None, int, tuple) and ``keepdims``; at least
    ``min_count`` elements in each reduced group."""
    @st.composite
    def cases(draw, min_side):
        shape = draw(shapes(min_side=min_side))
        axis = draw(axes(len(shape)))
        reduced = range(len(shape)) if axis is None else (
            [axis] if isinstance(axis, int) else list(axis))
        count = math.prod(shape[a] for a in reduced)
        assume(count >= min_count)
        kwargs = {"axis": axis, "keepdims": draw(st.booleans())}
        if ddof:
            kwargs["ddof"] = draw(st.integers(0, min(1, count - 1)))
        return Case((draw(array_fn(shape)),), kwargs)
    return cases


def _ref_logsumexp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros([1] * x.ndim)
    m = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


# --------------------------------------------------------------------------- elementwise

register("add", mg.add, binary(), np.add, empty_ok=True)
register("sub", mg.sub, binary(), np.subtract, empty_ok=True)
register("mul", mg.mul, binary(), np.multiply, empty_ok=True)
register("truediv", mg.truediv, binary(arrays, _nonzero), np.divide, empty_ok=True)
register("operators", lambda a, b: (-a + b) * a - b / (a * a + 1.0), binary(),
         lambda a, b: (-a + b) * a - b / (a * a + 1.0), covers=())
register("scalar_operands", lambda x: (1.5 - x) * 2.0 / (x * x + 1.0) + 0.5 - 3.0 / (x + 3.0),
         unary(), lambda x: (1.5 - x) * 2.0 / (x * x + 1.0) + 0.5 - 3.0 / (x + 3.0), covers=())
register("pow", mg.pow, binary(_positive, arrays), np.power, empty_ok=True)


@st.composite
def _pow_scalar_cases(draw, min_side):
    exponent = draw(st.sampled_from([2, 3, -1, 0.5, 2.5, -1.5]))
    shape = draw(shapes(min_side=min_side))
    x = draw(arrays(shape, avoid=(0.0,), margin=0.3) if isinstance(exponent, int)
             else _positive(shape))
    return Case((x,), {"exponent": exponent})


register("pow[scalar exponent]", lambda x, exponent: x ** exponent, _pow_scalar_cases,
         lambda x, exponent: np.power(x, float(exponent)), covers=())
register("pow[scalar base]", lambda x, base: base ** x,
         unary(base=st.sampled_from([0.5, 2.0, 3.0])), lambda x, base: np.power(base, x),
         covers=())
register("neg", mg.neg, unary(), np.negative, empty_ok=True)
register("exp", mg.exp, unary(), np.exp, empty_ok=True)
register("log", mg.log, unary(0.2, 3.0), np.log, empty_ok=True)
register("sqrt", mg.sqrt, unary(0.2, 3.0), np.sqrt, empty_ok=True)
register("abs", mg.abs, unary(avoid=(0.0,)), np.abs, empty_ok=True)
register("tanh", mg.tanh, unary(), np.tanh, empty_ok=True)
register("sigmoid", mg.sigmoid, unary(-4.0, 4.0), lambda x: 1.0 / (1.0 + np.exp(-x)), empty_ok=True)
register("relu", mg.relu, unary(avoid=(0.0,)), lambda x: np.maximum(x, 0.0), empty_ok=True)
_erf = np.vectorize(math.erf, otypes=[np.float64])
register("erf", mg.erf, unary(), lambda x: _erf(x) if x.size else x.copy(), empty_ok=True)
register("gelu", mg.gelu, unary(-3.0, 3.0),
         lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))) if x.size else x.copy(), empty_ok=True)
register("gelu[tanh]", lambda x: mg.gelu(x, approximate="tanh"), unary(-3.0, 3.0),
         lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
         covers=(), empty_ok=True)
register("maximum", mg.maximum, binary(lattice_arrays, _lattice_b), np.maximum, empty_ok=True)
register("minimum", mg.minimum, binary(lattice_arrays, _lattice_b), np.minimum, empty_ok=True)


@st.composite
def _clip_cases(draw, min_side):
    lo, hi = draw(st.sampled_from([(-0.5, 0.7), (None, 0.3), (-0.2, None), (0.4, 0.4)]))
    bounds = tuple(b for b in (lo, hi) if b is not None)
    x = draw(shapes(min_side=min_side).flatmap(lambda s: arrays(s, avoid=bounds)))
    return Case((x,), {"min": lo, "max": hi})


register("clip", mg.clip, _clip_cases, np.clip, empty_ok=True)


@st.composite
def _where_cases(draw, min_side):
    sc, sa, sb = draw(broadcastable_shapes(3, min_side=min_side))
    cond = draw(st.lists(st.booleans(), min_size=math.prod(sc), max_size=math.prod(sc)))
    return Case((np.array(cond, dtype=bool).reshape(sc), draw(arrays(sa)), draw(arrays(sb))), {})


register("where", mg.where, _where_cases, np.where, empty_ok=True)

# --------------------------------------------------------------------------- reductions

register("sum", mg.sum, reduction(min_count=0), np.sum, empty_ok=True)
register("mean", mg.mean, reduction(), np.mean)
register("max", mg.max, reduction(distinct_arrays), np.max)
register("min", mg.min, reduction(distinct_arrays), np.min)
register("var", mg.var, reduction(distinct_arrays, ddof=True), np.var)
register("std", mg.std, reduction(distinct_arrays, min_count=2, ddof=True), np.std)
register("logsumexp", mg.logsumexp, reduction(min_count=0), _ref_logsumexp, empty_ok=True)


def _norm_cases(min_side):
    # |x| has a kink at 0 and max |x| at ties: values kept away from 0 and from each other
    def signed(shape):
        n = math.prod(shape)
        return st.tuples(distinct_arrays(shape, 0.25, 2.0),
                         st.lists(st.sampled_from([-1.0, 1.0]), min_size=n, max_size=n)).map(
            lambda a_s: a_s[0] * np.reshape(a_s[1], shape))
    return reduction(signed)(min_side).flatmap(
        lambda c: st.sampled_from([1, 2, 3, 1.5, math.inf, -math.inf]).map(
            lambda o: Case(c.args, {**c.kwargs, "ord": o})))


def _ref_norm(x, axis, keepdims, ord):
    a = np.abs(x)
    if ord == math.inf:
        return a.max(axis=axis, keepdims=keepdims)
    if ord == -math.inf:
        return a.min(axis=axis, keepdims=keepdims)
    return (a ** ord).sum(axis=axis, keepdims=keepdims) ** (1 / ord)


register("norm", mg.norm, _norm_cases, _ref_norm)

# --------------------------------------------------------------------------- matmul


@st.composite
def _matmul_cases(draw, min_side):
    n, k, m = (draw(st.integers(min_side, 3)) for _ in range(3))
    batch_a, batch_b = draw(broadcastable_shapes(2, max_dims=2, max_side=2, min_side=min_side))
    sa = (k,) if draw(st.integers(0, 3)) == 0 else batch_a + (n, k)
    sb = (k,) if draw(st.integers(0, 3)) == 0 else batch_b + (k, m)
    assume(math.prod(sa) <= 24 and math.prod(sb) <= 24)
    return Case((draw(arrays(sa)), draw(arrays(sb))), {})


register("matmul", mg.matmul, _matmul_cases, np.matmul, empty_ok=True)


@st.composite
def _linear_cases(draw, min_side):
    lead = draw(shapes(max_dims=2, min_side=min_side, max_size=6))
    n_in, n_out = draw(st.integers(min_side, 4)), draw(st.integers(min_side, 4))
    args = [draw(arrays(lead + (n_in,))), draw(arrays((n_out, n_in)))]
    if draw(st.booleans()):
        args.append(draw(arrays((n_out,))))
    return Case(tuple(args), {})


register("linear", F.linear, _linear_cases,
         lambda x, w, b=None: x @ w.T + (0.0 if b is None else b), empty_ok=True)

# --------------------------------------------------------------------------- shape ops


def _factorizations(n: int, max_dims: int = 4) -> list[tuple[int, ...]]:
    """Every shape of up to ``max_dims`` dims holding n > 0 elements."""
    out = [()] if n == 1 else []
    frontier = [((), n)]
    for _ in range(max_dims):
        nxt = []
        for prefix, rest in frontier:
            for d in range(1, rest + 1):
                if rest % d == 0:
                    nxt.append((prefix + (d,), rest // d))
        out += [p for p, r in nxt if r == 1]
        frontier = nxt
    return out


@st.composite
def _reshape_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side))
    n = math.prod(shape)
    if n == 0:
        target = draw(st.sampled_from([(0,), (0, 2), (3, 0), (1, 0, 2), (-1, 0), (0, -1)]))
        assume(not (-1 in target and 0 in target))
    else:
        target = draw(st.sampled_from(_factorizations(n)))
        if target and draw(st.booleans()):
            i = draw(st.integers(0, len(target) - 1))
            target = target[:i] + (-1,) + target[i + 1:]
    return Case((draw(arrays(shape)),), {"shape": target})


register("reshape", lambda x, shape: x.reshape(shape), _reshape_cases, np.reshape, empty_ok=True)


@st.composite
def _perm_cases(draw, min_side, allow_none=True):
    shape = draw(shapes(min_side=min_side))
    perm = draw(st.permutations(range(len(shape))))
    if allow_none and draw(st.booleans()):
        perm = None
    elif perm and draw(st.booleans()):
        perm = [p - len(shape) for p in perm]   # negative axes
    return Case((draw(arrays(shape)),), {"axes": None if perm is None else tuple(perm)})


register("transpose", lambda x, axes: mg.transpose(x) if axes is None else mg.transpose(x, axes),
         _perm_cases, np.transpose, empty_ok=True)
register("permute", lambda x, axes: x.permute(*axes), lambda s: _perm_cases(s, allow_none=False),
         np.transpose)
register("T", lambda x: x.T, unary(), np.transpose, covers=())


@st.composite
def _swapaxes_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    nd = len(shape)
    return Case((draw(arrays(shape)),), {"axis1": draw(st.integers(-nd, nd - 1)),
                                         "axis2": draw(st.integers(-nd, nd - 1))})


register("swapaxes", mg.swapaxes, _swapaxes_cases, np.swapaxes, empty_ok=True)


@st.composite
def _broadcast_cases(draw, min_side, minus_one=False):
    s_in, s_other = draw(broadcastable_shapes(min_side=min_side))
    target = np.broadcast_shapes(s_in, s_other)
    if minus_one:   # expand: -1 keeps an input dimension
        lead = len(target) - len(s_in)
        target = tuple(-1 if i >= lead and draw(st.booleans()) else t for i, t in enumerate(target))
    return Case((draw(arrays(s_in)),), {"shape": tuple(target)})


def _ref_expand(x, shape):
    lead = len(shape) - x.ndim
    return np.broadcast_to(x, tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(shape)))


register("broadcast_to", lambda x, shape: mg.broadcast_to(x, shape), _broadcast_cases,
         np.broadcast_to, empty_ok=True)
register("expand", lambda x, shape: x.expand(*shape), lambda s: _broadcast_cases(s, minus_one=True),
         _ref_expand, empty_ok=True)


@st.composite
def _squeeze_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side))
    ones = [i for i, n in enumerate(shape) if n == 1]
    axis = None
    if ones and draw(st.booleans()):
        picked = draw(st.lists(st.sampled_from(ones), min_size=1, unique=True))
        axis = picked[0] if len(picked) == 1 else tuple(picked)
    return Case((draw(arrays(shape)),), {"axis": axis})


register("squeeze", mg.squeeze, _squeeze_cases, np.squeeze, empty_ok=True)


@st.composite
def _unsqueeze_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side))
    return Case((draw(arrays(shape)),), {"axis": draw(st.integers(-len(shape) - 1, len(shape)))})


register("unsqueeze", lambda x, axis: x.unsqueeze(axis), _unsqueeze_cases, np.expand_dims,
         empty_ok=True)
register("expand_dims", mg.expand_dims, _unsqueeze_cases, np.expand_dims, empty_ok=True)


@st.composite
def _concat_cases(draw, min_side):
    base = draw(shapes(min_dims=1, min_side=min_side, max_size=8))
    nd = len(base)
    axis = draw(st.integers(-nd, nd - 1))
    parts = []
    for _ in range(draw(st.integers(1, 3))):
        shape = list(base)
        shape[axis] = draw(st.integers(min_side, 3))
        parts.append(draw(arrays(tuple(shape))))
    return Case(tuple(parts), {"axis": axis})


register("concatenate", lambda *xs, axis: mg.concatenate(xs, axis=axis), _concat_cases,
         lambda *xs, axis: np.concatenate(xs, axis=axis), empty_ok=True)
register("cat", lambda *xs, axis: mg.cat(list(xs), axis), _concat_cases,
         lambda *xs, axis: np.concatenate(xs, axis=axis), empty_ok=True)


@st.composite
def _stack_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side, max_size=8))
    k = draw(st.integers(1, 3))
    return Case(tuple(draw(arrays(shape)) for _ in range(k)),
                {"axis": draw(st.integers(-len(shape) - 1, len(shape)))})


register("stack", lambda *xs, axis: mg.stack(xs, axis=axis), _stack_cases,
         lambda *xs, axis: np.stack(xs, axis=axis), empty_ok=True)


@st.composite
def _split_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    n = shape[axis]
    if draw(st.booleans()):
        sections = draw(st.sampled_from([k for k in range(1, 5) if n % k == 0]))
    else:   # cut points, NumPy style: unsorted, negative and out-of-range ones allowed
        sections = draw(st.lists(st.integers(-n - 1, n + 1), max_size=3))
    return Case((draw(arrays(shape)),), {"indices_or_sections": sections, "axis": axis})


register("split", lambda x, indices_or_sections, axis: tuple(mg.split(x, indices_or_sections, axis)),
         _split_cases, lambda x, indices_or_sections, axis: tuple(np.split(x, indices_or_sections, axis)),
         empty_ok=True)


@st.composite
def _flip_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side))
    return Case((draw(arrays(shape)),), {"axis": draw(axes(len(shape)))})


register("flip", mg.flip, _flip_cases, np.flip, empty_ok=True)


@st.composite
def _pad_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side, max_size=8))
    pair = st.tuples(st.integers(0, 2), st.integers(0, 2))
    pad_width = draw(st.one_of(st.integers(0, 1), pair,
                               st.tuples(*[pair for _ in shape]).filter(
                                   lambda p: math.prod(n + a + b for n, (a, b) in zip(shape, p)) <= 40)))
    return Case((draw(arrays(shape)),), {"pad_width": pad_width,
                                         "value": draw(st.sampled_from([0.0, -1.5]))})


register("pad", mg.pad, _pad_cases,
         lambda x, pad_width, value: np.pad(x, pad_width, constant_values=value), empty_ok=True)
register("astype", lambda x: x.astype("float32"), unary(), lambda x: x.astype(np.float32),
         via_float32=True, empty_ok=True)
register("clone", mg.clone, unary(), lambda x: x.copy(), empty_ok=True)

# --------------------------------------------------------------------------- indexing


def _slice(n: int):
    ends = st.one_of(st.none(), st.integers(-n - 1, n + 1))
    return st.builds(slice, ends, ends, st.sampled_from([None, 1, 2, -1, -2]))


@st.composite
def _basic_index_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    items = [draw(st.integers(-n, n - 1) if n and draw(st.booleans()) else _slice(n)) for n in shape]
    if draw(st.booleans()):   # an Ellipsis standing for some leading dims
        items = [Ellipsis] + items[draw(st.integers(0, len(items))):]
    else:                     # or index only the leading dims
        items = items[:draw(st.integers(1, len(items)))]
    if draw(st.booleans()):   # a new axis somewhere
        items.insert(draw(st.integers(0, len(items))), None)
    index = items[0] if len(items) == 1 and draw(st.booleans()) else tuple(items)
    return Case((draw(arrays(shape)),), {"index": index})


@st.composite
def _int_array_index_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    dim = draw(st.integers(0, len(shape) - 1))
    n = shape[dim]
    idx_shape = draw(shapes(min_dims=1, max_dims=2, max_size=5))
    # few distinct values, so repeated indices (whose gradients must add up) are common
    idx = np.array(draw(st.lists(st.integers(-n, n - 1), min_size=math.prod(idx_shape),
                                 max_size=math.prod(idx_shape))), dtype=np.int64).reshape(idx_shape)
    return Case((draw(arrays(shape)),), {"index": (slice(None),) * dim + (idx,)})


@st.composite
def _bool_mask_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    mshape = shape[:draw(st.integers(1, len(shape)))]
    mask = np.array(draw(st.lists(st.booleans(), min_size=math.prod(mshape),
                                  max_size=math.prod(mshape))), dtype=bool).reshape(mshape)
    return Case((draw(arrays(shape)),), {"index": mask})


@st.composite
def _tensor_index_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    idx = np.array(draw(st.lists(st.integers(-shape[0], shape[0] - 1), min_size=1, max_size=4)),
                   dtype=np.int64)
    return Case((draw(arrays(shape)), idx), {})


register("getitem", mg.getitem, _basic_index_cases, lambda x, index: x[index], empty_ok=True)
register("getitem[int array]", lambda x, index: x[index], _int_array_index_cases,
         lambda x, index: x[index], covers=())
register("getitem[bool mask]", lambda x, index: x[index], _bool_mask_cases,
         lambda x, index: x[index], covers=())
register("getitem[index tensor]", lambda x, idx: x[idx], _tensor_index_cases,
         lambda x, idx: x[idx], covers=())


@st.composite
def _embedding_cases(draw, min_side):
    v, d = draw(st.integers(1, 4)), draw(st.integers(min_side, 3))
    idx_shape = draw(shapes(max_dims=2, min_side=min_side, max_size=6))
    idx = np.array(draw(st.lists(st.integers(0, v - 1), min_size=math.prod(idx_shape),
                                 max_size=math.prod(idx_shape))), dtype=np.int64).reshape(idx_shape)
    return Case((idx, draw(arrays((v, d)))), {})


register("embedding", F.embedding, _embedding_cases, lambda idx, w: w[idx], empty_ok=True)

# --------------------------------------------------------------------------- functional


@st.composite
def _softmax_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    return Case((draw(arrays(shape, -3.0, 3.0)),),
                {"axis": draw(st.integers(-len(shape), len(shape) - 1))})


def _ref_log_softmax(x, axis):
    m = np.max(x, axis=axis, keepdims=True) if x.size else 0.0
    with np.errstate(divide="ignore"):   # log Σ over an empty axis is -inf
        return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


register("softmax", F.softmax, _softmax_cases,
         lambda x, axis: np.exp(_ref_log_softmax(x, axis)), empty_ok=True)
register("log_softmax", F.log_softmax, _softmax_cases, _ref_log_softmax, empty_ok=True)


def _targets(draw, c: int, tshape):
    """Class targets of shape ``tshape`` (some ignored), the ignore_index and a reduction;
    a mean has at least one target that counts (else it is 0/0, NaN, as in PyTorch)."""
    ignore_index = draw(st.sampled_from([-100, 1]))
    pool = list(range(c)) + [ignore_index]
    target = np.array(draw(st.lists(st.sampled_from(pool), min_size=math.prod(tshape),
                                    max_size=math.prod(tshape))), dtype=np.int64).reshape(tshape)
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    if reduction == "mean":
        assume((target != ignore_index).any())
    return target, ignore_index, reduction


@st.composite
def _cross_entropy_cases(draw, min_side):
    layout = draw(st.sampled_from(["NC", "C", "NCd"]))
    n, c, d = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3))
    shape, tshape = {"NC": ((n, c), (n,)), "C": ((c,), ()), "NCd": ((n, c, d), (n, d))}[layout]
    assume(math.prod(shape) <= 24)
    target, ignore_index, reduction = _targets(draw, c, tshape)
    return Case((draw(arrays(shape, -3.0, 3.0)), target),
                {"ignore_index": ignore_index, "reduction": reduction,
                 "label_smoothing": draw(st.sampled_from([0.0, 0.1, 0.4]))})


def _ref_cross_entropy(x, target, ignore_index, reduction, label_smoothing):
    out_shape = target.shape
    if x.ndim == 1:
        x, target = x[None], target[None]
    c = x.shape[1]
    x = np.moveaxis(x, 1, -1).reshape(-1, c)        # (rows, C)
    t = target.reshape(-1)
    valid = t != ignore_index
    lsm = _ref_log_softmax(x, 1)
    q = np.full(x.shape, label_smoothing / c)
    q[np.arange(len(t)), np.where(valid, t, 0)] += 1.0 - label_smoothing
    losses = -(q * lsm).sum(axis=1) * valid
    if reduction == "none":
        return losses.reshape(out_shape)
    return losses.sum() if reduction == "sum" else losses.sum() / valid.sum()


register("cross_entropy", F.cross_entropy, _cross_entropy_cases, _ref_cross_entropy)


@st.composite
def _nll_cases(draw, min_side):
    n, c = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ignore_index = draw(st.sampled_from([-100, 0]))
    target = np.array(draw(st.lists(st.sampled_from(list(range(c)) + [ignore_index]),
                                    min_size=n, max_size=n)), dtype=np.int64)
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    if reduction == "mean":
        assume((target != ignore_index).any())
    return Case((draw(arrays((n, c))), target), {"ignore_index": ignore_index, "reduction": reduction})


def _ref_nll(x, target, ignore_index, reduction):
    valid = target != ignore_index
    picked = -x[np.arange(len(target)), np.where(valid, target, 0)] * valid
    if reduction == "none":
        return picked
    return picked.sum() if reduction == "sum" else picked.sum() / valid.sum()


register("nll_loss", F.nll_loss, _nll_cases, _ref_nll)


@st.composite
def _layer_norm_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, max_dims=3))
    k = draw(st.integers(1, len(shape)))
    normalized = shape[len(shape) - k:]
    assume(math.prod(normalized) >= 2)
    affine = draw(st.sampled_from([(), ("weight",), ("bias",), ("weight", "bias")]))
    params = tuple(draw(arrays(normalized)) for _ in affine)
    # distinct values: no row is constant, where the normalisation has a kink
    return Case((draw(distinct_arrays(shape)),) + params, {"normalized_shape": normalized,
                                                            "affine": affine})


def _ref_layer_norm(x, *params, normalized_shape, affine, eps=1e-5):
    ax = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    xc = x - x.mean(axis=ax, keepdims=True)
    y = xc / np.sqrt((xc * xc).mean(axis=ax, keepdims=True) + eps)
    p = dict(zip(affine, params))
    return y * p.get("weight", 1.0) + p.get("bias", 0.0)


register("layer_norm",
         lambda x, *params, normalized_shape, affine:
         F.layer_norm(x, normalized_shape, **dict(zip(affine, params))),
         _layer_norm_cases, _ref_layer_norm)


def _seeded_dropout(x, p):
    mg.manual_seed(7)   # the same mask on every call: gradcheck evaluates fn many times
    return F.dropout(x, p)


def _ref_dropout(x, p):
    """By composition: dropout(x) == x * dropout(ones) under the same seed
    (test_functional checks the mask itself: values 0 or 1/(1-p), mean scale 1)."""
    mask = _seeded_dropout(mg.ones(x.shape, dtype="float64"), p).numpy()
    return x * mask


register("dropout", _seeded_dropout, unary(p=st.sampled_from([0.0, 0.25, 0.5, 1.0])), _ref_dropout,
         empty_ok=True, random=True)


@st.composite
def _masked_fill_cases(draw, min_side):
    sx, sm = draw(broadcastable_shapes(min_side=min_side))
    sx = np.broadcast_shapes(sx, sm)
    mask = np.array(draw(st.lists(st.booleans(), min_size=math.prod(sm), max_size=math.prod(sm))),
                    dtype=bool).reshape(sm)
    return Case((draw(arrays(sx)), mask), {"value": draw(st.sampled_from([0.0, -1.5, 1e4]))})


register("masked_fill", F.masked_fill, _masked_fill_cases,
         lambda x, mask, value: np.where(mask, value, x), empty_ok=True)


@st.composite
def _sdpa_cases(draw, min_side):
    batch = draw(shapes(max_dims=2, max_side=2))
    L, S, E, Ev = (draw(st.integers(1, 3)) for _ in range(4))
    assume(math.prod(batch) * max(L, S) * max(E, Ev) <= 24)
    q, k, v = (draw(arrays(batch + s)) for s in ((L, E), (S, E), (S, Ev)))
    kind = draw(st.sampled_from(["none", "causal", "bool", "float", "fully masked row"]))
    kwargs = {"is_causal": kind == "causal", "scale": draw(st.sampled_from([None, 0.7]))}
    args = (q, k, v)
    if kind in ("bool", "fully masked row"):
        mask = np.array(draw(st.lists(st.booleans(), min_size=L * S, max_size=L * S))).reshape(L, S)
        if kind == "fully masked row":
            mask[draw(st.integers(0, L - 1))] = False
        args += (mask,)
    elif kind == "float":
        args += (draw(arrays((L, S))),)
    return Case(args, kwargs)


def _ref_sdpa(q, k, v, mask=None, is_causal=False, scale=None):
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    allowed = np.ones(s.shape[-2:], dtype=bool)
    if is_causal:
        allowed &= np.tril(allowed)
    if mask is not None and mask.dtype == bool:
        allowed = allowed & mask
    elif mask is not None:
        s = s + mask
    s = np.where(allowed, s, -np.inf)
    m = np.max(s, axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    total = e.sum(axis=-1, keepdims=True)
    return (e / np.where(total == 0, 1.0, total)) @ v


register("scaled_dot_product_attention",
         lambda q, k, v, *mask, **kw: F.scaled_dot_product_attention(
             q, k, v, attn_mask=mask[0] if mask else None, **kw),
         _sdpa_cases, _ref_sdpa)


@st.composite
def _lstm_cell_cases(draw, min_side):
    batch = draw(shapes(max_dims=2, max_side=2, min_side=min_side))
    H = draw(st.integers(1, 3))
    return Case((draw(arrays(batch + (4 * H,))), draw(arrays(batch + (H,)))), {})


def _ref_lstm_cell(a, c):
    H = c.shape[-1]
    sig = 1 / (1 + np.exp(-a))
    i, f, o, g = sig[..., :H], sig[..., H:2 * H], sig[..., 3 * H:], np.tanh(a[..., 2 * H:3 * H])
    c_next = f * c + i * g
    return np.concatenate([o * np.tanh(c_next), c_next], axis=-1)


register("lstm_cell", lambda a, c: mg.concatenate(list(F.lstm_cell(a, c)), axis=-1),
         _lstm_cell_cases, _ref_lstm_cell, empty_ok=True)


@st.composite
def _lstm_sequence_cases(draw, min_side):
    T = draw(st.integers(0 if min_side == 0 else 1, 3))
    batch = draw(shapes(max_dims=2, max_side=2, min_side=min_side))
    H = draw(st.integers(1, 3))
    bias = (draw(arrays((4 * H,))),) if draw(st.booleans()) else ()
    return Case((draw(arrays((T,) + batch + (4 * H,))), draw(arrays(batch + (H,))),
                 draw(arrays(batch + (H,))), draw(arrays((4 * H, H))), *bias), {})


def _lstm_sequence_flat(gx, h0, c0, w, b=None):
    hs, (h, c) = F.lstm_sequence(gx, h0, c0, w, b)
    return mg.concatenate([hs.reshape((-1,)), h.reshape((-1,)), c.reshape((-1,))])


def _ref_lstm_sequence(gx, h0, c0, w, b=None):
    h, c, hs = h0, c0, []
    for t in range(gx.shape[0]):
        hc = _ref_lstm_cell(gx[t] + h @ w.T + (0 if b is None else b), c)
        h, c = hc[..., :c0.shape[-1]], hc[..., c0.shape[-1]:]
        hs.append(h.reshape(-1))
    return np.concatenate(hs + [h.reshape(-1), c.reshape(-1)])


register("lstm_sequence", _lstm_sequence_flat, _lstm_sequence_cases, _ref_lstm_sequence,
         empty_ok=True)


@st.composite
def _gru_cell_cases(draw, min_side):
    batch = draw(shapes(max_dims=2, max_side=2, min_side=min_side))
    H = draw(st.integers(1, 3))
    return Case((draw(arrays(batch + (3 * H,))), draw(arrays(batch + (3 * H,))),
                 draw(arrays(batch + (H,)))), {})


def _ref_gru_cell(gx, gh, h):
    H = h.shape[-1]
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    r = sig(gx[..., :H] + gh[..., :H])
    z = sig(gx[..., H:2 * H] + gh[..., H:2 * H])
    n = np.tanh(gx[..., 2 * H:] + r * gh[..., 2 * H:])
    return (1 - z) * n + z * h


register("gru_cell", F.gru_cell, _gru_cell_cases, _ref_gru_cell, empty_ok=True)


def _recurrent_sequence_cases(gates: int, nonlinearities=("tanh",)):
    """(gx (T, ..., G·H), h0 (..., H), W_hh (G·H, H)[, b_hh (G·H,)]) for a fused recurrence; a
    relu case keeps every pre-activation away from the kink, where differences see no slope."""
    @st.composite
    def cases(draw, min_side):
        T = draw(st.integers(0 if min_side == 0 else 1, 3))
        batch = draw(shapes(max_dims=2, max_side=2, min_side=min_side))
        H = draw(st.integers(1, 3))
        bias = (draw(arrays((gates * H,))),) if draw(st.booleans()) else ()
        args = (draw(arrays((T,) + batch + (gates * H,))), draw(arrays(batch + (H,))),
                draw(arrays((gates * H, H), -1.0, 1.0)), *bias)
        kwargs = {"nonlinearity": draw(st.sampled_from(nonlinearities))} if gates == 1 else {}
        if kwargs.get("nonlinearity") == "relu":
            assume(np.abs(_rnn_pre_activations(*args)).min(initial=1.0) > 0.05)
        return Case(args, kwargs)
    return cases


def _gru_sequence_flat(gx, h0, w, b=None):
    hs, h = F.gru_sequence(gx, h0, w, b)
    return mg.concatenate([hs.reshape((-1,)), h.reshape((-1,))])


def _ref_gru_sequence(gx, h0, w, b=None):
    h, hs = h0, []
    for t in range(gx.shape[0]):
        h = _ref_gru_cell(gx[t], h @ w.T + (0 if b is None else b), h)
        hs.append(h.reshape(-1))
    return np.concatenate(hs + [h.reshape(-1)])


register("gru_sequence", _gru_sequence_flat, _recurrent_sequence_cases(3), _ref_gru_sequence,
         empty_ok=True)


def _rnn_sequence_flat(gx, h0, w, b=None, nonlinearity="tanh"):
    hs, h = F.rnn_sequence(gx, h0, w, b, nonlinearity=nonlinearity)
    return mg.concatenate([hs.reshape((-1,)), h.reshape((-1,))])


def _rnn_steps(gx, h0, w, b, nonlinearity):
    """The pre-activations and hidden states of every step, in NumPy."""
    h, pres, hs = h0, [], []
    for t in range(gx.shape[0]):
        pre = gx[t] + h @ w.T + (0 if b is None else b)
        h = np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0)
        pres.append(pre.reshape(-1))
        hs.append(h.reshape(-1))
    return pres, hs, h


def _rnn_pre_activations(gx, h0, w, b=None):
    pres, _, _ = _rnn_steps(gx, h0, w, b, "relu")
    return np.concatenate(pres) if pres else np.zeros(0)


def _ref_rnn_sequence(gx, h0, w, b=None, nonlinearity="tanh"):
    _, hs, h = _rnn_steps(gx, h0, w, b, nonlinearity)
    return np.concatenate(hs + [h.reshape(-1)])


register("rnn_sequence", _rnn_sequence_flat, _recurrent_sequence_cases(1, ("tanh", "relu")),
         _ref_rnn_sequence, empty_ok=True)


@st.composite
def _mse_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side))
    return Case((draw(arrays(shape)), draw(arrays(shape))),
                {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))})


def _ref_mse(x, t, reduction):
    sq = (x - t) ** 2
    return sq if reduction == "none" else sq.sum() if reduction == "sum" else sq.mean()


register("mse_loss", F.mse_loss, _mse_cases, _ref_mse)


# =========================================================================== added ops (issue 10, 5)
# Pointwise math, running sums and products, sorting, gathers, layout, einsum, activations and
# losses. Ops whose results are integers or bools (argsort, one_hot, isnan, isinf) are covered
# through a float use of their result; tests/minigrad/test_new_ops.py checks them directly.


def _sampled_arrays(shape, values):
    """float64 arrays of ``shape`` whose elements are drawn from ``values``."""
    n = math.prod(shape)
    return st.lists(st.sampled_from(values), min_size=n, max_size=n).map(
        lambda v: np.array(v, dtype=np.float64).reshape(shape))


_INTEGERS = tuple(float(k) for k in range(-2, 3))          # the jumps of floor and ceil in [-2, 2]
_HALVES = tuple(k + 0.5 for k in range(-3, 3))             # the jumps of round
_TENTHS_HALVES = tuple(round(k / 10 + 0.05, 2) for k in range(-21, 21))   # round(x, 1)'s jumps

register("sin", mg.sin, unary(-3.0, 3.0), np.sin, empty_ok=True)
register("cos", mg.cos, unary(-3.0, 3.0), np.cos, empty_ok=True)
register("log2", mg.log2, unary(0.2, 3.0), np.log2, empty_ok=True)
register("exp2", mg.exp2, unary(), np.exp2, empty_ok=True)
register("floor", mg.floor, unary(avoid=_INTEGERS), np.floor, empty_ok=True)
register("ceil", mg.ceil, unary(avoid=_INTEGERS), np.ceil, empty_ok=True)
register("round", mg.round, unary(avoid=_HALVES), np.round, empty_ok=True)


@st.composite
def _round_decimals_cases(draw, min_side):
    x = draw(shapes(min_side=min_side).flatmap(lambda s: arrays(s, avoid=_TENTHS_HALVES, margin=0.02)))
    return Case((x,), {"decimals": draw(st.sampled_from([1, -1]))})


register("round[decimals]", mg.round, _round_decimals_cases, np.round, covers=())


# Divisors ±1/2, ±1, ±2 and dividends k/2 + 1/4 + [0, 0.1] keep a/b at least 0.075 from an
# integer: floordiv and mod never meet a jump, whatever the broadcasting.
def _divisors(shape):
    return _sampled_arrays(shape, (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0))


register("floordiv", mg.floordiv, binary(_lattice_b, _divisors), np.floor_divide, empty_ok=True)
register("mod", mg.mod, binary(_lattice_b, _divisors), np.mod, empty_ok=True)
register("operators[// %]", lambda a, b: a // b + (a % b) * 2.0 - 1.25 // b + 1.25 % b + a % 2.0,
         binary(_lattice_b, _divisors),
         lambda a, b: a // b + (a % b) * 2.0 - 1.25 // b + 1.25 % b + a % 2.0, covers=())


@st.composite
def _cumsum_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side))
    axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1))) if shape else None
    return Case((draw(arrays(shape)),), {"axis": axis})


def _with_zeros(shape):
    """arrays with about one element in five exactly 0 (where prod's gradient is subtle)."""
    n = math.prod(shape)
    return st.tuples(arrays(shape), st.lists(st.integers(0, 4), min_size=n, max_size=n)).map(
        lambda az: np.where(np.array(az[1], dtype=np.int64).reshape(shape) == 0, 0.0, az[0]))


register("cumsum", mg.cumsum, _cumsum_cases, np.cumsum, empty_ok=True)
register("prod", mg.prod, reduction(_with_zeros, min_count=0), np.prod, empty_ok=True)


@st.composite
def _sort_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1)))
    return Case((draw(distinct_arrays(shape)),), {"axis": axis, "descending": draw(st.booleans())})


def _ref_sort(x, axis, descending):
    out = np.sort(x, axis=axis)
    return np.flip(out, axis=-1 if axis is None else axis) if descending else out


@st.composite
def _topk_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    return Case((draw(distinct_arrays(shape)),), {"k": draw(st.integers(0, shape[axis])), "axis": axis,
                                                  "largest": draw(st.booleans())})


def _ref_topk(x, k, axis, largest):
    s = np.sort(x, axis=axis)
    return np.take(np.flip(s, axis=axis) if largest else s, np.arange(k), axis=axis)


register("sort", mg.sort, _sort_cases, _ref_sort, empty_ok=True)
register("argsort", lambda x, axis, descending: mg.take_along_axis(x, mg.argsort(x, axis, descending), axis),
         _sort_cases, _ref_sort, covers=("argsort",), empty_ok=True)
register("topk", lambda x, k, axis, largest: mg.topk(x, k, axis, largest)[0], _topk_cases, _ref_topk,
         empty_ok=True)


def _int_array(draw, shape, low: int, high: int) -> np.ndarray:
    """int64 array of ``shape`` with values in [low, high) (empty when high <= low)."""
    n = math.prod(shape)
    if high <= low:
        assume(n == 0)
        return np.zeros(shape, dtype=np.int64)
    return np.array(draw(st.lists(st.integers(low, high - 1), min_size=n, max_size=n)),
                    dtype=np.int64).reshape(shape)


@st.composite
def _take_along_axis_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    if draw(st.integers(0, 4)) == 0:            # axis=None: x flattened, indices 1-D
        n = math.prod(shape)
        idx = _int_array(draw, (draw(st.integers(0, 5)) if n else 0,), -n, n)
        return Case((draw(arrays(shape)), idx), {"axis": None})
    nd = len(shape)
    axis = draw(st.integers(-nd, nd - 1))
    n = shape[axis]
    # other dims: x's size, or 1 (broadcast against x); the axis itself: any length (0 if x's is)
    ishape = [1 if draw(st.booleans()) and draw(st.booleans()) else s for s in shape]
    ishape[axis] = draw(st.integers(min_side, 4)) if n else 0
    return Case((draw(arrays(shape)), _int_array(draw, tuple(ishape), -n, n)), {"axis": axis})


@st.composite
def _gather_cases(draw, min_side):
    shape = draw(shapes(min_dims=1, min_side=min_side))
    nd = len(shape)
    dim = draw(st.integers(-nd, nd - 1))
    ishape = [draw(st.integers(min(min_side, s), s)) for s in shape]     # no longer than x's
    ishape[dim] = draw(st.integers(min_side, 4)) if shape[dim] else 0
    return Case((draw(arrays(shape)), _int_array(draw, tuple(ishape), 0, shape[dim])), {"dim": dim})


def _ref_gather(x, idx, dim):
    d = dim % x.ndim
    trimmed = x[tuple(slice(None) if e == d else slice(0, n) for e, n in enumerate(idx.shape))]
    return np.take_along_axis(trimmed, idx, d)


@st.composite
def _one_hot_cases(draw, min_side):
    c = draw(st.integers(1, 4))
    ishape = draw(shapes(max_dims=2, min_side=min_side, max_size=6))
    return Case((draw(arrays((c,))), _int_array(draw, ishape, 0, c)), {"num_classes": c})


register("take_along_axis", mg.take_along_axis, _take_along_axis_cases, np.take_along_axis,
         empty_ok=True)
register("gather", lambda x, idx, dim: mg.gather(x, dim, idx), _gather_cases, _ref_gather, empty_ok=True)
register("one_hot", lambda w, idx, num_classes: (mg.one_hot(idx, num_classes).astype(w.dtype) * w).sum(-1),
         _one_hot_cases, lambda w, idx, num_classes: w[idx], empty_ok=True)


@st.composite
def _triangle_cases(draw, min_side):
    return Case((draw(shapes(min_dims=2, min_side=min_side).flatmap(arrays)),),
                {"k": draw(st.integers(-2, 2))})


@st.composite
def _flatten_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side))
    nd = max(len(shape), 1)
    start, end = draw(st.integers(-nd, nd - 1)), draw(st.integers(-nd, nd - 1))
    assume(start % nd <= end % nd)
    return Case((draw(arrays(shape)),), {"start_dim": start, "end_dim": end})


def _ref_flatten(x, start_dim, end_dim):
    if x.ndim == 0:
        return x.reshape(1)
    s, e = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


@st.composite
def _repeat_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side, max_size=8))
    axis = draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1))) if shape else None
    n = math.prod(shape) if axis is None else shape[axis]
    repeats = draw(st.one_of(st.integers(0, 3), st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    return Case((draw(arrays(shape)),), {"repeats": repeats, "axis": axis})


@st.composite
def _tile_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side, max_size=8))
    reps = draw(st.one_of(st.integers(0, 3), st.lists(st.integers(0, 3), max_size=4).map(tuple)))
    assume(np.tile(np.zeros(shape), reps).size <= 48)
    return Case((draw(arrays(shape)),), {"reps": reps})


@st.composite
def _roll_cases(draw, min_side):
    shape = draw(shapes(min_side=min_side))
    nd = len(shape)
    kind = draw(st.sampled_from(["flat", "axis", "axes"])) if nd else "flat"
    if kind == "flat":
        return Case((draw(arrays(shape)),), {"shift": draw(st.integers(-5, 5)), "axis": None})
    if kind == "axis":
        return Case((draw(arrays(shape)),), {"shift": draw(st.integers(-5, 5)),
                                             "axis": draw(st.integers(-nd, nd - 1))})
    axes_ = tuple(draw(st.lists(st.integers(-nd, nd - 1), min_size=1, max_size=3)))   # repeats too
    shift = draw(st.one_of(st.integers(-4, 4), st.tuples(*[st.integers(-4, 4) for _ in axes_])))
    return Case((draw(arrays(shape)),), {"shift": shift, "axis": axes_})


register("tril", mg.tril, _triangle_cases, np.tril, empty_ok=True)
register("triu", mg.triu, _triangle_cases, np.triu, empty_ok=True)
register("flatten", mg.flatten, _flatten_cases, _ref_flatten, empty_ok=True)
register("repeat", mg.repeat, _repeat_cases, np.repeat, covers=("repeat", "repeat_interleave"),
         empty_ok=True)
register("tile", mg.tile, _tile_cases, np.tile, empty_ok=True)
register("roll", mg.roll, _roll_cases, np.roll, empty_ok=True)

# einsum: matmuls, batches, traces and diagonals (a repeated letter), outer products, sums,
# implicit outputs (mixed case), '...' (broadcast), three operands, a 0-d operand
_EINSUM_SPECS = ("ij,jk->ik", "bij,bjk->bik", "ii->", "ii->i", "i,j->ij", "ij->", "ij->ji", "ij,jk",
                 "...ij,...jk->...ik", "ij,jk,kl->il", "i,i->", "ij,j->i", "iij->j", "bi,bi->b",
                 "...i,i->...", "a,->a", "jiJ,Ji", "ij,ij->ij")


@st.composite
def _einsum_cases(draw, min_side):
    spec = draw(st.sampled_from(_EINSUM_SPECS))
    terms = spec.split("->")[0].split(",")
    sizes = {c: draw(st.integers(min_side, 3)) for c in sorted(set(spec) - set(".,->"))}
    batch = iter(draw(broadcastable_shapes(max(sum("..." in t for t in terms), 1), max_dims=2,
                                           max_side=2, min_side=min_side)))
    args = []
    for t in terms:
        lead = next(batch) if "..." in t else ()
        # a letter used once in a term may have size 1 here (it broadcasts against the others)
        dims = [1 if t.count(c) == 1 and draw(st.integers(0, 5)) == 0 else sizes[c]
                for c in t.replace("...", "")]
        args.append(tuple(lead) + tuple(dims))
    assume(all(math.prod(s) <= 24 for s in args))
    assume(np.einsum(spec, *[np.zeros(s) for s in args]).size <= 24)
    return Case(tuple(draw(arrays(s)) for s in args), {"subscripts": spec})


register("einsum", lambda *xs, subscripts: mg.einsum(subscripts, *xs), _einsum_cases,
         lambda *xs, subscripts: np.einsum(subscripts, *xs), empty_ok=True)


@st.composite
def _special_cases(draw, min_side, specials):
    """arrays with some elements replaced by one of ``specials`` (NaN, ±inf)."""
    shape = draw(shapes(min_side=min_side))
    x = draw(arrays(shape))
    pick = _int_array(draw, shape, 0, len(specials) + 2)       # 0, 1: keep; 2...: a special
    return Case((np.where(pick >= 2, np.array(specials + (0.0, 0.0))[pick - 2], x),), {})


register("isnan", lambda x: mg.where(mg.isnan(x), 0.0, x), lambda s: _special_cases(s, (math.nan,)),
         lambda x: np.where(np.isnan(x), 0.0, x), empty_ok=True)
register("isinf", lambda x: mg.where(mg.isinf(x), 0.0, x),
         lambda s: _special_cases(s, (math.inf, -math.inf)), lambda x: np.where(np.isinf(x), 0.0, x),
         empty_ok=True)

# --------------------------------------------------------------------------- activations


@st.composite
def _softplus_cases(draw, min_side):
    beta, threshold = draw(st.sampled_from([1.0, 0.5, 2.0])), draw(st.sampled_from([20.0, 1.0, math.inf]))
    x = draw(shapes(min_side=min_side).flatmap(
        lambda s: arrays(s, -4.0, 4.0, avoid=(threshold / beta,))))    # the jump onto the linear tail
    return Case((x,), {"beta": beta, "threshold": threshold})


def _ref_softplus(x, beta, threshold):
    return np.where(beta * x > threshold, x, np.logaddexp(0.0, beta * x) / beta)


register("silu", F.silu, unary(-4.0, 4.0), lambda x: x / (1.0 + np.exp(-x)), empty_ok=True)
register("softplus", F.softplus, _softplus_cases, _ref_softplus, empty_ok=True)
register("leaky_relu", F.leaky_relu,
         unary(avoid=(0.0,), negative_slope=st.sampled_from([0.01, 0.2, -0.5])),
         lambda x, negative_slope: np.where(x > 0, x, negative_slope * x), empty_ok=True)
register("elu", F.elu, unary(-3.0, 3.0, avoid=(0.0,), alpha=st.sampled_from([1.0, 0.5, 2.0])),
         lambda x, alpha: np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0))), empty_ok=True)

# --------------------------------------------------------------------------- losses


def _ref_reduce(losses, reduction):
    return losses if reduction == "none" else losses.sum() if reduction == "sum" else losses.mean()


@st.composite
def _binary_loss_cases(draw, min_side, logits):
    shape = draw(shapes(min_side=min_side))
    x = draw(arrays(shape, -4.0, 4.0) if logits else arrays(shape, 0.05, 0.95))
    t = draw(arrays(shape, 0.0, 1.0))            # soft targets: their gradient is checked too
    names = draw(st.sampled_from([(), ("weight",), ("pos_weight",), ("weight", "pos_weight")]
                                 if logits else [(), ("weight",)]))
    params = []
    for name in names:
        k = draw(st.integers(0, len(shape))) if name == "weight" else min(len(shape), 1)
        params.append(draw(arrays(shape[len(shape) - k:], 0.5, 2.0)))   # broadcasts to x's shape
    return Case((x, t, *params), {"names": names,
                                  "reduction": draw(st.sampled_from(["mean", "sum", "none"]))})


def _ref_bce(x, t, *params, names, reduction):
    w = dict(zip(names, params)).get("weight", 1.0)
    return _ref_reduce(-w * (t * np.log(x) + (1 - t) * np.log(1 - x)), reduction)


def _ref_bce_with_logits(x, t, *params, names, reduction):
    p = dict(zip(names, params))
    pw, w = p.get("pos_weight", 1.0), p.get("weight", 1.0)
    return _ref_reduce(w * ((1 - t) * x + (1 + (pw - 1) * t) * np.logaddexp(0.0, -x)), reduction)


register("binary_cross_entropy",
         lambda x, t, *params, names, reduction:
         F.binary_cross_entropy(x, t, reduction=reduction, **dict(zip(names, params))),
         lambda s: _binary_loss_cases(s, logits=False), _ref_bce)
register("binary_cross_entropy_with_logits",
         lambda x, t, *params, names, reduction:
         F.binary_cross_entropy_with_logits(x, t, reduction=reduction, **dict(zip(names, params))),
         lambda s: _binary_loss_cases(s, logits=True), _ref_bce_with_logits)


def _class_layout(draw) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """An input shape with classes on axis 1 ((C,): axis 0) and its target shape:
    (C,) and (), (N, C) and (N,), (N, C, d1) and (N, d1), (N, C, d1, d2) and (N, d1, d2)."""
    layout = draw(st.sampled_from(["C", "NC", "NCd", "NCdd"]))
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    ds = tuple(draw(st.integers(1, 3)) for _ in range(layout.count("d")))
    shape = (c,) if layout == "C" else (n, c) + ds
    assume(math.prod(shape) <= 24)
    return shape, (() if layout == "C" else (n,) + ds)


@st.composite
def _cross_entropy_probability_cases(draw, min_side):
    shape, _ = _class_layout(draw)
    return Case((draw(arrays(shape, -3.0, 3.0)), draw(arrays(shape, 0.0, 1.0))),
                {"reduction": draw(st.sampled_from(["mean", "sum", "none"])),
                 "label_smoothing": draw(st.sampled_from([0.0, 0.1, 0.4]))})


def _ref_cross_entropy_probabilities(x, p, reduction, label_smoothing):
    axis = 1 if x.ndim > 1 else 0
    q = p * (1 - label_smoothing) + label_smoothing / x.shape[axis]
    return _ref_reduce(-(q * _ref_log_softmax(x, axis)).sum(axis=axis), reduction)


@st.composite
def _class_index_cases(draw, min_side, with_weight):
    shape, tshape = _class_layout(draw)
    c = shape[1] if len(shape) > 1 else shape[0]
    target, ignore_index, reduction = _targets(draw, c, tshape)
    weight = (draw(arrays((c,), 0.5, 2.0)),) if with_weight and draw(st.booleans()) else ()
    return Case((draw(arrays(shape, -3.0, 3.0)), target, *weight),
                {"ignore_index": ignore_index, "reduction": reduction})


def _ref_nll_weighted(x, target, weight=None, *, ignore_index, reduction):
    rows = np.moveaxis(x[None] if x.ndim == 1 else x, 1, -1).reshape(-1, x.shape[1 if x.ndim > 1 else 0])
    t = target.reshape(-1)
    valid = t != ignore_index
    safe = np.where(valid, t, 0)
    w = (np.ones(rows.shape[1]) if weight is None else weight)[safe] * valid
    losses = -rows[np.arange(len(t)), safe] * w
    if reduction == "none":
        return losses.reshape(target.shape)
    return losses.sum() if reduction == "sum" else losses.sum() / w.sum()


register("cross_entropy[probabilities]", F.cross_entropy, _cross_entropy_probability_cases,
         _ref_cross_entropy_probabilities, covers=())
register("cross_entropy[layouts]",
         lambda x, t, **kw: F.cross_entropy(x, t, **kw),
         lambda s: _class_index_cases(s, with_weight=False),
         lambda x, t, **kw: _ref_cross_entropy(x, t, label_smoothing=0.0, **kw), covers=())
register("nll_loss[weight, N C d...]",
         lambda x, t, *w, ignore_index, reduction:
         F.nll_loss(x, t, weight=w[0] if w else None, ignore_index=ignore_index, reduction=reduction),
         lambda s: _class_index_cases(s, with_weight=True), _ref_nll_weighted, covers=())


# --------------------------------------------------------------------------- edge points
# Explicit examples beside the drawn cases (test_ops_registry.py checks them on every
# device): each gradient below is what PyTorch returns at that point, in float64.

def edge(name: str, args, grads, why: str, **kwargs) -> None:
    """Add an edge example to the entry ``name`` (args: lists or arrays; grads: one
    per float argument, for an upstream gradient of ones)."""
    i = next(i for i, e in enumerate(REGISTRY) if e.name == name)
    case = Case(tuple(np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f"
                      else np.asarray(a) for a in args), kwargs)
    grads = tuple(np.asarray(g, dtype=np.float64) for g in grads)
    REGISTRY[i] = replace(REGISTRY[i], edges=REGISTRY[i].edges + (Edge(case, grads, why),))


inf, nan = math.inf, math.nan
edge("pow", ([0.0], [0.0]), ([0.0], [0.0]), "x^0 = 1 for every x; 0^y = 0 for y > 0")
edge("pow", ([0.0], [2.0]), ([0.0], [0.0]), "0^y is flat in y for y > 0: log 0 · 0 taken as 0")
edge("pow", ([0.0], [0.5]), ([inf], [0.0]), "√x at 0: an infinite slope, not NaN")
edge("pow", ([-2.0], [2.0]), ([-4.0], [nan]), "x < 0: x^y has no real derivative in y")
edge("sqrt", ([0.0],), ([inf],), "one-sided: the slope of √x at 0+ is +inf")
edge("log", ([0.0],), ([inf],), "one-sided: the slope of log x at 0+ is +inf")
edge("abs", ([0.0, -1.0],), ([0.0, -1.0],), "sign(0) = 0, the subgradient PyTorch picks")
edge("relu", ([0.0, 2.0],), ([0.0, 1.0],), "relu'(0) = 0, as PyTorch")
edge("maximum", ([1.0], [1.0]), ([0.5], [0.5]), "a tie shares the gradient evenly")
edge("max", ([1.0, 1.0, 0.0],), ([0.5, 0.5, 0.0],), "ties share the gradient evenly (amax)",
     axis=None, keepdims=False)
edge("std", ([3.0, 3.0],), ([0.0, 0.0],), "std of equal values: 0/0 in the chain rule; 0",
     axis=None, keepdims=False, ddof=0)
edge("std", ([3.0],), ([0.0],), "std of one value", axis=None, keepdims=False, ddof=0)
edge("var", ([3.0],), ([0.0],), "var of one value: 2(x - mean)/n = 0", axis=None, keepdims=False,
     ddof=0)
for _ord in (2, 3, 1.5, 1, inf):
    edge("norm", ([0.0, 0.0],), ([0.0, 0.0],), "a norm at 0: the subgradient 0", axis=None,
         keepdims=False, ord=_ord)
edge("logsumexp", ([-inf, 0.0],), ([0.0, 1.0],), "a -inf entry weighs exp(-inf) = 0",
     axis=None, keepdims=False)
edge("log_softmax", ([[-inf, 0.0]],), ([[1.0, -1.0]],), "a masked entry: finite gradients",
     axis=-1)
edge("cross_entropy", ([[1.0, 2.0], [0.0, 0.0]], [-100, -100]), ([[0.0, 0.0], [0.0, 0.0]],),
     "every target ignored: the mean is NaN (0/0) but nothing moves", ignore_index=-100,
     reduction="mean", label_smoothing=0.0)
edge("cross_entropy", ([[0.0, -inf]], [0]), ([[0.0, 0.0]],), "a -inf logit off the target",
     ignore_index=-100, reduction="mean", label_smoothing=0.0)
edge("prod", ([0.0, 2.0, 3.0],), ([6.0, 0.0, 0.0],), "a zero factor: the product of the others",
     axis=None, keepdims=False)
edge("prod", ([0.0, 0.0, 3.0],), ([0.0, 0.0, 0.0],), "two zero factors", axis=None,
     keepdims=False)
