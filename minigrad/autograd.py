"""The graph and reverse-mode differentiation.

Every op is a ``Function``: ``forward`` works on raw backend arrays and
returns one array; ``backward`` receives the gradient of the output as a
``Tensor`` and returns one gradient per input, written with minigrad's own
differentiable ops. That is why higher-order derivatives come for free: with
``create_graph=True`` the backward pass is itself recorded as a graph.

The engine (``backward``) sorts the graph iteratively (no recursion, so a
100,000-op chain is fine), walks it once in reverse, sums the gradients of
reused tensors, and reduces broadcast gradients back to each input's shape
(one shared helper, ``unbroadcast``), so op authors never handle broadcasting.
"""

from __future__ import annotations

import contextlib
import os
import threading
import traceback
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from .backend import xp_of
from .errors import AnomalyError, DeviceError, GraphError
from .tensor import Tensor, tensor

__all__ = ["Function", "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled",
           "detect_anomaly", "grad", "backward", "unbroadcast"]


# --------------------------------------------------------------------------- grad mode

class _Mode(threading.local):
    grad_enabled = True
    anomaly = False
    backward_pass = False     # the engine is walking a graph (minigrad.profile reads it)


_mode = _Mode()


def is_grad_enabled() -> bool:
    return _mode.grad_enabled


class _GradMode(contextlib.ContextDecorator):
    """Base of ``no_grad`` / ``enable_grad``: a context manager and a decorator."""

    enabled = True

    def __enter__(self):
        self._prev = _mode.grad_enabled
        _mode.grad_enabled = self.enabled
        return self

    def __exit__(self, *exc):
        _mode.grad_enabled = self._prev
        return False


class no_grad(_GradMode):
    """Ops run inside record no graph (``with no_grad():`` or ``@no_grad()``)."""

    enabled = False


class enable_grad(_GradMode):
    """Re-enable recording inside a ``no_grad`` block."""

    enabled = True


class set_grad_enabled(_GradMode):
    def __init__(self, mode: bool):
        self.enabled = bool(mode)


class _BackwardPass:
    """Marks the engine's walk of a graph (so ``minigrad.profile`` can tell the ops of a
    backward pass from those of a forward); restores the previous mark, since a node's
    backward may run the engine again (``create_graph`` paths of the fused ops)."""

    def __enter__(self):
        self._prev = _mode.backward_pass
        _mode.backward_pass = True
        return self

    def __exit__(self, *exc):
        _mode.backward_pass = self._prev
        return False


class detect_anomaly(contextlib.ContextDecorator):
    """Raise ``AnomalyError`` at the first op whose forward output or backward
    gradient holds a NaN or inf, naming the op and the line of user code that
    created it. Slow (it syncs and records stacks): for debugging only."""

    def __enter__(self):
        self._prev = _mode.anomaly
        _mode.anomaly = True
        return self

    def __exit__(self, *exc):
        _mode.anomaly = self._prev
        return False


