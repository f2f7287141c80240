"""What the optimizers and the clipping functions do with a non-finite gradient, checked
against what their docstrings say: nothing checks it, so an SGD step writes the NaN (or the
opposite infinity) into the weight, an Adam/AdamW step writes NaN, the other entries update as
usual, and the damage stays on later steps; clip_grad_norm_ reports it (on the host) and
scales nothing, and says nothing on a device while device checks are off."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim
from minigrad.cuda import kernels
from minigrad.testing import kernel_emulator

OPTIMIZERS = {
    "sgd": lambda ps: optim.SGD(ps, lr=0.1),
    "sgd-momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
    "sgd-nesterov-decay": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    "adam": lambda ps: optim.Adam(ps, lr=0.1),
    "adam-l2": lambda ps: optim.Adam(ps, lr=0.1, weight_decay=0.01),
    "adamw": lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.1),
    "adamw-capturable": lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.1, capturable=True),
}
START = [1.0, -2.0, 0.5, 3.0]
GRAD = [0.0, 0.3, -0.1, 2.0]             # entry 0 is replaced by the non-finite value


def _steps(make, first_grad, later=3):
    """The weights after one step with ``first_grad`` and after ``later`` more finite steps."""
    p = nn.Parameter(mg.tensor(START))
    opt = make([p])
    p.grad = mg.tensor(first_grad)
    opt.step()
    after_one = p.numpy().copy()
    for _ in range(later):
        p.grad = mg.tensor(GRAD)
        opt.step()
    return after_one, p.numpy().copy()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")       # NumPy's, for inf - inf and the like
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_a_nonfinite_gradient_entry_goes_into_its_weight_and_stays(name, bad):
    make = OPTIMIZERS[name]
    one, later = _steps(make, [bad, *GRAD[1:]])
    clean_one, clean_later = _steps(make, GRAD)
    if name.startswith("sgd") and not math.isnan(bad):
        assert one[0] == -bad                          # p - lr * inf: the opposite infinity
    else:
        assert math.isnan(one[0])                      # SGD: the NaN; Adam: NaN, or inf / inf
    np.testing.assert_array_equal(one[1:], clean_one[1:])      # the other entries: as usual
    np.testing.assert_array_equal(later[1:], clean_later[1:])
    assert not math.isfinite(later[0])                 # and it stays non-finite
    if not name.startswith("sgd"):
        assert math.isnan(later[0])                    # m and v keep the NaN: NaN every step


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_sgd_weight_decay_turns_an_infinite_weight_into_nan():
    """The docstring's "an infinity turns into NaN once it meets another": -inf + lr·wd·inf."""
    one, later = _steps(lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.01), [math.inf, *GRAD[1:]], later=1)
    assert one[0] == -math.inf and math.isnan(later[0])


@pytest.mark.skipif(kernel_emulator.compiler() is None, reason="the kernel emulator needs a C++ compiler")
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_the_fused_adam_kernel_writes_nan_too(bad, dtype):
    """On a GPU Adam's step is one CUDA kernel; its body, compiled for the CPU, does the same."""
    g = np.array([bad, 0.3, -0.1], dtype)
    p, m, v = np.array([1.0, -2.0, 0.5], dtype), np.zeros(3, dtype), np.zeros(3, dtype)
    with np.errstate(all="ignore"):
        p, m, v = kernel_emulator.run(kernels.REGISTRY["adam_step"], g, 1e-3, 1.0, 0.1, 0.0, 0.9, 0.999, 1e-8,
                                      p, m, v)
    assert math.isnan(p[0]) and np.isfinite(p[1:]).all()
    assert not math.isfinite(m[0]) and not math.isfinite(v[0])


# --------------------------------------------------------------------------- clipping

@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")    # NumPy's, squaring 1e20
def test_clip_grad_norm_total_overflows_for_huge_finite_gradients_and_nothing_is_scaled():
    p = nn.Parameter(mg.zeros(2))
    p.grad = mg.tensor([1e20, -1e20])                  # finite, but 1e40 overflows float32
    with pytest.warns(RuntimeWarning, match="left unchanged"):
        total = optim.clip_grad_norm_([p], 1.0)
    assert total.item() == math.inf
    np.testing.assert_array_equal(p.grad.numpy(), np.array([1e20, -1e20], np.float32))
    with pytest.raises(RuntimeError, match="inf"):
        optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


def test_clip_grad_norm_on_a_device_without_device_checks_reports_nothing():
    p = nn.Parameter(mg.zeros(3, device="fake"))
    p.grad = mg.tensor([math.nan, 1.0, 2.0], device="fake")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # no warning, no error: the caller checks
        with mg.device_checks(False):
            total = optim.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert math.isnan(total.item())
    g = p.grad.numpy()
    assert math.isnan(g[0]) and g[1:].tolist() == [1.0, 2.0]          # nothing scaled


def test_clip_grad_value_makes_an_infinity_the_bound_and_keeps_a_nan():
    p = nn.Parameter(mg.zeros(4))
    p.grad = mg.tensor([math.inf, -math.inf, math.nan, 0.25])
    optim.clip_grad_value_([p], 0.5)
    g = p.grad.numpy()
    assert g[[0, 1, 3]].tolist() == [0.5, -0.5, 0.25] and math.isnan(g[2])
