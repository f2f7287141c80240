"""No silent wrong gradient from an in-place change (version counters).

Every tensor counts the in-place changes to its memory (``_version``); an op
records the versions of what its backward reads, and backward refuses to run
if one changed. The generic property: for every op of the registry, changing
any input (or the output, through ``detach()``) in place after the op ran
either makes backward raise, naming the op, or leaves the gradients exactly
those of the unchanged inputs. It checks each op's ``saves`` declaration.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from op_registry import REGISTRY
from test_ops_registry import _call, _tensors

import minigrad as mg
import minigrad.nn as nn
import minigrad.optim as optim

MODIFIED = "modified by an inplace operation"


def _upstream(outs, seed=0):
    rng = np.random.default_rng(seed)
    return [mg.tensor(rng.standard_normal(o.shape), dtype=o.dtype) for o in outs]


def _change(t: mg.Tensor) -> bool:
    """An in-place change that keeps the tensor valid for the op (indices in range);
    False where it is refused (a read-only broadcast view)."""
    if not t.data.flags.writeable:
        with pytest.raises(ValueError, match="read-only view"):
            t.zero_()
        return False
    with mg.no_grad():
        if t.dtype.kind == "f":
            t.mul_(1.5).add_(0.25)
        elif t.size:
            t.copy_(t.detach().flip())     # a permutation: same values, other places
    return True


@pytest.mark.parametrize("op", [e for e in REGISTRY if not e.random], ids=lambda e: e.name)
@given(data=st.data())
def test_an_in_place_change_after_an_op_raises_or_leaves_the_gradient_right(op, data):
    case = data.draw(op.cases(1), label="case")
    target = data.draw(st.integers(-1, len(case.args) - 1), label="changed input (-1: output)")
    fresh = _tensors(case, "cpu")
    outs = [o for o in _call(op, case, fresh) if o.requires_grad]
    if not outs:
        return
    wrt = [t for t in fresh if t.requires_grad]
    expected = mg.grad(outs, wrt, _upstream(outs), allow_unused=True)

    ts = _tensors(case, "cpu")
    outs = [o for o in _call(op, case, ts) if o.requires_grad]
    if not _change(outs[0].detach() if target < 0 else ts[target]):
        return
    try:
        got = mg.grad(outs, [t for t in ts if t.requires_grad], _upstream(outs), allow_unused=True)
    except mg.GraphError as e:
        assert MODIFIED in str(e)
        return
    for g, e in zip(got, expected):
        assert (g is None) == (e is None)
        if g is not None:
            np.testing.assert_array_equal(g.numpy(), e.numpy(), err_msg=f"{op.name}: silent wrong "
                                          "gradient after an in-place change")


def test_the_error_names_the_op_the_input_and_both_versions():
    x, w = mg.ones(3), mg.ones(3, requires_grad=True)
    y = (w * x).sum()
    x[0] = 5.0
    with pytest.raises(mg.GraphError, match=r"mul: .*modified by an inplace operation: its input 1 "
                                            r"\(shape \(3,\), float32\) was at version 0 .* version 1 now"):
        y.backward()


def test_detect_anomaly_adds_where_the_op_was_created():
    x, w = mg.ones(3), mg.ones(3, requires_grad=True)
    with mg.detect_anomaly():
        y = (w * x).sum()
    x.add_(1.0)
    with pytest.raises(mg.GraphError, match="mul was created at\n.*test_versions.py"):
        y.backward()


def test_views_share_the_version_of_their_base():
    base = mg.arange(6).astype(mg.float64)
    w = mg.ones(3, requires_grad=True, dtype=mg.float64)
    for view in (base[1:4], base.reshape(2, 3)[0], base.detach()[:3], base.flip(0)[:3],
                 base.reshape(3, 2).T[0]):
        y = (w * view).sum()
        base[5] = 1.0                      # another element than the view sees: still refused
        with pytest.raises(mg.GraphError, match=MODIFIED):
            y.backward()
    y = (w * base[:3]).sum()
    base[:3].zero_()                       # writing through a view changes the base's version
    with pytest.raises(mg.GraphError, match=MODIFIED):
        y.backward()


class _Affine(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(mg.randn(3, 2))

    def forward(self, x):
        return x @ self.weight


def test_an_optimizer_step_between_forward_and_backward_is_caught():
    for make in (lambda p: optim.SGD(p, lr=0.1), lambda p: optim.Adam(p, lr=0.1),
                 lambda p: optim.AdamW(p, lr=0.1)):
        lin = _Affine()
        opt = make(lin.parameters())
        x = mg.randn(4, 3)
        first, second = lin(x).sum(), (lin(x) ** 2).sum()
        first.backward()
        opt.step()                          # changes the weights `second` was computed from
        with pytest.raises(mg.GraphError, match=MODIFIED):
            second.backward()


def test_load_state_dict_and_data_assignment_count_as_changes():
    lin = _Affine()
    y = lin(mg.randn(4, 3)).sum()
    lin.load_state_dict(_Affine().state_dict())
    with pytest.raises(mg.GraphError, match=MODIFIED):
        y.backward()
    w = mg.ones(2, requires_grad=True)
    y = (w * w).sum()
    w.data = w.data * 2.0
    with pytest.raises(mg.GraphError, match=MODIFIED):
        y.backward()


def test_an_index_tensor_changed_after_the_gather_does_not_move_the_gradient():
    w = mg.zeros(4, requires_grad=True, dtype=mg.float64)
    idx = mg.tensor([0, 0, 2])
    y = w[idx].sum()
    idx[0] = 3                              # the gather copied its index
    y.backward()
    assert w.grad.tolist() == [2.0, 0.0, 1.0, 0.0]


def test_changes_the_backward_does_not_read_are_allowed():
    x, w = mg.ones(3), mg.ones(3, requires_grad=True)
    y = (w + x).sum()                       # add's backward reads neither input
    x.add_(1.0)
    y.backward()
    assert w.grad.tolist() == [1.0, 1.0, 1.0]
    a = mg.ones(3, requires_grad=True)
    b = a.clone()
    z = (a * a).sum()
    with mg.no_grad():
        b.detach().mul_(3.0)                # a clone has its own memory and counter
    z.backward()
    assert a.grad.tolist() == [2.0, 2.0, 2.0]


def test_in_place_rules_follow_pytorch():
    leaf = mg.ones(2, requires_grad=True)
    with pytest.raises(mg.GraphError, match="add_: in-place change of a leaf tensor that requires grad"):
        leaf.add_(1.0)
    with mg.no_grad():
        leaf.add_(1.0)                      # allowed, as initialisers and optimizers need
    assert leaf.tolist() == [2.0, 2.0] and leaf._version == 1
    with pytest.raises(mg.GraphError, match="mul_: in-place change of a tensor computed by a recorded op"):
        (leaf * 2.0).mul_(3.0)
    ints = mg.tensor([1, 2])
    with pytest.raises(TypeError, match="add_: a float32 operand cannot change a int64 tensor"):
        ints.add_(mg.tensor([0.5, 0.5]))
    with pytest.raises(TypeError, match="setitem: cannot write float32 values into a int64 tensor"):
        ints[0] = mg.tensor(0.5)
    with pytest.raises(ValueError, match=r"mul_: operand of shape \(2, 2\) must broadcast to \(2,\)"):
        mg.ones(2).mul_(mg.ones(2, 2))
    with pytest.raises(ValueError, match=r"mul_: shapes \(2,\) and \(3,\) cannot be broadcast"):
        mg.ones(2).mul_(mg.ones(3))
    with pytest.raises(ValueError, match=r"setitem: a value of shape \(3,\) cannot be written"):
        mg.ones(2)[:] = mg.ones(3)


def test_in_place_methods_compute_what_they_say():
    x = mg.tensor([1.0, -2.0, 3.0])
    assert x.add_(mg.tensor([1.0, 1.0, 1.0]), alpha=2.0).tolist() == [3.0, 0.0, 5.0]
    assert x.sub_(1.0).tolist() == [2.0, -1.0, 4.0]
    assert x.mul_(2.0).tolist() == [4.0, -2.0, 8.0]
    assert x.div_(4.0).tolist() == [1.0, -0.5, 2.0]
    assert x.clamp_(min=0.0, max=1.5).tolist() == [1.0, 0.0, 1.5]
    assert x.fill_(7.0).tolist() == [7.0, 7.0, 7.0]
    assert x.copy_(mg.tensor([1, 2, 3])).tolist() == [1.0, 2.0, 3.0] and x.dtype == mg.float32
    assert x.zero_().tolist() == [0.0, 0.0, 0.0]
    assert x._version == 8
