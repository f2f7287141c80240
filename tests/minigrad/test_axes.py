"""Axes follow NumPy in every op that takes one: negative axes count from the end,
an out-of-range or repeated axis is an error naming the op, and a 0-d tensor
accepts axis 0 and -1 (one axis of size 1, as PyTorch and NumPy's reductions do).

The sweep below calls every axis-taking op on tensors of 0 to 3 dims with every
axis from -ndim-2 to ndim+1, None and tuples, beside NumPy. Where NumPy gives a
result, minigrad gives the same one; where minigrad refuses, its error starts
with the op's name (never a NumPy traceback from inside); where NumPy refuses
and minigrad does not (a 0-d tensor with axis 0 or -1, or a tuple NumPy's
function does not take), the result is that of the tensor as shape (1,).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special as sp

import minigrad as mg
import minigrad.functional as F

OPS = {
    "sum": (lambda x, ax: x.sum(axis=ax), lambda a, ax: a.sum(axis=ax)),
    "mean": (lambda x, ax: x.mean(axis=ax), lambda a, ax: a.mean(axis=ax)),
    "max": (lambda x, ax: x.max(axis=ax), lambda a, ax: a.max(axis=ax)),
    "min": (lambda x, ax: x.min(axis=ax), lambda a, ax: a.min(axis=ax)),
    "var": (lambda x, ax: x.var(axis=ax), lambda a, ax: a.var(axis=ax)),
    "std": (lambda x, ax: x.std(axis=ax), lambda a, ax: a.std(axis=ax)),
    "norm": (lambda x, ax: x.norm(axis=ax), lambda a, ax: np.sqrt((a * a).sum(axis=ax))),
    "logsumexp": (lambda x, ax: x.logsumexp(axis=ax), lambda a, ax: np.log(np.exp(a).sum(axis=ax))),
    "softmax": (lambda x, ax: F.softmax(x, axis=ax), lambda a, ax: sp.softmax(a, axis=ax)),
    "log_softmax": (lambda x, ax: F.log_softmax(x, axis=ax), lambda a, ax: sp.log_softmax(a, axis=ax)),
    "argmax": (lambda x, ax: mg.argmax(x, axis=ax), lambda a, ax: a.argmax(axis=ax)),
    "argmin": (lambda x, ax: mg.argmin(x, axis=ax), lambda a, ax: a.argmin(axis=ax)),
    "any": (lambda x, ax: mg.any(x > 0, axis=ax), lambda a, ax: (a > 0).any(axis=ax)),
    "all": (lambda x, ax: mg.all(x > 0, axis=ax), lambda a, ax: (a > 0).all(axis=ax)),
    "flip": (lambda x, ax: x.flip(ax), lambda a, ax: np.flip(a, ax)),
    "squeeze": (lambda x, ax: x.squeeze(ax), lambda a, ax: np.squeeze(a, ax)),
    "unsqueeze": (lambda x, ax: x.unsqueeze(ax), lambda a, ax: np.expand_dims(a, ax)),
    "concatenate": (lambda x, ax: mg.concatenate([x, x], axis=ax),
                    lambda a, ax: np.concatenate([a, a], axis=ax)),
    "stack": (lambda x, ax: mg.stack([x, x], axis=ax), lambda a, ax: np.stack([a, a], axis=ax)),
    "split": (lambda x, ax: mg.split(x, 1, axis=ax)[0], lambda a, ax: np.split(a, 1, axis=ax)[0]),
    "swapaxes": (lambda x, ax: mg.swapaxes(x, ax, 0), lambda a, ax: np.swapaxes(a, ax, 0)),
    "cumsum": (lambda x, ax: mg.cumsum(x, axis=ax), lambda a, ax: np.cumsum(a, axis=ax)),
    "prod": (lambda x, ax: mg.prod(x, axis=ax), lambda a, ax: np.prod(a, axis=ax)),
    "sort": (lambda x, ax: mg.sort(x, axis=ax), lambda a, ax: np.sort(a, axis=ax)),
    "argsort": (lambda x, ax: mg.argsort(x, axis=ax), lambda a, ax: np.argsort(a, axis=ax, stable=True)),
    "topk": (lambda x, ax: mg.topk(x, 1, axis=ax)[0],
             lambda a, ax: np.flip(np.sort(a, axis=ax), axis=ax).take([0], axis=ax)),
    "roll": (lambda x, ax: mg.roll(x, 1, axis=ax), lambda a, ax: np.roll(a, 1, axis=ax)),
    "take_along_axis": (lambda x, ax: mg.take_along_axis(x, mg.zeros(x.shape, dtype=mg.int64), ax),
                        lambda a, ax: np.take_along_axis(a, np.zeros(a.shape, dtype=np.int64), ax)),
    "repeat": (lambda x, ax: mg.repeat(x, 2, axis=ax), lambda a, ax: np.repeat(a, 2, axis=ax)),
}

SHAPES = [(), (1,), (2, 3), (2, 1, 3)]

# ops whose result has the input's shape: on a 0-d tensor the result stays 0-d
KEEP_SHAPE = {"flip", "roll", "softmax", "log_softmax"}

# ops that take a tuple of axes where this NumPy function does not (none so far)
TUPLE_OK: set[str] = set()


def _axes(ndim: int) -> list:
    return [*range(-ndim - 2, ndim + 2), None, (), (0,), (0, -1), (-1, 0), (0, 0)]


def _numpy(ref, a, ax):
    try:
        return np.asarray(ref(a, ax)), None
    except Exception as e:      # noqa: BLE001 - any NumPy refusal
        return None, e


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_axes_follow_numpy_or_fail_naming_the_op(name, shape):
    fn, ref = OPS[name]
    a = np.random.default_rng(0).standard_normal(shape)
    for ax in _axes(len(shape)):
        expected, np_error = _numpy(ref, a, ax)
        try:
            got = fn(mg.tensor(a, dtype=mg.float64), ax)
        except (ValueError, TypeError, IndexError) as e:
            assert str(e).startswith(name), f"{name}{shape} axis={ax!r}: unclear error {e!r}"
            assert np_error is not None, f"{name}{shape} axis={ax!r}: NumPy works, minigrad says {e}"
            continue
        if np_error is not None:    # minigrad is more lenient: the tensor as shape (1,)
            assert shape == () or isinstance(ax, tuple) or ax is None, \
                f"{name}{shape} axis={ax!r}: NumPy refuses ({np_error}) but minigrad returned {got.shape}"
            assert shape == () or name in TUPLE_OK, \
                f"{name}{shape} axis={ax!r}: NumPy refuses ({np_error}) but minigrad returned {got.shape}"
            expected, err = _numpy(ref, a.reshape(-1) if shape == () else a, ax)
            assert err is None, f"{name}{shape} axis={ax!r}: minigrad returned {got.shape}, NumPy: {err}"
            if shape == () and name in KEEP_SHAPE:
                expected = expected.reshape(())     # the op keeps its input's shape: () stays ()
        assert got.shape == expected.shape, f"{name}{shape} axis={ax!r}: {got.shape} != {expected.shape}"
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_a_0d_tensor_reduces_over_axis_0_and_minus_1_with_its_gradient():
    x = mg.tensor(3.0, dtype=mg.float64, requires_grad=True)
    for op in (lambda t: t.sum(axis=0), lambda t: t.mean(axis=-1), lambda t: t.max(axis=0),
               lambda t: t.logsumexp(axis=-1), lambda t: F.softmax(t, axis=0)):
        x.grad = None
        y = op(x)
        assert y.shape == ()
        y.backward()
        assert x.grad.shape == ()
