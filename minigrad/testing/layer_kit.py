"""The layer test kit: one call checks everything a layer owes its users.

    from minigrad.testing.layer_kit import check_layer     # old path: minigrad.nn.testing

    check_layer(lambda: GRUCell(3, 2), (mg.randn(4, 3),))

``check_layer(factory, inputs)`` builds the layer with ``factory()`` (after
``minigrad.manual_seed``) and calls it on ``inputs`` (a tuple of positional
arguments: tensors, NumPy arrays, nested tuples such as an LSTM's ``(h, c)``,
None, ...; ``kwargs=`` for keyword arguments such as masks). In turn it runs:

``dtype``       float32 in -> float32 out, float64 in -> float64 out.
``params_used`` every parameter gets a gradient (a parameter the forward pass
                never touches is almost always a bug).
``gradcheck``   the outputs against finite differences in float64, with
                respect to every floating input AND every parameter, on each
                device. The parameters are made arguments of the checked
                function by binding float64 copies in their place for the
                duration of each call (a parameter that binding cannot reach,
                because the layer reads it through a reference of its own,
                fails instead of passing vacuously). ``gradgradcheck=True``
                adds second derivatives.
``parity``      the same seed gives the same outputs and gradients on every
                device (cpu, the strict fake device, cuda if available), in
                eval mode, and in train mode on the devices whose random
                numbers come from the host generator (cpu, fake; dropout on
                cuda draws on the GPU with its own generator).
``state_dict``  a second instance with other weights, loaded from the first
                one's state_dict (as host NumPy arrays, as a checkpoint would
                hold them), gives identical outputs.
``train_eval``  eval mode reaches every submodule and is deterministic (two
                different seeds, same outputs), and ``no_grad`` records nothing.

Randomness is pinned: ``manual_seed(seed + 1)`` runs before every forward
pass, so a dropout layer draws the same mask in every evaluation of a
gradient check. ``inputs`` may also be a hypothesis strategy drawing the
tuple of arguments; ``check_layer`` then runs as a hypothesis test (call it
from a plain test function, not from inside another ``@given``).

Each failure is an ``AssertionError`` naming the check, the layer and the device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from .. import backend
from ..autograd import grad as _grad
from ..autograd import no_grad
from ..backend import manual_seed
from ..gradcheck import gradcheck as _gradcheck
from ..gradcheck import gradgradcheck as _gradgradcheck
from ..nn.module import Module
from ..tensor import Tensor, tensor

__all__ = ["check_layer", "bound_parameters", "default_devices"]

CHECKS = ("dtype", "params_used", "gradcheck", "parity", "state_dict", "train_eval")


def default_devices() -> tuple[str, ...]:
    """cpu, the strict fake device, and cuda when a usable GPU is present."""
    from .. import cuda
    return ("cpu", "fake") + (("cuda",) if cuda.is_available() else ())


def _tol(dtype) -> dict[str, float]:
    """rtol/atol for two computations of the same thing in ``dtype``: eps^(2/3)."""
    t = float(np.finfo(np.dtype(dtype)).eps) ** (2.0 / 3.0)
    return {"rtol": t, "atol": t}


# --------------------------------------------------------------------------- argument trees

def _tensors(tree) -> list[Tensor]:
    """The Tensors in a nest of tuples, lists and dicts, in order."""
    if isinstance(tree, Tensor):
        return [tree]
    if isinstance(tree, (tuple, list)):
        return [t for x in tree for t in _tensors(x)]
    if isinstance(tree, dict):
        return [t for x in tree.values() for t in _tensors(x)]
    return []


def _map(tree, fn: Callable[[Tensor], Any]):
    """The same nest with every Tensor ``t`` replaced by ``fn(t)``."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_map(x, fn) for x in tree)
    if isinstance(tree, dict):
        return {k: _map(v, fn) for k, v in tree.items()}
    return tree


def _as_tensors(tree):
    """NumPy arrays in the nest become tensors (so hypothesis-drawn arrays can be passed)."""
    if isinstance(tree, np.ndarray):
        return tensor(tree)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_as_tensors(x) for x in tree)
    if isinstance(tree, dict):
        return {k: _as_tensors(v) for k, v in tree.items()}
    return tree


def _place(tree, device, dtype, requires_grad: bool = False):
    """Copies of the nest's tensors on ``device``; floating ones cast to ``dtype``."""
    def move(t: Tensor) -> Tensor:
        arr = t.data.astype(dtype) if t.dtype.kind == "f" else t.data.copy()
        out = Tensor._make(backend.to_device(arr, backend.device(device)), backend.device(device))
        if requires_grad and out.dtype.kind == "f":
            out.requires_grad = True
        return out
    return _map(tree, move)


