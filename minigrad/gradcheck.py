"""Check analytic gradients against central finite differences.

    minigrad.gradcheck(fn, (x, w))       # True, or GradcheckError saying where it differs

``fn`` takes Tensors and returns a Tensor (or a tuple of them). The check
contracts the outputs with a random upstream gradient v (never all ones,
which hides transposition bugs) and compares, for every element of every
input that requires grad,

    analytic  d<v, fn(x)>/dx_i           (one backward pass)
    numeric   (<v, fn(x + eps e_i)> - <v, fn(x - eps e_i)>) / (2 eps)

in float64. ``fast_mode=True`` compares one random directional derivative
per input instead of every element (two evaluations per input): use it for
big inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import backend
from .autograd import enable_grad, grad, no_grad
from .tensor import Tensor

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """The analytic and the numeric gradient differ."""


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _prepare(inputs) -> list:
    """float64 copies of the float tensor inputs, keeping requires_grad; others as given."""
    out = []
    for x in _as_tuple(inputs):
        if isinstance(x, Tensor) and x.dtype.kind == "f":
            c = Tensor._make(x.data.astype("float64"), x.device)
            c.requires_grad = x.requires_grad
            out.append(c)
        else:
            out.append(x)
    return out


def _outputs(fn, args) -> list[Tensor]:
    outs = [o for o in _as_tuple(fn(*args)) if isinstance(o, Tensor)]
    if not outs:
        raise TypeError("gradcheck: fn must return a Tensor or a tuple of Tensors")
    return outs


def _contract(outs: Sequence[Tensor], vs: Sequence[Tensor]) -> float:
    total = 0.0
    for o, v in zip(outs, vs):
        if o.dtype.kind == "f":
            total += float(backend.to_host((o.data.astype("float64") * v.data).sum()))
    return total


def gradcheck(fn: Callable, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              fast_mode: bool = False, seed: int = 0, grad_outputs=None) -> bool:
    """True when ``fn``'s analytic gradients match finite differences; else
    raises ``GradcheckError`` naming the input, the worst element's index,
    and the analytic and numeric values there."""
    args = _prepare(inputs)
    wrt = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    if not wrt:
        raise ValueError("gradcheck: no input requires grad")
    rng = np.random.default_rng(seed)
    outs = _outputs(fn, args)
    if grad_outputs is None:
        vs = [Tensor._make(backend.to_device(rng.standard_normal(o.shape), o.device), o.device)
              for o in outs]
    else:
        vs = [Tensor._make(v.data.astype("float64"), v.device) for v in _as_tuple(grad_outputs)]
    diff = [(o, v) for o, v in zip(outs, vs) if o.requires_grad]
    if diff:
        analytic = grad([o for o, _ in diff], [args[i] for i in wrt],
                        grad_outputs=[v.astype(o.dtype) for o, v in diff], allow_unused=True)
    else:
        analytic = [None] * len(wrt)

    def f_at() -> float:
        with no_grad():
            return _contract(_outputs(fn, args), vs)

    for i, ga in zip(wrt, analytic):
        x = args[i]
        a = np.zeros(x.shape) if ga is None else backend.to_host(ga.data).astype(np.float64)
        data = x.data
        if fast_mode:
            u = rng.standard_normal(x.shape)
            ud = backend.to_device(u, x.device)
            orig = data.copy()
            x.data = orig + eps * ud
            fp = f_at()
            x.data = orig - eps * ud
            fm = f_at()
            x.data = orig
            num, ana = (fp - fm) / (2 * eps), float((a * u).sum())
            if not abs(num - ana) <= atol + rtol * abs(num):
                raise GradcheckError(
                    f"gradcheck (fast mode): input {i} (shape {x.shape}): directional derivative "
                    f"analytic {ana:.8g} vs numeric {num:.8g}")
            continue
        n = np.zeros(x.shape)
        for idx in np.ndindex(*x.shape):
            orig = float(backend.to_host(data[idx]))
            data[idx] = orig + eps
            fp = f_at()
            data[idx] = orig - eps
            fm = f_at()
            data[idx] = orig
            n[idx] = (fp - fm) / (2 * eps)
        err = np.abs(a - n) - (atol + rtol * np.abs(n))
        if err.size and (err.max() > 0 or not np.isfinite(a).all()):
            worst = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(a), err, np.inf))),
                                     x.shape) if x.ndim else ()
            raise GradcheckError(
                f"gradcheck: input {i} (shape {x.shape}) differs at index {tuple(int(j) for j in worst)}: "
                f"analytic {a[worst]:.8g} vs numeric {n[worst]:.8g} (atol={atol}, rtol={rtol}); "
                f"max abs difference {np.nanmax(np.abs(a - n)):.3g}")
    return True


def gradgradcheck(fn: Callable, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
                  fast_mode: bool = False, seed: int = 0) -> bool:
    """Check second derivatives: gradcheck of the vector-Jacobian product
    (x, v) -> d<v, fn(x)>/dx, itself computed with ``create_graph=True``."""
    args = _prepare(inputs)
    wrt = [i for i, a in enumerate(args) if isinstance(a, Tensor) and a.requires_grad]
    if not wrt:
        raise ValueError("gradgradcheck: no input requires grad")
    rng = np.random.default_rng(seed + 1)
    outs = _outputs(fn, args)
    vs = [Tensor._make(backend.to_device(rng.standard_normal(o.shape), o.device), o.device)
          for o in outs if o.requires_grad]
    for v in vs:
        v.requires_grad = True
    n_args = len(args)

    def vjp(*xs_and_vs):
        xs, v_in = list(xs_and_vs[:n_args]), xs_and_vs[n_args:]
        with enable_grad():  # gradcheck evaluates under no_grad; the VJP needs a graph
            o = [t for t in _outputs(fn, xs) if t.requires_grad]
            gs = grad(o, [xs[i] for i in wrt], grad_outputs=list(v_in), create_graph=True,
                      allow_unused=True)
        for i, g in zip(wrt, gs):
            # d<v, f>/dx is linear in v, so a nonzero one that records no graph was detached
            # by some backward: its second derivative would go unchecked, not pass
            if g is not None and not g.requires_grad and bool(backend.to_host((g.data != 0).any())):
                raise GradcheckError(
                    f"gradgradcheck: the gradient for input {i} (shape {xs[i].shape}) is nonzero "
                    "but records no graph with create_graph=True: a backward in fn is not "
                    "differentiable (it returned raw arrays or detached tensors)")
        return tuple(g for g in gs if g is not None and g.requires_grad)

    if not vjp(*args, *vs):
        return True  # gradients do not depend on the inputs: nothing second-order to check
    return gradcheck(vjp, (*args, *vs), eps=eps, atol=atol, rtol=rtol, fast_mode=fast_mode, seed=seed)
