"""The ops of issue 10 (section 5) beyond what the registry checks: errors that name the op
and what is valid, ties and NaN in sorting, PyTorch's and NumPy's conventions where they
are specific (floor division signs, clamped logs, weighted means, gather's rules), and
the ops whose results are integers or bools.

The registry (op_registry.py) checks gradients, second derivatives, forwards against
NumPy, float32 and strided inputs for every one of them.
"""

from __future__ import annotations

import numpy as np

import minigrad as mg
import minigrad.functional as F


def _t(values, device="cpu", dtype="float64", requires_grad=False):
    return mg.tensor(values, dtype=dtype, device=device, requires_grad=requires_grad)


# --------------------------------------------------------------------------- a fix: (N, C, d1, d2)

def test_cross_entropy_keeps_positions_apart_with_two_spatial_dims():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 2, 4))                            # (N, C, d1, d2), d1 != d2
    t = rng.integers(0, 3, (2, 2, 4))
    lsm = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    expected = -np.take_along_axis(lsm, t[:, None], axis=1)[:, 0]    # (N, d1, d2)
    got = F.cross_entropy(_t(x), mg.tensor(t), reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(_t(x), mg.tensor(t)).item(), expected.mean(), rtol=1e-12)