def _float_outputs(out) -> list[Tensor]:
    return [t for t in _tensors(out) if t.dtype.kind == "f"]


# --------------------------------------------------------------------------- parameter binding

def _unique_parameters(module: Module) -> list[Tensor]:
    return [p for _, p in module.named_parameters()]


@contextlib.contextmanager
def bound_parameters(module: Module, values: Sequence[Tensor]) -> Iterator[None]:
    """Temporarily use ``values[i]`` wherever ``list(module.parameters())[i]``
    is registered (shared parameters included), so that a function of the
    layer's output is a function of ``values`` the autograd engine can see."""
    params = _unique_parameters(module)
    if len(values) != len(params):
        raise ValueError(f"bound_parameters: {len(values)} values for {len(params)} parameters")
    by_id = {id(p): v for p, v in zip(params, values)}
    saved = []
    for m in module.modules():
        for name, p in m._parameters.items():
            if p is not None and id(p) in by_id:
                saved.append((m, name, p))
                m._parameters[name] = by_id[id(p)]
    try:
        yield
    finally:
        for m, name, p in saved:
            m._parameters[name] = p


# --------------------------------------------------------------------------- the checks

class _Context:
    def __init__(self, factory, args, kwargs, seed, train):
        self.factory, self.args, self.kwargs, self.seed, self.train = factory, args, kwargs, seed, train

    def build(self, device="cpu", dtype="float64", seed: int | None = None, train: bool | None = None):
        manual_seed(self.seed if seed is None else seed)
        m = self.factory()
        if not isinstance(m, Module):
            raise TypeError(f"check_layer: factory() must return a Module, got {type(m).__name__}")
        m.to(device=device, dtype=dtype)
        m.train(self.train if train is None else train)
        return m

    def inputs(self, device="cpu", dtype="float64", requires_grad=False):
        return _place((self.args, self.kwargs), device, dtype, requires_grad)

    def call(self, m: Module, inputs, seed_offset: int = 1):
        args, kwargs = inputs
        manual_seed(self.seed + seed_offset)     # pins dropout masks
        return m(*args, **kwargs)


def _check_binding_reaches_outputs(m: Module, fn, leaves, params, unused) -> None:
    """Without this, a layer that keeps its own reference to a parameter (so
    that binding a copy does not reach the forward pass) would pass gradcheck
    with zero analytic and zero numeric gradients."""
    copies = [Tensor._make(p.data.copy(), p.device, requires_grad=True) for p in params]
    outs = [o for o in fn(*leaves, *copies) if o.requires_grad]
    names = [n for n, _ in m.named_parameters()]
    if not outs:
        got = [None] * len(copies)
    else:
        got = _grad(outs, copies, grad_outputs=[Tensor._make(o.xp.ones_like(o.data), o.device)
                                                for o in outs], allow_unused=True)
    lost = [n for n, g in zip(names, got) if g is None and n not in unused]
    if lost:
        raise AssertionError(f"parameters {', '.join(lost)} do not reach the outputs when bound: "
                             "the layer reads them other than through its registered attributes "
                             "(or never uses them; pass unused_params= if intended)")


def _check_gradients(ctx: _Context, device, second_order: bool, fast_mode: bool, wrt_inputs: bool,
                     tolerances: dict, unused: Sequence[str] = ()) -> None:
    m = ctx.build(device)
    tree = ctx.inputs(device, requires_grad=wrt_inputs)
    leaves = _tensors(tree)
    params = _unique_parameters(m)
    n_in = len(leaves)

    def fn(*flat):
        it = iter(flat[:n_in])
        inputs = _map(tree, lambda _: next(it))
        with bound_parameters(m, flat[n_in:]):
            return tuple(_float_outputs(ctx.call(m, inputs)))

    if not any(t.requires_grad for t in leaves) and not params:
        return   # nothing differentiable (e.g. a parameter-free layer on integer input)
    _check_binding_reaches_outputs(m, fn, leaves, params, unused)
    check = _gradgradcheck if second_order else _gradcheck
    check(fn, (*leaves, *params), fast_mode=fast_mode, **tolerances)