def _user_frame() -> str:
    """The innermost stack frame outside minigrad: where the user created an op."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    for fr in reversed(traceback.extract_stack()[:-1]):
        if not os.path.abspath(fr.filename).startswith(pkg):
            return f'File "{fr.filename}", line {fr.lineno}, in {fr.name}\n    {fr.line}'
    return "<inside minigrad>"


def _all_finite(a) -> bool:
    return bool(xp_of(a).isfinite(a).all())


# --------------------------------------------------------------------------- Function

class Function:
    """An op in the graph. Subclasses define ``forward(*arrays)`` and
    ``backward(grad)``; constructor keyword arguments become attributes.

    In ``backward``: ``self.inputs`` are the input Tensors (use them, not
    raw arrays, so the backward pass is differentiable), ``self.output`` is
    the output Tensor, and anything ``forward`` stored on ``self`` is there.
    Return one gradient per input (a Tensor, or None for "no gradient").
    Broadcast gradients may be returned unreduced: the engine sums them back
    to the input's shape.

    Optionally, a fast first-order path: ``backward_raw(g_array)`` takes the
    output's gradient as a raw backend array and returns raw arrays, one per
    input (or None for "no gradient"), or None as a whole for "no fast path
    here, use ``backward``". The engine calls it instead of ``backward``
    whenever no graph of the backward pass is wanted (``create_graph=False``,
    the usual ``loss.backward()``); ``backward`` stays the differentiable VJP,
    used for higher derivatives. So an op never asks which mode it is in.
    """

    inputs: tuple[Tensor, ...]
    differentiable: bool = True   # False: comparisons, argmax, ... (output never requires grad)
    # What backward reads, so that an in-place change to it in between is caught (version
    # counters): ``saves`` lists the input indices (None: every input), ``saves_output``
    # whether it reads ``self.output``. Declaring less than is read hides a wrong gradient;
    # the default (everything) is always safe, at worst refusing a harmless change.
    saves: tuple[int, ...] | None = None
    saves_output: bool = True
    # True for ops whose output shares memory with input 0 (basic slices, reshapes,
    # transposes): the output shares its version counter, so writing into either is seen.
    is_view: bool = False
    # Optional, first order only: ``backward_raw(g_array)`` -> raw arrays (see above).
    backward_raw = None
    # Optional, for ops whose gradient is sparse (slices, gathers) and whose first input is the
    # one differentiated: ``backward_into(g_array, buffer_array)`` adds the input's gradient into
    # a full-size buffer in place. Used instead of ``backward`` when no graph is being built.
    backward_into = None

    def __init__(self, **params: Any):
        self.__dict__.update(params)

    @classmethod
    def apply(cls, *inputs: Tensor, **params: Any) -> Tensor:
        fn = cls(**params)
        dev = inputs[0]._device
        for t in inputs[1:]:
            if t._device is not dev and t._device != dev:
                raise DeviceError(f"{cls.name()}: tensors on different devices ({dev}, {t._device}); "
                                  "move one with .to()")
        if len(inputs) > 1:
            inputs = promote_floats(*inputs)
        out = Tensor._make(fn.forward(*[t._data for t in inputs]), dev)
        if fn.is_view:
            out._version_cell = inputs[0]._version_cell
        if (fn.differentiable and _mode.grad_enabled and out._data.dtype.kind == "f"
                and any(t._requires_grad for t in inputs)):
            out._requires_grad = True
            fn.inputs = inputs
            fn._out = weakref.ref(out)
            fn._freed = False
            saved = range(len(inputs)) if fn.saves is None else fn.saves
            fn._versions = [(i, inputs[i]._version_cell[0]) for i in saved]
            if fn.saves_output:
                fn._versions.append((-1, out._version_cell[0]))
            out._ctx = fn
        if _mode.anomaly:
            fn._where = _user_frame()
            if not _all_finite(out.data):
                raise AnomalyError(f"{cls.name()}: forward produced NaN or inf "
                                   f"(shape {out.shape}), created at\n{fn._where}")
        return out

    @classmethod
    def name(cls) -> str:
        return getattr(cls, "op_name", None) or cls.__name__.lower()

    @property
    def output(self) -> Tensor:
        return self._out()

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad: Tensor) -> Sequence[Tensor | None] | Tensor | None:
        raise NotImplementedError(f"{self.name()} has no backward")

    def __repr__(self) -> str:
        return f"<{self.name()} node>"


# --------------------------------------------------------------------------- helpers

def promote_floats(*ts):
    """The promotion rule, one for every op: the float tensors among ``ts`` cast to the
    widest float dtype among them (NumPy's order: float16 < float32 < float64) by a
    recorded ``astype``, whose backward casts the gradient back, so each input gets a
    gradient of its own dtype. Integer and bool tensors (indices, targets, masks) and
    anything that is not a tensor (None) pass through. ``Function.apply`` calls it on
    every op's inputs; a composite (``minigrad.functional``) calls it at its door."""
    first = None
    for t in ts:
        if isinstance(t, Tensor) and t._data.dtype.kind == "f":
            if first is None:
                first = t._data.dtype
            elif t._data.dtype != first:
                break
    else:
        return ts
    target = max((t._data.dtype for t in ts if isinstance(t, Tensor) and t._data.dtype.kind == "f"),
                 key=lambda d: d.itemsize)
    return tuple(t.astype(target) if isinstance(t, Tensor) and t._data.dtype.kind == "f"
                 and t._data.dtype != target else t for t in ts)


def unbroadcast(g: Tensor, shape: tuple[int, ...], op: str) -> Tensor:
    """Sum a broadcast gradient back down to ``shape`` (the one shared helper)."""
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra < 0:
        raise GraphError(f"{op}: backward returned a gradient of shape {g.shape} for an input "
                         f"of shape {shape}")
    axes = tuple(range(extra)) + tuple(
        i + extra for i, n in enumerate(shape) if n == 1 and g.shape[i + extra] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    if extra:
        g = g.reshape(shape)
    if g.shape != shape:
        raise GraphError(f"{op}: backward returned a gradient of shape {g.shape} for an input "
                         f"of shape {shape}")
    return g


def _toposort(roots: Iterable[Tensor], stop: set[int] = frozenset()) -> list[Tensor]:
    """Tensors reachable from ``roots`` through graph nodes, outputs before inputs,
    not looking past the tensors whose ids are in ``stop``.

    Iterative depth-first search: a post-order of the graph, reversed."""
    order: list[Tensor] = []
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen:
            continue
        stack: list[tuple[Tensor, bool]] = [(root, False)]
        while stack:
            t, expanded = stack.pop()
            if expanded:
                order.append(t)
                continue
            if id(t) in seen:
                continue
            seen.add(id(t))
            stack.append((t, True))
            fn = t._ctx
            if fn is not None and id(t) not in stop:
                if fn._freed:
                    raise GraphError(
                        "backward through a graph that was already freed: the first backward() "
                        "freed it; call backward(retain_graph=True) the first time to backpropagate "
                        "twice")
                for p in fn.inputs:
                    if p.requires_grad and id(p) not in seen:
                        stack.append((p, False))
    order.reverse()
    return order


def _run_backward(outputs: Sequence[Tensor], grad_outputs: Sequence[Tensor], retain_graph: bool,
                  create_graph: bool, inputs: Sequence[Tensor] | None,
                  stop_at_inputs: bool = False) -> dict[int, Tensor]:
    """The engine. Returns gradients for ``inputs`` (if given) keyed by id;
    otherwise accumulates into ``.grad`` of leaves (and ``retain_grad()`` tensors).
    ``stop_at_inputs``: partial derivatives, each input taken as independent of the
    others (the walk does not go past them), as a vector-Jacobian product needs."""
    wanted = None if inputs is None else {id(t) for t in inputs}
    acc = _Accumulator(create_graph)
    for o, g in zip(outputs, grad_outputs):
        acc.add(o, g)
    result: dict[int, Tensor] = {}
    with set_grad_enabled(create_graph), _BackwardPass():
        for t in _toposort(outputs, wanted if stop_at_inputs else frozenset()):
            g = acc.pop(t)
            if g is None:
                continue
            for hook in t._hooks:
                new = hook(g)
                if new is not None:
                    g = new
            if wanted is not None:
                if id(t) in wanted:
                    result[id(t)] = g
            elif t._ctx is None or t._retains_grad:      # a leaf (or retain_grad): keep it
                if t.grad is None:
                    t.grad = g if create_graph else g.detach()
                else:
                    t.grad = _add(t.grad, g, create_graph)
                if t._post_hooks:
                    for hook in list(t._post_hooks):
                        hook(t)
            fn = t._ctx
            if fn is None or (stop_at_inputs and id(t) in wanted):
                continue
            _check_versions(fn, t)
            if not create_graph and fn.backward_into is not None and fn.inputs[0].requires_grad:
                # sparse gradient (a slice or gather): add it into the input's buffer in place
                fn.backward_into(g.data, acc.buffer(fn.inputs[0]).data)
                _check_anomaly(fn, acc.grads[id(fn.inputs[0])], fn.inputs[0])
            else:
                _backward_node(fn, g, acc, create_graph)
            if not retain_graph:
                fn.inputs = ()
                fn._freed = True
                fn.__dict__ = {k: v for k, v in fn.__dict__.items()
                               if k in ("inputs", "_freed", "_out", "_where")}
    return result


def _check_versions(fn: Function, out: Tensor) -> None:
    """Refuse to run ``fn``'s backward if a tensor it saved was changed in place since
    (PyTorch's version-counter check): its gradient would be silently wrong."""
    for i, version in fn._versions:
        t = out if i < 0 else fn.inputs[i]
        now = t._version_cell[0]
        if now != version:
            what = "its output" if i < 0 else f"its input {i}"
            where = getattr(fn, "_where", None)
            raise GraphError(
                f"{fn.name()}: one of the variables needed for gradient computation has been "
                f"modified by an inplace operation: {what} (shape {t.shape}, {t.dtype}) was at "
                f"version {version} when {fn.name()} used it and is at version {now} now. Change "
                "it after backward(), or give the op a copy (x.clone()) to keep the original"
                + (f"; {fn.name()} was created at\n{where}" if where else
                   " (run under minigrad.detect_anomaly() to see where the op was created)"))


def _backward_node(fn: Function, g: Tensor, acc: _Accumulator, create_graph: bool) -> None:
    """Run one node's backward and add each input's (unbroadcast) gradient to ``acc``.

    The engine chooses the path: ``backward_raw`` on raw arrays when the op has one
    and no graph of the backward pass is wanted, else the differentiable ``backward``."""
    # ops inside a backward are not checked one by one under detect_anomaly: a NaN
    # there is reported as this op's backward, which is where the user can act
    anomaly, _mode.anomaly = _mode.anomaly, False
    try:
        in_grads = None
        if not create_graph and fn.backward_raw is not None:
            in_grads = _as_tensors(fn.backward_raw(g.data), g._device)
        if in_grads is None:
            in_grads = fn.backward(g)
    finally:
        _mode.anomaly = anomaly
    if not isinstance(in_grads, (tuple, list)):
        in_grads = (in_grads,)
    if len(in_grads) != len(fn.inputs):
        raise GraphError(f"{fn.name()}: backward returned {len(in_grads)} gradients for "
                         f"{len(fn.inputs)} inputs")
    for p, pg in zip(fn.inputs, in_grads):
        if pg is None or not p.requires_grad:
            continue
        pg = unbroadcast(pg, p.shape, fn.name())
        if pg.dtype != p.dtype:     # never a gradient of another dtype than its tensor's
            pg = pg.astype(p.dtype)
        _check_anomaly(fn, pg, p)
        acc.add(p, pg)


def _as_tensors(raw, dev):
    """``backward_raw``'s raw arrays as Tensors on ``dev`` (None stays None)."""
    if raw is None:
        return None
    make = Tensor._make
    if isinstance(raw, (tuple, list)):
        return [None if a is None else make(a, dev) for a in raw]
    return make(raw, dev)


def _check_anomaly(fn: Function, grad: Tensor, p: Tensor) -> None:
    if _mode.anomaly and not _all_finite(grad.data):
        raise AnomalyError(f"{fn.name()}: backward produced NaN or inf in the gradient "
                           f"of an input of shape {p.shape}; the op was created at\n"
                           f"{getattr(fn, '_where', '<unknown>')}")


def _add(old: Tensor, new: Tensor, create_graph: bool) -> Tensor:
    """old + new: a graph node when building one, else plain array addition."""
    if create_graph:
        return old + new
    return Tensor._make(old.data + new.data, old._device)


class _Accumulator:
    """Gradients waiting to be used, summed per tensor.

    Without ``create_graph`` a tensor's gradient array is added into in place
    once the engine owns it (it allocated it), so a tensor read through many
    slices (``x[t]`` for each step t) costs one buffer, not one per slice."""

    def __init__(self, create_graph: bool):
        self.create_graph = create_graph
        self.grads: dict[int, Tensor] = {}
        self.owned: set[int] = set()

    def add(self, t: Tensor, g: Tensor) -> None:
        key = id(t)
        old = self.grads.get(key)
        if old is None:
            self.grads[key] = g
        elif key in self.owned:
            old.data += g.data
        else:
            self.grads[key] = _add(old, g, self.create_graph)
            if not self.create_graph:
                self.owned.add(key)

    def buffer(self, t: Tensor) -> Tensor:
        """An engine-owned, writable gradient array for ``t`` (zeros if none yet)."""
        key = id(t)
        old = self.grads.get(key)
        if key not in self.owned:
            data = t.xp.zeros(t.shape, dtype=t.dtype) if old is None else old.data.copy()
            self.grads[key] = Tensor._make(data, t._device)
            self.owned.add(key)
        return self.grads[key]

    def pop(self, t: Tensor) -> Tensor | None:
        self.owned.discard(id(t))
        return self.grads.pop(id(t), None)


def _check_outputs(outputs, grad_outputs, where: str):
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    if grad_outputs is None:
        gos = [None] * len(outs)
    elif isinstance(grad_outputs, Tensor):
        gos = [grad_outputs]
    else:
        gos = list(grad_outputs)
    if len(gos) != len(outs):
        raise ValueError(f"{where}: got {len(outs)} outputs but {len(gos)} grad_outputs")
    final = []
    for o, g in zip(outs, gos):
        if not isinstance(o, Tensor):
            raise TypeError(f"{where}: outputs must be Tensors, got {type(o).__name__}")
        if not o.requires_grad:
            raise GraphError(f"{where}: a tensor of shape {o.shape} does not require grad and has "
                             "no graph; did you create it under no_grad() or from tensors that do not "
                             "require grad?")
        if g is None:
            if o.size != 1:
                raise GraphError(f"{where}: grad can be implicitly created only for scalar outputs; "
                                 f"got shape {o.shape}: pass gradient= of that shape")
            g = Tensor._make(o.xp.ones_like(o.data), o._device)
        else:
            if not isinstance(g, Tensor):
                g = tensor(g, dtype=o.dtype, device=o.device)
            if g.shape != o.shape:
                raise ValueError(f"{where}: gradient has shape {g.shape} but the output has shape "
                                 f"{o.shape}")
            if g._device != o._device:
                raise DeviceError(f"{where}: gradient on {g._device} but the output on {o._device}")
            if g.dtype != o.dtype:
                if g.dtype.kind != "f":
                    raise TypeError(f"{where}: gradient of dtype {g.dtype} for a {o.dtype} output; "
                                    "give a floating-point gradient")
                g = g.astype(o.dtype)
        final.append((o, g))
    return [o for o, _ in final], [g for _, g in final]


def backward(tensors, grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False) -> None:
    """Accumulate d(tensors)/d(leaf) into every leaf's ``.grad``."""
    outs, gos = _check_outputs(tensors, grad_tensors, "backward")
    if retain_graph is None:
        retain_graph = create_graph
    _run_backward(outs, gos, retain_graph, create_graph, None)


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple[Tensor | None, ...]:
    """Gradients of ``outputs`` with respect to ``inputs``, returned (not
    accumulated into ``.grad``). With ``create_graph=True`` the result is
    itself differentiable: Hessian-vector products, gradient penalties, ...

    >>> x = mg.tensor([1.0, 2.0], requires_grad=True)
    >>> (g,) = mg.grad((x ** 3).sum(), x, create_graph=True)   # 3x^2
    >>> (h,) = mg.grad(g.sum(), x)                              # 6x
    """
    single = isinstance(inputs, Tensor)
    ins = [inputs] if single else list(inputs)
    for t in ins:
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise GraphError("grad: every input must be a Tensor that requires grad")
    outs, gos = _check_outputs(outputs, grad_outputs, "grad")
    if retain_graph is None:
        retain_graph = create_graph
    res = _run_backward(outs, gos, retain_graph, create_graph, ins)
    out = []
    for i, t in enumerate(ins):
        g = res.get(id(t))
        if g is None and not allow_unused:
            raise GraphError(f"grad: input {i} (shape {t.shape}) was not used to compute the "
                             "outputs; pass allow_unused=True to get None for it")
        out.append(g)
    return tuple(out)


def vjp(outputs: Tensor, inputs: Sequence[Tensor], grad_output: Tensor,
        create_graph: bool = True) -> tuple[Tensor | None, ...]:
    """Partial derivatives of ``outputs`` w.r.t. each of ``inputs`` taken as independent
    variables, contracted with ``grad_output`` (None where an input is unused).

    Unlike ``grad``, the walk stops at the inputs: a path from one input through another
    is not followed, and nothing upstream of them runs. That is what an op's backward
    written as ``vjp(composite(*self.inputs), self.inputs, g)`` needs, since the engine
    carries each input's gradient further up itself."""
    outs, gos = _check_outputs(outputs, grad_output, "vjp")
    res = _run_backward(outs, gos, retain_graph=True, create_graph=create_graph,
                        inputs=list(inputs), stop_at_inputs=True)
    return tuple(res.get(id(t)) for t in inputs)


def _tensor_backward(self: Tensor, gradient: Tensor | None = None, retain_graph: bool | None = None,
                     create_graph: bool = False) -> None:
    """Compute d(self)/d(leaf) for every leaf that requires grad, into ``leaf.grad``.

    ``gradient`` is the upstream gradient (required unless self has one
    element). The graph is freed afterwards unless ``retain_graph=True``;
    ``create_graph=True`` records the backward pass for higher derivatives."""
    backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph)


_tensor_backward.__name__ = _tensor_backward.__qualname__ = "backward"
Tensor.backward = _tensor_backward     # tensor.py does not import this module: bound here
