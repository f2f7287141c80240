"""One dtype rule for every op: float inputs of different dtypes promote to the
widest (NumPy's order, float16 < float32 < float64), and each input's gradient
comes back in that input's own dtype, so a float32 parameter never receives a
float64 gradient. Python numbers are "weak" (``x * 0.5`` keeps float32);
integer and bool tensors meeting a float one take the float's dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_registry import REGISTRY
from test_ops_registry import _call

import minigrad as mg
import minigrad.functional as F
from minigrad.testing import tolerance

FLOATS = [np.float32, np.float64]


def _leaves(case, dtypes):
    return [mg.tensor(a, dtype=dt, requires_grad=True) if a.dtype.kind == "f" else mg.tensor(a)
            for a, dt in zip(case.args, dtypes)]


def _upstream(outs, dtype):
    rng = np.random.default_rng(0)
    return [mg.tensor(rng.standard_normal(o.shape), dtype=dtype) for o in outs]


@pytest.mark.parametrize("op", [e for e in REGISTRY if not e.random and not e.via_float32],
                         ids=lambda e: e.name)
@given(data=st.data())
def test_mixed_float_inputs_promote_and_gradients_keep_each_inputs_dtype(op, data):
    case = data.draw(op.cases(1), label="case")
    n_float = sum(a.dtype.kind == "f" for a in case.args)
    dtypes = [data.draw(st.sampled_from(FLOATS), label=f"dtype of input {i}")
              if a.dtype.kind == "f" else None for i, a in enumerate(case.args)]
    if n_float:
        dtypes[[a.dtype.kind for a in case.args].index("f")] = np.float32   # at least one float32
    widest = np.float64 if np.float64 in dtypes else np.float32
    mixed = _leaves(case, dtypes)
    # the same values (each rounded to its own dtype first), all in the widest dtype
    rounded = case._replace(args=tuple(a.astype(d) if d is not None else a
                                       for a, d in zip(case.args, dtypes)))
    wide = _leaves(rounded, [widest if d is not None else None for d in dtypes])
    outs_m, outs_w = _call(op, case, mixed), _call(op, case, wide)
    for m, w in zip(outs_m, outs_w):
        assert m.dtype == w.dtype, f"{op.name}: mixed inputs gave {m.dtype}, promoted ones {w.dtype}"
        # one op: exactly the promoted result; a composite (several ops) may round in float32
        # where its float32 operands meet alone, so within float32's tolerance
        np.testing.assert_allclose(m.numpy(), w.numpy(), **tolerance(np.float32))
    diff_m = [o for o in outs_m if o.requires_grad]
    if not diff_m:
        return
    diff_w = [o for o in outs_w if o.requires_grad]
    xs_m = [t for t in mixed if t.requires_grad]
    xs_w = [t for t in wide if t.requires_grad]
    g_m = mg.grad(diff_m, xs_m, _upstream(diff_m, widest), allow_unused=True)
    g_w = mg.grad(diff_w, xs_w, _upstream(diff_w, widest), allow_unused=True)
    for x, gm, gw in zip(xs_m, g_m, g_w):
        if gm is None:
            assert gw is None
            continue
        assert gm.dtype == x.dtype, f"{op.name}: a {x.dtype} input got a {gm.dtype} gradient"
        np.testing.assert_allclose(gm.numpy(), gw.numpy().astype(x.dtype), **tolerance(np.float32))


def test_python_numbers_are_weak_and_integer_tensors_take_the_float_dtype():
    x = mg.ones(3)
    assert (x * 0.5).dtype == mg.float32 and (2 ** x).dtype == mg.float32
    assert (x + mg.tensor([1, 2, 3])).dtype == mg.float32
    assert (mg.tensor([1, 2, 3]) @ mg.ones(3, dtype=mg.float64)).dtype == mg.float64
    assert (mg.tensor([1, 2]) / mg.tensor([2, 4])).dtype == mg.float32    # true division


def test_matmul_linear_and_the_fused_ops_follow_the_same_rule():
    rng = np.random.default_rng(1)
    w32 = mg.tensor(rng.standard_normal((5, 4)), dtype=mg.float32, requires_grad=True)
    x64 = mg.tensor(rng.standard_normal((3, 4)), dtype=mg.float64, requires_grad=True)
    for out in (x64 @ w32.T, F.linear(x64, w32), F.layer_norm(x64, (4,), w32[0], w32[1])):
        assert out.dtype == mg.float64
        w32.grad = x64.grad = None
        out.sum().backward()
        assert w32.grad.dtype == mg.float32 and x64.grad.dtype == mg.float64
    gates = mg.tensor(rng.standard_normal((2, 8)), dtype=mg.float32, requires_grad=True)
    c = mg.tensor(rng.standard_normal((2, 2)), dtype=mg.float64, requires_grad=True)
    h, c2 = F.lstm_cell(gates, c)
    assert h.dtype == c2.dtype == mg.float64
    (h.sum() + c2.sum()).backward()
    assert gates.grad.dtype == mg.float32 and c.grad.dtype == mg.float64


def test_a_gradient_of_another_dtype_given_to_backward_is_cast_to_the_outputs():
    x = mg.ones(2, requires_grad=True)
    (x * 3.0).backward(mg.ones(2, dtype=mg.float64))
    assert x.grad.dtype == mg.float32 and x.grad.tolist() == [3.0, 3.0]
    with pytest.raises(TypeError, match="gradient of dtype int64 for a float32 output"):
        (x * 3.0).backward(mg.tensor([1, 1]))