def _check_params_used(ctx: _Context, unused: Sequence[str]) -> None:
    m = ctx.build()
    params = dict(m.named_parameters())
    wanted = [(n, p) for n, p in params.items() if n not in unused and p.requires_grad]
    if not wanted:
        return
    outs = [o for o in _float_outputs(ctx.call(m, ctx.inputs())) if o.requires_grad]
    rng = np.random.default_rng(ctx.seed)
    vs = [Tensor._make(rng.standard_normal(o.shape), o.device) for o in outs]
    grads = _grad(outs, [p for _, p in wanted], grad_outputs=vs, allow_unused=True) if outs else \
        [None] * len(wanted)
    missing = [n for (n, _), g in zip(wanted, grads) if g is None]
    if missing:
        raise AssertionError(f"parameters that get no gradient: {', '.join(missing)} (pass "
                             "unused_params= if that is intended)")


def _run_device(ctx: _Context, device, train: bool):
    """Outputs, and gradients of <v, outputs> w.r.t. floating inputs and parameters, as host arrays."""
    m = ctx.build(device, train=train)
    tree = ctx.inputs(device, requires_grad=True)
    out = ctx.call(m, tree)
    outs = _float_outputs(out)
    for o in _tensors(out):
        if o.device != backend.device(device):
            raise AssertionError(f"an output of shape {o.shape} is on {o.device}, not {device}")
    rng = np.random.default_rng(ctx.seed)
    diff = [o for o in outs if o.requires_grad]
    wrt = [t for t in _tensors(tree) if t.requires_grad] + _unique_parameters(m)
    vs = [Tensor._make(backend.to_device(rng.standard_normal(o.shape), o.device), o.device)
          for o in diff]
    grads = _grad(diff, wrt, grad_outputs=vs, allow_unused=True) if diff else []
    return ([o.numpy() for o in outs],
            [None if g is None else g.numpy() for g in grads])


def _check_parity(ctx: _Context, devices: Sequence[str]) -> None:
    tol = _tol("float64")
    host_rng_devices = [d for d in devices if backend.device(d).type != "cuda"]
    for train, devs in ((False, devices), (True, host_rng_devices if ctx.train else [])):
        if len(devs) < 2:
            continue
        ref_out, ref_grads = _run_device(ctx, devs[0], train)
        for d in devs[1:]:
            out, grads = _run_device(ctx, d, train)
            mode = "train" if train else "eval"
            for i, (a, b) in enumerate(zip(ref_out, out)):
                np.testing.assert_allclose(b, a, **tol, err_msg=f"output {i} on {d} vs {devs[0]} "
                                                                 f"({mode} mode)")
            for i, (a, b) in enumerate(zip(ref_grads, grads)):
                if (a is None) != (b is None):
                    raise AssertionError(f"gradient {i} is None on one device only ({mode} mode)")
                if a is not None:
                    np.testing.assert_allclose(b, a, **tol, err_msg=f"gradient {i} on {d} vs "
                                                                    f"{devs[0]} ({mode} mode)")


def _check_state_dict(ctx: _Context) -> None:
    a = ctx.build(train=False)
    b = ctx.build(seed=ctx.seed + 7919, train=False)
    sd = a.state_dict()
    if list(sd) != list(b.state_dict()):
        raise AssertionError("two instances from the same factory have different state_dict keys")
    b.load_state_dict({k: v.numpy().copy() for k, v in sd.items()})
    with no_grad():
        out_a = _float_outputs(ctx.call(a, ctx.inputs()))
        out_b = _float_outputs(ctx.call(b, ctx.inputs()))
    for i, (x, y) in enumerate(zip(out_a, out_b)):
        np.testing.assert_array_equal(y.numpy(), x.numpy(),
                                      err_msg=f"output {i} after load_state_dict differs")


def _check_train_eval(ctx: _Context) -> None:
    m = ctx.build(train=True)
    m.eval()
    still = [type(s).__name__ for s in m.modules() if s.training]
    if still:
        raise AssertionError(f"eval() left submodules in training mode: {still}")
    out1 = _float_outputs(ctx.call(m, ctx.inputs(), seed_offset=1))
    out2 = _float_outputs(ctx.call(m, ctx.inputs(), seed_offset=2))
    for i, (x, y) in enumerate(zip(out1, out2)):
        np.testing.assert_array_equal(y.numpy(), x.numpy(),
                                      err_msg=f"output {i} in eval mode depends on the random seed")
    with no_grad():
        out3 = _float_outputs(ctx.call(m, ctx.inputs(requires_grad=True)))
    for i, (x, y) in enumerate(zip(out1, out3)):
        if y.grad_fn is not None:   # (an input passed through unchanged may still require grad)
            raise AssertionError(f"output {i} recorded a graph under no_grad()")
        np.testing.assert_array_equal(y.numpy(), x.numpy(),
                                      err_msg=f"output {i} differs under no_grad()")


def _check_dtype(ctx: _Context) -> None:
    for dt in ("float32", "float64"):
        m = ctx.build(dtype=dt)
        for i, o in enumerate(_float_outputs(ctx.call(m, ctx.inputs(dtype=dt)))):
            if o.dtype != np.dtype(dt):
                raise AssertionError(f"{dt} layer and inputs gave output {i} of dtype {o.dtype}")


# --------------------------------------------------------------------------- entry point

def check_layer(factory: Callable[[], Module], inputs, *, kwargs: dict | None = None,
                devices: Sequence[str] | None = None, gradcheck_devices: Sequence[str] | None = None,
                seed: int = 0, train: bool = True, checks: Sequence[str] = CHECKS,
                gradgradcheck: bool = False, fast_mode: bool = False, wrt_inputs: bool = True,
                unused_params: Sequence[str] = (), eps: float = 1e-6, atol: float = 1e-5,
                rtol: float = 1e-3) -> None:
    """Run the layer checks (see the module docstring) and raise AssertionError on the first failure.

    factory            builds the layer (called after ``manual_seed``; float32, on cpu)
    inputs             tuple of positional arguments, or a hypothesis strategy of such tuples
    kwargs             keyword arguments for the forward call (tensors in it are moved too)
    devices            for the parity check; default: cpu, fake (and cuda when available)
    gradcheck_devices  where gradients are checked; default: ``devices``
    train              the mode for the gradient checks (dropout masks are pinned by the seed)
    checks             a subset of ``CHECKS`` to run
    gradgradcheck      also check second derivatives
    fast_mode          gradcheck one random direction per tensor instead of every element
    wrt_inputs         differentiate with respect to floating inputs too, not only parameters
    unused_params      parameter names allowed to get no gradient
    eps, atol, rtol    for gradcheck (float64)
    """
    try:
        from hypothesis.strategies import SearchStrategy
    except ImportError:   # hypothesis is a dev dependency; concrete inputs work without it
        SearchStrategy = ()  # noqa: N806
    options = dict(kwargs=kwargs, devices=devices, gradcheck_devices=gradcheck_devices, seed=seed,
                   train=train, checks=checks, gradgradcheck=gradgradcheck, fast_mode=fast_mode,
                   wrt_inputs=wrt_inputs, unused_params=unused_params, eps=eps, atol=atol, rtol=rtol)
    if SearchStrategy and isinstance(inputs, SearchStrategy):
        from hypothesis import given

        @given(inputs)
        def run(drawn):
            check_layer(factory, drawn, **options)
        run()
        return

    unknown = set(checks) - set(CHECKS)
    if unknown:
        raise ValueError(f"check_layer: unknown checks {sorted(unknown)}; valid: {CHECKS}")
    if not isinstance(inputs, (tuple, list)):
        inputs = (inputs,)
    args = _as_tensors(tuple(inputs))
    kw = _as_tensors(dict(kwargs or {}))
    devices = tuple(default_devices() if devices is None else devices)
    ctx = _Context(factory, args, kw, seed, train)
    tolerances = dict(eps=eps, atol=atol, rtol=rtol)
    layer = type(ctx.build()).__name__

    def run_check(name: str, device: str | None, fn: Callable[[], None]) -> None:
        try:
            fn()
        except AssertionError as e:
            where = f" on {device}" if device else ""
            raise AssertionError(f"check_layer[{name}] {layer}{where}: {e}") from e

    if "dtype" in checks:
        run_check("dtype", None, lambda: _check_dtype(ctx))
    if "params_used" in checks:
        run_check("params_used", None, lambda: _check_params_used(ctx, unused_params))
    if "gradcheck" in checks:
        for d in (devices if gradcheck_devices is None else gradcheck_devices):
            run_check("gradcheck", d, lambda d=d: _check_gradients(
                ctx, d, False, fast_mode, wrt_inputs, tolerances, unused_params))
            if gradgradcheck:
                run_check("gradgradcheck", d, lambda d=d: _check_gradients(
                    ctx, d, True, fast_mode, wrt_inputs, tolerances, unused_params))
    if "parity" in checks:
        run_check("parity", None, lambda: _check_parity(ctx, devices))
    if "state_dict" in checks:
        run_check("state_dict", None, lambda: _check_state_dict(ctx))
    if "train_eval" in checks:
        run_check("train_eval", None, lambda: _check_train_eval(ctx))
